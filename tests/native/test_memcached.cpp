// MemcachedStore against real memcached servers started by the tests (text and binary
// protocol): every Store status, Django's timeout rules, keys refused before the wire,
// dead servers, batches, the pool of handles, and a forked child that connects afresh.
#ifdef NATIVECACHE_HAVE_LIBMEMCACHED

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <libmemcached/memcached.h>

#include "core/memcached_client.hpp"
#include "store_test_util.hpp"

namespace {

using namespace nctest;
using nativecache::Code;
using nativecache::Limits;
using nativecache::ManyOut;
using nativecache::Mode;
using nativecache::Status;
using nativecache::Ttl;
using nativecache::ValueOut;
using nativecache::Write;
using nativecache::mc::ClientConfig;
using nativecache::mc::MemcachedStore;
using nativecache::mc::ServerSpec;

std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool accepts(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

// A memcached process on a free loopback port, stopped when it goes out of scope.
class Server {
 public:
  Server() : port_(free_port()) { start(); }
  ~Server() { stop(); }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void start() {
    pid_ = ::fork();
    if (pid_ == 0) {
      std::string port = std::to_string(port_);
      if (::geteuid() == 0) {
        ::execl("/usr/bin/memcached", "memcached", "-u", "root", "-l", "127.0.0.1", "-p",
                port.c_str(), "-U", "0", "-m", "64", "-t", "1", nullptr);
      } else {
        ::execl("/usr/bin/memcached", "memcached", "-l", "127.0.0.1", "-p", port.c_str(), "-U",
                "0", "-m", "64", "-t", "1", nullptr);
      }
      ::_exit(127);
    }
    for (int i = 0; i < 500 && !accepts(port_); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_TRUE(accepts(port_)) << "memcached did not start";
  }
  void stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }

 private:
  std::uint16_t port_;
  pid_t pid_ = -1;
};

Status put(MemcachedStore& s, std::string_view key, std::string_view value,
           Mode mode = Mode::kSet, Ttl ttl = Ttl::Forever(), std::uint32_t flags = 16,
           std::uint64_t cas = 0) {
  return s.store(Write{key, bytes_of(value), flags, ttl}, mode, cas, Limits{});
}

// A server that accepts connections (the kernel completes them) and never answers.
class SilentServer {
 public:
  SilentServer() : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(fd_, 64);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentServer() { ::close(fd_); }
  SilentServer(const SilentServer&) = delete;
  SilentServer& operator=(const SilentServer&) = delete;
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }

 private:
  int fd_;
  std::uint16_t port_ = 0;
};

std::unique_ptr<MemcachedStore> open(std::vector<ServerSpec> servers, bool binary,
                                     std::vector<ClientConfig::Behavior> behaviors = {},
                                     std::size_t max_idle = SIZE_MAX,
                                     std::int64_t idle_timeout_ms = 0) {
  ClientConfig cfg;
  cfg.servers = std::move(servers);
  cfg.binary = binary;
  cfg.behaviors = std::move(behaviors);
  cfg.max_idle = max_idle;
  cfg.idle_timeout_ms = idle_timeout_ms;
  std::unique_ptr<MemcachedStore> store;
  std::string detail;
  Status s = MemcachedStore::open(cfg, store, detail);
  EXPECT_TRUE(s.ok()) << detail;
  return store;
}

class MemcachedTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    server_ = std::make_unique<Server>();
    store_ = open({{"127.0.0.1", server_->port()}}, GetParam());
    ASSERT_TRUE(store_);
  }
  std::unique_ptr<Server> server_;
  std::unique_ptr<MemcachedStore> store_;
};

INSTANTIATE_TEST_SUITE_P(Protocols, MemcachedTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "binary" : "text"; });

}  // namespace

TEST(MemcachedKeys, ValidKey) {
  using nativecache::mc::valid_key;
  EXPECT_TRUE(valid_key("abc"));
  EXPECT_TRUE(valid_key(":1:ключ"));
  EXPECT_TRUE(valid_key(std::string(250, 'k')));
  EXPECT_FALSE(valid_key(std::string(251, 'k')));
  EXPECT_FALSE(valid_key(""));
  EXPECT_FALSE(valid_key("a b"));
  EXPECT_FALSE(valid_key("a\r\nb"));
  EXPECT_FALSE(valid_key(std::string_view("a\0b", 3)));
  EXPECT_FALSE(valid_key("a\x7f"));
}

TEST(MemcachedTimeouts, Exptime) {
  using nativecache::mc::exptime;
  using nativecache::mc::whole_seconds;
  constexpr std::int64_t now = 1'800'000'000;
  EXPECT_EQ(exptime(Ttl::Forever(), now), 0);
  EXPECT_EQ(exptime(Ttl::Relative(100'900), now), 100);  // truncated, as Django does
  EXPECT_EQ(exptime(Ttl::Relative(30LL * 86400 * 1000), now), 30 * 86400);
  EXPECT_EQ(exptime(Ttl::Relative((30LL * 86400 + 1) * 1000), now), now + 30 * 86400 + 1);
  EXPECT_EQ(exptime(Ttl::Relative(50LL * 365 * 86400 * 1000), now), INT32_MAX);
  EXPECT_EQ(whole_seconds(Ttl::Relative(999)).kind, Ttl::Kind::kDrop);
  EXPECT_EQ(whole_seconds(Ttl::Relative(1000)).kind, Ttl::Kind::kRelative);
}

TEST(MemcachedConfig, BadBehaviorsAreRefused) {
  ClientConfig cfg;
  cfg.servers = {{"127.0.0.1", 1}};
  std::unique_ptr<MemcachedStore> store;
  std::string detail;
  cfg.behaviors = {{"no_such", 1, {}}};
  EXPECT_EQ(MemcachedStore::open(cfg, store, detail).code, Code::kInvalidArgument);
  EXPECT_NE(detail.find("no_such"), std::string::npos);
  cfg.behaviors = {{"hash", 0, "sha1"}};
  EXPECT_EQ(MemcachedStore::open(cfg, store, detail).code, Code::kInvalidArgument);
  cfg.behaviors = {{"buffer_requests", 1, {}}};
  EXPECT_EQ(MemcachedStore::open(cfg, store, detail).code, Code::kInvalidArgument);
  cfg.behaviors = {{"distribution", 0, "consistent_ketama"}, {"hash", 0, "fnv1a_32"}};
  EXPECT_TRUE(MemcachedStore::open(cfg, store, detail).ok()) << detail;
  std::int64_t value = -1;
  ASSERT_TRUE(store->behavior("hash", value).ok());
  EXPECT_EQ(value, MEMCACHED_HASH_FNV1A_32);
  cfg.servers.clear();
  EXPECT_EQ(MemcachedStore::open(cfg, store, detail).code, Code::kInvalidArgument);
}

TEST_P(MemcachedTest, SetGetKeepsFlagsAndGrowsTheBuffer) {
  std::string big(100'000, 'v');
  ASSERT_TRUE(put(*store_, "k", big, Mode::kSet, Ttl::Forever(), 1).ok());
  Got g = get(*store_, "k");
  ASSERT_EQ(g.code, Code::kOk);
  EXPECT_EQ(g.value, big);
  EXPECT_EQ(g.flags, 1U);
  EXPECT_EQ(get(*store_, "missing").code, Code::kNotFound);
  EXPECT_TRUE(store_->contains("k").ok());
  EXPECT_EQ(store_->contains("missing").code, Code::kNotFound);
  ASSERT_TRUE(put(*store_, "empty", "").ok());
  EXPECT_EQ(get(*store_, "empty").value, "");
}

TEST_P(MemcachedTest, AddReplaceCas) {
  EXPECT_TRUE(put(*store_, "k", "a", Mode::kAdd).ok());
  EXPECT_EQ(put(*store_, "k", "b", Mode::kAdd).code, Code::kExists);
  EXPECT_TRUE(put(*store_, "k", "c", Mode::kReplace).ok());
  EXPECT_EQ(put(*store_, "none", "c", Mode::kReplace).code, Code::kNotFound);
  Got g = get(*store_, "k");
  ASSERT_NE(g.cas, 0U);
  EXPECT_EQ(put(*store_, "k", "d", Mode::kCas, Ttl::Forever(), 16, g.cas + 1).code,
            Code::kExists);
  EXPECT_TRUE(put(*store_, "k", "d", Mode::kCas, Ttl::Forever(), 16, g.cas).ok());
  EXPECT_EQ(get(*store_, "k").value, "d");
  EXPECT_EQ(put(*store_, "none", "d", Mode::kCas, Ttl::Forever(), 16, g.cas).code,
            Code::kNotFound);
}

TEST_P(MemcachedTest, DropKeepsNothing) {
  ASSERT_TRUE(put(*store_, "k", "old").ok());
  EXPECT_TRUE(put(*store_, "k", "new", Mode::kSet, Ttl::Drop()).ok());
  EXPECT_EQ(get(*store_, "k").code, Code::kNotFound);
  EXPECT_TRUE(put(*store_, "k", "new", Mode::kSet, Ttl::Relative(500)).ok());  // < 1 s
  EXPECT_EQ(get(*store_, "k").code, Code::kNotFound);
  EXPECT_TRUE(put(*store_, "fresh", "v", Mode::kAdd, Ttl::Drop()).ok());
  EXPECT_EQ(get(*store_, "fresh").code, Code::kNotFound);
  ASSERT_TRUE(put(*store_, "live", "v").ok());
  EXPECT_EQ(put(*store_, "live", "w", Mode::kAdd, Ttl::Drop()).code, Code::kExists);
  EXPECT_EQ(get(*store_, "live").value, "v");
  EXPECT_TRUE(store_->touch("live", Ttl::Drop()).ok());
  EXPECT_EQ(get(*store_, "live").code, Code::kNotFound);
  EXPECT_EQ(store_->touch("live", Ttl::Drop()).code, Code::kNotFound);
  // The connection is still in step.
  ASSERT_TRUE(put(*store_, "after", "ok").ok());
  EXPECT_EQ(get(*store_, "after").value, "ok");
}

TEST_P(MemcachedTest, FarFutureIsAccepted) {
  ASSERT_TRUE(put(*store_, "far", "v", Mode::kSet, Ttl::Relative(50LL * 365 * 86400 * 1000)).ok());
  EXPECT_EQ(get(*store_, "far").value, "v");
  ASSERT_TRUE(put(*store_, "next", "w").ok());
  EXPECT_EQ(get(*store_, "next").value, "w");
}

TEST_P(MemcachedTest, IncrDecr) {
  ASSERT_TRUE(put(*store_, "n", "10", Mode::kSet, Ttl::Forever(), 4).ok());
  std::int64_t result = 0;
  ASSERT_TRUE(store_->incr("n", 5, result).ok());
  EXPECT_EQ(result, 15);
  ASSERT_TRUE(store_->incr("n", -20, result).ok());
  EXPECT_EQ(result, 0);  // memcached stops at zero
  EXPECT_EQ(store_->incr("missing", 1, result).code, Code::kNotFound);
  ASSERT_TRUE(put(*store_, "text", "abc").ok());
  EXPECT_EQ(store_->incr("text", 1, result).code, Code::kNotNumeric);
  // Deltas over 32 bits are one command too (libmemcached's _by_key calls).
  ASSERT_TRUE(store_->incr("n", std::int64_t{1} << 40, result).ok());
  EXPECT_EQ(result, std::int64_t{1} << 40);
  ASSERT_TRUE(store_->incr("n", -(std::int64_t{1} << 41), result).ok());
  EXPECT_EQ(result, 0);
  // Past INT64_MAX: undone, for the caller to add in Python.
  ASSERT_TRUE(put(*store_, "top", "9223372036854775807", Mode::kSet, Ttl::Forever(), 4).ok());
  EXPECT_EQ(store_->incr("top", 1, result).code, Code::kOverflow);
  EXPECT_EQ(get(*store_, "top").value, "9223372036854775807");
  EXPECT_EQ(get(*store_, "text").value, "abc");
  EXPECT_EQ(get(*store_, "n").flags, 4U);
}

TEST_P(MemcachedTest, AppendPrependDelete) {
  ASSERT_TRUE(put(*store_, "k", "b").ok());
  EXPECT_TRUE(store_->concat("k", bytes_of("c"), 16, false).ok());
  EXPECT_TRUE(store_->concat("k", bytes_of("a"), 16, true).ok());
  EXPECT_EQ(get(*store_, "k").value, "abc");
  EXPECT_EQ(store_->concat("none", bytes_of("x"), 16, false).code, Code::kNotFound);
  // Only to a value stored with the same flags: memcached itself appends to anything.
  ASSERT_TRUE(put(*store_, "pickled", "\x80\x05N.", Mode::kSet, Ttl::Forever(), 1).ok());
  EXPECT_EQ(store_->concat("pickled", bytes_of("x"), 0, false).code, Code::kTypeMismatch);
  EXPECT_EQ(store_->concat("k", bytes_of("x"), 0, true).code, Code::kTypeMismatch);
  EXPECT_EQ(get(*store_, "pickled").value, "\x80\x05N.");
  EXPECT_EQ(get(*store_, "k").value, "abc");
  EXPECT_TRUE(store_->remove("k").ok());
  EXPECT_EQ(store_->remove("k").code, Code::kNotFound);
  ASSERT_TRUE(put(*store_, "z", "1").ok());
  EXPECT_TRUE(store_->clear().ok());
  EXPECT_EQ(get(*store_, "z").code, Code::kNotFound);
}

TEST_P(MemcachedTest, BadKeysNeverReachTheWire) {
  for (std::string_view key : {std::string_view("a b"), std::string_view("a\r\nget x"),
                               std::string_view("")}) {
    EXPECT_EQ(put(*store_, key, "v").code, Code::kBadKey);
    EXPECT_EQ(get(*store_, key).code, Code::kBadKey);
    EXPECT_EQ(store_->remove(key).code, Code::kBadKey);
    std::int64_t r = 0;
    EXPECT_EQ(store_->incr(key, 1, r).code, Code::kBadKey);
  }
  std::vector<std::string_view> keys = {"good", "bad key"};
  ManyOut out;
  EXPECT_EQ(store_->get_many(keys, out).code, Code::kBadKey);
  ASSERT_TRUE(put(*store_, "good", "v").ok());
  EXPECT_EQ(get(*store_, "good").value, "v");
}

TEST_P(MemcachedTest, TooLargeDeletesTheOldValue) {
  ASSERT_TRUE(put(*store_, "k", "small").ok());
  std::string huge(2 << 20, 'x');
  Status s = put(*store_, "k", huge);
  EXPECT_EQ(s.code, Code::kTooLarge);
  EXPECT_NE(std::string(s.what).find("too large"), std::string::npos);
  EXPECT_EQ(get(*store_, "k").code, Code::kNotFound);
  ASSERT_TRUE(put(*store_, "k", "again").ok());
  EXPECT_EQ(get(*store_, "k").value, "again");
}

TEST_P(MemcachedTest, GetManyFindsEachKeyOnce) {
  ASSERT_TRUE(put(*store_, "a", "1").ok());
  ASSERT_TRUE(put(*store_, "b", std::string(70'000, 'b')).ok());
  std::vector<std::string_view> keys = {"a", "missing", "b", "a"};
  ManyOut out;
  ASSERT_TRUE(store_->get_many(keys, out).ok());
  ASSERT_EQ(out.items.size(), 2U);
  for (const auto& item : out.items) {
    std::string value(reinterpret_cast<const char*>(out.bytes.data() + item.offset), item.size);
    if (item.index == 0) {
      EXPECT_EQ(value, "1");
    } else {
      EXPECT_EQ(item.index, 2U);
      EXPECT_EQ(value.size(), 70'000U);
    }
  }
}

TEST_P(MemcachedTest, DeadServerFailsFastAndRecovers) {
  ASSERT_TRUE(put(*store_, "k", "v").ok());
  server_->stop();
  auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 20; ++i) {
    Got g = get(*store_, "k");
    EXPECT_EQ(g.code, Code::kUnavailable);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(1));
  server_->start();
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));  // the retry timeout
  bool back = false;
  for (int i = 0; i < 50 && !back; ++i) {
    back = put(*store_, "k", "again").ok();
    if (!back) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(back);
  EXPECT_EQ(get(*store_, "k").value, "again");
}

TEST_P(MemcachedTest, ForkedChildConnectsAfresh) {
  ASSERT_TRUE(put(*store_, "parent", "p").ok());  // the connection is open now
  pid_t pid = ::fork();
  if (pid == 0) {
    int bad = 0;
    for (int i = 0; i < 200; ++i) {
      std::string key = "child" + std::to_string(i % 10);
      std::string value = "c" + std::to_string(i);
      bad += !put(*store_, key, value).ok();
      bad += get(*store_, key).value != value;
    }
    store_.reset();  // must not send "quit" on the parent's socket
    ::_exit(bad == 0 ? 0 : 1);
  }
  int bad = 0;
  for (int i = 0; i < 200; ++i) {
    std::string value = "p" + std::to_string(i);
    bad += !put(*store_, "parent", value).ok();
    bad += get(*store_, "parent").value != value;
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(get(*store_, "child9").value, "c199");
}

// A key that `store` sends to the server named `server` ("host:port").
std::string key_on(MemcachedStore& store, const std::string& server) {
  for (int i = 0;; ++i) {
    std::string key = "k" + std::to_string(i);
    std::string found;
    if (store.server_for(key, found).ok() && found == server) return key;
  }
}

// A store over the test's server and a silent one, with a key sent to each, written
// on the live one.
struct LiveAndSilent {
  SilentServer silent;
  std::unique_ptr<MemcachedStore> store;
  std::string live, hung;
};

std::unique_ptr<LiveAndSilent> live_and_silent(const Server& server, bool binary,
                                               std::int64_t poll_ms,
                                               std::size_t max_idle = SIZE_MAX,
                                               std::int64_t idle_timeout_ms = 0) {
  auto two = std::make_unique<LiveAndSilent>();
  two->store = open({{"127.0.0.1", server.port()}, {"127.0.0.1", two->silent.port()}}, binary,
                    {{"_poll_timeout", poll_ms, ""}}, max_idle, idle_timeout_ms);
  two->live = key_on(*two->store, "127.0.0.1:" + std::to_string(server.port()));
  two->hung = key_on(*two->store, "127.0.0.1:" + std::to_string(two->silent.port()));
  EXPECT_TRUE(put(*two->store, two->live, "v").ok());
  return two;
}

std::int64_t connections(MemcachedStore& store) {
  std::vector<nativecache::mc::ServerStats> stats;
  EXPECT_TRUE(store.server_stats("", stats).ok());
  for (const auto& [name, value] : stats.at(0).values) {
    if (name == "curr_connections") return std::stoll(value);
  }
  return -1;
}

TEST_P(MemcachedTest, CallsOfSeveralThreadsRunSideBySide) {
  auto two = live_and_silent(*server_, GetParam(), 800);
  auto& [silent, store, live, hung] = *two;
  std::atomic<bool> waiting{false}, answered{false};
  Code hung_code = Code::kOk;
  std::thread slow([&] {
    waiting = true;
    hung_code = get(*store, hung).code;  // waits for the poll timeout
    answered = true;
  });
  while (!waiting) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  // This thread's calls do not wait for the other thread's: each has a handle.
  for (int i = 0; i < 20; ++i) EXPECT_EQ(get(*store, live).value, "v");
  EXPECT_FALSE(answered.load());
  slow.join();
  EXPECT_EQ(hung_code, Code::kUnavailable);
  EXPECT_EQ(store->idle_handles(), 2U);
  // The timeout is known to every handle: the hung server's keys fail at once now.
  auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(get(*store, hung).code, Code::kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(400));
  EXPECT_EQ(get(*store, live).value, "v");
}

TEST_P(MemcachedTest, PoolKeepsAtMostMaxIdleAndClosesIdleHandles) {
  auto two = live_and_silent(*server_, GetParam(), 500, 2, 1500);
  auto& [silent, store, live, hung] = *two;
  const std::int64_t before = connections(*store);  // the store's one handle
  // Three calls at once: each connects to the live server, then waits for the silent one.
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&] {
      std::vector<std::string_view> keys = {live, hung};
      ManyOut out;
      static_cast<void>(store->get_many(keys, out));
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(store->idle_handles(), 2U);  // the third was closed when its call ended
  EXPECT_EQ(connections(*store), before + 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(1700));
  EXPECT_EQ(store->idle_handles(), 0U);  // idle past the timeout: closed
  EXPECT_EQ(connections(*store), before - 1);
  EXPECT_EQ(get(*store, live).value, "v");  // a new handle connects
  EXPECT_EQ(store->idle_handles(), 1U);
}

TEST_P(MemcachedTest, DisconnectClosesIdleHandlesAndThoseInUseWhenTheyReturn) {
  auto two = live_and_silent(*server_, GetParam(), 800);
  auto& [silent, store, live, hung] = *two;
  std::atomic<bool> waiting{false};
  std::thread slow([&] {
    std::vector<std::string_view> keys = {live, hung};
    ManyOut out;
    waiting = true;
    static_cast<void>(store->get_many(keys, out));
  });
  while (!waiting) std::this_thread::yield();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  store->disconnect();
  EXPECT_EQ(store->idle_handles(), 0U);
  slow.join();
  EXPECT_EQ(store->idle_handles(), 0U);  // made before the disconnect: closed on return
  EXPECT_EQ(get(*store, live).value, "v");
  // The call in flight timed out, so the silent server is skipped now...
  auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(get(*store, hung).code, Code::kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(200));
  // ...until a disconnect, after which it is asked again (and waited for).
  store->disconnect();
  started = std::chrono::steady_clock::now();
  EXPECT_EQ(get(*store, hung).code, Code::kUnavailable);
  EXPECT_GE(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(400));
}

TEST_P(MemcachedTest, ServerStatsNameEachServer) {
  Server dead;
  auto store = open({{"127.0.0.1", server_->port()}, {"127.0.0.1", dead.port()}}, GetParam());
  dead.stop();
  std::vector<nativecache::mc::ServerStats> stats;
  ASSERT_TRUE(store->server_stats("", stats).ok());
  ASSERT_EQ(stats.size(), 2U);
  EXPECT_EQ(stats[0].server, "127.0.0.1:" + std::to_string(server_->port()));
  EXPECT_TRUE(stats[0].error.empty());
  EXPECT_FALSE(stats[0].values.empty());
  EXPECT_FALSE(stats[1].error.empty());
}

#endif  // NATIVECACHE_HAVE_LIBMEMCACHED
