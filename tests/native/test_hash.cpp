// The key hashes (core/hash.hpp): keyed_hash is SipHash-1-3, checked against the values
// CPython's own SipHash-1-3 gives for bytes (hash(b"...") with PYTHONHASHSEED=0, whose
// secret is all zeros, and =1, whose secret is (0xaed66ce184be2329, 0xebe9bbf1f1499052));
// hash_key, which names the file store's paths, never changes.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "core/hash.hpp"

namespace {

using nativecache::hash_key;
using nativecache::keyed_hash;

constexpr const char* kLong = ":1:views.decorators.cache.cache_page.demo.GET.0123456789abcdef";

TEST(KeyedHash, IsSipHash13AsCPythonComputesIt) {
  EXPECT_EQ(keyed_hash("a", 0, 0), 4644417185603328019ULL);
  EXPECT_EQ(keyed_hash("abcdefg", 0, 0), 7904145750247929094ULL);
  EXPECT_EQ(keyed_hash("abcdefgh", 0, 0), 4574395652268504554ULL);
  EXPECT_EQ(keyed_hash("abcdefghi", 0, 0), 17913969820989044453ULL);
  EXPECT_EQ(keyed_hash(kLong, 0, 0), 8875700121824985397ULL);
  const std::uint64_t k0 = 0xaed66ce184be2329ULL, k1 = 0xebe9bbf1f1499052ULL;
  EXPECT_EQ(keyed_hash("a", k0, k1), 15433848885072367219ULL);
  EXPECT_EQ(keyed_hash("abcdefgh", k0, k1), 18244101878353225716ULL);
  EXPECT_EQ(keyed_hash(kLong, k0, k1), 10256128369746179070ULL);
}

// mix64 undone: its xor-shift by 32 is its own inverse, and the multiplier is odd.
std::uint64_t unmix64(std::uint64_t x) {
  constexpr std::uint64_t kMul = 0xd6e8feb86659fd93ULL;
  std::uint64_t inv = kMul;  // Newton: each step doubles the correct low bits
  for (int i = 0; i < 5; ++i) inv *= 2 - kMul * inv;
  x ^= x >> 32;
  x *= inv;
  x ^= x >> 32;
  x *= inv;
  x ^= x >> 32;
  return x;
}

std::string two_blocks(std::uint64_t a, std::uint64_t b) {
  std::string key(16, '\0');
  std::memcpy(key.data(), &a, 8);
  std::memcpy(key.data() + 8, &b, 8);
  return key;
}

// Why the shared-memory store does not use hash_key: flipping the top bit of one block's
// mix and then of the next cancels out, so such keys collide whatever a seed mixed into
// the state; under the secret they are as apart as any others.
TEST(KeyedHash, KeysThatCollideInTheUnkeyedHashDoNotUnderTheSecret) {
  constexpr std::uint64_t kTop = 1ULL << 63;
  int apart = 0;
  for (std::uint64_t i = 1; i <= 64; ++i) {
    const std::uint64_t a = i * 0x9E3779B97F4A7C15ULL, b = ~a;
    const std::string one = two_blocks(a, b);
    const std::string other = two_blocks(unmix64(nativecache::mix64(a) ^ kTop),
                                         unmix64(nativecache::mix64(b) ^ kTop));
    ASSERT_NE(one, other);
    ASSERT_EQ(hash_key(one), hash_key(other));
    const std::uint64_t k0 = i * 0x243F6A8885A308D3ULL, k1 = i ^ 0x13198A2E03707344ULL;
    apart += (keyed_hash(one, k0, k1) & 0x3FFF) != (keyed_hash(other, k0, k1) & 0x3FFF);
  }
  EXPECT_GE(apart, 60);  // a bucket of 2^14 shared by chance: about 1 pair in 16,384
}

TEST(HashKey, StaysTheHashTheFileStoreNamesPathsBy) {
  // Its values: a change would move every file the store has written.
  EXPECT_EQ(hash_key("a"), 10111250037060805115ULL);
  EXPECT_EQ(hash_key("abcdefgh"), 6004386891432863900ULL);
  EXPECT_EQ(hash_key(kLong), 5562281734977043590ULL);
}

}  // namespace
