// One shard: a hash index over a ring of records, evicted by CLOCK (second chance).
// Every method runs with the shard's lock held and does no allocation, no syscall and
// no Python call. Methods report damage (a bad offset or length) by returning false or
// kNone; the caller then resets the shard.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <string_view>

#include "core/shm/layout.hpp"

namespace nativecache::shm {

class ShardView {
 public:
  static constexpr std::uint32_t kNone = 0xFFFFFFFFu;

  ShardView(SegmentHeader* seg, std::byte* shard_base, std::uint32_t index) noexcept;

  ShardHeader& header() noexcept { return *h_; }

  struct Found {
    bool corrupt = false;
    std::uint32_t* link = nullptr;  // the slot pointing at the record
    std::uint32_t off = kNone;
    Record* rec = nullptr;
  };
  // Finds a live record; an expired one is unlinked (counted) and reported missing.
  Found find(std::string_view key, std::uint32_t hash, std::int64_t now) noexcept;

  std::byte* key_of(Record* r) noexcept { return reinterpret_cast<std::byte*>(r + 1); }
  std::byte* value_of(Record* r) noexcept { return key_of(r) + r->key_len; }
  // Bytes a value may grow to inside its record without moving.
  static std::uint32_t value_room(const Record* r) noexcept {
    return r->total - static_cast<std::uint32_t>(sizeof(Record)) - r->key_len;
  }

  void unlink(std::uint32_t* link, std::uint32_t off) noexcept;

  // Appends a record with the given key and value parts (concatenated) and links it
  // at the head of its bucket. kNone when the ring turned out to be damaged.
  std::uint32_t insert(std::string_view key, std::uint32_t hash,
                       std::span<const std::byte> first, std::span<const std::byte> second,
                       std::uint16_t flags, std::int64_t expire, std::int64_t now) noexcept;

  // Evicts up to n live records (expired first, then by CLOCK), stopping early once the
  // segment-wide count is down to floor (other writers cull too). false on damage.
  bool cull(std::uint32_t n, std::int64_t now,
            std::int64_t floor = std::numeric_limits<std::int64_t>::min()) noexcept;

  // Forgets everything in the shard (after damage, on clear()).
  void reset() noexcept;

  // Copies the key of every live, unexpired record into buf, each as its length (a
  // native-endian u16) then its bytes, and sets `needed` to the length of the whole
  // listing; when that is more than buf.size(), the keys past the end were not copied
  // and the caller asks again with a larger buffer (after unlocking: no allocation
  // here). A record takes 40 bytes plus its key in the ring and a listed key 2 plus
  // the key, so a listing is shorter than the ring: a buffer as large as the ring always
  // fits, and a longer listing is damage. false on damage.
  bool copy_keys(std::int64_t now, std::span<std::byte> buf, std::size_t& needed) noexcept;

  // Unique in the segment: shard i hands out i + 1, i + 1 + n, i + 1 + 2n, ...
  std::uint64_t next_cas() noexcept { return h_->next_cas++ * seg_->n_shards + index_ + 1; }

  // head, tail and used in range, aligned and consistent, and the counts within what
  // the ring can hold (each live record takes 40 bytes or more of live_bytes, which is
  // part of used): all of them come from shared memory, which damage may have reached.
  bool ring_sane() const noexcept;

  // Test hook: leaves a half-written record at the head, as a writer killed mid-copy would.
  void scribble_torn_write() noexcept;

 private:
  Record* at(std::uint32_t off) noexcept;  // validated; nullptr when off is bad
  bool expired(const Record* r, std::int64_t now) const noexcept {
    return r->expire != 0 && r->expire <= now;
  }
  std::uint32_t* link_to(std::uint32_t off, std::uint32_t hash) noexcept;
  void drop(std::uint32_t* link, std::uint32_t off, bool expired) noexcept;
  std::uint32_t reserve(std::uint32_t n, std::int64_t now) noexcept;
  bool evict_at_tail(bool second_chance, std::int64_t now, bool* removed_live) noexcept;
  void pad_head() noexcept;
  void advance_tail(std::uint32_t n) noexcept;

  SegmentHeader* seg_;
  ShardHeader* h_;
  std::uint32_t* buckets_;
  std::byte* ring_;
  std::uint32_t cap_;
  std::uint32_t mask_;
  std::uint32_t max_chain_;
  std::uint32_t index_;
};

}  // namespace nativecache::shm
