// The filesystem store: Django's FileBasedCache semantics, the on-disk format and its
// damage, directory and file modes, MAX_ENTRIES culling, a full file system, and
// processes racing on the same keys or dying while they hold a lock.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/codec.hpp"
#include "core/file_store.hpp"
#include "store_test_util.hpp"

namespace {

namespace fs = std::filesystem;
using namespace nctest;
using nativecache::Code;
using nativecache::Limits;
using nativecache::Mode;
using nativecache::Status;
using nativecache::StoreStats;
using nativecache::Ttl;
using nativecache::ValueOut;
using nativecache::Write;
using nativecache::codec::kBytes;
using nativecache::codec::kInt;
using nativecache::codec::kLong;
using nativecache::codec::kPickle;
using nativecache::codec::kText;
using nativecache::file::FileHeader;
using nativecache::file::FileOptions;
using nativecache::file::FileStore;
using Clock = std::chrono::steady_clock;

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Limits limits(std::int64_t max_entries, std::int64_t cull_frequency) {
  return Limits{max_entries, cull_frequency, true};
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void spit(const std::string& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

FileHeader header_of(const std::string& path) {
  FileHeader h{};
  std::string bytes = slurp(path);
  if (bytes.size() >= sizeof h) std::memcpy(&h, bytes.data(), sizeof h);
  return h;
}

unsigned mode_of(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

// Files under dir (recursively) whose names end with suffix or start with prefix.
int count_files(const fs::path& dir, std::string_view suffix, std::string_view prefix = {}) {
  int n = 0;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return 0;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) {
    std::string name = e.path().filename().string();
    if (!e.is_regular_file()) continue;
    bool match = (!suffix.empty() && name.ends_with(suffix)) ||
                 (!prefix.empty() && name.starts_with(prefix));
    if (match) ++n;
  }
  return n;
}

int count_entries(const fs::path& dir) { return count_files(dir, ".djc"); }
int count_temps(const fs::path& dir) { return count_files(dir, {}, ".tmp-"); }

void set_mtime(const std::string& path, std::int64_t seconds_ago) {
  timespec times[2];
  ::clock_gettime(CLOCK_REALTIME, &times[0]);
  times[0].tv_sec -= seconds_ago;
  times[1] = times[0];
  ::utimensat(AT_FDCWD, path.c_str(), times, 0);
}

// Kills and reaps a forked child on every path out of a test.
class Child {
 public:
  explicit Child(pid_t pid) : pid_(pid) {}
  ~Child() { kill(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    wait();
  }
  // The exit code, 128 + signal when killed, or -1 when already reaped.
  int wait() {
    if (pid_ <= 0) return -1;
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  // Like wait(), but -1 (and the child killed) when it runs past timeout_ms.
  int wait_for(int timeout_ms) {
    for (int waited = 0; pid_ > 0; waited += 5) {
      int status = 0;
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (waited >= timeout_ms) {
        kill();
        return -1;
      }
      sleep_ms(5);
    }
    return -1;
  }

 private:
  pid_t pid_;
};

template <class Fn>
std::unique_ptr<Child> spawn(Fn fn) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int code = 99;
    try {
      code = fn();
    } catch (...) {
    }
    ::_exit(code);
  }
  return std::make_unique<Child>(pid);
}

// A fresh directory per test, removed with everything in it at the end.
class FileStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "dnc-file-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    dir_ = (root_ / "cache").string();
  }
  void TearDown() override {
    stores_.clear();
    if (!mount_.empty()) ::umount2(mount_.c_str(), MNT_DETACH);
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  FileStore& open(const std::string& dir, std::size_t max_value = 0) {
    FileOptions o;
    o.dir = dir;
    o.max_value_size = max_value;
    std::unique_ptr<FileStore> s;
    std::string detail;
    Status st = FileStore::open(o, s, detail);
    EXPECT_TRUE(st.ok()) << detail;
    if (!st.ok()) throw std::runtime_error(detail);
    stores_.push_back(std::move(s));
    return *stores_.back();
  }
  FileStore& make(std::size_t max_value = 0) { return open(dir_, max_value); }

  fs::path root_;
  std::string dir_;
  std::string mount_;
  std::vector<std::unique_ptr<FileStore>> stores_;
};

// --------------------------------------------------------------------------- semantics

TEST_F(FileStoreTest, RoundTripWithFlags) {
  FileStore& s = make();
  EXPECT_TRUE(s.blocks());
  ASSERT_TRUE(put(s, "a", "hello", Ttl::Forever(), kText).ok());
  Got g = get(s, "a");
  ASSERT_TRUE(g.hit());
  EXPECT_EQ(g.value, "hello");
  EXPECT_EQ(g.flags, kText);
  for (std::string v : {std::string("world"), std::string(""), std::string(100000, 'y'),
                        std::string("z")}) {
    ASSERT_TRUE(put(s, "a", v, Ttl::Forever(), kPickle).ok());
    g = get(s, "a");
    ASSERT_TRUE(g.hit());
    EXPECT_EQ(g.value, v);
    EXPECT_EQ(g.flags, kPickle);
  }
  EXPECT_TRUE(s.contains("a").ok());
  EXPECT_EQ(s.contains("b").code, Code::kNotFound);
  // Binary keys and values, and the empty key.
  std::string key("k\0\xff\n", 4);
  std::string value("\0\1\2\xff\0", 5);
  ASSERT_TRUE(put(s, key, value).ok());
  EXPECT_EQ(get(s, key).value, value);
  EXPECT_EQ(get(s, std::string("k\0\xfe\n", 4)).code, Code::kNotFound);
  ASSERT_TRUE(put(s, "", "for the empty key").ok());
  EXPECT_EQ(get(s, "").value, "for the empty key");
  // Keys the store cannot take.
  std::string long_key(nativecache::file::kMaxKeyLength + 1, 'k');
  EXPECT_STREQ(s.key_refusal(long_key, true), "key longer than 65535 bytes");
  EXPECT_EQ(s.key_refusal(long_key, false), nullptr);
  EXPECT_EQ(put(s, long_key, "v").code, Code::kBadKey);
  EXPECT_EQ(get(s, long_key).code, Code::kNotFound);
  std::string ok_key(nativecache::file::kMaxKeyLength, 'k');
  ASSERT_TRUE(put(s, ok_key, "v").ok());
  EXPECT_EQ(get(s, ok_key).value, "v");
}

TEST_F(FileStoreTest, BufferTooSmallWithoutGrow) {
  FileStore& s = make();
  std::string value(1000, 'q');
  ASSERT_TRUE(put(s, "k", value, Ttl::Forever(), kText).ok());
  std::vector<std::byte> small(10);
  ValueOut out{small.data(), small.size()};
  Status st = s.get("k", out);
  EXPECT_EQ(st.code, Code::kBufferTooSmall);
  EXPECT_EQ(st.needed, 1000u);
  std::vector<std::byte> exact(1000);
  out = ValueOut{exact.data(), exact.size()};
  ASSERT_TRUE(s.get("k", out).ok());
  EXPECT_EQ(out.size, 1000u);
  EXPECT_EQ(out.flags, kText);
  // Nowhere to put a value at all.
  ASSERT_TRUE(put(s, "e", "").ok());
  ValueOut none;
  ASSERT_TRUE(s.get("e", none).ok());
  EXPECT_EQ(none.size, 0u);
  // Batches go through the default get_many.
  nativecache::ManyOut many;
  std::string_view keys[] = {"k", "missing", "e"};
  ASSERT_TRUE(s.get_many(keys, many).ok());
  ASSERT_EQ(many.items.size(), 2u);
  EXPECT_EQ(many.items[0].index, 0u);
  EXPECT_EQ(many.items[0].size, 1000u);
  EXPECT_EQ(many.items[1].index, 2u);
}

TEST_F(FileStoreTest, Layout) {
  FileStore& s = make();
  std::string p = s.path_for("some key");
  ASSERT_TRUE(p.starts_with(dir_ + "/"));
  std::string rest = p.substr(dir_.size() + 1);
  ASSERT_EQ(rest.size(), 2 + 1 + 16 + 4u) << rest;
  EXPECT_EQ(rest.substr(0, 2), rest.substr(3, 2));
  EXPECT_EQ(rest[2], '/');
  EXPECT_TRUE(rest.ends_with(".djc"));
  EXPECT_EQ(s.path_for("some key"), p);
  EXPECT_NE(s.path_for("other key"), p);
  // The header: what was stored, the expiry as Unix time in ms.
  ASSERT_TRUE(put(s, "some key", "value", Ttl::Relative(60000), kText).ok());
  std::int64_t now = unix_ms();
  FileHeader h = header_of(p);
  EXPECT_EQ(h.magic, nativecache::file::kFileMagic);
  EXPECT_EQ(h.version, nativecache::file::kFileVersion);
  EXPECT_EQ(h.flags, kText);
  EXPECT_EQ(h.key_len, 8u);
  EXPECT_EQ(h.value_len, 5u);
  EXPECT_GT(h.expire_ms, now + 59000);
  EXPECT_LE(h.expire_ms, now + 60000);
  EXPECT_EQ(fs::file_size(p), sizeof(FileHeader) + 8 + 5);
  ASSERT_TRUE(put(s, "some key", "value").ok());
  EXPECT_EQ(header_of(p).expire_ms, 0);
  // A trailing slash in the location names the same directory.
  FileStore& t = open(dir_ + "//");
  EXPECT_EQ(t.path_for("some key"), p);
  EXPECT_EQ(get(t, "some key").value, "value");
  // A relative location is resolved once, at open: a later chdir does not move it.
  fs::path was = fs::current_path();
  fs::current_path(root_);
  FileStore& rel = open("cache");
  fs::current_path(was);
  EXPECT_EQ(rel.dir(), dir_);
  EXPECT_EQ(get(rel, "some key").value, "value");
}

TEST_F(FileStoreTest, Miss) {
  FileStore& s = make();
  EXPECT_EQ(get(s, "nothing").code, Code::kNotFound);
  std::int64_t r = 0;
  EXPECT_EQ(s.contains("nothing").code, Code::kNotFound);
  EXPECT_EQ(s.ttl("nothing", r).code, Code::kNotFound);
  EXPECT_EQ(s.remove("nothing").code, Code::kNotFound);
  EXPECT_EQ(s.touch("nothing", Ttl::Forever()).code, Code::kNotFound);
  EXPECT_EQ(s.incr("nothing", 1, r).code, Code::kNotFound);
  EXPECT_EQ(s.concat("nothing", bytes_of("x"), 0, false).code, Code::kNotFound);
  EXPECT_EQ(put(s, "nothing", "x", Ttl::Forever(), 0, Mode::kReplace).code, Code::kNotFound);
  EXPECT_EQ(put(s, "nothing", "x", Ttl::Forever(), 0, Mode::kCas, 1).code, Code::kNotFound);
  EXPECT_TRUE(put(s, "nothing", "x", Ttl::Drop()).ok());
  EXPECT_TRUE(s.clear().ok());
  (void)s.stats();
  // None of that made the directory: only a write does.
  EXPECT_FALSE(fs::exists(dir_));
  ASSERT_TRUE(put(s, "k", "v").ok());
  EXPECT_TRUE(fs::is_directory(dir_));
}

TEST_F(FileStoreTest, OpenRefusesAFile) {
  spit(dir_, "not a directory");
  FileOptions o;
  o.dir = dir_;
  std::unique_ptr<FileStore> s;
  std::string detail;
  EXPECT_EQ(FileStore::open(o, s, detail).code, Code::kInvalidArgument);
  EXPECT_NE(detail.find("not a directory"), std::string::npos);
  o.dir = "";
  EXPECT_EQ(FileStore::open(o, s, detail).code, Code::kInvalidArgument);
}

TEST_F(FileStoreTest, AddReplaceCas) {
  FileStore& s = make();
  EXPECT_EQ(put(s, "k", "r", Ttl::Forever(), 0, Mode::kReplace).code, Code::kNotFound);
  ASSERT_TRUE(put(s, "k", "first", Ttl::Forever(), 0, Mode::kAdd).ok());
  EXPECT_EQ(put(s, "k", "second", Ttl::Forever(), 0, Mode::kAdd).code, Code::kExists);
  EXPECT_EQ(get(s, "k").value, "first");
  ASSERT_TRUE(put(s, "k", "third", Ttl::Forever(), 0, Mode::kReplace).ok());
  EXPECT_EQ(get(s, "k").value, "third");
  ASSERT_TRUE(s.remove("k").ok());
  EXPECT_EQ(s.remove("k").code, Code::kNotFound);
  ASSERT_TRUE(put(s, "k", "fourth", Ttl::Forever(), 0, Mode::kAdd).ok());
  // cas
  Got g1 = get(s, "k");
  ASSERT_TRUE(g1.hit());
  EXPECT_NE(g1.cas, 0u);
  EXPECT_EQ(put(s, "k", "bad", Ttl::Forever(), 0, Mode::kCas, g1.cas + 1).code, Code::kExists);
  EXPECT_EQ(get(s, "k").value, "fourth");
  ASSERT_TRUE(put(s, "k", "v2", Ttl::Forever(), 0, Mode::kCas, g1.cas).ok());
  Got g2 = get(s, "k");
  EXPECT_EQ(g2.value, "v2");
  EXPECT_NE(g2.cas, g1.cas);
  EXPECT_EQ(put(s, "k", "v3", Ttl::Forever(), 0, Mode::kCas, g1.cas).code, Code::kExists);
  // Every write of the value changes the token; touch does not.
  ASSERT_TRUE(put(s, "k", "7", Ttl::Forever(), kLong).ok());
  Got g3 = get(s, "k");
  std::int64_t r = 0;
  ASSERT_TRUE(s.incr("k", 1, r).ok());
  EXPECT_EQ(put(s, "k", "x", Ttl::Forever(), kLong, Mode::kCas, g3.cas).code, Code::kExists);
  Got g4 = get(s, "k");
  ASSERT_TRUE(s.concat("k", bytes_of("0"), kLong, false).ok());
  EXPECT_EQ(put(s, "k", "x", Ttl::Forever(), kLong, Mode::kCas, g4.cas).code, Code::kExists);
  Got g5 = get(s, "k");
  EXPECT_EQ(g5.value, "80");
  ASSERT_TRUE(s.touch("k", Ttl::Relative(60000)).ok());
  EXPECT_EQ(get(s, "k").cas, g5.cas);
  // Add over an expired entry, replace of one.
  ASSERT_TRUE(put(s, "e", "old", Ttl::Relative(50)).ok());
  sleep_ms(120);
  EXPECT_EQ(put(s, "e", "x", Ttl::Forever(), 0, Mode::kReplace).code, Code::kNotFound);
  ASSERT_TRUE(put(s, "e", "old", Ttl::Relative(50)).ok());
  sleep_ms(120);
  ASSERT_TRUE(put(s, "e", "new", Ttl::Forever(), 0, Mode::kAdd).ok());
  EXPECT_EQ(get(s, "e").value, "new");
}

TEST_F(FileStoreTest, DropAndKeep) {
  FileStore& s = make();
  // Drop: a set deletes, an add stores nothing (and still fails on a live key),
  // replace and cas delete.
  ASSERT_TRUE(put(s, "k", "v").ok());
  ASSERT_TRUE(put(s, "k", "w", Ttl::Drop()).ok());
  EXPECT_EQ(get(s, "k").code, Code::kNotFound);
  EXPECT_FALSE(fs::exists(s.path_for("k")));
  ASSERT_TRUE(put(s, "n", "w", Ttl::Drop()).ok());
  EXPECT_EQ(get(s, "n").code, Code::kNotFound);
  ASSERT_TRUE(put(s, "a", "w", Ttl::Drop(), 0, Mode::kAdd).ok());
  EXPECT_EQ(get(s, "a").code, Code::kNotFound);
  ASSERT_TRUE(put(s, "a", "live").ok());
  EXPECT_EQ(put(s, "a", "w", Ttl::Drop(), 0, Mode::kAdd).code, Code::kExists);
  EXPECT_EQ(get(s, "a").value, "live");
  ASSERT_TRUE(put(s, "a", "w", Ttl::Drop(), 0, Mode::kReplace).ok());
  EXPECT_EQ(get(s, "a").code, Code::kNotFound);
  ASSERT_TRUE(put(s, "c", "v").ok());
  Got g = get(s, "c");
  EXPECT_EQ(put(s, "c", "w", Ttl::Drop(), 0, Mode::kCas, g.cas + 1).code, Code::kExists);
  EXPECT_TRUE(get(s, "c").hit());
  ASSERT_TRUE(put(s, "c", "w", Ttl::Drop(), 0, Mode::kCas, g.cas).ok());
  EXPECT_EQ(get(s, "c").code, Code::kNotFound);
  ASSERT_TRUE(put(s, "d", "v").ok());
  ASSERT_TRUE(s.touch("d", Ttl::Drop()).ok());
  EXPECT_EQ(get(s, "d").code, Code::kNotFound);
  EXPECT_EQ(s.stats().items, 0u);
  EXPECT_EQ(count_entries(dir_), 0);
  // Keep: a cas keeps the entry's expiry; on a key without one, or a new key, forever.
  ASSERT_TRUE(put(s, "k", "v1", Ttl::Relative(60000)).ok());
  g = get(s, "k");
  ASSERT_TRUE(put(s, "k", std::string(3000, 'v'), Ttl::Keep(), 0, Mode::kCas, g.cas).ok());
  std::int64_t left = 0;
  ASSERT_TRUE(s.ttl("k", left).ok());
  EXPECT_GT(left, 50000);
  EXPECT_LE(left, 60000);
  ASSERT_TRUE(put(s, "k", "v2", Ttl::Keep()).ok());
  ASSERT_TRUE(s.ttl("k", left).ok());
  EXPECT_GT(left, 50000);
  ASSERT_TRUE(put(s, "f", "v").ok());
  ASSERT_TRUE(put(s, "f", "w", Ttl::Keep()).ok());
  ASSERT_TRUE(s.ttl("f", left).ok());
  EXPECT_EQ(left, -1);
  ASSERT_TRUE(put(s, "new", "v", Ttl::Keep()).ok());
  ASSERT_TRUE(s.ttl("new", left).ok());
  EXPECT_EQ(left, -1);
}

TEST_F(FileStoreTest, ExpiryAndTouch) {
  FileStore& s = make();
  ASSERT_TRUE(put(s, "short", "v", Ttl::Relative(150)).ok());
  ASSERT_TRUE(put(s, "long", "v", Ttl::Relative(60000)).ok());
  ASSERT_TRUE(put(s, "never", "v").ok());
  ASSERT_TRUE(put(s, "touched", "v", Ttl::Relative(150)).ok());
  ASSERT_TRUE(put(s, "n", "5", Ttl::Relative(150), kLong).ok());
  ASSERT_TRUE(put(s, "c", "5", Ttl::Relative(150)).ok());
  ASSERT_TRUE(put(s, "t", "5", Ttl::Relative(150)).ok());
  std::int64_t left = 0;
  ASSERT_TRUE(s.ttl("short", left).ok());
  EXPECT_GT(left, 0);
  EXPECT_LE(left, 150);
  EXPECT_TRUE(get(s, "short").hit());
  ASSERT_TRUE(s.touch("touched", Ttl::Relative(60000)).ok());
  EXPECT_EQ(get(s, "touched").value, "v");
  sleep_ms(250);
  EXPECT_EQ(get(s, "short").code, Code::kNotFound);
  EXPECT_FALSE(fs::exists(s.path_for("short")));  // an expired entry is removed on read
  EXPECT_EQ(s.contains("short").code, Code::kNotFound);
  EXPECT_TRUE(get(s, "long").hit());
  EXPECT_TRUE(get(s, "never").hit());
  EXPECT_EQ(get(s, "touched").value, "v");  // touched past its first deadline
  ASSERT_TRUE(s.ttl("touched", left).ok());
  EXPECT_GT(left, 50000);
  ASSERT_TRUE(s.touch("touched", Ttl::Keep()).ok());
  ASSERT_TRUE(s.ttl("touched", left).ok());
  EXPECT_GT(left, 50000);
  ASSERT_TRUE(s.touch("touched", Ttl::Forever()).ok());
  ASSERT_TRUE(s.ttl("touched", left).ok());
  EXPECT_EQ(left, -1);
  // Expired entries cannot be incremented, appended, touched or read for ttl.
  std::int64_t r = 0;
  EXPECT_EQ(s.incr("n", 1, r).code, Code::kNotFound);
  EXPECT_EQ(s.concat("c", bytes_of("x"), 0, false).code, Code::kNotFound);
  EXPECT_EQ(s.touch("t", Ttl::Forever()).code, Code::kNotFound);
  EXPECT_EQ(s.ttl("t", r).code, Code::kNotFound);
  for (const char* k : {"n", "c", "t"}) EXPECT_FALSE(fs::exists(s.path_for(k))) << k;
  StoreStats st = s.stats();
  EXPECT_EQ(st.expirations, 4u);
  EXPECT_EQ(st.items, 3u);
  EXPECT_EQ(count_entries(dir_), 3);
}

TEST_F(FileStoreTest, Incr) {
  FileStore& s = make();
  std::int64_t r = 0;
  ASSERT_TRUE(put(s, "n", "5", Ttl::Relative(60000), kLong).ok());
  ASSERT_TRUE(s.incr("n", 1, r).ok());
  EXPECT_EQ(r, 6);
  ASSERT_TRUE(s.incr("n", -10, r).ok());
  EXPECT_EQ(r, -4);
  Got g = get(s, "n");
  EXPECT_EQ(g.value, "-4");
  EXPECT_EQ(g.flags, kLong);
  std::int64_t left = 0;
  ASSERT_TRUE(s.ttl("n", left).ok());
  EXPECT_GT(left, 50000);  // the expiry stays
  ASSERT_TRUE(put(s, "i", "41", Ttl::Forever(), kInt).ok());
  ASSERT_TRUE(s.incr("i", 1, r).ok());
  EXPECT_EQ(r, 42);
  EXPECT_EQ(get(s, "i").flags, kInt);
  ASSERT_TRUE(s.ttl("i", left).ok());
  EXPECT_EQ(left, -1);
  // Not numeric: the wrong flags, or text that is not a decimal integer.
  ASSERT_TRUE(put(s, "b", "12", Ttl::Forever(), kBytes).ok());
  EXPECT_EQ(s.incr("b", 1, r).code, Code::kNotNumeric);
  ASSERT_TRUE(put(s, "t", "12", Ttl::Forever(), kText).ok());
  EXPECT_EQ(s.incr("t", 1, r).code, Code::kNotNumeric);
  for (std::string bad : {std::string("abc"), std::string(""), std::string("1 "),
                          std::string("1.5"), std::string(100, '1')}) {
    ASSERT_TRUE(put(s, "l", bad, Ttl::Forever(), kLong).ok());
    EXPECT_EQ(s.incr("l", 1, r).code, Code::kNotNumeric) << bad;
    EXPECT_EQ(get(s, "l").value, bad);
  }
  // Overflow leaves the value.
  const std::int64_t max = std::numeric_limits<std::int64_t>::max();
  const std::int64_t min = std::numeric_limits<std::int64_t>::min();
  ASSERT_TRUE(put(s, "o", num(max - 1), Ttl::Forever(), kLong).ok());
  ASSERT_TRUE(s.incr("o", 1, r).ok());
  EXPECT_EQ(r, max);
  EXPECT_EQ(s.incr("o", 1, r).code, Code::kOverflow);
  EXPECT_EQ(get(s, "o").value, num(max));
  ASSERT_TRUE(put(s, "m", num(min + 1), Ttl::Forever(), kLong).ok());
  ASSERT_TRUE(s.incr("m", -1, r).ok());
  EXPECT_EQ(r, min);
  EXPECT_EQ(s.incr("m", -1, r).code, Code::kOverflow);
  EXPECT_EQ(get(s, "m").value, num(min));
}

TEST_F(FileStoreTest, Concat) {
  FileStore& s = make(10000);
  ASSERT_TRUE(put(s, "k", "mid", Ttl::Relative(60000), kText).ok());
  ASSERT_TRUE(s.concat("k", bytes_of("-end"), kText, false).ok());
  ASSERT_TRUE(s.concat("k", bytes_of("start-"), kText, true).ok());
  EXPECT_EQ(get(s, "k").value, "start-mid-end");
  EXPECT_EQ(s.concat("k", bytes_of("x"), kBytes, false).code, Code::kTypeMismatch);
  EXPECT_EQ(s.concat("k", bytes_of("x"), kPickle, true).code, Code::kTypeMismatch);
  EXPECT_EQ(get(s, "k").value, "start-mid-end");
  std::int64_t left = 0;
  ASSERT_TRUE(s.ttl("k", left).ok());
  EXPECT_GT(left, 50000);
  // Growing past the buffer the store starts with, then past the size limit.
  std::string expect = "start-mid-end";
  std::string part(4000, 'p');
  ASSERT_TRUE(s.concat("k", bytes_of(part), kText, false).ok());
  ASSERT_TRUE(s.concat("k", bytes_of(part), kText, true).ok());
  expect = part + expect + part;
  EXPECT_EQ(get(s, "k").value, expect);
  EXPECT_EQ(s.concat("k", bytes_of(std::string(10000 - expect.size() + 1, 'x')), kText, false).code,
            Code::kTooLarge);
  EXPECT_EQ(get(s, "k").value, expect);
  EXPECT_EQ(s.stats().items, 1u);
}

TEST_F(FileStoreTest, TooLargeWritesNothing) {
  FileStore& s = make(1000);
  EXPECT_EQ(s.max_value_size(), 1000u);
  EXPECT_EQ(put(s, "k", std::string(1001, 'x')).code, Code::kTooLarge);
  EXPECT_FALSE(fs::exists(dir_));
  ASSERT_TRUE(put(s, "k", "old").ok());
  EXPECT_EQ(put(s, "k", std::string(1001, 'x')).code, Code::kTooLarge);
  EXPECT_EQ(get(s, "k").value, "old");
  ASSERT_TRUE(put(s, "k", std::string(1000, 'x')).ok());
  EXPECT_EQ(get(s, "k").value, std::string(1000, 'x'));
  EXPECT_EQ(count_temps(dir_), 0);
  EXPECT_EQ(make().max_value_size(), nativecache::file::kDefaultMaxValueSize);
}

TEST_F(FileStoreTest, Stats) {
  FileStore& s = make();
  ASSERT_TRUE(put(s, "a", "1").ok());
  ASSERT_TRUE(put(s, "b", "22").ok());
  ASSERT_TRUE(put(s, "a", "333").ok());
  EXPECT_TRUE(get(s, "a").hit());
  EXPECT_TRUE(get(s, "b").hit());
  EXPECT_FALSE(get(s, "c").hit());
  StoreStats st = s.stats();
  EXPECT_EQ(st.sets, 3u);
  EXPECT_EQ(st.hits, 2u);
  EXPECT_EQ(st.misses, 1u);
  EXPECT_EQ(st.items, 2u);
  EXPECT_EQ(st.bytes, 2 * sizeof(FileHeader) + 2 + 5);
  // The counters are shared by every store on the directory.
  FileStore& t = make();
  EXPECT_TRUE(get(t, "a").hit());
  EXPECT_EQ(t.stats().hits, 3u);
  EXPECT_EQ(s.stats().hits, 3u);
  ASSERT_TRUE(s.remove("a").ok());
  EXPECT_EQ(t.stats().items, 1u);
}

TEST_F(FileStoreTest, StatsCountWhatHappenedBeforeTheDirectoryExisted) {
  FileStore& s = make();
  FileStore& t = make();
  EXPECT_FALSE(get(s, "a").hit());
  EXPECT_FALSE(get(s, "b").hit());
  EXPECT_FALSE(get(t, "c").hit());
  EXPECT_FALSE(fs::exists(dir_));  // a read makes nothing
  EXPECT_EQ(s.stats().misses, 2u);  // this store's own until the directory is made
  ASSERT_TRUE(put(s, "a", "1").ok());
  EXPECT_EQ(s.stats().misses, 2u);
  EXPECT_EQ(s.stats().sets, 1u);
  EXPECT_TRUE(get(t, "a").hit());  // still in t's own block, as its miss...
  StoreStats tt = t.stats();       // ...which its first look at the file brings in
  EXPECT_EQ(tt.misses, 3u);
  EXPECT_EQ(tt.hits, 1u);
  StoreStats st = s.stats();
  EXPECT_EQ(st.misses, 3u);
  EXPECT_EQ(st.hits, 1u);
  EXPECT_EQ(st.sets, 1u);
  // A directory made again starts from nothing: the old one's counts are not carried.
  fs::remove_all(dir_);
  ASSERT_TRUE(put(s, "b", "2").ok());
  EXPECT_EQ(s.stats().misses, 0u);
  EXPECT_EQ(s.stats().sets, 1u);
}

TEST_F(FileStoreTest, ACountersFileTruncatedUnderItsMappingKillsNobody) {
  FileStore& s = make();
  ASSERT_TRUE(put(s, "k", "v").ok());
  const fs::path counters = fs::path(dir_) / ".nativecache";
  ASSERT_EQ(::truncate(counters.c_str(), 0), 0);  // the mapped page is gone
  EXPECT_EQ(get(s, "k").value, "v");  // counts a hit on it: SIGBUS without the guard
  EXPECT_FALSE(get(s, "missing").hit());
  ASSERT_TRUE(put(s, "k2", "v2").ok());  // repairs the file and maps it again
  EXPECT_EQ(fs::file_size(counters), sizeof(nativecache::file::Counters));
  EXPECT_TRUE(get(s, "k2").hit());
  StoreStats st = s.stats();
  EXPECT_EQ(st.hits, 1u);  // what was counted before the repair is gone with the page
  EXPECT_EQ(st.sets, 1u);
  // Another process mapping it meanwhile is guarded the same way.
  FileStore& t = make();
  EXPECT_TRUE(get(t, "k").hit());
  ASSERT_EQ(::truncate(counters.c_str(), 0), 0);
  auto child = spawn([&t] { return get(t, "k").hit() && get(t, "k2").hit() ? 0 : 1; });
  EXPECT_EQ(child->wait_for(10000), 0);
}

// A SIGBUS elsewhere (here: another file's mapping truncated) still ends the process, as
// the handler before ours (the default, or a sanitizer's) would have it.
TEST_F(FileStoreTest, ASigbusOutsideTheCountersStillEndsTheProcess) {
  FileStore& s = make();
  ASSERT_TRUE(put(s, "k", "v").ok());  // the guard is installed
  const std::string other = (root_ / "other").string();
  auto ended_abnormally = [](int status) {
    return WIFSIGNALED(status) ? WTERMSIG(status) == SIGBUS
                               : WIFEXITED(status) && WEXITSTATUS(status) != 0;
  };
  EXPECT_EXIT(
      {
        int fd = ::open(other.c_str(), O_RDWR | O_CREAT, 0600);
        if (fd < 0 || ::ftruncate(fd, 4096) != 0) ::_exit(0);
        auto* p = static_cast<volatile char*>(
            ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
        if (::ftruncate(fd, 0) != 0) ::_exit(0);
        p[0] = 1;  // SIGBUS
        ::_exit(0);
      },
      ended_abnormally, "");
  EXPECT_EQ(get(s, "k").value, "v");
}

TEST_F(FileStoreTest, ACountersFileThatIsASymlinkIsNeverFollowed) {
  fs::create_directories(dir_);
  const fs::path victim = root_ / "victim.txt";
  { std::ofstream(victim) << "not the cache's"; }
  fs::create_symlink(victim, fs::path(dir_) / ".nativecache");
  FileStore& s = make();
  Status st = put(s, "k", "v");
  EXPECT_FALSE(st.ok());
  std::ifstream in(victim);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "not the cache's");
  EXPECT_EQ(s.stats().sets, 0u);
}

TEST_F(FileStoreTest, ForkedChildrenDoNotCountTheirParentsMissesAgain) {
  FileStore& s = make();
  for (const char* key : {"a", "b", "c", "d", "e"}) EXPECT_FALSE(get(s, key).hit());
  std::vector<std::unique_ptr<Child>> children;
  for (int i = 0; i < 3; ++i) {
    children.push_back(spawn([&s, i] {
      return put(s, "child" + std::to_string(i), "v").ok() && s.stats().sets >= 1 ? 0 : 1;
    }));
  }
  for (auto& child : children) EXPECT_EQ(child->wait_for(10000), 0);
  ASSERT_TRUE(put(s, "parent", "v").ok());
  StoreStats st = s.stats();
  EXPECT_EQ(st.misses, 5u);  // the parent's five, once
  EXPECT_EQ(st.sets, 4u);
  EXPECT_EQ(st.items, 4u);
}

TEST_F(FileStoreTest, CountsOfThreadsRacingTheFirstWriteAreKept) {
  constexpr int kThreads = 4, kGets = 300;
  for (int round = 0; round < 20; ++round) {
    std::string dir = (root_ / ("race" + std::to_string(round))).string();
    FileStore& s = open(dir);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&s, t] {
        for (int i = 0; i < kGets; ++i) {
          get(s, "miss" + std::to_string(t) + "-" + std::to_string(i));
        }
      });
    }
    EXPECT_TRUE(put(s, "k", "v").ok());
    for (auto& thread : threads) thread.join();
    StoreStats st = s.stats();
    EXPECT_EQ(st.misses, static_cast<std::uint64_t>(kThreads * kGets)) << "round " << round;
    EXPECT_EQ(st.items, 1u);
  }
}

// --------------------------------------------------------------------------- directory

TEST_F(FileStoreTest, DirectoryAndFileModes) {
  // Every directory made, down from a missing grandparent, is 0700 whatever the umask
  // (this one would give 0500 directories and 0400 files).
  std::string nested = (root_ / "nested" / "deeper" / "cache").string();
  mode_t old = ::umask(0277);
  {
    FileStore& s = open(nested);
    EXPECT_FALSE(fs::exists(root_ / "nested"));
    Status st = put(s, "foo", "bar");
    ::umask(old);
    ASSERT_TRUE(st.ok()) << st.what;
    EXPECT_EQ(get(s, "foo").value, "bar");
    for (fs::path p : {fs::path(nested), root_ / "nested" / "deeper", root_ / "nested",
                       fs::path(s.path_for("foo")).parent_path()}) {
      EXPECT_EQ(mode_of(p), 0700u) << p;
    }
  }
  // With an ordinary umask: entries and the counter file are 0600.
  old = ::umask(022);
  FileStore& s = make();
  ASSERT_TRUE(put(s, "foo", "bar").ok());
  ASSERT_TRUE(s.touch("foo", Ttl::Relative(60000)).ok());
  std::int64_t r = 0;
  ASSERT_TRUE(put(s, "n", "1", Ttl::Forever(), kLong).ok());
  ASSERT_TRUE(s.incr("n", 1, r).ok());
  ::umask(old);
  EXPECT_EQ(mode_of(dir_), 0700u);
  EXPECT_EQ(mode_of(s.path_for("foo")), 0600u);
  EXPECT_EQ(mode_of(s.path_for("n")), 0600u);
  EXPECT_EQ(mode_of(fs::path(s.path_for("foo")).parent_path()), 0700u);
  EXPECT_EQ(mode_of(fs::path(dir_) / ".nativecache"), 0600u);
  // A directory that exists already keeps its mode.
  fs::create_directory(root_ / "mine");
  fs::permissions(root_ / "mine", fs::perms(0755));
  FileStore& m = open((root_ / "mine").string());
  ASSERT_TRUE(put(m, "k", "v").ok());
  EXPECT_EQ(mode_of(root_ / "mine"), 0755u);
}

TEST_F(FileStoreTest, RecreatesDeletedDirectory) {
  FileStore& s = make();
  FileStore& other = make();
  ASSERT_TRUE(put(s, "k", "v").ok());
  EXPECT_EQ(get(other, "k").value, "v");
  fs::remove_all(dir_);
  EXPECT_EQ(get(s, "k").code, Code::kNotFound);
  ASSERT_TRUE(put(s, "k", "again").ok());
  EXPECT_EQ(get(other, "k").value, "again");
  // Both stores follow the new counter file.
  std::int64_t r = 0;
  ASSERT_TRUE(put(other, "n", "1", Ttl::Forever(), kLong).ok());
  ASSERT_TRUE(s.incr("n", 1, r).ok());
  EXPECT_EQ(s.stats().items, 2u);
  EXPECT_EQ(other.stats().items, 2u);
}

TEST_F(FileStoreTest, ClearKeepsForeignFiles) {
  FileStore& s = make();
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(put(s, kname("k", i), "v").ok());
  std::string fanout = fs::path(s.path_for("k0")).parent_path().string();
  spit(dir_ + "/not-a-cache-file", "mine");
  spit(fanout + "/notes.txt", "mine too");
  spit(fanout + "/.tmp-0123456789abcdef", "a dead writer's leftover");
  set_mtime(fanout + "/.tmp-0123456789abcdef", 120);
  std::string other_fanout = fs::path(s.path_for("k1")).parent_path().string();
  if (other_fanout == fanout) other_fanout = fs::path(s.path_for("k2")).parent_path().string();
  spit(other_fanout + "/.tmp-fedcba9876543210", "a write in flight");
  fs::create_directory(fs::path(dir_) / "zz");
  spit(dir_ + "/zz/x.djc", "not in a fan-out directory");
  fs::create_directory(fanout + "/dir.djc");
  spit(fanout + "/dir.djc/inner", "a directory named like an entry");
  ASSERT_TRUE(s.clear().ok());
  EXPECT_TRUE(fs::exists(fanout + "/dir.djc/inner"));
  EXPECT_TRUE(fs::is_directory(dir_));
  EXPECT_TRUE(fs::exists(dir_ + "/not-a-cache-file"));
  EXPECT_TRUE(fs::exists(fanout + "/notes.txt"));
  EXPECT_FALSE(fs::exists(fanout + "/.tmp-0123456789abcdef"));
  EXPECT_TRUE(fs::exists(other_fanout + "/.tmp-fedcba9876543210"));
  EXPECT_TRUE(fs::exists(dir_ + "/zz/x.djc"));
  EXPECT_EQ(count_entries(dir_), 1);  // zz/x.djc
  // Emptied fan-out directories are gone; those with a foreign or a fresh file stay.
  int fanouts = 0;
  for (const auto& e : fs::directory_iterator(dir_)) {
    std::string n = e.path().filename().string();
    if (e.is_directory() && n.size() == 2 && n != "zz") ++fanouts;
  }
  EXPECT_EQ(fanouts, other_fanout == fanout ? 1 : 2);
  for (int i = 0; i < 40; ++i) EXPECT_EQ(get(s, kname("k", i)).code, Code::kNotFound);
  EXPECT_EQ(s.stats().items, 0u);
  ASSERT_TRUE(put(s, "k0", "after").ok());
  EXPECT_EQ(get(s, "k0").value, "after");
  EXPECT_EQ(s.stats().items, 1u);
}

// --------------------------------------------------------------------------- damage

TEST_F(FileStoreTest, DamagedFilesAreMissesAndRemoved) {
  FileStore& s = make();
  const std::string value(300, 'v');
  ASSERT_TRUE(put(s, "key", value, Ttl::Forever(), kText).ok());
  const std::string path = s.path_for("key");
  const std::string good = slurp(path);
  ASSERT_EQ(good.size(), sizeof(FileHeader) + 3 + 300);
  std::vector<std::pair<std::string, std::string>> cases = {
      {"empty", ""},
      {"half a header", good.substr(0, 20)},
      {"header only", good.substr(0, sizeof(FileHeader))},
      {"truncated key", good.substr(0, sizeof(FileHeader) + 1)},
      {"truncated value", good.substr(0, good.size() - 1)},
      {"trailing bytes", good + "x"},
      {"garbage", std::string(good.size(), '\x5a')},
  };
  // A flipped bit anywhere: the magic, the version, the lengths, the expiry, the CRCs,
  // the key and the value.
  for (std::size_t at : {std::size_t{0}, std::size_t{4}, std::size_t{12}, std::size_t{16},
                         std::size_t{24}, std::size_t{40}, std::size_t{44},
                         sizeof(FileHeader) + 1, good.size() - 1, good.size() / 2}) {
    std::string bad = good;
    bad[at] = static_cast<char>(bad[at] ^ 0x10);
    cases.emplace_back("flip at " + std::to_string(at), bad);
  }
  std::uint64_t recoveries = s.stats().recoveries;
  for (const auto& [what, bytes] : cases) {
    spit(path, bytes);
    Got g = get(s, "key");
    EXPECT_EQ(g.code, Code::kNotFound) << what;
    EXPECT_FALSE(fs::exists(path)) << what;
    // Every other read path treats it the same way.
    spit(path, bytes);
    std::int64_t r = 0;
    EXPECT_EQ(s.incr("key", 1, r).code, Code::kNotFound) << what;
    EXPECT_FALSE(fs::exists(path)) << what;
    spit(path, bytes);
    EXPECT_EQ(put(s, "key", "x", Ttl::Forever(), kText, Mode::kReplace).code, Code::kNotFound)
        << what;
    spit(path, bytes);
    ASSERT_TRUE(put(s, "key", "added", Ttl::Forever(), kText, Mode::kAdd).ok()) << what;
    EXPECT_EQ(get(s, "key").value, "added");
  }
  EXPECT_GE(s.stats().recoveries, recoveries + 2 * cases.size());
  // contains() and ttl() read only the header and key: damage there is a miss too.
  for (std::size_t at : {std::size_t{0}, std::size_t{16}, sizeof(FileHeader) + 1}) {
    std::string bad = good;
    bad[at] = static_cast<char>(bad[at] ^ 0x01);
    spit(path, bad);
    EXPECT_EQ(s.contains("key").code, Code::kNotFound) << at;
    EXPECT_FALSE(fs::exists(path));
  }
  // The intact file reads back again.
  spit(path, good);
  EXPECT_EQ(get(s, "key").value, value);
  EXPECT_EQ(count_temps(dir_), 0);
}

TEST_F(FileStoreTest, AnotherKeyAtTheSamePath) {
  FileStore& s = make();
  ASSERT_TRUE(put(s, "alpha", "alpha's value").ok());
  const std::string beta_path = s.path_for("beta");
  fs::create_directories(fs::path(beta_path).parent_path());
  fs::copy_file(s.path_for("alpha"), beta_path);
  // As if alpha and beta had the same hash: beta misses and alpha's file is left alone.
  EXPECT_EQ(get(s, "beta").code, Code::kNotFound);
  EXPECT_EQ(s.contains("beta").code, Code::kNotFound);
  std::int64_t r = 0;
  EXPECT_EQ(s.incr("beta", 1, r).code, Code::kNotFound);
  EXPECT_EQ(put(s, "beta", "x", Ttl::Forever(), 0, Mode::kReplace).code, Code::kNotFound);
  EXPECT_TRUE(put(s, "beta", "x", Ttl::Drop()).ok());
  EXPECT_TRUE(fs::exists(beta_path));
  // remove() does not read the file, as Django's file backend: the entry at beta's path
  // goes. A colliding key's entry is forgotten, never read as beta's.
  EXPECT_TRUE(s.remove("beta").ok());
  EXPECT_FALSE(fs::exists(beta_path));
  EXPECT_EQ(get(s, "alpha").value, "alpha's value");
  // A key of the same length differs only in its bytes.
  const std::string gamma_path = s.path_for("gamma");
  fs::create_directories(fs::path(gamma_path).parent_path());
  fs::copy_file(s.path_for("alpha"), gamma_path, fs::copy_options::overwrite_existing);
  EXPECT_EQ(get(s, "gamma").code, Code::kNotFound);
  EXPECT_TRUE(fs::exists(gamma_path));
  // An add or a set simply takes the file over.
  ASSERT_TRUE(put(s, "beta", "beta's value", Ttl::Forever(), 0, Mode::kAdd).ok());
  EXPECT_EQ(get(s, "beta").value, "beta's value");
  ASSERT_TRUE(put(s, "gamma", "gamma's value").ok());
  EXPECT_EQ(get(s, "gamma").value, "gamma's value");
  EXPECT_EQ(get(s, "alpha").value, "alpha's value");
}

TEST_F(FileStoreTest, CounterFileDamagedOrMissing) {
  FileStore& s = make();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(put(s, kname("k", i), "v").ok());
  const std::string counters = dir_ + "/.nativecache";
  ASSERT_TRUE(fs::exists(counters));
  EXPECT_EQ(fs::file_size(counters), sizeof(nativecache::file::Counters));
  // Garbage in place (same size): the next write starts it afresh.
  std::string garbage(sizeof(nativecache::file::Counters), '\x7f');
  {
    std::fstream f(counters, std::ios::in | std::ios::out | std::ios::binary);
    f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  ASSERT_TRUE(put(s, "after-garbage", "v").ok());
  EXPECT_LE(s.stats().items, 1u);
  // A short file, and a store opened on it.
  spit(counters, "short");
  FileStore& t = make();
  EXPECT_TRUE(get(t, "k1").hit());
  ASSERT_TRUE(put(t, "after-short", "v").ok());
  EXPECT_EQ(fs::file_size(counters), sizeof(nativecache::file::Counters));
  // Deleted: recreated by the next write, and both stores follow it.
  fs::remove(counters);
  ASSERT_TRUE(put(s, "after-delete", "v").ok());
  EXPECT_TRUE(fs::exists(counters));
  EXPECT_EQ(s.stats().items, 1u);
  ASSERT_TRUE(put(t, "after-delete-2", "v").ok());
  EXPECT_EQ(s.stats().items, 2u);
  EXPECT_EQ(get(s, "k4").value, "v");
}

// --------------------------------------------------------------------------- culling

// Django's own expectations (tests/cache: test_cull, test_zero_cull): MAX_ENTRIES 30,
// 49 sets leave 29 entries with CULL_FREQUENCY 3 and 19 with 0.
TEST_F(FileStoreTest, CullLikeDjango) {
  for (auto [frequency, expected] : {std::pair{3, 29}, std::pair{0, 19}}) {
    FileStore& s = open(dir_ + "-" + std::to_string(frequency));
    for (int i = 1; i < 50; ++i) {
      ASSERT_TRUE(put(s, kname("cull", i), "value", Ttl::Relative(1000000), 0, Mode::kSet, 0,
                      limits(30, frequency))
                      .ok());
      ASSERT_LE(count_entries(s.dir()), 30) << i;
    }
    int count = 0;
    for (int i = 1; i < 50; ++i) count += s.contains(kname("cull", i)).ok() ? 1 : 0;
    EXPECT_EQ(count, expected) << frequency;
    EXPECT_EQ(s.stats().items, static_cast<std::uint64_t>(expected));
  }
}

TEST_F(FileStoreTest, CullRemovesTheOldestExactly) {
  FileStore& s = make();
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(put(s, kname("c", i), "v").ok());
    set_mtime(s.path_for(kname("c", i)), 1000 - i);  // c0 is the oldest
  }
  // A set of an existing key culls too, as Django's does.
  ASSERT_TRUE(put(s, "c29", "w", Ttl::Forever(), 0, Mode::kSet, 0, limits(30, 3)).ok());
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(s.contains(kname("c", i)).ok()) << i;
  for (int i = 10; i < 30; ++i) EXPECT_TRUE(s.contains(kname("c", i)).ok()) << i;
  EXPECT_EQ(get(s, "c29").value, "w");
  EXPECT_EQ(count_entries(dir_), 20);
  StoreStats st = s.stats();
  EXPECT_EQ(st.items, 20u);
  EXPECT_EQ(st.evictions, 10u);
  // Under the limit nothing goes; an add culls like a set.
  ASSERT_TRUE(put(s, "a", "v", Ttl::Forever(), 0, Mode::kAdd, 0, limits(30, 3)).ok());
  EXPECT_EQ(count_entries(dir_), 21);
  ASSERT_TRUE(put(s, "b", "v", Ttl::Forever(), 0, Mode::kAdd, 0, limits(21, 7)).ok());
  EXPECT_EQ(count_entries(dir_), 21 - 3 + 1);
  // Replace and cas never cull.
  ASSERT_TRUE(put(s, "b", "w", Ttl::Forever(), 0, Mode::kReplace, 0, limits(1, 1)).ok());
  EXPECT_EQ(count_entries(dir_), 19);
  // Without enforce, limits are ignored.
  ASSERT_TRUE(put(s, "z", "v", Ttl::Forever(), 0, Mode::kSet, 0, Limits{1, 1, false}).ok());
  EXPECT_EQ(count_entries(dir_), 20);
  // Frequency 0 empties the cache before the write.
  ASSERT_TRUE(put(s, "last", "v", Ttl::Forever(), 0, Mode::kSet, 0, limits(20, 0)).ok());
  EXPECT_EQ(count_entries(dir_), 1);
  EXPECT_EQ(get(s, "last").value, "v");
  EXPECT_EQ(s.stats().items, 1u);
}

TEST_F(FileStoreTest, CullTakesExpiredFirstAndStaleTemps) {
  FileStore& s = make();
  for (int i = 0; i < 25; ++i) {
    ASSERT_TRUE(put(s, kname("live", i), "v").ok());
    set_mtime(s.path_for(kname("live", i)), 1000 - i);
  }
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(put(s, kname("dying", i), "v", Ttl::Relative(100)).ok());
  std::string fanout = fs::path(s.path_for("live0")).parent_path().string();
  spit(fanout + "/.tmp-stale", "x");
  set_mtime(fanout + "/.tmp-stale", 120);
  spit(fanout + "/.tmp-fresh", "x");
  sleep_ms(200);
  // 30 files, 10 to go: the 5 expired ones, then the 5 oldest.
  ASSERT_TRUE(put(s, "new", "v", Ttl::Forever(), 0, Mode::kSet, 0, limits(30, 3)).ok());
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(fs::exists(s.path_for(kname("dying", i)))) << i;
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(s.contains(kname("live", i)).ok()) << i;
  for (int i = 5; i < 25; ++i) EXPECT_TRUE(s.contains(kname("live", i)).ok()) << i;
  EXPECT_FALSE(fs::exists(fanout + "/.tmp-stale"));
  EXPECT_TRUE(fs::exists(fanout + "/.tmp-fresh"));
  StoreStats st = s.stats();
  EXPECT_EQ(st.expirations, 5u);
  EXPECT_EQ(st.evictions, 5u);
  EXPECT_EQ(st.items, 21u);
}

TEST_F(FileStoreTest, CounterDriftIsCorrectedByTheRescan) {
  FileStore& s = make();
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(put(s, kname("k", i), "v").ok());
  EXPECT_EQ(s.stats().items, 20u);
  // Files deleted behind the store's back: the counter still says 20.
  for (int i = 0; i < 9; ++i) fs::remove(s.path_for(kname("k", i)));
  EXPECT_EQ(s.stats().items, 20u);
  // At the limit by the counter, under it in fact: nothing is culled, the count is fixed.
  ASSERT_TRUE(put(s, "new", "v", Ttl::Forever(), 0, Mode::kSet, 0, limits(20, 2)).ok());
  EXPECT_EQ(s.stats().items, 12u);
  EXPECT_EQ(count_entries(dir_), 12);
  for (int i = 9; i < 20; ++i) EXPECT_TRUE(s.contains(kname("k", i)).ok()) << i;
  // Files added behind its back (another version of the store, a crash before the
  // increment) are counted by the next rescan.
  for (int i = 0; i < 8; ++i) {
    std::string p = s.path_for(kname("copy", i));
    fs::create_directories(fs::path(p).parent_path());
    fs::copy_file(s.path_for("new"), p);
  }
  ASSERT_TRUE(put(s, "newer", "v", Ttl::Forever(), 0, Mode::kSet, 0, limits(12, 2)).ok());
  EXPECT_EQ(count_entries(dir_), 20 - 10 + 1);
  EXPECT_EQ(s.stats().items, 11u);
}

// --------------------------------------------------------------------------- full disk

TEST_F(FileStoreTest, NoSpace) {
  mount_ = (root_ / "small").string();
  fs::create_directory(mount_);
  if (::mount("tmpfs", mount_.c_str(), "tmpfs", 0, "size=256k") != 0) {
    std::string why = std::strerror(errno);
    mount_.clear();
    GTEST_SKIP() << "cannot mount a small tmpfs: " << why;
  }
  FileStore& s = open(mount_ + "/cache");
  ASSERT_TRUE(put(s, "keep", "original").ok());
  ASSERT_TRUE(put(s, "n", "41", Ttl::Forever(), kLong).ok());
  Status full = Status::Ok();
  int written = 0;
  for (int i = 0; i < 100 && full.ok(); ++i) {
    full = put(s, kname("fill", i), std::string(16 * 1024, 'f'));
    if (full.ok()) ++written;
  }
  ASSERT_EQ(full.code, Code::kNoSpace) << (full.what ? full.what : "");
  EXPECT_EQ(full.err, ENOSPC);
  ASSERT_NE(full.what, nullptr);
  EXPECT_NE(std::string(full.what).find("full"), std::string::npos) << full.what;
  EXPECT_GT(written, 0);
  EXPECT_EQ(count_temps(mount_), 0);
  // A failed overwrite leaves the old value whole.
  EXPECT_EQ(put(s, "keep", std::string(64 * 1024, 'x')).code, Code::kNoSpace);
  EXPECT_EQ(get(s, "keep").value, "original");
  EXPECT_EQ(s.concat("keep", bytes_of(std::string(64 * 1024, 'x')), 0, false).code,
            Code::kNoSpace);
  EXPECT_EQ(get(s, "keep").value, "original");
  EXPECT_EQ(count_temps(mount_), 0);
  EXPECT_EQ(count_entries(mount_), written + 2);
  // Room made, writes work again.
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(s.remove(kname("fill", i)).ok());
  ASSERT_TRUE(put(s, "keep", std::string(32 * 1024, 'y')).ok());
  EXPECT_EQ(get(s, "keep").value, std::string(32 * 1024, 'y'));
}

// --------------------------------------------------------------------------- processes

TEST_F(FileStoreTest, IncrIsAtomicAcrossProcesses) {
  FileStore& s = make();
  ASSERT_TRUE(put(s, "counter", "0", Ttl::Forever(), kLong).ok());
  constexpr int kProcs = 4, kEach = 1000;
  auto started = Clock::now();
  std::vector<std::unique_ptr<Child>> children;
  for (int p = 0; p < kProcs; ++p) {
    // The children use the store they inherited: nothing in it is shared unsafely.
    children.push_back(spawn([&s] {
      std::int64_t r = 0;
      for (int i = 0; i < kEach; ++i) {
        if (!s.incr("counter", 1, r).ok()) return 1;
      }
      return 0;
    }));
  }
  for (auto& c : children) EXPECT_EQ(c->wait(), 0);
  EXPECT_EQ(get(s, "counter").value, num(kProcs * kEach));
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(8));
  EXPECT_EQ(count_temps(dir_), 0);
}

TEST_F(FileStoreTest, IncrIsAtomicAcrossThreads) {
  FileStore& s = make();
  FileStore& other = make();
  ASSERT_TRUE(put(s, "counter", "0", Ttl::Forever(), kLong).ok());
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    // Two threads on one store, two on another store of the same directory.
    FileStore& use = t % 2 == 0 ? s : other;
    threads.emplace_back([&use, &failures] {
      std::int64_t r = 0;
      for (int i = 0; i < 250; ++i) failures += use.incr("counter", 1, r).ok() ? 0 : 1;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(get(s, "counter").value, "1000");
}

TEST_F(FileStoreTest, ExactlyOneAddWins) {
  FileStore& s = make();
  constexpr int kProcs = 4, kKeys = 50;
  std::vector<std::unique_ptr<Child>> children;
  for (int p = 0; p < kProcs; ++p) {
    children.push_back(spawn([&s, p] {
      int won = 0;
      for (int k = 0; k < kKeys; ++k) {
        Status st = put(s, kname("add", k), num(p), Ttl::Forever(), 0, Mode::kAdd);
        if (st.ok()) {
          ++won;
        } else if (st.code != Code::kExists) {
          return 200;
        }
      }
      return won;
    }));
  }
  int total = 0;
  for (auto& c : children) {
    int won = c->wait();
    ASSERT_LE(won, kKeys);
    total += won;
  }
  EXPECT_EQ(total, kKeys);
  for (int k = 0; k < kKeys; ++k) {
    Got g = get(s, kname("add", k));
    ASSERT_TRUE(g.hit()) << k;
    EXPECT_TRUE(g.value.size() == 1 && g.value[0] >= '0' && g.value[0] < '0' + kProcs) << k;
  }
}

// A value that says who wrote it, how long it is and what every byte must be.
std::string make_value(int writer, int seq) {
  std::size_t len = 64 + static_cast<std::size_t>((writer * 7919 + seq * 104729) % 40000);
  std::string v = "W" + std::to_string(writer) + ":S" + std::to_string(seq) + ":L" +
                  std::to_string(len) + ":";
  while (v.size() < len) v += static_cast<char>('a' + (writer * 31 + seq * 7 + v.size()) % 26);
  return v;
}

bool value_intact(const Got& g) {
  int writer = 0, seq = 0;
  std::size_t len = 0;
  if (std::sscanf(g.value.c_str(), "W%d:S%d:L%zu:", &writer, &seq, &len) != 3) return false;
  return g.value == make_value(writer, seq) && g.value.size() == len &&
         g.flags == static_cast<std::uint32_t>(writer * 1000 + seq % 1000);
}

TEST_F(FileStoreTest, ConcurrentReadersNeverSeeTornValues) {
  FileStore& s = make();
  constexpr int kProcs = 4, kRounds = 150, kKeys = 6;
  std::vector<std::unique_ptr<Child>> children;
  for (int p = 0; p < kProcs; ++p) {
    children.push_back(spawn([this, p] {
      FileStore& own = make();  // a store of the child's own
      int bad = 0;
      for (int i = 0; i < kRounds; ++i) {
        std::string key = kname("k", (i + p) % kKeys);
        auto flags = static_cast<std::uint32_t>(p * 1000 + i % 1000);
        if (!put(own, key, make_value(p, i), Ttl::Forever(), flags).ok()) ++bad;
        for (int k = 0; k < kKeys; ++k) {
          Got g = get(own, kname("k", k));
          if (g.code == Code::kNotFound) continue;
          if (!g.hit() || !value_intact(g)) ++bad;
        }
      }
      return std::min(bad, 100);
    }));
  }
  for (auto& c : children) EXPECT_EQ(c->wait(), 0);
  EXPECT_EQ(count_temps(dir_), 0);
  EXPECT_EQ(count_entries(dir_), kKeys);
  for (int k = 0; k < kKeys; ++k) EXPECT_TRUE(value_intact(get(s, kname("k", k)))) << k;
}

int read_byte(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) != 1) return -1;
  char c = 0;
  return ::read(fd, &c, 1) == 1 ? c : -1;
}

TEST_F(FileStoreTest, KilledLockHolderDoesNotBlockOthers) {
  FileStore& s = make();
  ASSERT_TRUE(put(s, "k", "1", Ttl::Forever(), kLong).ok());
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    s.debug_hold_lock("k", fds[1]);  // never returns
  }
  Child holder(pid);
  ::close(fds[1]);
  ASSERT_EQ(read_byte(fds[0], 5000), 'L');
  ::close(fds[0]);
  // While it holds the lock: writers of the key wait, readers do not.
  auto waiter = spawn([&s] {
    std::int64_t r = 0;
    return s.incr("k", 1, r).ok() ? 0 : 1;
  });
  EXPECT_EQ(waiter->wait_for(300), -1);  // still waiting
  EXPECT_EQ(get(s, "k").value, "1");
  // Killed with the lock held: the kernel releases it.
  holder.kill();
  auto started = Clock::now();
  std::int64_t r = 0;
  ASSERT_TRUE(s.incr("k", 1, r).ok());
  EXPECT_EQ(r, 2);
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(1));
  auto again = spawn([&s] {
    std::int64_t v = 0;
    return s.incr("k", 1, v).ok() ? 0 : 1;
  });
  EXPECT_EQ(again->wait_for(2000), 0);
  EXPECT_EQ(get(s, "k").value, "3");
}

TEST_F(FileStoreTest, ForkedChildNeverKeepsItsParentsLock) {
  // A process whose thread holds a stripe lock forks a long-lived child, then dies. The
  // lock's open file description is shared with the child; unless the child closed its
  // copy, the lock would outlive its holder and every writer of the key wait for ever.
  FileStore& s = make();
  ASSERT_TRUE(put(s, "k", "1", Ttl::Forever(), kLong).ok());
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    int locked[2];
    if (::pipe(locked) != 0) ::_exit(3);
    std::thread holder([&s, &locked] { s.debug_hold_lock("k", locked[1]); });
    holder.detach();
    if (read_byte(locked[0], 5000) != 'L') ::_exit(4);
    pid_t grandchild = ::fork();
    if (grandchild == 0) {
      ::sleep(30);
      ::_exit(0);
    }
    ssize_t n = ::write(fds[1], &grandchild, sizeof grandchild);
    (void)n;
    for (;;) ::pause();
  }
  Child parent(pid);
  ::close(fds[1]);
  pid_t grandchild = 0;
  pollfd p{fds[0], POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  ASSERT_EQ(::read(fds[0], &grandchild, sizeof grandchild),
            static_cast<ssize_t>(sizeof grandchild));
  ::close(fds[0]);
  parent.kill();  // the holder dies; its child lives on
  auto writer = spawn([&s] {
    std::int64_t r = 0;
    return s.incr("k", 1, r).ok() && r == 2 ? 0 : 1;
  });
  EXPECT_EQ(writer->wait_for(3000), 0) << "the lock outlived its holder in a forked child";
  ::kill(grandchild, SIGKILL);
  EXPECT_EQ(get(s, "k").value, "2");
}

}  // namespace
