// The memcached store: libmemcached's C API configured in code (its 1.1.4 config-string
// parser rejects IPv6 and unquoted socket paths), with a pool of connection sets.
//
// Every call checks a handle (one memcached_st, its connections to every server) out of
// the store's pool and returns it after, so a handle is never used by two threads at
// once while calls of several threads run side by side; the pool grows to the most
// calls ever made at once. Calls are made with the GIL released by the binding
// (blocks() is true). A server whose reply timed out is skipped by every handle. Keys
// are checked before they reach the wire: in the text protocol a key with a space makes
// the server answer twice and the connection would pair later replies with the wrong
// requests. After fork() a child never touches its parent's sockets: the store notices
// the fork and opens connections of its own.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/fork.hpp"
#include "core/store.hpp"

namespace nativecache::mc {

struct ServerSpec {
  std::string host;          // host name, IPv4 or IPv6 address (no brackets), or socket path
  std::uint16_t port = 11211;
  bool unix_socket = false;
  std::uint32_t weight = 1;
};

struct ClientConfig {
  std::vector<ServerSpec> servers;
  bool binary = false;
  // pylibmc's behaviour names with integer values, or for "hash", "ketama_hash" and
  // "distribution" one of pylibmc's names ("md5", "consistent", ...) in `text`.
  struct Behavior {
    std::string name;
    std::int64_t value = 0;
    std::string text;
  };
  std::vector<Behavior> behaviors;  // applied after the defaults, in order
  std::size_t max_idle = SIZE_MAX;    // handles the pool keeps between calls
  std::int64_t idle_timeout_ms = 0;   // a handle idle longer is closed (0: never)
};

// One server's answer to "stats": its name and the (name, value) pairs it sent.
struct ServerStats {
  std::string server;
  std::vector<std::pair<std::string, std::string>> values;
  std::string error;  // set when the server did not answer
};

// Largest key memcached takes, in bytes.
inline constexpr std::size_t kMaxKeyLength = 250;

// False for keys memcached cannot take: empty, over 250 bytes, or with a byte that is
// whitespace or a control character.
bool valid_key(std::string_view key) noexcept;

// Seconds for memcached's exptime field: 0 for never, relative seconds up to 30 days,
// otherwise an absolute Unix time (clamped to what the server parses, a signed 32-bit
// number). Only for Forever and Relative of at least a second.
std::int64_t exptime(const Ttl& ttl, std::int64_t unix_now) noexcept;

// Django truncates a timeout to whole seconds for memcached: under a second is not kept.
inline Ttl whole_seconds(Ttl ttl) noexcept {
  if (ttl.kind == Ttl::Kind::kRelative && ttl.ms < 1000) return Ttl::Drop();
  return ttl;
}

class MemcachedStore final : public Store {
 public:
  // kInvalidArgument (with `detail`) for an unknown behaviour or an unusable server.
  static Status open(const ClientConfig& cfg, std::unique_ptr<MemcachedStore>& out,
                     std::string& detail);
  ~MemcachedStore() override;
  MemcachedStore(const MemcachedStore&) = delete;
  MemcachedStore& operator=(const MemcachedStore&) = delete;

  Status get(std::string_view key, ValueOut& out) override;
  Status contains(std::string_view key) override;
  Status store(const Write& w, Mode mode, std::uint64_t cas, const Limits& limits) override;
  Status concat(std::string_view key, std::span<const std::byte> data, std::uint32_t flags,
                bool prepend) override;
  Status remove(std::string_view key) override;
  Status touch(std::string_view key, Ttl ttl) override;
  Status incr(std::string_view key, std::int64_t delta, std::int64_t& result) override;
  Status ttl(std::string_view key, std::int64_t& remaining_ms) override;
  Status clear() override;
  StoreStats stats() override;
  [[nodiscard]] std::size_t max_value_size() const noexcept override;
  Status get_many(std::span<const std::string_view> keys, ManyOut& out) override;
  [[nodiscard]] bool blocks() const noexcept override { return true; }
  [[nodiscard]] const char* key_refusal(std::string_view key, bool) const noexcept override {
    return valid_key(key) ? nullptr : "key memcached cannot take";
  }

  // Per-server "stats" (group "" for the general one, or e.g. "settings", "items").
  Status server_stats(const std::string& group, std::vector<ServerStats>& out);
  // The value libmemcached reports for one of pylibmc's behaviour names (tests, checks).
  Status behavior(std::string_view name, std::int64_t& value);
  // "host:port" or the socket path of the server that holds key.
  Status server_for(std::string_view key, std::string& out);
  // Drops every connection (the next call reconnects); also forgets dead-server marks.
  void disconnect();
  [[nodiscard]] bool binary() const noexcept { return cfg_.binary; }
  // Handles in the pool now, between calls, after closing those idle too long (tests).
  [[nodiscard]] std::size_t idle_handles();

 private:
  struct Handle;
  class Lease;  // a handle checked out for one call, returned when it goes
  explicit MemcachedStore(ClientConfig cfg);
  Status build(std::unique_ptr<Handle>& out, std::string& detail) const;
  std::unique_ptr<Handle> check_out();
  void check_in(std::unique_ptr<Handle> h) noexcept;
  void forget_parent_handles();  // under mu_: in a forked child, the parent's are left be
  // Under mu_: moves the handles idle longer than cfg_.idle_timeout_ms to `closed`.
  void close_idle_past_timeout(std::int64_t now, std::vector<std::unique_ptr<Handle>>& closed);
  // Runs fn on a handle, unless key's server is skipped after a timeout (kUnavailable at
  // once); a timeout in fn starts such a skip.
  template <class Fn>
  Status on_key(std::string_view key, Fn&& fn);
  [[nodiscard]] bool skipping() const noexcept;
  void mark_hung(std::uint32_t server, std::int64_t until) noexcept;
  static Status skipped(Handle& h, std::uint32_t server);
  Status fetch_one(Handle& h, std::string_view key, ValueOut* out);
  Status store_now(Handle& h, const Write& w, Mode mode, std::uint64_t cas, time_t expiration);

  ClientConfig cfg_;
  ForkSafeMutex mu_;  // guards idle_, disconnects_ and fork_generation_
  std::vector<std::unique_ptr<Handle>> idle_;  // the longest idle first
  std::uint64_t disconnects_ = 0;  // a handle made before the last disconnect() is closed
  std::uint64_t fork_generation_ = 0;
  // Per server (libmemcached's position; empty when requests are not routed by key):
  // until when it is skipped after a timeout, in now_ms(); skip_until_ is the latest.
  std::vector<std::atomic<std::int64_t>> hung_until_;
  std::atomic<std::int64_t> skip_until_{0};
  std::int64_t retry_ms_ = 2000;
};

}  // namespace nativecache::mc
