// Faults the shared-memory store must survive: damaged segments, mismatched headers,
// processes killed while holding a shard lock, concurrent processes, foreign owners.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <random>
#include <thread>

#include "core/shm/robust_mutex.hpp"
#include "shm_test_util.hpp"

namespace {

using namespace nctest;
using nativecache::codec::kBytes;
using nativecache::codec::kLong;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * kKiB;

// Kills and reaps a forked child on every path out of a test, so a failed assertion never
// leaves a process behind holding the test's output pipes.
class Child {
 public:
  explicit Child(pid_t pid) : pid_(pid) {}
  ~Child() { kill(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  pid_t pid() const noexcept { return pid_; }
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    wait();
  }
  // The exit status (as from waitpid), or -1 when already reaped.
  int wait() {
    if (pid_ <= 0) return -1;
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return status;
  }

 private:
  pid_t pid_;
};

// Reads one byte from fd, waiting at most timeout_ms. -1 on timeout or EOF.
int read_byte(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) != 1) return -1;
  char c = 0;
  return ::read(fd, &c, 1) == 1 ? c : -1;
}

// Forks a child that opens the store and holds the shard lock of `key` for ever.
pid_t fork_lock_holder(const SegmentOptions& o, std::string_view key, int& read_end) {
  int fds[2];
  if (::pipe(fds) != 0) return -1;
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    std::unique_ptr<ShmStore> s;
    std::string detail;
    if (!ShmStore::open(o, s, detail).ok()) ::_exit(3);
    s->debug_hold_lock(key, fds[1]);  // never returns
  }
  ::close(fds[1]);
  read_end = fds[0];
  return pid;
}

class Faults : public ShmTest {};

// --------------------------------------------------------------------------- damage

TEST_F(Faults, PatternInIndexAndRing) {
  SegmentOptions o = options(256 * kKiB, 1);
  ShmStore& s = open(o);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(put(s, kname("k", i), "value").ok());
  RawMap raw(o.name);
  ASSERT_TRUE(raw.ok());
  std::memset(raw.buckets(0).data(), 0xAB, raw.buckets(0).size());
  std::memset(raw.ring(0).data(), 0xAB, raw.ring(0).size());
  for (int i = 0; i < 50; ++i) {
    Got g = get(s, kname("k", i));
    EXPECT_EQ(g.code, Code::kNotFound) << i;
  }
  StoreStats st = s.stats();
  EXPECT_GE(st.recoveries, 1u);
  EXPECT_EQ(st.items, 0u);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(put(s, kname("k", i), "again").ok());
  for (int i = 0; i < 50; ++i) EXPECT_EQ(get(s, kname("k", i)).value, "again");
  EXPECT_EQ(s.stats().items, 50u);
}

TEST_F(Faults, PatternInRingOnly) {
  SegmentOptions o = options(256 * kKiB, 1);
  ShmStore& s = open(o);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(put(s, kname("k", i), "value").ok());
  RawMap raw(o.name);
  ASSERT_TRUE(raw.ok());
  std::memset(raw.ring(0).data(), 0x5A, raw.ring(0).size());
  // Every path that reads the index first: each must notice and reset, none may crash.
  std::int64_t n = 0;
  EXPECT_EQ(s.incr("k1", 1, n).code, Code::kNotFound);
  EXPECT_EQ(s.stats().recoveries, 1u);
  std::memset(raw.ring(0).data(), 0x5A, raw.ring(0).size());
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(put(s, kname("k", i), "value").ok());
  std::memset(raw.ring(0).data(), 0x5A, raw.ring(0).size());
  EXPECT_EQ(s.concat("k2", bytes_of("x"), kBytes, false).code, Code::kNotFound);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(put(s, kname("k", i), "value").ok());
  std::memset(raw.ring(0).data(), 0x5A, raw.ring(0).size());
  EXPECT_EQ(s.touch("k3", Ttl::Forever()).code, Code::kNotFound);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(put(s, kname("k", i), "value").ok());
  std::memset(raw.ring(0).data(), 0x5A, raw.ring(0).size());
  EXPECT_EQ(s.remove("k4").code, Code::kNotFound);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(put(s, kname("k", i), "value").ok());
  std::memset(raw.ring(0).data(), 0x5A, raw.ring(0).size());
  EXPECT_EQ(s.ttl("k5", n).code, Code::kNotFound);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(put(s, kname("k", i), "value").ok());
  std::memset(raw.ring(0).data(), 0x5A, raw.ring(0).size());
  EXPECT_EQ(s.contains("k6").code, Code::kNotFound);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(put(s, kname("k", i), "value").ok());
  std::memset(raw.ring(0).data(), 0x5A, raw.ring(0).size());
  ASSERT_TRUE(put(s, "k7", "new", Ttl::Forever(), 0, Mode::kSet).ok());
  EXPECT_EQ(get(s, "k7").value, "new");
  EXPECT_EQ(s.stats().recoveries, 7u);
}

// Damage to one shard (the other untouched), then a random workload: nothing may crash,
// and every hit must be the latest value written. Odd seeds fill the index and ring with
// noise (so nothing written before survives); even seeds flip a few bytes of the index.
class RandomDamage : public Faults, public ::testing::WithParamInterface<unsigned> {};

TEST_P(RandomDamage, NeverServesGarbage) {
  SegmentOptions o = options(512 * kKiB, 2);
  ShmStore& s = open(o);
  std::mt19937 rng(GetParam());
  std::map<std::string, std::string> latest;  // what a hit may return
  for (int i = 0; i < 200; ++i) {
    std::string k = kname("k", i);
    std::string v(rng() % 2000, static_cast<char>('A' + rng() % 26));
    ASSERT_TRUE(put(s, k, v).ok());
    latest[k] = v;
  }
  RawMap raw(o.name);
  ASSERT_TRUE(raw.ok());
  const std::uint32_t victim = (GetParam() / 2) % 2u;
  const bool noise = GetParam() % 2 == 1;
  if (noise) {
    for (std::byte& b : raw.buckets(victim)) b = static_cast<std::byte>(rng());
    for (std::byte& b : raw.ring(victim)) b = static_cast<std::byte>(rng());
    for (auto it = latest.begin(); it != latest.end();) {
      it = s.shard_of(it->first) == victim ? latest.erase(it) : std::next(it);
    }
  } else {
    auto buckets = raw.buckets(victim);
    for (int i = 0; i < 16; ++i) {
      buckets[rng() % buckets.size()] ^= static_cast<std::byte>(1u << (rng() % 8));
    }
  }
  for (int op = 0; op < 5000; ++op) {
    std::string k = kname("k", rng() % 200);
    switch (rng() % 6) {
      case 0: {
        std::string v(rng() % 3000, static_cast<char>('a' + rng() % 26));
        ASSERT_TRUE(put(s, k, v).ok());
        latest[k] = v;
        break;
      }
      case 1: {
        bool prepend = rng() % 2 == 1;
        Status st = s.concat(k, bytes_of("+"), kBytes, prepend);
        auto it = latest.find(k);
        if (st.ok()) {
          ASSERT_NE(it, latest.end()) << "appended to a value that is not there: " << k;
          it->second = prepend ? "+" + it->second : it->second + "+";
        } else {
          ASSERT_EQ(st.code, Code::kNotFound);
          if (it != latest.end()) latest.erase(it);
        }
        break;
      }
      case 2: {
        Status st = s.remove(k);
        if (st.ok()) {
          ASSERT_TRUE(latest.count(k)) << "removed a value that is not there: " << k;
        }
        latest.erase(k);
        break;
      }
      default: {
        Got g = get(s, k);
        auto it = latest.find(k);
        if (g.hit()) {
          ASSERT_NE(it, latest.end()) << "served a value that was never written: " << k
                                      << " (" << g.value.size() << " bytes)";
          ASSERT_EQ(g.value, it->second) << k;
        } else if (it != latest.end()) {
          latest.erase(it);
        }
      }
    }
  }
  StoreStats st = s.stats();
  EXPECT_LE(st.bytes, st.capacity);
  if (noise) {
    EXPECT_GE(st.recoveries, 1u);
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, RandomDamage, ::testing::Range(1u, 13u));

TEST_F(Faults, GarbageRingPointers) {
  SegmentOptions o = options(256 * kKiB, 1);
  ShmStore& s = open(o);
  const std::uint32_t cap = s.header().ring_capacity;
  RawMap raw(o.name);
  ASSERT_TRUE(raw.ok());
  struct Bad {
    std::uint32_t head, tail, used;
  } cases[] = {{0xFFFFFFF0u, 8, 100},   {8, 0xFFFFFFF0u, 100}, {cap, 0, cap},
               {16, 8, 0x7FFFFFFFu},    {100, 0, 100},         {3, 1, 2},
               {cap - 8, 64, 16}};
  int n = 0;
  for (const Bad& b : cases) {
    for (int i = 0; i < 20; ++i) {
      ASSERT_TRUE(put(s, kname("k", i), std::string(500, 'v')).ok());
    }
    auto& h = raw.shard_header(0);
    h.head = b.head;
    h.tail = b.tail;
    h.used = b.used;
    for (int i = 0; i < 20; ++i) {
      Got g = get(s, kname("k", i));
      if (g.hit()) {
        ASSERT_EQ(g.value, std::string(500, 'v')) << n;
      }
    }
    // A write must make room; with pointers like these it has to reset, not scribble.
    for (int i = 0; i < 600; ++i) {
      ASSERT_TRUE(put(s, kname("new", i), std::string(700, 'n')).ok()) << n;
      ASSERT_EQ(get(s, kname("new", i)).value, std::string(700, 'n')) << n;
    }
    StoreStats st = s.stats();
    EXPECT_LE(st.bytes, st.capacity);
    EXPECT_LE(h.used, cap);
    EXPECT_LT(h.head, cap);
    EXPECT_LT(h.tail, cap);
    for (int i = 0; i < 20; ++i) {
      Got g = get(s, kname("k", i));
      if (g.hit()) {
        ASSERT_EQ(g.value, std::string(500, 'v')) << n;
      }
    }
    ++n;
  }
  EXPECT_GE(s.stats().recoveries, 1u);
  // The rest of the segment (header, other mappings) is intact.
  EXPECT_EQ(raw.header().magic, nativecache::shm::kMagic);
}

// Counts no ring can hold, the ring itself intact: the next write into that shard resets
// it, and a recount resets it first rather than summing a count near 2^31.
TEST_F(Faults, CountsTheRingCannotHoldAreDamage) {
  SegmentOptions o = options(512 * kKiB, 2);
  ShmStore& s = open(o);
  RawMap raw(o.name);
  ASSERT_TRUE(raw.ok());
  std::vector<std::string> in[2];
  for (int i = 0; in[0].size() < 10 || in[1].size() < 10; ++i) {
    std::string key = kname("k", i);
    auto& mine = in[s.shard_of(key)];
    if (mine.size() >= 10) continue;
    ASSERT_TRUE(put(s, key, "v").ok());
    mine.push_back(key);
  }
  auto& h = raw.shard_header(0);
  const std::uint64_t live_bytes = h.live_bytes;
  struct Bad {
    std::uint32_t items;
    std::uint64_t live_bytes;
  } cases[] = {{0x7FFFFFFFu, live_bytes}, {10, 0}, {10, std::uint64_t{h.used} + 8}};
  for (const Bad& b : cases) {
    h.items.store(b.items);
    h.live_bytes = b.live_bytes;
    raw.header().count_stale.store(1);
    // A write into the other shard, MAX_ENTRIES far away: the recount it runs first
    // resets shard 0 and counts what is left.
    const std::uint64_t before = s.stats().recoveries;
    Limits limits{1000, 3, true};
    ASSERT_TRUE(put(s, in[1][0], "w", Ttl::Forever(), 0, Mode::kSet, 0, limits).ok());
    EXPECT_EQ(s.stats().recoveries, before + 1) << b.items;
    EXPECT_EQ(raw.header().item_count.load(), 10) << b.items;
    EXPECT_EQ(raw.header().count_stale.load(), 0u);
    EXPECT_EQ(h.items.load(), 0u);
    for (const std::string& key : in[1]) EXPECT_TRUE(get(s, key).hit()) << key;
    for (const std::string& key : in[0]) {
      EXPECT_FALSE(get(s, key).hit()) << key;
      ASSERT_TRUE(put(s, key, "v").ok());  // as before, for the next case
    }
  }
  // Without a recount, the first record added to the shard finds the damage.
  std::string fresh;
  for (int i = 0; fresh.empty(); ++i) {
    if (s.shard_of(kname("new", i)) == 0) fresh = kname("new", i);
  }
  h.items.store(0x7FFFFFFFu);
  const std::uint64_t before = s.stats().recoveries;
  ASSERT_TRUE(put(s, fresh, "again").ok());
  EXPECT_EQ(s.stats().recoveries, before + 1);
  EXPECT_EQ(h.items.load(), 1u);
  EXPECT_EQ(get(s, fresh).value, "again");
}

TEST_F(Faults, TornWriteHookIsCaught) {
  SegmentOptions o = options(256 * kKiB, 1);
  ShmStore& s = open(o);
  ASSERT_TRUE(put(s, "k", "v").ok());
  RawMap raw(o.name);
  ASSERT_TRUE(raw.ok());
  // What scribble_torn_write leaves: a live record at the head that cannot hold its key,
  // linked from bucket 0. Every key of the shard is checked against it.
  auto& h = raw.shard_header(0);
  auto* r = reinterpret_cast<nativecache::shm::Record*>(raw.ring(0).data() + h.head);
  r->kind = nativecache::shm::kLive;
  r->total = 48;
  r->key_len = 0xFFFF;
  r->next = 0;
  std::uint32_t link = h.head + 1;
  for (std::uint32_t b = 0; b < raw.header().bucket_count; ++b) {
    std::memcpy(raw.buckets(0).data() + 4 * b, &link, 4);
  }
  EXPECT_EQ(get(s, "k").code, Code::kNotFound);
  EXPECT_EQ(s.stats().recoveries, 1u);
  ASSERT_TRUE(put(s, "k", "w").ok());
  EXPECT_EQ(get(s, "k").value, "w");
}

// --------------------------------------------------------------------------- headers

class HeaderMismatch : public Faults,
                       public ::testing::WithParamInterface<const char*> {
 protected:
  // Breaks one header field of the closed segment o.
  void damage(const SegmentOptions& o) {
    RawMap raw(o.name);
    ASSERT_TRUE(raw.ok());
    auto& h = raw.header();
    std::string what = GetParam();
    if (what == "magic") h.magic ^= 1;
    if (what == "layout_version") h.layout_version += 1;
    if (what == "abi") h.abi_fingerprint ^= 0x100;
    if (what == "total_size") h.total_size += 4096;
    if (what == "state") h.state.store(nativecache::shm::kInitialising);
    if (what == "n_shards") h.n_shards = 0;
    if (what == "bucket_count") h.bucket_count = 3;
    if (what == "ring_capacity") h.ring_capacity = 0x7FFFFFF8u;
    if (what == "max_item_size") h.max_item_size = h.ring_capacity;
    if (what == "shards_offset") h.shards_offset = 8;
  }
};

TEST_P(HeaderMismatch, RecreatedByDefault) {
  SegmentOptions o = options(kMiB, 2);
  {
    ShmStore& s = open(o);
    ASSERT_TRUE(put(s, "k", "old").ok());
    stores_.clear();
  }
  damage(o);
  ShmStore& s = open(o);
  EXPECT_EQ(get(s, "k").code, Code::kNotFound);
  EXPECT_EQ(s.stats().items, 0u);
  EXPECT_EQ(s.header().magic, nativecache::shm::kMagic);
  EXPECT_EQ(s.header().layout_version, nativecache::shm::kLayoutVersion);
  EXPECT_EQ(s.header().n_shards, 2u);
  ASSERT_TRUE(put(s, "k", "new").ok());
  EXPECT_EQ(get(s, "k").value, "new");
}

TEST_P(HeaderMismatch, FailsWhenToldTo) {
  SegmentOptions o = options(kMiB, 2);
  {
    ShmStore& s = open(o);
    ASSERT_TRUE(put(s, "k", "old").ok());
    stores_.clear();
  }
  damage(o);
  o.recreate_on_mismatch = false;
  std::unique_ptr<ShmStore> s;
  std::string detail;
  Status st = ShmStore::open(o, s, detail);
  EXPECT_EQ(st.code, Code::kCorrupt);
  EXPECT_EQ(s, nullptr);
  EXPECT_NE(detail.find(o.name), std::string::npos) << detail;
  // The segment was left as it was: nothing recreated behind the caller's back.
  RawMap raw(o.name);
  ASSERT_TRUE(raw.ok());
  std::string what = GetParam();
  if (what == "magic") {
    EXPECT_NE(raw.header().magic, nativecache::shm::kMagic);
  }
  if (what == "layout_version") {
    EXPECT_NE(raw.header().layout_version, nativecache::shm::kLayoutVersion);
    EXPECT_NE(detail.find("layout version"), std::string::npos) << detail;
  }
}

INSTANTIATE_TEST_SUITE_P(Fields, HeaderMismatch,
                         ::testing::Values("magic", "layout_version", "abi", "total_size",
                                           "state", "n_shards", "bucket_count",
                                           "ring_capacity", "max_item_size", "shards_offset"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           return std::string(info.param);
                         });

TEST_F(Faults, AttachedStoreReattachesAfterMismatch) {
  SegmentOptions o = options(kMiB, 1);
  ShmStore& s = open(o);
  ASSERT_TRUE(put(s, "k", "old").ok());
  {
    RawMap raw(o.name);
    ASSERT_TRUE(raw.ok());
    raw.header().magic = 0;
  }
  // The store notices on its next call, recreates the segment and never serves "old".
  EXPECT_EQ(get(s, "k").code, Code::kNotFound);
  ASSERT_TRUE(put(s, "k", "new").ok());
  ShmStore& t = open(o);
  EXPECT_EQ(get(t, "k").value, "new");
}

TEST_F(Faults, SegmentTooSmallForAHeader) {
  SegmentOptions o = options(kMiB, 1);
  int fd = ::shm_open(("/" + o.name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 100), 0);
  ::close(fd);
  SegmentOptions strict = o;
  strict.recreate_on_mismatch = false;
  std::unique_ptr<ShmStore> s;
  std::string detail;
  EXPECT_EQ(ShmStore::open(strict, s, detail).code, Code::kCorrupt);
  EXPECT_NE(detail.find("too small"), std::string::npos) << detail;
  ShmStore& t = open(o);
  ASSERT_TRUE(put(t, "k", "v").ok());
  EXPECT_EQ(get(t, "k").value, "v");
}

// --------------------------------------------------------------------------- locks

TEST_F(Faults, KilledLockHolderIsRecovered) {
  SegmentOptions o = options(256 * kKiB, 1);
  ShmStore& s = open(o);
  ASSERT_TRUE(put(s, "victim", "intact value").ok());
  ASSERT_TRUE(put(s, "bystander", "other value").ok());
  int rd = -1;
  Child child(fork_lock_holder(o, "victim", rd));
  ASSERT_GT(child.pid(), 0);
  ASSERT_EQ(read_byte(rd, 10000), 'L') << "the child never took the lock";
  ::close(rd);
  child.kill();

  auto t0 = Clock::now();
  Got g = get(s, "victim");
  auto waited = Clock::now() - t0;
  EXPECT_LT(waited, std::chrono::seconds(1));
  // The shard was dirty: it is reset, so the value is gone rather than torn.
  if (g.hit()) {
    EXPECT_EQ(g.value, "intact value");
  } else {
    EXPECT_EQ(g.code, Code::kNotFound);
  }
  Got b = get(s, "bystander");
  if (b.hit()) {
    EXPECT_EQ(b.value, "other value");
  }
  EXPECT_GE(s.stats().recoveries, 1u);
  ASSERT_TRUE(put(s, "victim", "after").ok());
  EXPECT_EQ(get(s, "victim").value, "after");
  std::int64_t r = 0;
  ASSERT_TRUE(put(s, "n", "1", Ttl::Forever(), kLong).ok());
  ASSERT_TRUE(s.incr("n", 1, r).ok());
  EXPECT_EQ(r, 2);
  EXPECT_EQ(s.stats().items, 2u);
}

TEST_F(Faults, WaiterWakesWhenHolderDies) {
  SegmentOptions o = options(kMiB, 2);
  ShmStore& s = open(o);
  ASSERT_TRUE(put(s, "victim", "v").ok());
  // A key of the other shard stays usable while the victim's shard is held.
  std::string other;
  for (int i = 0; other.empty(); ++i) {
    std::string k = kname("other", i);
    if (s.shard_of(k) != s.shard_of("victim")) other = k;
  }
  ASSERT_TRUE(put(s, other, "free").ok());
  int rd = -1;
  Child child(fork_lock_holder(o, "victim", rd));
  ASSERT_GT(child.pid(), 0);
  ASSERT_EQ(read_byte(rd, 10000), 'L');
  ::close(rd);
  EXPECT_EQ(get(s, other).value, "free");

  std::atomic<bool> done{false};
  Code code = Code::kOk;
  std::thread waiter([&] {
    std::unique_ptr<ShmStore> w;
    std::string detail;
    if (ShmStore::open(o, w, detail).ok()) {
      code = get(*w, "victim").code;
    } else {
      code = Code::kIo;
    }
    done = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(done.load()) << "the lock was not held";
  child.kill();
  auto t0 = Clock::now();
  while (!done.load() && Clock::now() - t0 < std::chrono::seconds(5)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(done.load()) << "the waiter still hangs after the holder died";
  waiter.join();
  EXPECT_EQ(code, Code::kNotFound);
  EXPECT_EQ(s.stats().recoveries, 1u);
  EXPECT_EQ(get(s, other).value, "free");  // the other shard was not reset
}

TEST_F(Faults, CleanShardSurvivesDeadOwner) {
  SegmentOptions o = options(256 * kKiB, 1);
  ShmStore& s = open(o);
  ASSERT_TRUE(put(s, "k", "kept").ok());
  // A process that dies holding the lock outside any mutation (dirty == 0).
  pid_t pid = ::fork();
  if (pid == 0) {
    RawMap raw(o.name);
    if (!raw.ok() || pthread_mutex_lock(&raw.shard_header(0).mutex) != 0) ::_exit(3);
    ::_exit(0);
  }
  Child child(pid);
  int status = child.wait();
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(get(s, "k").value, "kept");
  EXPECT_EQ(s.stats().recoveries, 0u);
  ASSERT_TRUE(put(s, "k", "changed").ok());
  EXPECT_EQ(get(s, "k").value, "changed");
}

TEST_F(Faults, UnrecoverableLockRetiresTheSegment) {
  SegmentOptions o = options(256 * kKiB, 1);
  ShmStore& s = open(o);
  ASSERT_TRUE(put(s, "k", "v").ok());
  pid_t pid = ::fork();
  if (pid == 0) {
    RawMap raw(o.name);
    if (!raw.ok() || pthread_mutex_lock(&raw.shard_header(0).mutex) != 0) ::_exit(3);
    ::_exit(0);
  }
  Child child(pid);
  int status = child.wait();
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  {
    // Someone who takes it after the death but never marks it consistent leaves the
    // mutex unusable for good.
    RawMap raw(o.name);
    ASSERT_TRUE(raw.ok());
    ASSERT_EQ(pthread_mutex_lock(&raw.shard_header(0).mutex), EOWNERDEAD);
    pthread_mutex_unlock(&raw.shard_header(0).mutex);
    ASSERT_EQ(pthread_mutex_lock(&raw.shard_header(0).mutex), ENOTRECOVERABLE);
  }
  RawMap old(o.name);  // keeps the retired segment mapped after its name is reused
  ASSERT_TRUE(old.ok());
  // One call reports it; after that the store lives on in a fresh segment.
  Got g = get(s, "k");
  EXPECT_TRUE(g.code == Code::kUnavailable || g.code == Code::kNotFound)
      << static_cast<int>(g.code);
  // A process that reached the old shard before the segment was retired is told so too,
  // rather than left waiting on that lock for ever.
  int rc = run_in_child(
      [&] {
        nativecache::shm::Waited wait;
        auto r = nativecache::shm::lock(&old.shard_header(0).mutex, wait);
        return r == nativecache::shm::LockResult::kUnrecoverable ? 0 : 1;
      },
      5000);
  EXPECT_EQ(rc, 0) << (rc == -1 ? "a second locker hangs on the unrecoverable mutex" : "");
  bool stored = false;
  for (int i = 0; i < 3 && !stored; ++i) stored = put(s, "k", "fresh").ok();
  ASSERT_TRUE(stored);
  EXPECT_EQ(get(s, "k").value, "fresh");
  ShmStore& t = open(o);
  EXPECT_EQ(get(t, "k").value, "fresh");
}

// --------------------------------------------------------------------------- processes

TEST_F(Faults, IncrIsAtomicAcrossProcesses) {
  SegmentOptions o = options(kMiB, 2);
  ShmStore& s = open(o);
  ASSERT_TRUE(put(s, "counter", "0", Ttl::Forever(), kLong).ok());
  std::vector<std::unique_ptr<Child>> children;
  for (int c = 0; c < 4; ++c) {
    pid_t pid = ::fork();
    if (pid == 0) {
      std::unique_ptr<ShmStore> cs;
      std::string detail;
      if (!ShmStore::open(o, cs, detail).ok()) ::_exit(3);
      for (int i = 0; i < 10000; ++i) {
        std::int64_t r = 0;
        if (!cs->incr("counter", 1, r).ok()) ::_exit(4);
      }
      ::_exit(0);
    }
    ASSERT_GT(pid, 0);
    children.push_back(std::make_unique<Child>(pid));
  }
  for (auto& c : children) {
    int status = c->wait();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
  EXPECT_EQ(get(s, "counter").value, "40000");
  EXPECT_EQ(s.stats().recoveries, 0u);
}

TEST_F(Faults, AddHasOneWinnerAcrossProcesses) {
  SegmentOptions o = options(4 * kMiB, 4);
  ShmStore& s = open(o);
  const int kSlots = 2000;
  std::vector<std::unique_ptr<Child>> children;
  std::vector<int> pipes;
  for (int c = 0; c < 4; ++c) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(fds[0]);
      std::unique_ptr<ShmStore> cs;
      std::string detail;
      if (!ShmStore::open(o, cs, detail).ok()) ::_exit(3);
      std::uint32_t wins = 0;
      std::string me = kname("child", c);
      for (int i = 0; i < kSlots; ++i) {
        Status st = put(*cs, kname("slot", i), me, Ttl::Forever(), 0, Mode::kAdd);
        if (st.ok()) {
          ++wins;
        } else if (st.code != Code::kExists) {
          ::_exit(4);
        }
      }
      if (::write(fds[1], &wins, sizeof wins) != sizeof wins) ::_exit(5);
      ::_exit(0);
    }
    ::close(fds[1]);
    ASSERT_GT(pid, 0);
    children.push_back(std::make_unique<Child>(pid));
    pipes.push_back(fds[0]);
  }
  std::uint64_t total = 0;
  for (std::size_t c = 0; c < children.size(); ++c) {
    int status = children[c]->wait();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    std::uint32_t wins = 0;
    EXPECT_EQ(::read(pipes[c], &wins, sizeof wins), static_cast<ssize_t>(sizeof wins));
    ::close(pipes[c]);
    total += wins;
  }
  EXPECT_EQ(total, static_cast<std::uint64_t>(kSlots));
  for (int i = 0; i < kSlots; ++i) {
    Got g = get(s, kname("slot", i));
    ASSERT_TRUE(g.hit()) << i;
    EXPECT_EQ(g.value.rfind("child", 0), 0u);
  }
  EXPECT_EQ(s.stats().items, static_cast<std::uint64_t>(kSlots));
}

// A self-describing value: its size and every byte follow from its first 8 bytes.
std::string stamped(std::uint32_t writer, std::uint32_t seq) {
  std::uint64_t seed = (std::uint64_t{writer} << 32) | seq;
  std::uint32_t x = static_cast<std::uint32_t>(seed * 0x9E3779B97F4A7C15ULL >> 32);
  std::size_t size = 8 + x % 12000;
  std::string v(size, '\0');
  std::memcpy(v.data(), &seed, 8);
  for (std::size_t i = 8; i < size; ++i) {
    x = x * 1664525u + 1013904223u;
    v[i] = static_cast<char>(x >> 24);
  }
  return v;
}

bool stamped_ok(const std::string& v) {
  if (v.size() < 8) return false;
  std::uint64_t seed;
  std::memcpy(&seed, v.data(), 8);
  return v == stamped(static_cast<std::uint32_t>(seed >> 32), static_cast<std::uint32_t>(seed));
}

TEST_F(Faults, ConcurrentWritersNeverTearValues) {
  SegmentOptions o = options(256 * kKiB, 2);
  ShmStore& s = open(o);
  std::vector<std::unique_ptr<Child>> children;
  for (std::uint32_t c = 0; c < 4; ++c) {
    pid_t pid = ::fork();
    if (pid == 0) {
      std::unique_ptr<ShmStore> cs;
      std::string detail;
      if (!ShmStore::open(o, cs, detail).ok()) ::_exit(3);
      std::mt19937 rng(c);
      for (std::uint32_t i = 0; i < 6000; ++i) {
        std::string k = kname("shared", rng() % 60);
        if (rng() % 2) {
          if (!put(*cs, k, stamped(c, i)).ok()) ::_exit(4);
        } else {
          Got g = get(*cs, k);
          if (g.hit() && !stamped_ok(g.value)) ::_exit(5);
          if (!g.hit() && g.code != Code::kNotFound) ::_exit(6);
        }
      }
      ::_exit(0);
    }
    ASSERT_GT(pid, 0);
    children.push_back(std::make_unique<Child>(pid));
  }
  for (auto& c : children) {
    int status = c->wait();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "child exit " << (WIFEXITED(status) ? WEXITSTATUS(status) : -status);
  }
  for (int i = 0; i < 60; ++i) {
    Got g = get(s, kname("shared", i));
    if (g.hit()) {
      EXPECT_TRUE(stamped_ok(g.value)) << i;
    }
  }
  StoreStats st = s.stats();
  EXPECT_GT(st.evictions, 0u);
  EXPECT_EQ(st.recoveries, 0u);
  EXPECT_LE(st.bytes, st.capacity);
}

// --------------------------------------------------------------------------- owners

TEST_F(Faults, SegmentIsPrivateToItsOwner) {
  SegmentOptions o = options(kMiB, 1);
  ShmStore& s = open(o);
  ASSERT_TRUE(put(s, "k", "v").ok());
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm/" + o.name).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_uid, ::geteuid());
  ASSERT_EQ(::stat(("/dev/shm/" + o.name + ".lock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0077, 0u);
}

TEST_F(Faults, ForeignOwnerIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give the segment away";
  SegmentOptions o = options(kMiB, 1);
  {
    ShmStore& s = open(o);
    ASSERT_TRUE(put(s, "k", "v").ok());
  }
  std::string path = "/dev/shm/" + o.name;
  ASSERT_EQ(::chown(path.c_str(), 65534, 65534), 0);
  std::unique_ptr<ShmStore> s;
  std::string detail;
  Status st = ShmStore::open(o, s, detail);
  EXPECT_EQ(st.code, Code::kPermission);
  EXPECT_EQ(s, nullptr);
  EXPECT_NE(detail.find("65534"), std::string::npos) << detail;
  // Refused, not replaced: the segment and its owner are as they were.
  struct stat sb {};
  ASSERT_EQ(::stat(path.c_str(), &sb), 0);
  EXPECT_EQ(sb.st_uid, 65534u);
  ASSERT_EQ(::chown(path.c_str(), 0, 0), 0);
  ShmStore& again = open(o);
  EXPECT_EQ(get(again, "k").value, "v");

  // The same for a lock file given away.
  stores_.clear();
  std::string lock = path + ".lock";
  ASSERT_EQ(::chown(lock.c_str(), 65534, 65534), 0);
  EXPECT_EQ(ShmStore::open(o, s, detail).code, Code::kPermission);
  ASSERT_EQ(::chown(lock.c_str(), 0, 0), 0);
}

}  // namespace
