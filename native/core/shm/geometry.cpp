#include "core/shm/geometry.hpp"

#include <algorithm>
#include <bit>

namespace nativecache::shm {

Status compute_geometry(std::uint64_t size, std::uint32_t shards, std::uint32_t max_item_size,
                        Geometry& g, std::string& why) {
  auto bad = [&](std::string msg) {
    why = std::move(msg);
    return Status::Of(Code::kInvalidArgument, "bad shared-memory geometry");
  };
  if (size < kMinSize) {
    return bad("SIZE must be at least " + std::to_string(kMinSize) + " bytes, got " +
               std::to_string(size));
  }
  if (shards == 0) {
    shards = static_cast<std::uint32_t>(std::clamp<std::uint64_t>(size / (1u << 20), 1, 16));
  }
  if (shards > kMaxShards) return bad("SHARDS must be between 1 and " + std::to_string(kMaxShards));
  std::uint64_t per_shard = ((size - kHeaderBytes) / shards) & ~std::uint64_t{63};
  if (per_shard > (std::uint64_t{1} << 31)) {
    return bad("each shard may hold at most 2 GiB: raise SHARDS or lower SIZE");
  }
  std::uint64_t want_buckets = std::max<std::uint64_t>(per_shard / 128, 16);
  auto buckets = static_cast<std::uint32_t>(std::bit_floor(want_buckets));
  if (per_shard <= ring_offset(buckets) + 4096) {
    return bad("SIZE " + std::to_string(size) + " is too small for " + std::to_string(shards) +
               " shards");
  }
  auto ring = static_cast<std::uint32_t>((per_shard - ring_offset(buckets)) & ~std::uint64_t{7});
  std::uint32_t limit = ring / 2 - static_cast<std::uint32_t>(sizeof(Record));
  if (max_item_size == 0) max_item_size = std::min(kDefaultMaxItem, ring / 4);
  if (max_item_size > limit) {
    return bad("MAX_ITEM_SIZE " + std::to_string(max_item_size) + " exceeds half a shard (" +
               std::to_string(limit) + " bytes with this SIZE and SHARDS)");
  }
  g.total_size = kHeaderBytes + per_shard * shards;
  g.shard_stride = per_shard;
  g.n_shards = shards;
  g.bucket_count = buckets;
  g.ring_capacity = ring;
  g.max_item_size = max_item_size;
  return Status::Ok();
}

}  // namespace nativecache::shm
