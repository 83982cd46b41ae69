#include "core/shm/segment.hpp"

#include <boost/interprocess/shared_memory_object.hpp>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <cstdio>
#include <random>
#include <string>
#include <utility>

#include "core/fork.hpp"
#include "core/shm/robust_mutex.hpp"

namespace bip = boost::interprocess;

namespace nativecache::shm {

namespace {

// An exclusive flock on the segment's lock file, released (the file closed) on every path
// out. Whoever holds it may remove the file (remove()): a process that opened the old
// file and waited for its lock then finds it no longer at the path, and opens the new one.
class FileLock {
 public:
  explicit FileLock(std::string path) : path_(std::move(path)) {
    for (;;) {
      // A child forked while this process holds the lock must not keep it held: its
      // copy of the descriptor is closed at once (ChildClosedFds).
      fd_ = ChildClosedFds::open(
          [&] { return ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600); });
      if (fd_ < 0) return;
      if (::flock(fd_, LOCK_EX) != 0) break;
      struct stat held {}, named {};
      if (::fstat(fd_, &held) != 0) break;
      if (::stat(path_.c_str(), &named) == 0 && named.st_ino == held.st_ino &&
          named.st_dev == held.st_dev) {
        return;  // locked, and still the file at the path
      }
      ChildClosedFds::close(fd_);  // removed while this process waited: lock the new one
    }
    int err = errno;
    ChildClosedFds::close(fd_);
    fd_ = -1;
    errno = err;
  }
  ~FileLock() {
    if (fd_ >= 0) ChildClosedFds::close(fd_);
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  int fd() const noexcept { return fd_; }
  // Removes the lock file, still held: for when its segment is gone.
  void remove() const noexcept {
    if (fd_ >= 0) ::unlink(path_.c_str());
  }

 private:
  std::string path_;
  int fd_ = -1;
};

std::string describe(const std::string& name, const char* what) {
  return "shared-memory segment '/dev/shm/" + name + "': " + what;
}

// Why a mapped header cannot be used, or nullptr when it can.
const char* header_problem(const SegmentHeader* h, std::uint64_t file_size) {
  if (h->magic != kMagic) return "wrong magic";
  if (h->layout_version != kLayoutVersion) return "wrong layout version";
  if (h->abi_fingerprint != abi_fingerprint()) return "built by an incompatible version";
  if (h->total_size != file_size) return "size does not match its header";
  if (h->state.load(std::memory_order_acquire) != kReady) return "never finished initialising";
  if (h->n_shards == 0 || h->n_shards > kMaxShards || h->bucket_count == 0 ||
      (h->bucket_count & (h->bucket_count - 1)) != 0 || h->shards_offset != kHeaderBytes ||
      h->ring_capacity % 8 != 0 || h->ring_capacity < 4096 ||
      h->shard_stride < ring_offset(h->bucket_count) + h->ring_capacity ||
      h->shard_stride > (file_size - h->shards_offset) / h->n_shards ||  // no overflow
      h->shards_offset + h->shard_stride * h->n_shards > file_size ||
      h->max_item_size > h->ring_capacity / 2) {
    return "geometry is inconsistent";
  }
  return nullptr;
}

void initialise(std::byte* base, const Geometry& g) {
  auto* h = new (base) SegmentHeader{};
  h->magic = kMagic;
  h->layout_version = kLayoutVersion;
  h->creator_pid = static_cast<std::uint32_t>(::getpid());
  h->abi_fingerprint = abi_fingerprint();
  h->total_size = g.total_size;
  std::random_device rd;
  do {
    h->generation = (std::uint64_t{rd()} << 32) ^ rd();
  } while (h->generation == 0);
  for (std::uint64_t& word : h->hash_secret) word = (std::uint64_t{rd()} << 32) ^ rd();
  h->shards_offset = kHeaderBytes;
  h->shard_stride = g.shard_stride;
  h->n_shards = g.n_shards;
  h->bucket_count = g.bucket_count;
  h->ring_capacity = g.ring_capacity;
  h->max_item_size = g.max_item_size;
  h->item_count.store(0);
  h->recoveries.store(0);
  h->count_stale.store(0);
  for (std::uint32_t i = 0; i < g.n_shards; ++i) {
    auto* sh = new (base + kHeaderBytes + g.shard_stride * i) ShardHeader{};
    init_robust_mutex(&sh->mutex);
  }
  h->state.store(kReady, std::memory_order_release);
}

}  // namespace

Segment::Segment(bip::mapped_region region)
    : region_(std::move(region)),
      base_(static_cast<std::byte*>(region_.get_address())),
      header_(reinterpret_cast<SegmentHeader*>(base_)) {}

std::string Segment::build_tag() {
  const std::uint64_t f = abi_fingerprint();
  char buf[32];
  std::snprintf(buf, sizeof buf, "l%u%08x", static_cast<unsigned>(kLayoutVersion),
                static_cast<unsigned>((f >> 32) ^ (f & 0xFFFFFFFFu)));
  return buf;
}

Status Segment::open(const SegmentOptions& opts, std::unique_ptr<Segment>& out,
                     std::string& detail) {
  Geometry g;
  if (Status st = compute_geometry(opts.size, opts.shards, opts.max_item_size, g, detail);
      !st.ok()) {
    return st;
  }
  if (opts.name.empty() || opts.name.size() > 200 || opts.name.find('/') != std::string::npos) {
    detail = "invalid segment name '" + opts.name + "'";
    return Status::Of(Code::kInvalidArgument);
  }
  FileLock guard("/dev/shm/" + opts.name + ".lock");
  if (guard.fd() < 0) {
    int err = errno;
    detail = describe(opts.name, "cannot open its lock file: ") + std::strerror(err);
    return Status::Of(Code::kIo, nullptr, err);
  }
  struct stat st {};
  if (::fstat(guard.fd(), &st) == 0 && st.st_uid != ::geteuid()) {
    detail = describe(opts.name, "lock file is owned by uid ") + std::to_string(st.st_uid);
    return Status::Of(Code::kPermission);
  }

  try {
    bip::shared_memory_object shm(bip::open_only, opts.name.c_str(), bip::read_write);
    if (::fstat(shm.get_mapping_handle().handle, &st) != 0) {
      detail = describe(opts.name, "cannot stat");
      return Status::Of(Code::kIo, nullptr, errno);
    }
    if (st.st_uid != ::geteuid()) {
      detail = describe(opts.name, "is owned by uid ") + std::to_string(st.st_uid) +
               ", not by this process (uid " + std::to_string(::geteuid()) + "); refusing it";
      return Status::Of(Code::kPermission);
    }
    const char* problem = "too small to hold a header";
    if (static_cast<std::uint64_t>(st.st_size) >= kHeaderBytes) {
      bip::mapped_region region(shm, bip::read_write);
      auto* h = static_cast<SegmentHeader*>(region.get_address());
      problem = header_problem(h, static_cast<std::uint64_t>(st.st_size));
      if (problem == nullptr) {
        out.reset(new Segment(std::move(region)));
        return Status::Ok();
      }
      if (!opts.recreate_on_mismatch) {
        detail = describe(opts.name, problem);
        return Status::Of(Code::kCorrupt);
      }
      // Tell processes still attached to it to reattach by name.
      h->state.store(kRetired, std::memory_order_release);
    } else if (!opts.recreate_on_mismatch) {
      detail = describe(opts.name, problem);
      return Status::Of(Code::kCorrupt);
    }
    bip::shared_memory_object::remove(opts.name.c_str());
  } catch (const bip::interprocess_exception& e) {
    if (e.get_error_code() != bip::not_found_error) {
      detail = describe(opts.name, e.what());
      return Status::Of(Code::kIo, nullptr, e.get_native_error());
    }
  }

  bool created = false;
  try {
    bip::permissions perms;
    perms.set_permissions(0600);
    bip::shared_memory_object shm(bip::create_only, opts.name.c_str(), bip::read_write, perms);
    created = true;
    try {
      shm.truncate(static_cast<bip::offset_t>(g.total_size));
    } catch (const bip::interprocess_exception& e) {
      bip::shared_memory_object::remove(opts.name.c_str());
      guard.remove();  // no segment, no lock file left behind
      int err = e.get_native_error();
      detail = describe(opts.name, "cannot be sized to ") + std::to_string(g.total_size) +
               " bytes: " + (err ? std::strerror(err) : e.what());
      return Status::Of(err == ENOSPC ? Code::kNoSpace : Code::kIo, nullptr, err);
    }
    ::fchmod(shm.get_mapping_handle().handle, 0600);
    bip::mapped_region region(shm, bip::read_write);
    initialise(static_cast<std::byte*>(region.get_address()), g);
    out.reset(new Segment(std::move(region)));
    return Status::Ok();
  } catch (const bip::interprocess_exception& e) {
    // Ours, half made: removed. Not made at all: the lock file goes too, as after a
    // failed truncate; a segment someone else made at the name keeps its lock file.
    if (created) bip::shared_memory_object::remove(opts.name.c_str());
    if (::access(("/dev/shm/" + opts.name).c_str(), F_OK) != 0) guard.remove();
    detail = describe(opts.name, "cannot be created: ") + e.what();
    return Status::Of(Code::kIo, nullptr, e.get_native_error());
  }
}

Status Segment::unlink(const std::string& name, std::string& detail) {
  FileLock guard("/dev/shm/" + name + ".lock");
  try {
    bip::shared_memory_object shm(bip::open_only, name.c_str(), bip::read_write);
    bip::mapped_region region(shm, bip::read_write);
    if (region.get_size() >= kHeaderBytes) {
      static_cast<SegmentHeader*>(region.get_address())
          ->state.store(kRetired, std::memory_order_release);
    }
  } catch (const bip::interprocess_exception&) {
  }
  bip::shared_memory_object::remove(name.c_str());
  guard.remove();
  detail.clear();
  return Status::Ok();
}

}  // namespace nativecache::shm
