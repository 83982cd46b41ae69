// Key hashes. hash_key: 64 bits, fast, unkeyed: the file store names its paths by it,
// so it must never change. keyed_hash: SipHash-1-3 (Aumasson and Bernstein's keyed
// PRF, the one CPython uses for str and bytes) under a 128-bit secret: the
// shared-memory store picks shards and buckets by it with a random secret per segment,
// so which keys share a bucket cannot be worked out, and a flood of them (every walk
// of one chain as long as the shard, under its lock) cannot be made. An unkeyed hash
// cannot give that, however it is seeded: in hash_key, flipping the top bit of the
// state commutes with the multiply, so block pairs that cancel collide for every seed.
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

inline std::uint64_t hash_key(std::string_view key) noexcept {
  constexpr std::uint64_t kMul = 0x9E3779B97F4A7C15ULL;
  std::uint64_t h = 0x243F6A8885A308D3ULL ^ (key.size() * kMul);
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
  return mix64(h);
}

inline constexpr std::uint64_t rotl64(std::uint64_t x, int r) noexcept {
  return (x << r) | (x >> (64 - r));
}

// SipHash-1-3 of key under (k0, k1): one SipRound per 8-byte word, three to finish.
inline std::uint64_t keyed_hash(std::string_view key, std::uint64_t k0,
                                std::uint64_t k1) noexcept {
  std::uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
  std::uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
  auto round = [&]() noexcept {
    v0 += v1; v1 = rotl64(v1, 13); v1 ^= v0; v0 = rotl64(v0, 32);
    v2 += v3; v3 = rotl64(v3, 16); v3 ^= v2;
    v0 += v3; v3 = rotl64(v3, 21); v3 ^= v0;
    v2 += v1; v1 = rotl64(v1, 17); v1 ^= v2; v2 = rotl64(v2, 32);
  };
  auto absorb = [&](std::uint64_t m) noexcept {
    v3 ^= m;
    round();
    v0 ^= m;
  };
  const char* p = key.data();
  std::size_t n = key.size();
  for (; n >= 8; p += 8, n -= 8) {
    std::uint64_t m;
    std::memcpy(&m, p, 8);  // little-endian, as the x86-64 and arm64 targets are
    absorb(m);
  }
  std::uint64_t last = static_cast<std::uint64_t>(key.size() & 0xff) << 56;
  if (n > 0) {
    std::uint64_t tail = 0;
    std::memcpy(&tail, p, n);
    last |= tail;
  }
  absorb(last);
  v2 ^= 0xff;
  round();
  round();
  round();
  return v0 ^ v1 ^ v2 ^ v3;
}

}  // namespace nativecache
