// The shared-memory store: one named segment, N shards, each under its own robust
// process-shared mutex. A process killed inside a critical section leaves its shard
// dirty; the next locker resets that shard (the cache forgets, it never lies or hangs).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/shm/segment.hpp"
#include "core/shm/shard.hpp"
#include "core/store.hpp"

namespace nativecache::shm {

class ShmStore final : public Store {
 public:
  static Status open(const SegmentOptions& opts, std::unique_ptr<ShmStore>& out,
                     std::string& detail);

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
  // A record holds a key of up to 65535 bytes; a longer one is absent on reads.
  [[nodiscard]] const char* key_refusal(std::string_view key,
                                        bool writing) const noexcept override {
    return writing && key.size() > kMaxKeyLength ? "key longer than 65535 bytes" : nullptr;
  }
  static constexpr std::size_t kMaxKeyLength = 0xFFFF;
  // Lists one shard at a time under its lock; see the comment in shm_store.cpp.
  Status keys(std::vector<std::string>& out) override;

  const SegmentHeader& header() const noexcept { return current_->header(); }
  std::uint32_t shard_of(std::string_view key) const noexcept;
  const std::string& name() const noexcept { return opts_.name; }

  // Test hook: takes the key's shard lock, leaves a torn record, writes one byte to
  // notify_fd and sleeps for ever (the test kills the process).
  [[noreturn]] void debug_hold_lock(std::string_view key, int notify_fd);

 private:
  class ShardLock;

  // One attached segment and the views of its shards. An operation resolves the current
  // mapping once and then uses only it: another thread may re-attach while this one
  // waits for a shard lock (with the GIL released), and the waiter must go on with the
  // segment it started on (its views, its generation in stamps, its recovery count).
  struct Mapping {
    std::unique_ptr<Segment> seg;
    std::vector<ShardView> shards;
    // Operations working on it now (InUse); a retired mapping is unmapped at 0.
    std::atomic<std::int64_t> users{0};
    std::int64_t lock_timeout_ms = 0;  // SegmentOptions::lock_timeout_ms
    SegmentHeader& header() const noexcept { return *seg->header(); }
    ShardView& shard_for(std::string_view key, std::uint32_t& hash) noexcept;
  };

  explicit ShmStore(SegmentOptions opts) : opts_(std::move(opts)) {}
  Status attach(std::string& detail);
  // attach() for an operation that found its segment no longer ready (the GIL held).
  Status reattach();
  void install(std::unique_ptr<Segment> seg);
  // The current mapping, re-attached first when its segment is no longer ready.
  Status attached(Mapping*& out);
  void cull_all(Mapping& m, std::int64_t max_entries, std::int64_t frequency, std::int64_t now);
  static void recover(Mapping& m, ShardView& v) noexcept;
  // Sets the segment's item count to the sum of the shards' counts, and returns it.
  // Takes every shard's lock: the caller holds none.
  static std::int64_t recount(Mapping& m);

  SegmentOptions opts_;
  std::unique_ptr<Mapping> current_;
  // Mappings replaced after a mismatch stay while an operation still uses one (another
  // thread may be waiting on one of their locks, holding one of their views): each
  // keeps its whole segment in memory, even unlinked. Unmapped once unused (attached()).
  std::vector<std::unique_ptr<Mapping>> retired_;
};

}  // namespace nativecache::shm
