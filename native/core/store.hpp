// The interface every store implements below the one Python binding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/clock.hpp"
#include "core/status.hpp"

namespace nativecache {

// Where a get copies a value: caller-owned memory, so a store never allocates for it.
// A store that cannot cheaply ask again (a network round trip) grows `grow` instead of
// reporting kBufferTooSmall, and points `data` into it.
struct ValueOut {
  std::byte* data = nullptr;
  std::size_t capacity = 0;
  std::size_t size = 0;
  std::uint32_t flags = 0;
  std::uint64_t cas = 0;
  std::vector<std::byte>* grow = nullptr;
  // Stamps, for a caller that keeps decoded values: a store whose records carry them
  // reports `epoch` (non-zero; with `cas`, it names one write of one value in the store)
  // and, when the record is still the one `known_epoch`/`known_cas` name, sets
  // `unchanged` and copies nothing. Other stores leave `epoch` 0 and ignore the rest.
  std::uint64_t known_epoch = 0;
  std::uint64_t known_cas = 0;
  std::uint64_t epoch = 0;
  bool unchanged = false;
};

// What get_many delivers: the values found, packed into one buffer.
struct ManyOut {
  struct Item {
    std::size_t index;   // position of the key in the request
    std::uint32_t flags;
    std::size_t offset, size;
  };
  std::vector<std::byte> bytes;
  std::vector<Item> items;
};

// Django's MAX_ENTRIES / CULL_FREQUENCY, read live from the cache instance per call.
struct Limits {
  std::int64_t max_entries = 0;
  std::int64_t cull_frequency = 3;
  bool enforce = false;
};

struct Write {
  std::string_view key;
  std::span<const std::byte> data;
  std::uint32_t flags = 0;
  Ttl ttl;
};

enum class Mode : std::uint8_t { kSet, kAdd, kReplace, kCas };

struct StoreStats {
  std::uint64_t hits = 0, misses = 0, sets = 0, evictions = 0, expirations = 0;
  std::uint64_t items = 0, bytes = 0, recoveries = 0, capacity = 0;
};

class Store {
 public:
  virtual ~Store() = default;
  // kNotFound on a miss; kBufferTooSmall (with `needed`) when out cannot hold the value.
  virtual Status get(std::string_view key, ValueOut& out) = 0;
  virtual Status contains(std::string_view key) = 0;
  // kExists: add on a live key or a cas token mismatch; kNotFound: replace/cas on a miss.
  virtual Status store(const Write& w, Mode mode, std::uint64_t cas, const Limits& limits) = 0;
  // Appends (or prepends) data to a live value with the same flags.
  virtual Status concat(std::string_view key, std::span<const std::byte> data,
                        std::uint32_t flags, bool prepend) = 0;
  virtual Status remove(std::string_view key) = 0;
  virtual Status touch(std::string_view key, Ttl ttl) = 0;
  // kNotNumeric when the value is not an integer stored as decimal text.
  virtual Status incr(std::string_view key, std::int64_t delta, std::int64_t& result) = 0;
  // remaining_ms = -1 for an entry that never expires.
  virtual Status ttl(std::string_view key, std::int64_t& remaining_ms) = 0;
  virtual Status clear() = 0;
  virtual StoreStats stats() = 0;
  [[nodiscard]] virtual std::size_t max_value_size() const noexcept = 0;

  // Every key's value that is present. A store that fails part way returns its error
  // with what it found so far in `out`. The default asks for one key at a time.
  virtual Status get_many(std::span<const std::string_view> keys, ManyOut& out);
  // Why the store would refuse key (kBadKey) when writing it, or, when not `writing`,
  // when looking it up; nullptr when it takes it. Lets a batch be checked whole before
  // its first write.
  [[nodiscard]] virtual const char* key_refusal(std::string_view /*key*/,
                                                bool /*writing*/) const noexcept {
    return nullptr;
  }
  // True when calls wait on I/O: the binding then releases the GIL around them.
  [[nodiscard]] virtual bool blocks() const noexcept { return false; }

  // Appends every live key, as stored (the made key), in the store's own order. Not a
  // snapshot: entries written or removed meanwhile may or may not be listed; expired ones
  // never are. For management commands, not for serving requests. A store that cannot
  // list its keys (memcached, dummy) returns kUnsupported.
  virtual Status keys(std::vector<std::string>& out);
};

inline constexpr const char* kNoKeyListing = "this store cannot list its keys";

}  // namespace nativecache
