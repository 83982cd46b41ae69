// 64-bit key hash used to pick a shard and a bucket. Not cryptographic. A shared-memory
// segment seeds it with a random value of its own, so keys that share a bucket cannot be
// worked out from this code alone (a flood of them would make every walk of that chain
// long); the file store's paths use seed 0 and must stay as they are.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace nativecache {

inline std::uint64_t mix64(std::uint64_t x) noexcept {
  x ^= x >> 32;
  x *= 0xd6e8feb86659fd93ULL;
  x ^= x >> 32;
  x *= 0xd6e8feb86659fd93ULL;
  x ^= x >> 32;
  return x;
}

inline std::uint64_t hash_key(std::string_view key, std::uint64_t seed = 0) noexcept {
  constexpr std::uint64_t kMul = 0x9E3779B97F4A7C15ULL;
  std::uint64_t h = 0x243F6A8885A308D3ULL ^ seed ^ (key.size() * kMul);
  const char* p = key.data();
  std::size_t n = key.size();
  while (n >= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ mix64(w)) * kMul;
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    std::uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ mix64(w ^ (static_cast<std::uint64_t>(n) << 56))) * kMul;
  }
  return mix64(h ^ mix64(seed));
}

}  // namespace nativecache
