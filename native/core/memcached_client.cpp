// MemcachedStore: Django's memcached semantics over libmemcached's C API.
#include "core/memcached_client.hpp"

#ifdef NATIVECACHE_HAVE_LIBMEMCACHED

#include <libmemcached/memcached.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <iterator>
#include <memory>
#include <ctime>
#include <mutex>
#include <unordered_map>

namespace nativecache::mc {

namespace {

constexpr std::int64_t kThirtyDays = 60 * 60 * 24 * 30;

// Error text for the thread's last failed call; Status::what points into it until the
// thread's next failure, long enough for the binding to raise it.
thread_local std::string t_error;

Status failure(Code code, std::string text) {
  t_error = std::move(text);
  return Status::Of(code, t_error.c_str());
}

// libmemcached's message without its source location (" -> libmemcached/...").
std::string last_error(const memcached_st* mc, memcached_return_t rc) {
  const char* msg = memcached_last_error_message(mc);
  std::string text = msg != nullptr && *msg != '\0' ? msg : memcached_strerror(mc, rc);
  if (auto arrow = text.find(" -> "); arrow != std::string::npos) text.resize(arrow);
  if (text.starts_with("(0x")) {  // the handle's address
    if (auto close = text.find(") "); close != std::string::npos) text.erase(0, close + 2);
  }
  for (auto gap = text.find(",  "); gap != std::string::npos; gap = text.find(",  ")) {
    text.erase(gap + 1, 1);
  }
  return "memcached: " + text;
}

// Codes that mean the server could not be used; everything that is not a reply about
// the key itself.
Status server_failure(const memcached_st* mc, memcached_return_t rc) {
  switch (rc) {
    case MEMCACHED_E2BIG:
      return failure(Code::kTooLarge, last_error(mc, rc));
    case MEMCACHED_BAD_KEY_PROVIDED:
    case MEMCACHED_KEY_TOO_BIG:
      return failure(Code::kBadKey, last_error(mc, rc));
    case MEMCACHED_SERVER_MEMORY_ALLOCATION_FAILURE:
      return failure(Code::kNoSpace, last_error(mc, rc));
    case MEMCACHED_INVALID_ARGUMENTS:
    case MEMCACHED_NOT_SUPPORTED:
      return failure(Code::kInvalidArgument, last_error(mc, rc));
    default:
      return failure(Code::kUnavailable, last_error(mc, rc));
  }
}

bool success(memcached_return_t rc) noexcept {
  return rc == MEMCACHED_SUCCESS || rc == MEMCACHED_STORED || rc == MEMCACHED_DELETED ||
         rc == MEMCACHED_END || rc == MEMCACHED_BUFFERED;
}

struct BehaviorInfo {
  memcached_behavior_t id;
  enum class Kind : std::uint8_t { kInt, kHash, kDistribution, kOffOnly } kind;
};

const std::unordered_map<std::string_view, BehaviorInfo>& behavior_table() {
  using K = BehaviorInfo::Kind;
  static const std::unordered_map<std::string_view, BehaviorInfo> table = {
      {"no_block", {MEMCACHED_BEHAVIOR_NO_BLOCK, K::kInt}},
      {"tcp_nodelay", {MEMCACHED_BEHAVIOR_TCP_NODELAY, K::kInt}},
      {"tcp_keepalive", {MEMCACHED_BEHAVIOR_TCP_KEEPALIVE, K::kInt}},
      {"hash", {MEMCACHED_BEHAVIOR_HASH, K::kHash}},
      {"ketama_hash", {MEMCACHED_BEHAVIOR_KETAMA_HASH, K::kHash}},
      {"ketama", {MEMCACHED_BEHAVIOR_KETAMA, K::kInt}},
      {"ketama_weighted", {MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, K::kInt}},
      {"distribution", {MEMCACHED_BEHAVIOR_DISTRIBUTION, K::kDistribution}},
      {"cas", {MEMCACHED_BEHAVIOR_SUPPORT_CAS, K::kInt}},
      // Buffered or unanswered writes cannot report add/cas results or failures.
      {"buffer_requests", {MEMCACHED_BEHAVIOR_BUFFER_REQUESTS, K::kOffOnly}},
      {"_noreply", {MEMCACHED_BEHAVIOR_NOREPLY, K::kOffOnly}},
      {"verify_keys", {MEMCACHED_BEHAVIOR_VERIFY_KEY, K::kInt}},
      {"connect_timeout", {MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, K::kInt}},
      {"send_timeout", {MEMCACHED_BEHAVIOR_SND_TIMEOUT, K::kInt}},
      {"receive_timeout", {MEMCACHED_BEHAVIOR_RCV_TIMEOUT, K::kInt}},
      {"num_replicas", {MEMCACHED_BEHAVIOR_NUMBER_OF_REPLICAS, K::kInt}},
      {"auto_eject", {MEMCACHED_BEHAVIOR_AUTO_EJECT_HOSTS, K::kInt}},
      {"retry_timeout", {MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, K::kInt}},
      {"_retry_timeout", {MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, K::kInt}},
      {"remove_failed", {MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS, K::kInt}},
      {"failure_limit", {MEMCACHED_BEHAVIOR_SERVER_FAILURE_LIMIT, K::kInt}},
      {"dead_timeout", {MEMCACHED_BEHAVIOR_DEAD_TIMEOUT, K::kInt}},
      {"_io_msg_watermark", {MEMCACHED_BEHAVIOR_IO_MSG_WATERMARK, K::kInt}},
      {"_io_bytes_watermark", {MEMCACHED_BEHAVIOR_IO_BYTES_WATERMARK, K::kInt}},
      {"_io_key_prefetch", {MEMCACHED_BEHAVIOR_IO_KEY_PREFETCH, K::kInt}},
      {"_hash_with_prefix_key", {MEMCACHED_BEHAVIOR_HASH_WITH_PREFIX_KEY, K::kInt}},
      {"_sort_hosts", {MEMCACHED_BEHAVIOR_SORT_HOSTS, K::kInt}},
      {"_poll_timeout", {MEMCACHED_BEHAVIOR_POLL_TIMEOUT, K::kInt}},
      {"_socket_send_size", {MEMCACHED_BEHAVIOR_SOCKET_SEND_SIZE, K::kInt}},
      {"_socket_recv_size", {MEMCACHED_BEHAVIOR_SOCKET_RECV_SIZE, K::kInt}},
  };
  return table;
}

// pylibmc's names for the hash functions and distributions (spaces or underscores).
bool named_value(BehaviorInfo::Kind kind, std::string text, std::uint64_t& out) {
  std::replace(text.begin(), text.end(), '_', ' ');
  static const std::pair<std::string_view, std::uint64_t> hashes[] = {
      {"default", MEMCACHED_HASH_DEFAULT}, {"md5", MEMCACHED_HASH_MD5},
      {"crc", MEMCACHED_HASH_CRC},         {"fnv1 64", MEMCACHED_HASH_FNV1_64},
      {"fnv1a 64", MEMCACHED_HASH_FNV1A_64}, {"fnv1 32", MEMCACHED_HASH_FNV1_32},
      {"fnv1a 32", MEMCACHED_HASH_FNV1A_32}, {"hsieh", MEMCACHED_HASH_HSIEH},
      {"murmur", MEMCACHED_HASH_MURMUR},   {"jenkins", MEMCACHED_HASH_JENKINS},
      {"murmur3", MEMCACHED_HASH_MURMUR3},
  };
  static const std::pair<std::string_view, std::uint64_t> distributions[] = {
      {"modula", MEMCACHED_DISTRIBUTION_MODULA},
      {"consistent", MEMCACHED_DISTRIBUTION_CONSISTENT},
      {"consistent ketama", MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA},
      {"random", MEMCACHED_DISTRIBUTION_RANDOM},
      {"consistent ketama spy", MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA_SPY},
      {"consistent weighted", MEMCACHED_DISTRIBUTION_CONSISTENT_WEIGHTED},
  };
  std::span<const std::pair<std::string_view, std::uint64_t>> names;
  if (kind == BehaviorInfo::Kind::kHash) {
    names = hashes;
  } else {
    names = distributions;
  }
  for (const auto& [name, value] : names) {
    if (name == text) {
      out = value;
      return true;
    }
  }
  return false;
}

const char* kind_names(BehaviorInfo::Kind kind) {
  return kind == BehaviorInfo::Kind::kHash
             ? "default, md5, crc, fnv1_64, fnv1a_64, fnv1_32, fnv1a_32, hsieh, murmur, "
               "jenkins, murmur3"
             : "modula, consistent, consistent_ketama, random, consistent_ketama_spy, "
               "consistent_weighted";
}

std::string server_name(const memcached_instance_st* instance) {
  std::string name = memcached_server_name(instance);
  in_port_t port = memcached_server_port(instance);
  if (name.empty() || name[0] == '/') return name;  // a unix socket
  if (name.find(':') != std::string::npos) name = "[" + name + "]";
  return name + ":" + std::to_string(port);
}

}  // namespace

// A libmemcached handle (its connections) and the reusable result it fetches into.
struct MemcachedStore::Handle {
  memcached_st* mc = nullptr;
  memcached_result_st result{};
  bool result_ready = false;
  std::uint64_t disconnects = 0;  // the store's count when the handle was made
  std::int64_t idle_since_ms = 0;

  Handle() = default;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() {
    if (result_ready) memcached_result_free(&result);
    if (mc != nullptr) memcached_free(mc);
  }
};

bool valid_key(std::string_view key) noexcept {
  if (key.empty() || key.size() > kMaxKeyLength) return false;
  return std::none_of(key.begin(), key.end(), [](char c) {
    auto b = static_cast<unsigned char>(c);
    return b <= 0x20 || b == 0x7f;
  });
}

std::int64_t exptime(const Ttl& ttl, std::int64_t unix_now) noexcept {
  if (ttl.kind != Ttl::Kind::kRelative) return 0;
  std::int64_t seconds = ttl.ms / 1000;
  if (seconds <= kThirtyDays) return seconds;
  // The server reads exptime as a signed 32-bit number; beyond it, the end of its range.
  return std::min<std::int64_t>(unix_now + seconds, INT32_MAX);
}

MemcachedStore::MemcachedStore(ClientConfig cfg) : cfg_(std::move(cfg)) {}

MemcachedStore::~MemcachedStore() {
  // A child must not send "quit" on its parent's connections, which memcached_free does:
  // the inherited handles are left as they are.
  std::lock_guard lock(mu_);
  forget_parent_handles();
}

// A handle checked out of the pool for one call.
class MemcachedStore::Lease {
 public:
  explicit Lease(MemcachedStore& store) : store_(store), h_(store.check_out()) {}
  ~Lease() { store_.check_in(std::move(h_)); }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  Handle& operator*() const noexcept { return *h_; }

 private:
  MemcachedStore& store_;
  std::unique_ptr<Handle> h_;
};

Status MemcachedStore::open(const ClientConfig& cfg, std::unique_ptr<MemcachedStore>& out,
                            std::string& detail) {
  watch_forks();
  if (cfg.servers.empty()) {
    detail = "no memcached server given";
    return Status::Of(Code::kInvalidArgument);
  }
  std::unique_ptr<MemcachedStore> store(new MemcachedStore(cfg));
  std::unique_ptr<Handle> first;
  if (Status s = store->build(first, detail); !s.ok()) return s;
  // Skipping needs the server a key goes to; with random distribution or replicas a
  // request may go elsewhere, so those configurations leave it to libmemcached.
  const bool routed = memcached_behavior_get(first->mc, MEMCACHED_BEHAVIOR_DISTRIBUTION) !=
                          MEMCACHED_DISTRIBUTION_RANDOM &&
                      memcached_behavior_get(first->mc, MEMCACHED_BEHAVIOR_NUMBER_OF_REPLICAS) == 0;
  if (routed) {
    store->hung_until_ = std::vector<std::atomic<std::int64_t>>(memcached_server_count(first->mc));
  }
  store->retry_ms_ = static_cast<std::int64_t>(
                         memcached_behavior_get(first->mc, MEMCACHED_BEHAVIOR_RETRY_TIMEOUT)) *
                     1000;
  store->fork_generation_ = fork_generation();
  first->idle_since_ms = now_ms();
  store->idle_.push_back(std::move(first));
  out = std::move(store);
  return Status::Ok();
}

namespace {

// Applies our defaults, then cfg's behaviours, then adds `servers`.
Status configure(memcached_st* mc, const ClientConfig& cfg, std::span<const ServerSpec> servers,
                 std::string& detail) {
  // Defaults: fail fast, consistent hashing (the same server mapping as pylibmc with
  // ketama), no Nagle delay, cas tokens for gets(). Behaviours are set before the first
  // connection: setting some of them later drops connections.
  const std::pair<memcached_behavior_t, std::uint64_t> defaults[] = {
      {MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, cfg.binary ? 1U : 0U},
      {MEMCACHED_BEHAVIOR_TCP_NODELAY, 1},
      {MEMCACHED_BEHAVIOR_KETAMA, 1},
      {MEMCACHED_BEHAVIOR_SUPPORT_CAS, 1},
      {MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, 1000},
      {MEMCACHED_BEHAVIOR_POLL_TIMEOUT, 1000},
      {MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 2},
  };
  for (const auto& [id, value] : defaults) {
    if (memcached_return_t rc = memcached_behavior_set(mc, id, value); !success(rc)) {
      detail = last_error(mc, rc);
      return Status::Of(Code::kInvalidArgument);
    }
  }
  const auto& table = behavior_table();
  for (const auto& b : cfg.behaviors) {
    auto it = table.find(b.name);
    if (it == table.end()) {
      detail = "unknown memcached behavior '" + b.name + "'";
      return Status::Of(Code::kInvalidArgument);
    }
    const BehaviorInfo& info = it->second;
    bool named = info.kind == BehaviorInfo::Kind::kHash ||
                 info.kind == BehaviorInfo::Kind::kDistribution;
    std::uint64_t value = 0;
    if (!b.text.empty()) {
      if (!named || !named_value(info.kind, b.text, value)) {
        detail = "memcached behavior '" + b.name + "' cannot be '" + b.text + "'";
        if (named) detail += std::string(" (one of: ") + kind_names(info.kind) + ")";
        return Status::Of(Code::kInvalidArgument);
      }
    } else {
      if (b.value < 0 || (info.kind == BehaviorInfo::Kind::kOffOnly && b.value != 0)) {
        detail = "memcached behavior '" + b.name + "' cannot be " + std::to_string(b.value);
        if (info.kind == BehaviorInfo::Kind::kOffOnly) {
          detail += ": every call needs the server's reply";
        }
        return Status::Of(Code::kInvalidArgument);
      }
      value = static_cast<std::uint64_t>(b.value);
    }
    if (memcached_return_t rc = memcached_behavior_set(mc, info.id, value); !success(rc)) {
      detail = "memcached behavior '" + b.name + "': " + last_error(mc, rc);
      return Status::Of(Code::kInvalidArgument);
    }
  }
  for (const auto& server : servers) {
    memcached_return_t rc =
        server.unix_socket
            ? memcached_server_add_unix_socket_with_weight(mc, server.host.c_str(), server.weight)
            : memcached_server_add_with_weight(mc, server.host.c_str(), server.port,
                                               server.weight);
    if (!success(rc)) {
      detail = "memcached server '" + server.host + "': " + last_error(mc, rc);
      return Status::Of(Code::kInvalidArgument);
    }
  }
  return Status::Ok();
}

struct FreeMemcached {
  void operator()(memcached_st* mc) const noexcept { memcached_free(mc); }
};
using UniqueMemcached = std::unique_ptr<memcached_st, FreeMemcached>;

}  // namespace

// A new handle; it connects on its first request.
Status MemcachedStore::build(std::unique_ptr<Handle>& out, std::string& detail) const {
  auto h = std::make_unique<Handle>();
  h->mc = memcached_create(nullptr);
  if (h->mc == nullptr) {
    detail = "memcached_create failed";
    return Status::Of(Code::kIo);
  }
  if (Status s = configure(h->mc, cfg_, cfg_.servers, detail); !s.ok()) return s;
  if (memcached_result_create(h->mc, &h->result) == nullptr) {
    detail = "memcached_result_create failed";
    return Status::Of(Code::kIo);
  }
  h->result_ready = true;
  out = std::move(h);
  return Status::Ok();
}

void MemcachedStore::forget_parent_handles() {
  if (fork_generation_ == fork_generation()) [[likely]] return;
  // In a child of fork(): the inherited sockets belong to the parent. Leave them
  // untouched (freeing a handle would send "quit" on them); new handles connect afresh.
  // The inherited pool is not even read: a thread of the parent may have been growing it
  // at the fork, its buffer half moved. A new, empty one is made over it (the old one and
  // its handles are left allocated, as the mutex is remade over its copy).
  std::construct_at(&idle_);
  for (auto& until : hung_until_) until.store(0, std::memory_order_relaxed);
  skip_until_.store(0, std::memory_order_relaxed);
  fork_generation_ = fork_generation();
}

void MemcachedStore::close_idle_past_timeout(std::int64_t now,
                                             std::vector<std::unique_ptr<Handle>>& closed) {
  if (cfg_.idle_timeout_ms <= 0) return;
  auto fresh = std::find_if(idle_.begin(), idle_.end(), [&](const auto& idle) {
    return now - idle->idle_since_ms <= cfg_.idle_timeout_ms;
  });
  closed.insert(closed.end(), std::make_move_iterator(idle_.begin()),
                std::make_move_iterator(fresh));
  idle_.erase(idle_.begin(), fresh);
}

std::unique_ptr<MemcachedStore::Handle> MemcachedStore::check_out() {
  // Declared before the lock, so the handles closed here are freed after it is released
  // (memcached_free sends "quit" on their connections).
  std::vector<std::unique_ptr<Handle>> closed;
  std::uint64_t disconnects = 0;
  {
    std::lock_guard lock(mu_);
    forget_parent_handles();
    if (cfg_.idle_timeout_ms > 0) close_idle_past_timeout(now_ms(), closed);
    if (!idle_.empty()) {
      std::unique_ptr<Handle> h = std::move(idle_.back());  // the most recently used
      idle_.pop_back();
      return h;
    }
    disconnects = disconnects_;
  }
  // Every call in progress holds one: a new handle, made without the lock (it connects
  // on its first request).
  std::unique_ptr<Handle> h;
  std::string detail;
  if (!build(h, detail).ok()) {
    throw std::bad_alloc();  // the same configuration built before; only allocation fails
  }
  h->disconnects = disconnects;
  return h;
}

void MemcachedStore::check_in(std::unique_ptr<Handle> h) noexcept {
  std::vector<std::unique_ptr<Handle>> closed;  // freed after the lock, as in check_out
  std::lock_guard lock(mu_);
  const std::int64_t now = cfg_.idle_timeout_ms > 0 ? now_ms() : 0;  // idle_ stays in order
  if (fork_generation_ != fork_generation()) {
    static_cast<void>(h.release());  // not ours to close: see forget_parent_handles()
    return;
  }
  try {
    close_idle_past_timeout(now, closed);
    if (h->disconnects != disconnects_ || idle_.size() >= cfg_.max_idle) {
      closed.push_back(std::move(h));
      return;
    }
    h->idle_since_ms = now;
    idle_.push_back(std::move(h));
  } catch (const std::bad_alloc&) {
    // Out of memory: what was not kept is closed (freed by its owner here).
  }
}

std::size_t MemcachedStore::idle_handles() {
  std::vector<std::unique_ptr<Handle>> closed;
  std::lock_guard lock(mu_);
  forget_parent_handles();
  close_idle_past_timeout(now_ms(), closed);
  return idle_.size();
}

bool MemcachedStore::skipping() const noexcept {
  const std::int64_t until = skip_until_.load(std::memory_order_relaxed);
  return until != 0 && now_ms() < until;
}

void MemcachedStore::mark_hung(std::uint32_t server, std::int64_t until) noexcept {
  if (server >= hung_until_.size()) return;
  hung_until_[server].store(until, std::memory_order_relaxed);
  std::int64_t latest = skip_until_.load(std::memory_order_relaxed);
  while (latest < until &&
         !skip_until_.compare_exchange_weak(latest, until, std::memory_order_relaxed)) {
  }
}

Status MemcachedStore::fetch_one(Handle& h, std::string_view key, ValueOut* out) {
  const char* keys[] = {key.data()};
  const std::size_t lengths[] = {key.size()};
  memcached_return_t rc = memcached_mget(h.mc, keys, lengths, 1);
  if (!success(rc)) return server_failure(h.mc, rc);
  bool found = false;
  Status status = Status::Ok();
  while (memcached_fetch_result(h.mc, &h.result, &rc) != nullptr) {
    if (found || !status.ok()) continue;  // drain: a reply must be read to its end
    if (std::string_view(memcached_result_key_value(&h.result),
                         memcached_result_key_length(&h.result)) != key) {
      // Never seen, and never to be trusted: a connection answering for another key.
      status = failure(Code::kUnavailable, "memcached: a reply named another key");
      continue;
    }
    found = true;
    if (out == nullptr) continue;
    std::size_t n = memcached_result_length(&h.result);
    out->flags = memcached_result_flags(&h.result);
    out->cas = memcached_result_cas(&h.result);
    out->size = n;
    if (n > out->capacity) {
      if (out->grow == nullptr) {
        status = Status{Code::kBufferTooSmall, 0, nullptr, n};
        continue;
      }
      out->grow->resize(n);
      out->data = out->grow->data();
      out->capacity = out->grow->size();
    }
    if (n != 0) std::memcpy(out->data, memcached_result_value(&h.result), n);
  }
  if (rc != MEMCACHED_END && rc != MEMCACHED_SUCCESS && rc != MEMCACHED_NOTFOUND) {
    return server_failure(h.mc, rc);
  }
  if (status.code == Code::kUnavailable) {
    memcached_quit(h.mc);  // out of step: the next call reconnects
    return status;
  }
  if (!found) return Status::Of(Code::kNotFound);
  return status;
}

// A server that accepts connections but does not answer (stopped, overloaded, a path
// that drops packets after the handshake) would cost the whole I/O timeout on every
// call for its keys: libmemcached marks only servers it cannot connect to. So a server
// whose reply timed out is skipped here for retry_timeout, as one that refused is.
// Nothing is hashed twice while no server is skipped.
template <class Fn>
Status MemcachedStore::on_key(std::string_view key, Fn&& fn) {
  Lease lease(*this);
  Handle& h = *lease;
  if (skipping()) {
    const std::uint32_t server = memcached_generate_hash(h.mc, key.data(), key.size());
    if (server < hung_until_.size() &&
        now_ms() < hung_until_[server].load(std::memory_order_relaxed)) {
      return skipped(h, server);
    }
  }
  Status s = fn(h);
  if (s.code == Code::kUnavailable && memcached_last_error(h.mc) == MEMCACHED_TIMEOUT) {
    mark_hung(memcached_generate_hash(h.mc, key.data(), key.size()), now_ms() + retry_ms_);
  }
  return s;
}

Status MemcachedStore::skipped(Handle& h, std::uint32_t server) {
  return failure(Code::kUnavailable,
                 "memcached: " + server_name(memcached_server_instance_by_position(h.mc, server)) +
                     " did not answer in time; skipped until retry_timeout has passed");
}

Status MemcachedStore::get(std::string_view key, ValueOut& out) {
  if (!valid_key(key)) return Status::Of(Code::kBadKey, "key memcached cannot take");
  return on_key(key, [&](Handle& h) { return fetch_one(h, key, &out); });
}

Status MemcachedStore::contains(std::string_view key) {
  if (!valid_key(key)) return Status::Of(Code::kBadKey, "key memcached cannot take");
  return on_key(key, [&](Handle& h) { return fetch_one(h, key, nullptr); });
}

Status MemcachedStore::get_many(std::span<const std::string_view> keys, ManyOut& out) {
  if (keys.empty()) return Status::Ok();
  std::vector<const char*> ptrs;
  std::vector<std::size_t> lengths;
  ptrs.reserve(keys.size());
  lengths.reserve(keys.size());
  std::unordered_map<std::string_view, std::size_t> index;
  index.reserve(keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (!valid_key(keys[i])) return Status::Of(Code::kBadKey, "key memcached cannot take");
    if (!index.emplace(keys[i], i).second) continue;  // asked twice: fetch once
    ptrs.push_back(keys[i].data());
    lengths.push_back(keys[i].size());
  }
  Lease lease(*this);
  Handle& h = *lease;
  Status skip = Status::Ok();  // keys of servers skipped after a timeout are not asked
  if (skipping()) {
    const std::int64_t now = now_ms();
    std::size_t kept = 0;
    for (std::size_t i = 0; i < ptrs.size(); ++i) {
      const std::uint32_t server = memcached_generate_hash(h.mc, ptrs[i], lengths[i]);
      if (server < hung_until_.size() &&
          now < hung_until_[server].load(std::memory_order_relaxed)) {
        if (skip.ok()) skip = skipped(h, server);
        continue;
      }
      ptrs[kept] = ptrs[i];
      lengths[kept] = lengths[i];
      ++kept;
    }
    ptrs.resize(kept);
    lengths.resize(kept);
    if (kept == 0) return skip;
  }
  memcached_return_t rc = memcached_mget(h.mc, ptrs.data(), lengths.data(), ptrs.size());
  // SOME_ERRORS: a server failed, the others still answer.
  if (!success(rc) && rc != MEMCACHED_SOME_ERRORS) return server_failure(h.mc, rc);
  Status status = rc == MEMCACHED_SOME_ERRORS ? server_failure(h.mc, rc) : Status::Ok();
  memcached_return_t frc = MEMCACHED_SUCCESS;
  while (memcached_fetch_result(h.mc, &h.result, &frc) != nullptr) {
    std::string_view k(memcached_result_key_value(&h.result),
                       memcached_result_key_length(&h.result));
    auto it = index.find(k);
    if (it == index.end()) continue;
    std::size_t n = memcached_result_length(&h.result);
    std::size_t offset = out.bytes.size();
    const auto* v = reinterpret_cast<const std::byte*>(memcached_result_value(&h.result));
    out.bytes.insert(out.bytes.end(), v, v + n);
    out.items.push_back({it->second, memcached_result_flags(&h.result), offset, n});
  }
  if (frc != MEMCACHED_END && frc != MEMCACHED_SUCCESS && frc != MEMCACHED_NOTFOUND &&
      status.ok()) {
    status = server_failure(h.mc, frc);
  }
  if (status.code == Code::kUnavailable) {
    // The servers whose replies timed out are skipped from now on, as on_key does.
    const std::int64_t until = now_ms() + retry_ms_;
    for (std::uint32_t i = 0; i < hung_until_.size(); ++i) {
      const memcached_instance_st* server = memcached_server_instance_by_position(h.mc, i);
      if (server != nullptr && memcached_server_error_return(server) == MEMCACHED_TIMEOUT) {
        mark_hung(i, until);
      }
    }
  }
  return status.ok() ? skip : status;
}

Status MemcachedStore::store_now(Handle& h, const Write& w, Mode mode, std::uint64_t cas,
                                 time_t expiration) {
  const auto* value = reinterpret_cast<const char*>(w.data.data());
  const char* key = w.key.data();
  memcached_return_t rc = MEMCACHED_SUCCESS;
  switch (mode) {
    case Mode::kSet:
      rc = memcached_set(h.mc, key, w.key.size(), value, w.data.size(), expiration, w.flags);
      break;
    case Mode::kAdd:
      rc = memcached_add(h.mc, key, w.key.size(), value, w.data.size(), expiration, w.flags);
      if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS) {
        return Status::Of(Code::kExists);
      }
      break;
    case Mode::kReplace:
      rc = memcached_replace(h.mc, key, w.key.size(), value, w.data.size(), expiration,
                             w.flags);
      if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_NOTFOUND) {
        return Status::Of(Code::kNotFound);
      }
      break;
    case Mode::kCas:
      rc = memcached_cas(h.mc, key, w.key.size(), value, w.data.size(), expiration, w.flags,
                         cas);
      if (rc == MEMCACHED_DATA_EXISTS) return Status::Of(Code::kExists);
      if (rc == MEMCACHED_NOTFOUND || rc == MEMCACHED_NOTSTORED) {
        return Status::Of(Code::kNotFound);
      }
      break;
  }
  if (success(rc)) return Status::Ok();
  return server_failure(h.mc, rc);
}

// A timeout that keeps nothing. Sent as an expiry, -1 is written as 4294967295 in the
// text protocol (which the server rejects, leaving the value's bytes to be read as a
// command) and stored for ever in the binary one. A set is a delete. add, replace and
// cas must still answer as the command would (exists, missing, stale token) and must
// stay one command, so another client's write between a check and a delete is never
// lost: they are sent with an absolute expiry before the server started, which it
// stores as already expired in both protocols.
constexpr time_t kAlreadyExpired = kThirtyDays + 1;

Status MemcachedStore::store(const Write& w, Mode mode, std::uint64_t cas, const Limits&) {
  if (!valid_key(w.key)) return Status::Of(Code::kBadKey, "key memcached cannot take");
  return on_key(w.key, [&](Handle& h) -> Status {
    Write write = w;
    write.ttl = whole_seconds(w.ttl);
    time_t expiration = kAlreadyExpired;
    if (write.ttl.kind == Ttl::Kind::kDrop) {
      if (mode == Mode::kSet) {
        memcached_return_t rc = memcached_delete(h.mc, w.key.data(), w.key.size(), 0);
        if (success(rc) || rc == MEMCACHED_NOTFOUND) return Status::Ok();
        return server_failure(h.mc, rc);
      }
    } else {
      expiration = static_cast<time_t>(exptime(write.ttl, std::time(nullptr)));
    }
    Status s = store_now(h, write, mode, cas, expiration);
    if (s.code == Code::kTooLarge) {
      // Django's rule for set: a value that failed to be stored must not leave the old one
      // behind (the cached_db session backend relies on it). add, replace and cas change
      // nothing when they fail, as Django's memcached backends do.
      if (mode == Mode::kSet) memcached_delete(h.mc, w.key.data(), w.key.size(), 0);
      return failure(Code::kTooLarge, "the memcached server refused the value as too large "
                                      "(its item size limit, memcached -I, is 1 MiB by default)");
    }
    return s;
  });
}

Status MemcachedStore::concat(std::string_view key, std::span<const std::byte> data,
                              std::uint32_t flags, bool prepend) {
  if (!valid_key(key)) return Status::Of(Code::kBadKey, "key memcached cannot take");
  return on_key(key, [&](Handle& h) -> Status {
    // The server appends whatever it holds, keeping its flags: bytes after a str, or
    // after a pickle or compressed data, would make a value that no longer decodes. So
    // the stored flags are read first (the value is sent, not copied). A write of another
    // type by another client between the two commands is not seen: memcached has no
    // append that is conditional on a cas token in libmemcached's API.
    ValueOut stored;
    Status seen = fetch_one(h, key, &stored);
    if (seen.code == Code::kNotFound) return seen;
    if (!seen.ok() && seen.code != Code::kBufferTooSmall) return seen;
    if (stored.flags != flags) return Status::Of(Code::kTypeMismatch);
    const auto* value = reinterpret_cast<const char*>(data.data());
    memcached_return_t rc =
        prepend ? memcached_prepend(h.mc, key.data(), key.size(), value, data.size(), 0, flags)
                : memcached_append(h.mc, key.data(), key.size(), value, data.size(), 0, flags);
    if (success(rc)) return Status::Ok();
    if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_NOTFOUND) return Status::Of(Code::kNotFound);
    return server_failure(h.mc, rc);
  });
}

Status MemcachedStore::remove(std::string_view key) {
  if (!valid_key(key)) return Status::Of(Code::kBadKey, "key memcached cannot take");
  return on_key(key, [&](Handle& h) -> Status {
    memcached_return_t rc = memcached_delete(h.mc, key.data(), key.size(), 0);
    if (success(rc)) return Status::Ok();
    if (rc == MEMCACHED_NOTFOUND) return Status::Of(Code::kNotFound);
    return server_failure(h.mc, rc);
  });
}

Status MemcachedStore::touch(std::string_view key, Ttl ttl) {
  if (!valid_key(key)) return Status::Of(Code::kBadKey, "key memcached cannot take");
  return on_key(key, [&](Handle& h) -> Status {
    ttl = whole_seconds(ttl);
    memcached_return_t rc;
    if (ttl.kind == Ttl::Kind::kDrop) {
      rc = memcached_delete(h.mc, key.data(), key.size(), 0);
    } else if (ttl.kind == Ttl::Kind::kKeep) {
      return fetch_one(h, key, nullptr);
    } else {
      rc = memcached_touch(h.mc, key.data(), key.size(),
                           static_cast<time_t>(exptime(ttl, std::time(nullptr))));
    }
    if (success(rc)) return Status::Ok();
    if (rc == MEMCACHED_NOTFOUND) return Status::Of(Code::kNotFound);
    return server_failure(h.mc, rc);
  });
}

Status MemcachedStore::incr(std::string_view key, std::int64_t delta, std::int64_t& result) {
  if (!valid_key(key)) return Status::Of(Code::kBadKey, "key memcached cannot take");
  const std::uint64_t offset = delta < 0 ? 0 - static_cast<std::uint64_t>(delta)
                                         : static_cast<std::uint64_t>(delta);
  // The _by_key calls (the key is its own group key, as in memcached_increment) take a
  // 64-bit offset, where memcached_increment takes 32 bits: any delta is one command,
  // atomic on the server, and keeps the entry's expiry.
  auto add = [&](Handle& h, bool up, std::uint64_t by, std::uint64_t& value) {
    return up ? memcached_increment_by_key(h.mc, key.data(), key.size(), key.data(),
                                           key.size(), by, &value)
              : memcached_decrement_by_key(h.mc, key.data(), key.size(), key.data(),
                                           key.size(), by, &value);
  };
  return on_key(key, [&](Handle& h) -> Status {
    std::uint64_t value = 0;
    const bool up = delta >= 0;
    memcached_return_t rc = add(h, up, offset, value);
    if (success(rc)) {
      // The server wraps an incr past 2**64 (the sum is then below the offset) and takes
      // values up to 2**64 - 1; past INT64_MAX or wrapped, the command is undone and the
      // caller adds in Python (under cas), as for any value the server cannot add to. An
      // incr is undone by adding 2**64 - offset, which wraps back exactly (a decr would
      // stop at 0); a decr that left more than INT64_MAX, by adding the offset again.
      const bool wrapped = up && value < offset;
      if (wrapped || value > static_cast<std::uint64_t>(INT64_MAX)) {
        std::uint64_t ignored = 0;
        static_cast<void>(up ? add(h, true, 0 - offset, ignored) : add(h, true, offset, ignored));
        return Status::Of(Code::kOverflow);
      }
      result = static_cast<std::int64_t>(value);
      return Status::Ok();
    }
    if (rc == MEMCACHED_NOTFOUND) return Status::Of(Code::kNotFound);
    // The text protocol answers CLIENT_ERROR for a value that is not an unsigned decimal;
    // the binary one reports the same as a failed read, with the connection intact.
    if (rc == MEMCACHED_CLIENT_ERROR ||
        (cfg_.binary && rc == MEMCACHED_UNKNOWN_READ_FAILURE)) {
      return Status::Of(Code::kNotNumeric);
    }
    return server_failure(h.mc, rc);
  });
}

Status MemcachedStore::ttl(std::string_view, std::int64_t&) {
  return Status::Of(Code::kInvalidArgument,
                    "memcached cannot report a key's remaining time (ttl)");
}

Status MemcachedStore::clear() {
  Lease lease(*this);
  Handle& h = *lease;
  memcached_return_t rc = memcached_flush(h.mc, 0);
  if (success(rc)) return Status::Ok();
  return server_failure(h.mc, rc);
}

StoreStats MemcachedStore::stats() {
  StoreStats total;
  std::vector<ServerStats> servers;
  if (!server_stats("", servers).ok()) return total;
  for (const auto& server : servers) {
    for (const auto& [name, value] : server.values) {
      auto number = static_cast<std::uint64_t>(std::strtoull(value.c_str(), nullptr, 10));
      if (name == "get_hits") total.hits += number;
      else if (name == "get_misses") total.misses += number;
      else if (name == "cmd_set") total.sets += number;
      else if (name == "evictions") total.evictions += number;
      else if (name == "expired_unfetched") total.expirations += number;
      else if (name == "curr_items") total.items += number;
      else if (name == "bytes") total.bytes += number;
      else if (name == "limit_maxbytes") total.capacity += number;
    }
  }
  return total;
}

// Each server is asked on a connection of its own: libmemcached's stats call over
// several servers gives up on all of them when one cannot be reached.
Status MemcachedStore::server_stats(const std::string& group, std::vector<ServerStats>& out) {
  out.clear();
  auto collect = [](const memcached_instance_st*, const char* key, std::size_t klen,
                    const char* value, std::size_t vlen, void* context) -> memcached_return_t {
    auto& entry = *static_cast<ServerStats*>(context);
    entry.values.emplace_back(std::string(key, klen), std::string(value, vlen));
    return MEMCACHED_SUCCESS;
  };
  for (const auto& spec : cfg_.servers) {
    UniqueMemcached mc(memcached_create(nullptr));
    if (mc == nullptr) throw std::bad_alloc();
    std::string detail;
    ServerStats& entry = out.emplace_back();
    if (Status s = configure(mc.get(), cfg_, std::span(&spec, 1), detail); !s.ok()) {
      entry.server = spec.host;
      entry.error = detail;
      continue;
    }
    entry.server = server_name(memcached_server_instance_by_position(mc.get(), 0));
    memcached_return_t rc = memcached_stat_execute(
        mc.get(), group.empty() ? nullptr : group.c_str(), collect, &entry);
    if (!success(rc) || entry.values.empty()) {
      entry.values.clear();
      entry.error = last_error(mc.get(), rc);
    }
  }
  return Status::Ok();
}

Status MemcachedStore::behavior(std::string_view name, std::int64_t& value) {
  const auto& table = behavior_table();
  auto it = table.find(name);
  if (name == "binary_protocol") {
    value = cfg_.binary ? 1 : 0;
    return Status::Ok();
  }
  if (it == table.end()) return Status::Of(Code::kInvalidArgument, "unknown memcached behavior");
  Lease lease(*this);
  value = static_cast<std::int64_t>(memcached_behavior_get((*lease).mc, it->second.id));
  return Status::Ok();
}

Status MemcachedStore::server_for(std::string_view key, std::string& out) {
  if (!valid_key(key)) return Status::Of(Code::kBadKey, "key memcached cannot take");
  Lease lease(*this);
  Handle& h = *lease;
  memcached_return_t rc = MEMCACHED_SUCCESS;
  const memcached_instance_st* server = memcached_server_by_key(h.mc, key.data(), key.size(), &rc);
  if (server == nullptr) return server_failure(h.mc, rc);
  out = server_name(server);
  return Status::Ok();
}

void MemcachedStore::disconnect() {
  std::vector<std::unique_ptr<Handle>> closed;  // freed (connections closed) after the lock
  std::lock_guard lock(mu_);
  forget_parent_handles();
  closed.swap(idle_);
  ++disconnects_;  // the handles in use now are closed when they come back
  // Servers that timed out are asked again.
  for (auto& until : hung_until_) until.store(0, std::memory_order_relaxed);
  skip_until_.store(0, std::memory_order_relaxed);
}

std::size_t MemcachedStore::max_value_size() const noexcept {
  // The server decides (memcached -I); a refused value is reported as kTooLarge.
  return SIZE_MAX;
}

}  // namespace nativecache::mc

#endif  // NATIVECACHE_HAVE_LIBMEMCACHED
