// The bytes of a shared-memory segment. Everything is addressed by 32-bit offsets from
// a shard's ring (workers map the segment at different addresses), and every offset or
// length read back is validated before use.
//
//   [SegmentHeader, 4 KiB][shard 0][shard 1]...   shard = [ShardHeader][buckets][ring]
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace nativecache::shm {

inline constexpr std::uint64_t kMagic = 0x314d48534e43444eULL;  // "NDCNSHM1"
inline constexpr std::uint32_t kLayoutVersion = 5;
inline constexpr std::size_t kHeaderBytes = 4096;

enum SegmentState : std::uint32_t { kInitialising = 0, kReady = 1, kRetired = 2 };

struct alignas(64) SegmentHeader {
  std::uint64_t magic;
  std::uint32_t layout_version;
  std::uint32_t creator_pid;
  std::uint64_t abi_fingerprint;
  std::uint64_t total_size;
  std::uint64_t generation;  // random, never 0: with a record's cas, names its value
  std::uint64_t shards_offset;
  std::uint64_t shard_stride;
  std::uint32_t n_shards;
  std::uint32_t bucket_count;   // per shard, a power of two
  std::uint32_t ring_capacity;  // per shard, a multiple of 8
  std::uint32_t max_item_size;  // bound on one record's payload (key + value)
  // Read on every operation: a retired or damaged segment is reattached by name.
  alignas(64) std::atomic<std::uint32_t> state;
  alignas(64) std::atomic<std::int64_t> item_count;  // all shards, for MAX_ENTRIES
  std::atomic<std::uint64_t> recoveries;
  // Set by a shard reset: item_count took the shard's own count, which the damage that
  // caused the reset may have reached, so the next write counts every shard again.
  std::atomic<std::uint32_t> count_stale;
  std::uint64_t hash_secret[2];  // random: the key of keyed_hash() for every key here
};
static_assert(sizeof(SegmentHeader) <= kHeaderBytes);
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
static_assert(std::atomic<std::int64_t>::is_always_lock_free);

struct alignas(64) ShardHeader {
  pthread_mutex_t mutex;
  std::uint8_t dirty;           // set while a mutation is half done
  std::uint32_t head;           // next write offset in the ring
  std::uint32_t tail;           // oldest record
  std::uint32_t used;           // ring bytes between tail and head (live, dead, pad)
  std::atomic<std::uint32_t> items;
  std::uint64_t live_bytes;     // ring bytes held by live records
  std::uint64_t next_cas;
  std::uint64_t hits, misses, sets, evictions, expirations;
};
inline constexpr std::size_t kShardHeaderBytes = 256;
static_assert(sizeof(ShardHeader) <= kShardHeaderBytes);

enum RecordKind : std::uint8_t { kLive = 0xA1, kDead = 0xD3, kPad = 0x9B };

struct Record {
  std::uint32_t next;     // offset + 1 of the next record in the bucket chain; 0 ends it
  std::uint32_t hash;     // low 32 bits of the key hash
  std::uint32_t total;    // ring bytes of this record, a multiple of 8
  std::uint32_t val_len;
  std::uint16_t key_len;
  std::uint16_t flags;    // codec flags
  std::uint8_t kind;
  std::uint8_t ref;       // CLOCK reference bit
  std::uint16_t reserved;
  std::int64_t expire;    // now_ms() deadline; 0 = never
  std::uint64_t cas;       // unique in the segment: no two writes of any key share one
};
static_assert(sizeof(Record) == 40);

// memcpy that accepts an empty source: an empty span or string_view may hold nullptr,
// which memcpy must never be given, even for zero bytes.
inline void copy_bytes(void* dst, const void* src, std::size_t n) noexcept {
  if (n != 0) std::memcpy(dst, src, n);
}

inline constexpr std::uint32_t align8(std::uint64_t n) noexcept {
  return static_cast<std::uint32_t>((n + 7) & ~std::uint64_t{7});
}

// Changes whenever a struct above changes shape, so an old segment is never read by
// new code (or the reverse).
inline constexpr std::uint64_t abi_fingerprint() noexcept {
  std::uint64_t h = 1469598103934665603ULL;
  const std::uint64_t parts[] = {
      kLayoutVersion, sizeof(SegmentHeader), sizeof(ShardHeader), sizeof(Record),
      sizeof(pthread_mutex_t), offsetof(SegmentHeader, state),
      offsetof(SegmentHeader, item_count), offsetof(SegmentHeader, count_stale),
      offsetof(SegmentHeader, hash_secret), sizeof(SegmentHeader::hash_secret),
      offsetof(ShardHeader, items),
      offsetof(Record, expire), kShardHeaderBytes};
  for (std::uint64_t p : parts) h = (h ^ p) * 1099511628211ULL;
  return h;
}

}  // namespace nativecache::shm
