// FileStore: Django's FileBasedCache semantics over one file per key, written by rename.
#include "core/file_store.hpp"

#include "core/fork.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <ctime>
#include <mutex>
#include <utility>
#include <vector>

#include "core/codec.hpp"
#include "core/fork.hpp"
#include "core/hash.hpp"

namespace nativecache::file {

namespace {

// A header claiming more than this is damage, not a value: it bounds what a reader
// allocates on the word of a file.
constexpr std::uint64_t kMaxStoredValue = std::uint64_t{1} << 40;
// A temp file this old belongs to a writer that died between create and rename.
constexpr std::int64_t kStaleTempNs = std::int64_t{60} * 1000 * 1000 * 1000;
// Buffers kept per thread for reading values are given back above this size.
constexpr std::size_t kKeepScratch = std::size_t{1} << 20;
constexpr std::size_t kChunk = std::size_t{64} << 10;
constexpr std::size_t kHeaderBytes = sizeof(FileHeader);
constexpr char kHex[] = "0123456789abcdef";

// Error text for the thread's last failure; Status::what points into it until the
// thread's next failure, long enough for the binding to raise it.
thread_local std::string t_error;

Status failure(Code code, std::string text, int err = 0) {
  t_error = std::move(text);
  return Status::Of(code, t_error.c_str(), err);
}

// A full medium (or quota) is kNoSpace, since the binding reports it apart from other
// I/O errors.
Status os_failure(const char* doing, const std::string& path, int err) {
  char buf[128];
  std::string text = std::string("file cache: cannot ") + doing + " " + path + ": " +
                     ::strerror_r(err, buf, sizeof buf);
  if (err == ENOSPC || err == EDQUOT) {
    text += " (the file system of the cache directory is full)";
    return failure(Code::kNoSpace, std::move(text), err);
  }
  return failure(Code::kIo, std::move(text), err);
}

int close_fd(int fd) noexcept { return ::close(fd); }

// Owns one file descriptor, closed by Close (::close, or the registry's for .nativecache).
template <int (*Close)(int) noexcept>
class BasicFd {
 public:
  BasicFd() noexcept = default;
  explicit BasicFd(int fd) noexcept : fd_(fd) {}
  BasicFd(BasicFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  BasicFd& operator=(BasicFd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  BasicFd(const BasicFd&) = delete;
  BasicFd& operator=(const BasicFd&) = delete;
  ~BasicFd() { reset(); }

  [[nodiscard]] int get() const noexcept { return fd_; }
  [[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }
  void reset() noexcept {
    if (fd_ >= 0) Close(fd_);
    fd_ = -1;
  }
  // Closes now and returns close()'s errno (0 on success): on NFS a deferred write
  // error of a file only shows here. Linux has closed the descriptor even on EINTR.
  int close() noexcept {
    int fd = std::exchange(fd_, -1);
    if (fd < 0 || Close(fd) == 0 || errno == EINTR) return 0;
    return errno;
  }

 private:
  int fd_ = -1;
};
using Fd = BasicFd<close_fd>;

// Owns one open directory stream.
class Dir {
 public:
  explicit Dir(DIR* d) noexcept : d_(d) {}
  Dir(const Dir&) = delete;
  Dir& operator=(const Dir&) = delete;
  ~Dir() {
    if (d_ != nullptr) ::closedir(d_);
  }
  [[nodiscard]] DIR* get() const noexcept { return d_; }
  [[nodiscard]] int fd() const noexcept { return ::dirfd(d_); }

 private:
  DIR* d_;
};

int open_file(const char* path, int flags, mode_t mode = 0) noexcept {
  for (;;) {
    int fd = ::open(path, flags, mode);
    if (fd >= 0 || errno != EINTR) return fd;
  }
}

// Files outlive reboots and may be shared by hosts, so expiry is wall-clock time, not
// the monotonic clock the in-memory stores use.
std::int64_t wall_ms() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

std::int64_t wall_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::int64_t mtime_ns(const struct stat& st) noexcept {
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
}

// Whether `name` in the directory open at dir_fd is a temp file old enough to be left
// by a writer that died: a younger one may be another process's write in flight.
bool stale_temp(int dir_fd, const char* name, std::int64_t now_ns) noexcept {
  struct stat st {};
  return std::string_view(name).starts_with(kTempPrefix) &&
         ::fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
         now_ns - mtime_ns(st) > kStaleTempNs;
}

// Cas tokens and temp names: they must differ between writes of every process sharing
// the directory, including a parent and its forked children, so no per-process state.
std::uint64_t random64() noexcept {
  std::uint64_t v = 0;
  if (::getrandom(&v, sizeof v, GRND_NONBLOCK) == static_cast<ssize_t>(sizeof v) && v != 0) {
    return v;
  }
  // Before the kernel's pool is ready: unique is what matters here, not unpredictable.
  static std::atomic<std::uint64_t> counter{0};
  v = mix64(static_cast<std::uint64_t>(wall_ns()) ^
            (static_cast<std::uint64_t>(::getpid()) << 40) ^
            (counter.fetch_add(1, std::memory_order_relaxed) * 0x9E3779B97F4A7C15ULL));
  return v == 0 ? 1 : v;
}

void append_hex16(std::string& out, std::uint64_t v) {
  for (int shift = 60; shift >= 0; shift -= 4) out += kHex[(v >> shift) & 15];
}

std::uint32_t crc_update(std::uint32_t crc, const void* data, std::size_t n) noexcept {
  const auto* p = static_cast<const Bytef*>(data);
  uLong c = crc;
  while (n > 0) {  // zlib takes 32-bit lengths; and crc32(c, nullptr, 0) would reset c
    auto chunk = static_cast<uInt>(std::min<std::size_t>(n, std::size_t{1} << 30));
    c = ::crc32(c, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<std::uint32_t>(c);
}

// Covers the header and the key, so header-only reads (contains, ttl, the cull scan)
// tell a damaged key from another key with the same hash.
std::uint32_t header_crc(const FileHeader& h, const void* key, std::size_t key_len) noexcept {
  return crc_update(crc_update(0, &h, offsetof(FileHeader, header_crc)), key, key_len);
}

// The fields a reader relies on before it has the key to check the CRC with.
bool header_sane(const FileHeader& h) noexcept {
  return h.magic == kFileMagic && h.version == kFileVersion &&
         h.header_size == kHeaderBytes && h.key_len <= kMaxKeyLength &&
         h.value_len <= kMaxStoredValue;
}

std::int64_t file_size(const FileHeader& h) noexcept {
  return static_cast<std::int64_t>(kHeaderBytes + h.key_len + h.value_len);
}

// preadv until every buffer is full or the file ends, through EINTR and short reads.
// Returns the bytes read, or -1 with errno set. Consumes iov.
ssize_t read_fully(int fd, iovec* iov, int n, off_t offset) noexcept {
  std::size_t total = 0;
  while (n > 0) {
    std::size_t wanted = 0;
    for (int i = 0; i < n; ++i) wanted += iov[i].iov_len;
    ssize_t r = ::preadv(fd, iov, n, offset);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) break;
    auto left = static_cast<std::size_t>(r);
    // Entry files never change once renamed into place, so a short read of a regular
    // file is its end: asking again would only return 0.
    if (left < wanted) return static_cast<ssize_t>(total + left);
    total += left;
    offset += r;
    while (n > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --n;
    }
    if (n > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return static_cast<ssize_t>(total);
}

// writev until everything is written; returns 0 or errno. Consumes iov.
int write_fully(int fd, iovec* iov, int n) noexcept {
  while (n > 0 && iov->iov_len == 0) {
    ++iov;
    --n;
  }
  while (n > 0) {
    ssize_t r = ::writev(fd, iov, n);
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (r == 0) return EIO;
    auto left = static_cast<std::size_t>(r);
    while (n > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --n;
    }
    if (n > 0) {
      iov->iov_base = static_cast<char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
  return 0;
}

bool is_dir(const std::string& path) noexcept {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// A directory this store made gets 0700 whatever the umask: Django sets umask 077 around
// makedirs for the same reason (its tests check the directory and its new parents).
void fix_mode(const std::string& path) noexcept {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 07777) != 0700) {
    ::chmod(path.c_str(), 0700);
  }
}

// mkdir -p, 0700 for every directory it creates; an existing one is left as it is.
Status make_dirs(const std::string& path) {
  for (int attempt = 0;; ++attempt) {
    if (::mkdir(path.c_str(), 0700) == 0) {
      fix_mode(path);
      return Status::Ok();
    }
    int err = errno;
    if (err == EEXIST) {
      if (is_dir(path)) return Status::Ok();
      return os_failure("create directory", path, ENOTDIR);
    }
    if (err != ENOENT || attempt > 0) return os_failure("create directory", path, err);
    std::size_t end = path.find_last_not_of('/');
    std::size_t slash = end == std::string::npos ? end : path.find_last_of('/', end);
    if (slash == std::string::npos) return os_failure("create directory", path, err);
    std::size_t parent_end = path.find_last_not_of('/', slash);
    if (parent_end == std::string::npos) return os_failure("create directory", path, err);
    if (Status st = make_dirs(path.substr(0, parent_end + 1)); !st.ok()) return st;
  }
}

bool exists(const char* path) noexcept {
  // Anything but a clear "not there" counts as present, and the locked path decides.
  return ::access(path, F_OK) == 0 || (errno != ENOENT && errno != ENOTDIR);
}

bool fanout_name(const char* name) noexcept {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); };
  return hex(name[0]) && hex(name[1]) && name[2] == '\0';
}

// Calls visit(sub, fanout_name, entry) for each name in each fan-out directory under
// root (a reader's view: names renamed in or removed meanwhile may or may not be seen),
// then done(fanout_name) once that directory has been read to its end.
template <class Visit, class Done>
void walk_fanout(const Dir& root, Visit&& visit, Done&& done) {
  while (dirent* d = ::readdir(root.get())) {
    if (!fanout_name(d->d_name)) continue;
    int fd = ::openat(root.fd(), d->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) continue;
    Dir sub(::fdopendir(fd));
    if (sub.get() == nullptr) {
      ::close(fd);
      continue;
    }
    while (dirent* e = ::readdir(sub.get())) visit(sub, d->d_name, e->d_name);
    done(d->d_name);
  }
}

std::span<const std::byte> as_bytes(std::string_view s) noexcept {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// Takes or releases one byte of an OFD (open file description) lock.
int set_lock(int fd, std::int64_t byte, short type, bool wait) noexcept {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = static_cast<off_t>(byte);
  fl.l_len = 1;
  for (;;) {
    if (::fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl) == 0) return 0;
    if (errno != EINTR) return errno;
  }
}

// Descriptors of .nativecache open in this process, any thread's: a child of fork()
// closes its copies at once (ChildClosedFds), since its copy of a description would keep
// a lock its parent took alive once the parent died.
struct CounterFds {
  // Never through a symbolic link: one planted as .nativecache would have this process
  // rewrite whatever file it points at.
  static int open(const char* path, int flags, mode_t mode) {
    return ChildClosedFds::open([&] { return open_file(path, flags | O_NOFOLLOW, mode); });
  }
  static int close(int fd) noexcept { return ChildClosedFds::close(fd); }
};

// Owns one registered descriptor of .nativecache (see CounterFds).
using CounterFd = BasicFd<CounterFds::close>;

// What a read found at an entry's path.
enum class State : std::uint8_t {
  kAbsent,    // no file (or `err` says why it could not be read)
  kLive,
  kOtherKey,  // a key with the same hash: a miss, but the file is someone's entry
  kExpired,
  kDamaged,   // truncated, bad magic/version/lengths/CRC, or empty
  kTooSmall,  // live, but the value did not fit and could not grow into the buffer
};

enum class Depth : std::uint8_t {
  kHeader,  // header and key: liveness and expiry
  kCheck,   // and the value's CRC, streamed through a small buffer
  kValue,   // and the value itself, into the caller's buffer
};

struct Found {
  State state = State::kAbsent;
  int err = 0;
  FileHeader h{};
  Fd fd;  // kept open so a discard can check the path still names this file
  const std::byte* value = nullptr;

  [[nodiscard]] bool live() const noexcept { return state == State::kLive; }
  [[nodiscard]] bool dead() const noexcept {
    return state == State::kExpired || state == State::kDamaged;
  }
  [[nodiscard]] std::int64_t size() const noexcept {
    return state == State::kDamaged || state == State::kAbsent ? 0 : file_size(h);
  }
};

std::byte* chunk_buffer() {
  thread_local std::vector<std::byte> chunk(kChunk);
  return chunk.data();
}

// Reads the entry at path for key. With kValue the value lands in buf (capacity cap);
// a larger one is read into *grow when given (Found::value then points into it).
Found read_entry(const char* path, std::string_view key, Depth depth, std::byte* buf,
                 std::size_t cap, std::vector<std::byte>* grow, std::int64_t now) {
  Found f;
  int fd = open_file(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT && errno != ENOTDIR) f.err = errno;
    return f;
  }
  f.fd = Fd(fd);
  thread_local std::vector<char> key_buf;
  if (key_buf.size() < key.size()) key_buf.resize(key.size());
  if (depth == Depth::kCheck) {
    buf = chunk_buffer();
    cap = kChunk;
  }
  std::byte sentinel{};  // filled only when the file is longer than the buffers
  iovec iov[4] = {{&f.h, kHeaderBytes},
                  {key_buf.data(), key.size()},
                  {buf, cap},
                  {&sentinel, 1}};
  ssize_t r = read_fully(fd, iov, depth == Depth::kHeader ? 2 : 4, 0);
  if (r < 0) {
    f.err = errno;
    return f;
  }
  auto got = static_cast<std::size_t>(r);
  const std::size_t body = kHeaderBytes + key.size();
  f.state = State::kDamaged;
  if (got < kHeaderBytes || !header_sane(f.h)) return f;
  if (f.h.key_len != key.size()) {
    // Another key, or a damaged length: only the stored key can tell (a rare read).
    thread_local std::vector<char> other;
    other.resize(f.h.key_len);
    iovec k{other.data(), other.size()};
    ssize_t n = read_fully(fd, &k, 1, static_cast<off_t>(kHeaderBytes));
    if (n == static_cast<ssize_t>(other.size()) &&
        header_crc(f.h, other.data(), other.size()) == f.h.header_crc) {
      f.state = State::kOtherKey;
    }
    return f;
  }
  if (got < body || header_crc(f.h, key_buf.data(), key.size()) != f.h.header_crc) return f;
  if (!key.empty() && std::memcmp(key_buf.data(), key.data(), key.size()) != 0) {
    f.state = State::kOtherKey;
    return f;
  }
  if (f.h.expire_ms != 0 && f.h.expire_ms <= now) {
    f.state = State::kExpired;
    return f;
  }
  if (depth == Depth::kHeader) {
    // The value is not read, so its length is checked against the file's: a truncated
    // entry (a crash before the data reached the disk) is no more alive for has_key or
    // ttl than for get. A damaged value of the right length needs the CRC (kCheck).
    struct stat st {};
    if (::fstat(fd, &st) != 0 || st.st_size != static_cast<off_t>(file_size(f.h))) return f;
    f.state = State::kLive;
    return f;
  }
  const auto vlen = static_cast<std::size_t>(f.h.value_len);
  std::uint32_t crc = crc_update(0, key.data(), key.size());
  if (vlen <= cap) {
    if (got != body + vlen) return f;  // shorter: truncated; longer: trailing bytes
    crc = crc_update(crc, buf, vlen);
    f.value = buf;
  } else if (got != body + cap + 1) {
    return f;  // the file ends before the value the header announces
  } else if (depth == Depth::kCheck) {
    crc = crc_update(crc, buf, cap);
    std::size_t seen = cap;
    for (;;) {
      std::size_t want = std::min(kChunk, vlen + 1 - seen);
      iovec part{buf, want};
      ssize_t n = read_fully(fd, &part, 1, static_cast<off_t>(body + seen));
      if (n < 0) {
        f.err = errno;
        f.state = State::kAbsent;
        return f;
      }
      auto len = static_cast<std::size_t>(n);
      seen += len;
      if (seen > vlen) return f;
      crc = crc_update(crc, buf, len);
      if (len < want) break;
    }
    if (seen != vlen) return f;
  } else if (grow == nullptr) {
    f.state = State::kTooSmall;
    return f;
  } else {
    // Only a file that really is that long earns a buffer that large.
    struct stat st {};
    if (::fstat(fd, &st) != 0 || st.st_size != static_cast<off_t>(body + vlen)) return f;
    grow->resize(vlen);
    iovec rest[2] = {{grow->data(), vlen}, {&sentinel, 1}};
    ssize_t n = read_fully(fd, rest, 2, static_cast<off_t>(body));
    if (n < 0) {
      f.err = errno;
      f.state = State::kAbsent;
      return f;
    }
    if (static_cast<std::size_t>(n) != vlen) return f;
    crc = crc_update(crc, grow->data(), vlen);
    f.value = grow->data();
  }
  if (crc != f.h.data_crc) return f;
  f.state = State::kLive;
  return f;
}

// Values read for a rewrite (concat, touch): one buffer per thread, so no allocation
// in the common case, given back when a large value has blown it up.
std::vector<std::byte>& scratch() {
  thread_local std::vector<std::byte> buf(4096);
  return buf;
}

class ScratchTrim {
 public:
  ScratchTrim() = default;
  ScratchTrim(const ScratchTrim&) = delete;
  ScratchTrim& operator=(const ScratchTrim&) = delete;
  ~ScratchTrim() {
    if (scratch().capacity() > kKeepScratch) std::vector<std::byte>(4096).swap(scratch());
  }
};

std::int64_t clamp0(const std::atomic<std::int64_t>& v) noexcept {
  return std::max<std::int64_t>(0, v.load(std::memory_order_relaxed));
}

struct CounterHead {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t size;
};
static_assert(offsetof(Counters, entries) == sizeof(CounterHead));

}  // namespace

// Mappings of .nativecache and what to do when one of them loses its pages. Something
// outside the cache may truncate the file (`: > .nativecache`): the pages past its new end
// are gone, and the next access to them would kill the process with SIGBUS. A SIGBUS
// inside one of these mappings puts a private zeroed page in its place instead and the
// access goes on there (the count is lost); the zeroed block no longer carries the magic,
// so the next write or stats() of the store repairs the file and maps it again. A SIGBUS
// anywhere else goes to whatever handled it before.
class MappedCounters {
 public:
  static void add(void* block) noexcept {
    install();
    for (auto& slot : slots_) {
      void* expected = nullptr;
      if (slot.compare_exchange_strong(expected, block, std::memory_order_acq_rel)) return;
    }
    // No slot left (more than kSlots blocks in one process): that block is unguarded.
  }
  static void remove(void* block) noexcept {
    for (auto& slot : slots_) {
      void* expected = block;
      if (slot.compare_exchange_strong(expected, nullptr, std::memory_order_acq_rel)) return;
    }
  }

 private:
  static constexpr std::size_t kSlots = 1024;
  static inline std::atomic<void*> slots_[kSlots] = {};
  static inline struct sigaction previous_ = {};
  static inline std::size_t span_ = 4096;  // the mappings' length, whole pages

  static void install() noexcept {
    static std::once_flag once;
    std::call_once(once, [] {
      const long page = ::sysconf(_SC_PAGESIZE);  // not in the handler: not signal-safe
      const std::size_t p = page > 0 ? static_cast<std::size_t>(page) : 4096;
      span_ = (sizeof(Counters) + p - 1) / p * p;
      struct sigaction action {};
      action.sa_sigaction = &on_sigbus;
      action.sa_flags = SA_SIGINFO | SA_ONSTACK;
      sigemptyset(&action.sa_mask);
      ::sigaction(SIGBUS, nullptr, &previous_);  // read first: the handler may run at once
      ::sigaction(SIGBUS, &action, nullptr);
    });
  }

  static void on_sigbus(int sig, siginfo_t* info, void* context) {
    const int saved_errno = errno;
    const bool fault = info != nullptr && info->si_code > 0;  // not kill() or raise()
    if (fault && rescue(static_cast<const char*>(info->si_addr))) {
      errno = saved_errno;
      return;  // the access is made again, on the private page
    }
    pass_on(sig, info, context, fault);
    errno = saved_errno;
  }

  static bool rescue(const char* at) noexcept {
    for (auto& slot : slots_) {
      auto* base = static_cast<char*>(slot.load(std::memory_order_acquire));
      if (base == nullptr || at < base || at >= base + span_) continue;
      return ::mmap(base, span_, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS,
                    -1, 0) == base;
    }
    return false;
  }

  // What the disposition before ours would have done. A fault repeats its access when the
  // handler returns, so an ignored one ends the process as the kernel would end it.
  static void pass_on(int sig, siginfo_t* info, void* context, bool fault) noexcept {
    const struct sigaction before = previous_;
    if (before.sa_handler == SIG_IGN && !fault) return;
    if (before.sa_handler == SIG_DFL || before.sa_handler == SIG_IGN) {
      ::signal(sig, SIG_DFL);
      if (!fault) ::raise(sig);  // delivered when this handler returns
      return;
    }
    if (before.sa_flags & SA_RESETHAND) ::signal(sig, SIG_DFL);  // one-shot, as it was
    if (before.sa_flags & SA_SIGINFO) {
      before.sa_sigaction(sig, info, context);
    } else {
      before.sa_handler(sig);
    }
  }
};

// The counters a store updates: the mapping of .nativecache once a write (or stats) has
// found the file, a private block before that. A block is never unmapped while the
// store lives (another thread may be incrementing it); when the file is replaced (the
// directory deleted and made again, the file damaged) the store moves to the new one.
class CounterMap {
 public:
  CounterMap() : local_(std::make_unique<Counters>()), block_(local_.get()) {}
  ~CounterMap() {
    for (void* p : mapped_) {
      MappedCounters::remove(p);
      ::munmap(p, sizeof(Counters));
    }
  }
  CounterMap(const CounterMap&) = delete;
  CounterMap& operator=(const CounterMap&) = delete;

  Counters& block() noexcept { return *block_.load(std::memory_order_acquire); }

  // Makes the block the one of the file open at fd (described by st), creating or
  // repairing its content first, unless it already is.
  void follow(int fd, const struct stat& st) noexcept {
    if (current(st)) return;
    // Best effort, never a wait; the next call tries again. Fork-safe, so a child forked
    // while another thread was here can still follow a new file.
    std::unique_lock<ForkSafeMutex> guard(mu_, std::try_to_lock);
    if (!guard.owns_lock() || current(st) || mapped_.size() >= kMaxMappings) return;
    if (!prepare(fd)) return;
    void* p = ::mmap(nullptr, sizeof(Counters), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return;
    try {
      mapped_.push_back(p);
    } catch (...) {
      ::munmap(p, sizeof(Counters));
      return;
    }
    MappedCounters::add(p);
    dev_.store(static_cast<std::uint64_t>(st.st_dev), std::memory_order_relaxed);
    ino_.store(static_cast<std::uint64_t>(st.st_ino), std::memory_order_relaxed);
    block_.store(static_cast<Counters*>(p), std::memory_order_release);
    settle();
  }

  // What this process counted in the private block (before the file existed, or while
  // another thread was making the block current) belongs to the file's cache too: added
  // to the current block, once. A thread that took the private block just before the
  // switch may add to it after: the next settle() (every stats()) takes that too. A
  // child of fork() inherits its parent's private counts, which the parent adds itself,
  // so a child never adds the private block.
  void settle() noexcept {
    Counters* current_block = block_.load(std::memory_order_acquire);
    if (current_block == local_.get() || ::getpid() != owner_) return;
    for (auto field : {&Counters::entries, &Counters::bytes, &Counters::hits,
                       &Counters::misses, &Counters::sets, &Counters::evictions,
                       &Counters::expirations, &Counters::recoveries}) {
      const std::int64_t n = ((*local_).*field).exchange(0, std::memory_order_relaxed);
      if (n != 0) (current_block->*field).fetch_add(n, std::memory_order_relaxed);
    }
  }

 private:
  // Bounds the mappings kept when something keeps deleting the file.
  static constexpr std::size_t kMaxMappings = 64;

  bool current(const struct stat& st) const noexcept {
    const Counters& b = *block_.load(std::memory_order_acquire);
    return ino_.load(std::memory_order_relaxed) == static_cast<std::uint64_t>(st.st_ino) &&
           dev_.load(std::memory_order_relaxed) == static_cast<std::uint64_t>(st.st_dev) &&
           b.magic == kCounterMagic && b.version == kCounterVersion &&
           b.size == sizeof(Counters);
  }

  static bool valid(int fd) noexcept {
    struct stat st {};
    CounterHead head{};
    return ::fstat(fd, &st) == 0 && st.st_size == static_cast<off_t>(sizeof(Counters)) &&
           ::pread(fd, &head, sizeof head, 0) == static_cast<ssize_t>(sizeof head) &&
           head.magic == kCounterMagic && head.version == kCounterVersion &&
           head.size == sizeof(Counters);
  }

  // A new file is empty, a damaged one is rewritten: both under the init lock byte, so
  // two processes never write it at once and nobody maps it half made.
  static bool prepare(int fd) noexcept {
    if (valid(fd)) return true;
    if (set_lock(fd, kInitLockByte, F_WRLCK, true) != 0) return false;
    bool ok = valid(fd);
    if (!ok) {
      unsigned char image[sizeof(Counters)] = {};
      const CounterHead head{kCounterMagic, kCounterVersion, sizeof(Counters)};
      std::memcpy(image, &head, sizeof head);
      ok = ::ftruncate(fd, static_cast<off_t>(sizeof image)) == 0 &&
           ::pwrite(fd, image, sizeof image, 0) == static_cast<ssize_t>(sizeof image);
    }
    set_lock(fd, kInitLockByte, F_UNLCK, false);
    return ok;
  }

  ForkSafeMutex mu_;
  const pid_t owner_ = ::getpid();
  std::unique_ptr<Counters> local_;
  std::vector<void*> mapped_;
  std::atomic<Counters*> block_;
  std::atomic<std::uint64_t> dev_{0}, ino_{0};
};

// One locked byte of .nativecache, on a descriptor of its own.
//
// Why a fresh open per lock: OFD locks (and flock) belong to the open file description,
// and a description is shared by every thread of the process and by forked children.
// A descriptor kept in the store would let two threads, or a parent and its child, "hold"
// the same stripe at once. POSIX record locks avoid the fork problem but are per
// process (no exclusion between threads) and are dropped by any close() of the file in
// the process. A private description per operation excludes everyone, costs one open,
// and the kernel releases the lock when a holder dies. A forked child shares the
// description but closes its copy at once (CounterFds), so it never keeps a lock alive.
class FileStore::Lock {
 public:
  Lock() = default;
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;
  ~Lock() { release(); }
  void release() noexcept {
    if (!fd_.valid()) return;
    set_lock(fd_.get(), byte_, F_UNLCK, false);
    fd_.reset();
  }

 private:
  friend class FileStore;
  CounterFd fd_;
  std::int64_t byte_ = 0;
};

FileStore::FileStore(std::string dir, std::size_t max_value)
    : dir_(std::move(dir)),
      counter_path_(dir_ + "/" + std::string(kCounterFile)),
      max_value_(max_value),
      counters_(std::make_unique<CounterMap>()) {}

FileStore::~FileStore() = default;

Status FileStore::open(const FileOptions& opts, std::unique_ptr<FileStore>& out,
                       std::string& detail) {
  std::string dir = opts.dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (dir.empty()) {
    detail = "the file cache needs a directory (LOCATION)";
    return Status::Of(Code::kInvalidArgument);
  }
  if (dir.front() != '/') {  // as Django's abspath: a later chdir must not move the cache
    std::vector<char> cwd(4096);
    while (::getcwd(cwd.data(), cwd.size()) == nullptr) {
      if (errno != ERANGE) {
        detail = "the file cache location " + dir +
                 " is relative and the working directory is unknown";
        return Status::Of(Code::kInvalidArgument);
      }
      cwd.resize(cwd.size() * 2);
    }
    std::string base(cwd.data());
    dir = (base == "/" ? base : base + "/") + dir;
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode)) {
    detail = "the file cache location " + dir + " exists and is not a directory";
    return Status::Of(Code::kInvalidArgument);
  }
  std::size_t max_value = opts.max_value_size == 0 ? kDefaultMaxValueSize : opts.max_value_size;
  if (max_value > kMaxStoredValue) max_value = kMaxStoredValue;
  nativecache::watch_forks();
  std::unique_ptr<FileStore> store(new FileStore(std::move(dir), max_value));
  // Shared counters from the start when the directory is in use already; nothing is
  // created until the first write.
  CounterFd counter(CounterFds::open(store->counter_path_.c_str(), O_RDWR | O_CLOEXEC, 0));
  if (counter.valid() && ::fstat(counter.get(), &st) == 0) {
    store->counters_->follow(counter.get(), st);
  }
  out = std::move(store);
  return Status::Ok();
}

void FileStore::entry_path(std::uint64_t hash, std::string& out) const {
  out.assign(dir_);
  out += '/';
  out += kHex[(hash >> 60) & 15];
  out += kHex[(hash >> 56) & 15];
  out += '/';
  append_hex16(out, hash);
  out += kEntrySuffix;
}

std::string FileStore::path_for(std::string_view key) const {
  std::string path;
  entry_path(hash_key(key), path);
  return path;
}

namespace {
std::int64_t stripe_byte(std::uint64_t hash) noexcept {
  return kLockBase + static_cast<std::int64_t>(hash % kLockStripes);
}
}  // namespace

Status FileStore::lock(std::int64_t byte, bool create, Lock& out) {
  for (int attempt = 0;; ++attempt) {
    CounterFd lock_fd(
        CounterFds::open(counter_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    const int fd = lock_fd.get();
    if (fd < 0) {
      int err = errno;
      if (err == ENOENT && !create) return Status::Of(Code::kNotFound);
      if (err == ENOENT && attempt < 3) {
        if (Status st = make_dirs(dir_); !st.ok()) return st;
        continue;
      }
      return os_failure("open", counter_path_, err);
    }
    if (int err = set_lock(fd, byte, F_WRLCK, true); err != 0) {
      return os_failure("lock", counter_path_, err);
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      int err = errno;
      set_lock(fd, byte, F_UNLCK, false);
      return os_failure("stat", counter_path_, err);
    }
    // Locked a file that was deleted meanwhile (the directory removed): nobody else
    // will ever wait on it, so lock the current one.
    if (st.st_nlink == 0 && attempt < 3) {
      set_lock(fd, byte, F_UNLCK, false);
      continue;
    }
    counters_->follow(fd, st);
    out.release();
    out.fd_ = std::move(lock_fd);
    out.byte_ = byte;
    return Status::Ok();
  }
}

Status FileStore::write_entry(const std::string& path, std::string_view key,
                              std::span<const std::span<const std::byte>> parts,
                              std::uint32_t flags, std::int64_t expire_ms, std::uint64_t cas,
                              bool existed, std::int64_t old_size) {
  FileHeader h{};
  h.magic = kFileMagic;
  h.version = kFileVersion;
  h.header_size = static_cast<std::uint16_t>(kHeaderBytes);
  h.flags = flags;
  h.key_len = static_cast<std::uint32_t>(key.size());
  h.expire_ms = expire_ms;
  h.cas = cas;
  std::uint32_t crc = crc_update(0, key.data(), key.size());
  iovec iov[4] = {{&h, kHeaderBytes}, {const_cast<char*>(key.data()), key.size()}, {}, {}};
  int n = 2;
  for (std::span<const std::byte> part : parts.first(std::min<std::size_t>(parts.size(), 2))) {
    h.value_len += part.size();
    crc = crc_update(crc, part.data(), part.size());
    iov[n++] = {const_cast<std::byte*>(part.data()), part.size()};
  }
  h.data_crc = crc;
  h.header_crc = header_crc(h, key.data(), key.size());

  // The temp file sits in the entry's own directory: rename(2) is atomic only within
  // one file system, and a reader must see the old entry or the new one.
  const std::string fanout = path.substr(0, dir_.size() + 3);
  std::string tmp;
  Fd file;
  for (int attempt = 0;; ++attempt) {
    tmp.assign(fanout);
    tmp += '/';
    tmp += kTempPrefix;
    append_hex16(tmp, random64());
    int fd = open_file(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
      file = Fd(fd);
      break;
    }
    int err = errno;
    if (err == EEXIST && attempt < 8) continue;
    // A missing cache directory is made on demand (Django's tests delete it), and a
    // clear() in another process may remove an empty fan-out directory at any time.
    if (err == ENOENT && attempt < 4) {
      if (Status st = make_dirs(fanout); !st.ok()) return st;
      continue;
    }
    return os_failure("create", tmp, err);
  }
  int err = write_fully(file.get(), iov, n);
  if (err == 0) err = file.close();
  if (err == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    file.reset();
    ::unlink(tmp.c_str());
    return os_failure("write", path, err);
  }
  Counters& c = counters_->block();
  c.sets.fetch_add(1, std::memory_order_relaxed);
  if (!existed) c.entries.fetch_add(1, std::memory_order_relaxed);
  c.bytes.fetch_add(file_size(h) - old_size, std::memory_order_relaxed);
  if (writes_.fetch_add(1, std::memory_order_relaxed) % kSweepEvery == kSweepEvery - 1) {
    sweep_next_fanout();
  }
  return Status::Ok();
}

// A writer killed between creating its temp file and renaming it leaves the file behind,
// unseen by the counters; culling and clear() remove such files, but a cache below
// MAX_ENTRIES may never cull. So every kSweepEvery-th write of a store lists one fan-out
// directory, the next in turn, and removes the stale temp files there: all 256 every
// 256 * kSweepEvery writes, at the cost of one directory listing per kSweepEvery writes.
void FileStore::sweep_next_fanout() {
  const std::uint32_t n = sweep_next_.fetch_add(1, std::memory_order_relaxed) & 255;
  std::string fanout = dir_;
  fanout += '/';
  fanout += kHex[n >> 4];
  fanout += kHex[n & 15];
  Dir d(::opendir(fanout.c_str()));
  if (d.get() == nullptr) return;
  const std::int64_t now_ns = wall_ns();
  while (dirent* e = ::readdir(d.get())) {
    if (stale_temp(d.fd(), e->d_name, now_ns)) ::unlinkat(d.fd(), e->d_name, 0);
  }
}

// Under the entry's stripe lock.
void FileStore::unlink_entry(const std::string& path, std::int64_t size, bool expired,
                             bool damaged) {
  if (::unlink(path.c_str()) != 0) return;
  Counters& c = counters_->block();
  c.entries.fetch_sub(1, std::memory_order_relaxed);
  c.bytes.fetch_sub(size, std::memory_order_relaxed);
  if (expired) c.expirations.fetch_add(1, std::memory_order_relaxed);
  if (damaged) c.recoveries.fetch_add(1, std::memory_order_relaxed);
}

// A reader found a dead file and holds no lock: a writer may have renamed a fresh entry
// over it since, so it is removed only if the path still names the file that was read.
void FileStore::discard_if_same(const std::string& path, std::uint64_t hash, int fd,
                                std::int64_t size, bool expired, bool damaged) {
  struct stat was {};
  if (fd < 0 || ::fstat(fd, &was) != 0) return;
  Lock lk;
  if (!lock(stripe_byte(hash), false, lk).ok()) return;
  struct stat now {};
  if (::stat(path.c_str(), &now) != 0 || now.st_ino != was.st_ino || now.st_dev != was.st_dev) {
    return;
  }
  unlink_entry(path, size, expired, damaged);
}

Status FileStore::get(std::string_view key, ValueOut& out) {
  Counters& c = counters_->block();
  if (key.size() > kMaxKeyLength) {
    c.misses.fetch_add(1, std::memory_order_relaxed);
    return Status::Of(Code::kNotFound);
  }
  thread_local std::string path;
  const std::uint64_t hash = hash_key(key);
  entry_path(hash, path);
  Found f = read_entry(path.c_str(), key, Depth::kValue, out.data, out.capacity, out.grow,
                       wall_ms());
  switch (f.state) {
    case State::kLive:
      if (f.value != out.data) {
        out.data = out.grow->data();
        out.capacity = out.grow->size();
      }
      out.size = static_cast<std::size_t>(f.h.value_len);
      out.flags = f.h.flags;
      out.cas = f.h.cas;
      c.hits.fetch_add(1, std::memory_order_relaxed);
      return Status::Ok();
    case State::kTooSmall: {
      Status st = Status::Of(Code::kBufferTooSmall);
      st.needed = f.h.value_len;
      return st;
    }
    case State::kExpired:
    case State::kDamaged:
      discard_if_same(path, hash, f.fd.get(), f.size(), f.state == State::kExpired,
                      f.state == State::kDamaged);
      break;
    case State::kAbsent:
      if (f.err != 0) return os_failure("read", path, f.err);
      break;
    case State::kOtherKey:
      break;
  }
  c.misses.fetch_add(1, std::memory_order_relaxed);
  return Status::Of(Code::kNotFound);
}

Status FileStore::contains(std::string_view key) {
  std::int64_t ignored = 0;
  return ttl(key, ignored);
}

Status FileStore::ttl(std::string_view key, std::int64_t& remaining_ms) {
  if (key.size() > kMaxKeyLength) return Status::Of(Code::kNotFound);
  const std::uint64_t hash = hash_key(key);
  std::string path;
  entry_path(hash, path);
  const std::int64_t now = wall_ms();
  Found f = read_entry(path.c_str(), key, Depth::kHeader, nullptr, 0, nullptr, now);
  if (f.live()) {
    remaining_ms = f.h.expire_ms == 0 ? -1 : f.h.expire_ms - now;
    return Status::Ok();
  }
  if (f.dead()) {
    discard_if_same(path, hash, f.fd.get(), f.size(), f.state == State::kExpired,
                    f.state == State::kDamaged);
  }
  if (f.err != 0) return os_failure("read", path, f.err);
  return Status::Of(Code::kNotFound);
}

Status FileStore::store(const Write& w, Mode mode, std::uint64_t cas, const Limits& limits) {
  if (w.key.size() > kMaxKeyLength) return Status::Of(Code::kBadKey, "key longer than 65535 bytes");
  if (w.data.size() > max_value_) return Status::Of(Code::kTooLarge);
  const std::uint64_t hash = hash_key(w.key);
  std::string path;
  entry_path(hash, path);
  const bool drop = w.ttl.kind == Ttl::Kind::kDrop;
  // Nothing to change without a file: answer without locking or creating anything.
  if ((mode == Mode::kReplace || mode == Mode::kCas || drop) && !exists(path.c_str())) {
    return mode == Mode::kReplace || mode == Mode::kCas ? Status::Of(Code::kNotFound)
                                                        : Status::Ok();
  }
  Lock lk;
  if (Status st = lock(stripe_byte(hash), true, lk); !st.ok()) return st;
  const bool culls = limits.enforce && !drop && (mode == Mode::kSet || mode == Mode::kAdd);
  if (culls && mode == Mode::kSet) {
    // Django culls before it writes once the count has reached MAX_ENTRIES. Culling
    // never takes a stripe lock, so holding this one while waiting for it is safe.
    if (Status st = cull(limits); !st.ok()) return st;
  }
  const std::int64_t now = wall_ms();
  Found f;
  bool existed = false;
  std::int64_t old_size = 0;
  if (mode == Mode::kSet && !drop && w.ttl.kind != Ttl::Kind::kKeep) {
    struct stat st {};
    existed = ::stat(path.c_str(), &st) == 0;
    if (existed) old_size = static_cast<std::int64_t>(st.st_size);
  } else {
    Depth depth = mode == Mode::kSet ? Depth::kHeader : Depth::kCheck;
    f = read_entry(path.c_str(), w.key, depth, nullptr, 0, nullptr, now);
    if (f.err != 0) return os_failure("read", path, f.err);
    existed = f.state != State::kAbsent;
    old_size = f.size();
  }
  Status refuse = Status::Ok();
  switch (mode) {
    case Mode::kAdd:
      if (f.live()) refuse = Status::Of(Code::kExists);
      break;
    case Mode::kReplace:
      if (!f.live()) refuse = Status::Of(Code::kNotFound);
      break;
    case Mode::kCas:
      if (!f.live()) {
        refuse = Status::Of(Code::kNotFound);
      } else if (f.h.cas != cas) {
        refuse = Status::Of(Code::kExists);
      }
      break;
    case Mode::kSet:
      break;
  }
  if (!refuse.ok() || drop) {
    // Django: a timeout <= 0 keeps nothing. A dead file goes either way.
    if (f.dead() || (refuse.ok() && f.live() && mode != Mode::kAdd)) {
      unlink_entry(path, f.size(), f.state == State::kExpired, f.state == State::kDamaged);
    }
    return refuse;
  }
  if (culls && mode == Mode::kAdd) {
    // Only an add that will write culls, as in Django (whose add checks the key first):
    // an add refused for a live key must not evict anything, that key included.
    if (Status st = cull(limits); !st.ok()) return st;
    if (existed && !exists(path.c_str())) {  // the cull removed this key's dead file
      existed = false;
      old_size = 0;
    }
  }
  const std::int64_t expire = w.ttl.kind == Ttl::Kind::kKeep
                                  ? (f.live() ? f.h.expire_ms : 0)
                                  : w.ttl.deadline(now);
  const std::span<const std::byte> parts[] = {w.data};
  return write_entry(path, w.key, parts, w.flags, expire, random64(), existed, old_size);
}

// The locked start of a change to an entry that must exist: kNotFound (without locking)
// when its file is not there.
Status FileStore::lock_entry(std::string_view key, std::string& path, Lock& lk) {
  if (key.size() > kMaxKeyLength) return Status::Of(Code::kNotFound);
  const std::uint64_t hash = hash_key(key);
  entry_path(hash, path);
  if (!exists(path.c_str())) return Status::Of(Code::kNotFound);
  return lock(stripe_byte(hash), false, lk);
}

Status FileStore::concat(std::string_view key, std::span<const std::byte> data,
                         std::uint32_t flags, bool prepend) {
  std::string path;
  Lock lk;
  if (Status st = lock_entry(key, path, lk); !st.ok()) return st;
  ScratchTrim trim;
  std::vector<std::byte>& buf = scratch();
  Found f = read_entry(path.c_str(), key, Depth::kValue, buf.data(), buf.size(), &buf, wall_ms());
  if (f.err != 0) return os_failure("read", path, f.err);
  if (!f.live()) {
    if (f.dead()) {
      unlink_entry(path, f.size(), f.state == State::kExpired, f.state == State::kDamaged);
    }
    return Status::Of(Code::kNotFound);
  }
  if (f.h.flags != flags) return Status::Of(Code::kTypeMismatch);
  const auto old_len = static_cast<std::size_t>(f.h.value_len);
  if (old_len + data.size() > max_value_) return Status::Of(Code::kTooLarge);
  const std::span<const std::byte> old(f.value, old_len);
  const std::span<const std::byte> parts[] = {prepend ? data : old, prepend ? old : data};
  return write_entry(path, key, parts, flags, f.h.expire_ms, random64(), true, f.size());
}

// As Django's file backend: true when the entry's file was there and is now gone, without
// reading it (expired entries included). The key's lock orders it with add, cas and incr.
Status FileStore::remove(std::string_view key) {
  if (key.size() > kMaxKeyLength) return Status::Of(Code::kNotFound);
  const std::uint64_t hash = hash_key(key);
  std::string path;
  entry_path(hash, path);
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return Status::Of(Code::kNotFound);
    return os_failure("stat", path, errno);
  }
  Lock lk;
  if (Status s = lock(stripe_byte(hash), false, lk); !s.ok()) return s;
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return Status::Of(Code::kNotFound);
    return os_failure("unlink", path, errno);
  }
  Counters& c = counters_->block();
  c.entries.fetch_sub(1, std::memory_order_relaxed);
  c.bytes.fetch_sub(static_cast<std::int64_t>(st.st_size), std::memory_order_relaxed);
  return Status::Ok();
}

Status FileStore::touch(std::string_view key, Ttl ttl) {
  std::string path;
  Lock lk;
  if (Status st = lock_entry(key, path, lk); !st.ok()) return st;
  ScratchTrim trim;
  std::vector<std::byte>& buf = scratch();
  const std::int64_t now = wall_ms();
  // Keep and Drop need no value; anything else rewrites the file with it.
  const bool rewrite = ttl.kind != Ttl::Kind::kKeep && ttl.kind != Ttl::Kind::kDrop;
  Found f = read_entry(path.c_str(), key, rewrite ? Depth::kValue : Depth::kCheck, buf.data(),
                       buf.size(), &buf, now);
  if (f.err != 0) return os_failure("read", path, f.err);
  if (!f.live()) {
    if (f.dead()) {
      unlink_entry(path, f.size(), f.state == State::kExpired, f.state == State::kDamaged);
    }
    return Status::Of(Code::kNotFound);
  }
  if (ttl.kind == Ttl::Kind::kDrop) {
    unlink_entry(path, f.size(), false, false);
    return Status::Ok();
  }
  if (!rewrite) return Status::Ok();
  const std::span<const std::byte> parts[] = {
      {f.value, static_cast<std::size_t>(f.h.value_len)}};
  // The value is unchanged, so its cas token stays (as memcached's touch keeps it).
  return write_entry(path, key, parts, f.h.flags, ttl.deadline(now), f.h.cas, true, f.size());
}

Status FileStore::incr(std::string_view key, std::int64_t delta, std::int64_t& result) {
  std::string path;
  Lock lk;
  if (Status st = lock_entry(key, path, lk); !st.ok()) return st;
  // A number is at most 20 characters; anything that does not fit is not one.
  std::byte digits[24];
  Found f = read_entry(path.c_str(), key, Depth::kValue, digits, sizeof digits, nullptr, wall_ms());
  if (f.err != 0) return os_failure("read", path, f.err);
  if (f.dead()) {
    unlink_entry(path, f.size(), f.state == State::kExpired, f.state == State::kDamaged);
  }
  if (f.state != State::kLive && f.state != State::kTooSmall) return Status::Of(Code::kNotFound);
  if (f.state == State::kTooSmall) {
    // Too long to be a number, if it is intact: check it, as a damaged file is a miss.
    f = read_entry(path.c_str(), key, Depth::kCheck, nullptr, 0, nullptr, wall_ms());
    if (f.err != 0) return os_failure("read", path, f.err);
    if (f.dead()) {
      unlink_entry(path, f.size(), f.state == State::kExpired, f.state == State::kDamaged);
    }
    return f.live() ? Status::Of(Code::kNotNumeric) : Status::Of(Code::kNotFound);
  }
  if (f.h.flags != codec::kInt && f.h.flags != codec::kLong) return Status::Of(Code::kNotNumeric);
  auto old = codec::parse_int(
      {reinterpret_cast<const char*>(f.value), static_cast<std::size_t>(f.h.value_len)});
  if (!old) return Status::Of(Code::kNotNumeric);
  std::int64_t updated = 0;
  if (__builtin_add_overflow(*old, delta, &updated)) return Status::Of(Code::kOverflow);
  char buf[24];
  std::size_t n = codec::format_int(updated, buf);
  const std::span<const std::byte> parts[] = {as_bytes({buf, n})};
  Status st = write_entry(path, key, parts, f.h.flags, f.h.expire_ms, random64(), true, f.size());
  if (st.ok()) result = updated;
  return st;
}

namespace {

// One entry file seen by a scan.
struct Seen {
  std::string path;
  std::int64_t mtime_ns;
  std::int64_t size;
  bool expired, damaged;
};

// Reads the header and key of the entry file open at fd (described by st), as the scans
// of the whole directory do: false when they are not intact (short, bad magic, version or
// lengths, a size other than the header's, a header CRC, which covers the key, that does
// not match). The value is not read, so its CRC is left to the next read of the key,
// which removes a damaged file.
bool read_head(int fd, const struct stat& st, FileHeader& h, std::vector<char>& key) {
  iovec iov{&h, kHeaderBytes};
  if (read_fully(fd, &iov, 1, 0) != static_cast<ssize_t>(kHeaderBytes) || !header_sane(h) ||
      file_size(h) != static_cast<std::int64_t>(st.st_size)) {
    return false;
  }
  key.resize(h.key_len);
  iovec k{key.data(), key.size()};
  return read_fully(fd, &k, 1, static_cast<off_t>(kHeaderBytes)) ==
             static_cast<ssize_t>(key.size()) &&
         header_crc(h, key.data(), key.size()) == h.header_crc;
}

}  // namespace

// Django's MAX_ENTRIES / CULL_FREQUENCY. The shared counter says when to look; the
// directory itself says how many entries there are, since the counter drifts (a process
// can die between a rename and its increment, files can be deleted by hand).
Status FileStore::cull(const Limits& limits) {
  Counters& c = counters_->block();
  if (c.entries.load(std::memory_order_relaxed) < limits.max_entries) return Status::Ok();
  Lock cl;
  if (Status st = lock(kCullLockByte, true, cl); !st.ok()) return st;
  Counters& cc = counters_->block();
  // Another process may have culled while this one waited.
  if (cc.entries.load(std::memory_order_relaxed) < limits.max_entries) return Status::Ok();

  Dir root(::opendir(dir_.c_str()));
  if (root.get() == nullptr) return os_failure("list", dir_, errno);
  std::vector<Seen> seen;
  std::vector<char> key;
  const std::int64_t now_ms = wall_ms();
  const std::int64_t now_ns = wall_ns();
  walk_fanout(
      root,
      [&](const Dir& sub, const char* fanout, const char* file) {
        std::string_view name(file);
        struct stat st {};
        if (name.starts_with(kTempPrefix)) {
          if (stale_temp(sub.fd(), file, now_ns)) ::unlinkat(sub.fd(), file, 0);
          return;
        }
        if (!name.ends_with(kEntrySuffix)) return;
        Fd entry(::openat(sub.fd(), file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
        if (!entry.valid() || ::fstat(entry.get(), &st) != 0) return;
        FileHeader h{};
        bool damaged = !read_head(entry.get(), st, h, key);
        bool expired = !damaged && h.expire_ms != 0 && h.expire_ms <= now_ms;
        seen.push_back({dir_ + "/" + fanout + "/" + file, mtime_ns(st),
                        static_cast<std::int64_t>(st.st_size), expired, damaged});
      },
      [](const char*) {});

  const auto count = static_cast<std::int64_t>(seen.size());
  std::int64_t target = 0;
  if (count >= limits.max_entries) {
    target = limits.cull_frequency == 0 ? count
             : limits.cull_frequency > 0 ? count / limits.cull_frequency
                                         : 0;
  }
  // Dead files first (all of them: they are garbage whatever the limit), then the
  // oldest live ones until `target` are gone.
  auto live_begin = std::stable_partition(seen.begin(), seen.end(), [](const Seen& s) {
    return s.expired || s.damaged;
  });
  const auto dead = static_cast<std::int64_t>(live_begin - seen.begin());
  const std::int64_t live_to_go = std::clamp<std::int64_t>(target - dead, 0, count - dead);
  auto live_end = live_begin + live_to_go;
  std::nth_element(live_begin, live_end, seen.end(),
                   [](const Seen& a, const Seen& b) { return a.mtime_ns < b.mtime_ns; });
  std::int64_t removed = 0, bytes = 0;
  for (auto it = seen.begin(); it != seen.end(); ++it) {
    bool go = it < live_end;
    if (go && ::unlink(it->path.c_str()) == 0) {
      ++removed;
      if (it->expired) cc.expirations.fetch_add(1, std::memory_order_relaxed);
      if (it->damaged) cc.recoveries.fetch_add(1, std::memory_order_relaxed);
      if (it >= live_begin) cc.evictions.fetch_add(1, std::memory_order_relaxed);
    } else {
      bytes += it->size;
    }
  }
  cc.entries.store(count - removed, std::memory_order_relaxed);
  cc.bytes.store(bytes, std::memory_order_relaxed);
  return Status::Ok();
}

Status FileStore::clear() {
  Lock cl;
  Status locked = lock(kCullLockByte, false, cl);
  if (locked.code == Code::kNotFound) return Status::Ok();  // no directory, nothing to clear
  if (!locked.ok()) return locked;
  Dir root(::opendir(dir_.c_str()));
  if (root.get() == nullptr) {
    return errno == ENOENT ? Status::Ok() : os_failure("list", dir_, errno);
  }
  int first_err = 0;
  std::string where;
  const std::int64_t now_ns = wall_ns();
  walk_fanout(
      root,
      [&](const Dir& sub, const char* fanout, const char* file) {
        std::string_view name(file);
        if (name.starts_with(kTempPrefix)) {
          // A fresh temp file is a write in flight in another process: removing it
          // would fail that write, and it keeps the directory for its rename.
          if (!stale_temp(sub.fd(), file, now_ns)) return;
        } else if (!name.ends_with(kEntrySuffix)) {
          return;
        }
        // EISDIR: a directory named like an entry is not one of ours; it stays.
        if (::unlinkat(sub.fd(), file, 0) != 0 && errno != ENOENT && errno != EISDIR &&
            first_err == 0) {
          first_err = errno;
          where = dir_ + "/" + fanout + "/" + file;
        }
      },
      // Fails while anything else (or a writer's new temp file) is inside: it stays.
      [&](const char* fanout) { ::unlinkat(root.fd(), fanout, AT_REMOVEDIR); });
  Counters& c = counters_->block();
  c.entries.store(0, std::memory_order_relaxed);
  c.bytes.store(0, std::memory_order_relaxed);
  if (first_err != 0) return os_failure("remove", where, first_err);
  return Status::Ok();
}

// Lists the fan-out directories with no lock, as reads take none: a file renamed into
// place or removed meanwhile may or may not be listed. Only intact, unexpired entries
// stored where their key's hash puts them are listed (a file copied elsewhere by hand is
// never read by get either); nothing is removed, a listing changes nothing.
Status FileStore::keys(std::vector<std::string>& out) {
  Dir root(::opendir(dir_.c_str()));
  if (root.get() == nullptr) {
    return errno == ENOENT ? Status::Ok() : os_failure("list", dir_, errno);
  }
  const std::int64_t now = wall_ms();
  std::vector<char> key;
  std::string path, expected;
  walk_fanout(
      root,
      [&](const Dir& sub, const char* fanout, const char* file) {
        std::string_view name(file);
        if (name.starts_with(kTempPrefix) || !name.ends_with(kEntrySuffix)) return;
        Fd entry(::openat(sub.fd(), file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
        struct stat st {};
        if (!entry.valid() || ::fstat(entry.get(), &st) != 0 || !S_ISREG(st.st_mode)) return;
        FileHeader h{};
        if (!read_head(entry.get(), st, h, key)) return;
        if (h.expire_ms != 0 && h.expire_ms <= now) return;
        const std::string_view k(key.data(), key.size());
        entry_path(hash_key(k), expected);
        path.assign(dir_).append("/").append(fanout).append("/").append(name);
        if (path == expected) out.emplace_back(k);
      },
      [](const char*) {});
  return Status::Ok();
}

StoreStats FileStore::stats() {
  // Attach to the shared counters if this store has not written yet.
  CounterFd counter(CounterFds::open(counter_path_.c_str(), O_RDWR | O_CLOEXEC, 0));
  struct stat st {};
  if (counter.valid() && ::fstat(counter.get(), &st) == 0 && st.st_nlink > 0) {
    counters_->follow(counter.get(), st);
  }
  counters_->settle();
  const Counters& c = counters_->block();
  StoreStats s;
  s.hits = static_cast<std::uint64_t>(clamp0(c.hits));
  s.misses = static_cast<std::uint64_t>(clamp0(c.misses));
  s.sets = static_cast<std::uint64_t>(clamp0(c.sets));
  s.evictions = static_cast<std::uint64_t>(clamp0(c.evictions));
  s.expirations = static_cast<std::uint64_t>(clamp0(c.expirations));
  s.items = static_cast<std::uint64_t>(clamp0(c.entries));
  s.bytes = static_cast<std::uint64_t>(clamp0(c.bytes));
  s.recoveries = static_cast<std::uint64_t>(clamp0(c.recoveries));
  return s;
}

void FileStore::debug_hold_lock(std::string_view key, int notify_fd) {
  Lock lk;
  Status st = lock(stripe_byte(hash_key(key)), true, lk);
  char c = st.ok() ? 'L' : 'E';
  ssize_t rc = ::write(notify_fd, &c, 1);
  (void)rc;
  for (;;) ::pause();
}

}  // namespace nativecache::file
