// How a segment of a given size is cut into shards, buckets and rings.
#pragma once

#include <cstdint>
#include <string>

#include "core/shm/layout.hpp"
#include "core/status.hpp"

namespace nativecache::shm {

inline constexpr std::size_t ring_offset(std::uint32_t bucket_count) noexcept {
  return kShardHeaderBytes + ((std::size_t{bucket_count} * 4 + 63) & ~std::size_t{63});
}

struct Geometry {
  std::uint64_t total_size = 0;
  std::uint64_t shard_stride = 0;
  std::uint32_t n_shards = 0;
  std::uint32_t bucket_count = 0;
  std::uint32_t ring_capacity = 0;
  std::uint32_t max_item_size = 0;
};

inline constexpr std::uint64_t kMinSize = 64 * 1024;
inline constexpr std::uint32_t kMaxShards = 1024;
inline constexpr std::uint32_t kDefaultMaxItem = 1024 * 1024;

// shards == 0 and max_item_size == 0 pick defaults. On a bad combination returns
// kInvalidArgument and says why in `why`.
Status compute_geometry(std::uint64_t size, std::uint32_t shards, std::uint32_t max_item_size,
                        Geometry& g, std::string& why);

}  // namespace nativecache::shm
