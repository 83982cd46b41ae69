// Tests of the value codec helpers: decimal integers and zlib.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <string>

#include "core/codec.hpp"

namespace {

using nativecache::Code;
using nativecache::codec::compress;
using nativecache::codec::decompress;
using nativecache::codec::format_int;
using nativecache::codec::parse_int;

std::span<const std::byte> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

std::string fmt(std::int64_t v) {
  char buf[20];
  std::size_t n = format_int(v, buf);
  return std::string(buf, n);
}

TEST(Codec, FlagsAreWireCompatible) {
  EXPECT_EQ(nativecache::codec::kBytes, 0u);
  EXPECT_EQ(nativecache::codec::kPickle, 1u);
  EXPECT_EQ(nativecache::codec::kInt, 2u);
  EXPECT_EQ(nativecache::codec::kLong, 4u);
  EXPECT_EQ(nativecache::codec::kZlib, 8u);
  EXPECT_EQ(nativecache::codec::kText, 16u);
  EXPECT_EQ(nativecache::codec::kTypeMask & nativecache::codec::kZlib, 0u);
}

TEST(Codec, FormatIntExtremes) {
  EXPECT_EQ(fmt(0), "0");
  EXPECT_EQ(fmt(-1), "-1");
  EXPECT_EQ(fmt(42), "42");
  EXPECT_EQ(fmt(std::numeric_limits<std::int64_t>::max()), "9223372036854775807");
  EXPECT_EQ(fmt(std::numeric_limits<std::int64_t>::min()), "-9223372036854775808");
  // INT64_MIN needs all 20 bytes of the documented buffer.
  EXPECT_EQ(fmt(std::numeric_limits<std::int64_t>::min()).size(), 20u);
}

TEST(Codec, ParseIntAccepts) {
  EXPECT_EQ(parse_int("0"), 0);
  EXPECT_EQ(parse_int("-0"), 0);
  EXPECT_EQ(parse_int("7"), 7);
  EXPECT_EQ(parse_int("-7"), -7);
  EXPECT_EQ(parse_int("007"), 7);
  EXPECT_EQ(parse_int("9223372036854775807"), std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(parse_int("-9223372036854775808"), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(parse_int("00000000000000000001"), 1);  // 20 characters
}

TEST(Codec, ParseIntRejects) {
  EXPECT_EQ(parse_int(""), std::nullopt);
  EXPECT_EQ(parse_int("-"), std::nullopt);
  EXPECT_EQ(parse_int("+"), std::nullopt);
  // Only '-' is a sign: neither memcached nor any client writes a '+'.
  EXPECT_EQ(parse_int("+1"), std::nullopt);
  EXPECT_EQ(parse_int(" 1"), std::nullopt);
  EXPECT_EQ(parse_int("1 "), std::nullopt);
  EXPECT_EQ(parse_int("1\n"), std::nullopt);
  EXPECT_EQ(parse_int("1a"), std::nullopt);
  EXPECT_EQ(parse_int("a1"), std::nullopt);
  EXPECT_EQ(parse_int("1.0"), std::nullopt);
  EXPECT_EQ(parse_int("0x10"), std::nullopt);
  EXPECT_EQ(parse_int("--1"), std::nullopt);
  EXPECT_EQ(parse_int("9223372036854775808"), std::nullopt);
  EXPECT_EQ(parse_int("-9223372036854775809"), std::nullopt);
  EXPECT_EQ(parse_int("99999999999999999999"), std::nullopt);   // 20 digits, too big
  EXPECT_EQ(parse_int("000000000000000000001"), std::nullopt);  // 21 characters
  EXPECT_EQ(parse_int("123456789012345678901"), std::nullopt);
  EXPECT_EQ(parse_int(std::string_view("1\0", 2)), std::nullopt);
}

TEST(Codec, IntRoundTrip) {
  std::mt19937_64 rng(12345);
  std::vector<std::int64_t> values = {0,
                                      1,
                                      -1,
                                      9,
                                      10,
                                      -10,
                                      99999,
                                      100000,
                                      std::numeric_limits<std::int64_t>::max(),
                                      std::numeric_limits<std::int64_t>::max() - 1,
                                      std::numeric_limits<std::int64_t>::min(),
                                      std::numeric_limits<std::int64_t>::min() + 1};
  for (int i = 0; i < 10000; ++i) {
    auto v = static_cast<std::int64_t>(rng());
    values.push_back(v >> (rng() % 64));
  }
  for (std::int64_t v : values) {
    std::string s = fmt(v);
    EXPECT_EQ(s, std::to_string(v));
    auto back = parse_int(s);
    ASSERT_TRUE(back.has_value()) << s;
    EXPECT_EQ(*back, v);
  }
}

std::string compressible(std::size_t n) {
  std::string s;
  s.reserve(n);
  for (std::size_t i = 0; s.size() < n; ++i) s += "row " + std::to_string(i % 97) + ";";
  s.resize(n);
  return s;
}

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

TEST(Codec, CompressRoundTrip) {
  for (std::size_t n : {std::size_t{100}, std::size_t{4096}, std::size_t{1} << 20}) {
    std::string in = compressible(n);
    for (int level : {1, 6, 9}) {
      auto z = compress(bytes_of(in), level);
      ASSERT_TRUE(z.has_value()) << n;
      EXPECT_LT(z->size(), in.size());
      std::string out = "garbage left from before";
      auto st = decompress(bytes_of(*z), in.size() * 2, out);
      ASSERT_TRUE(st.ok()) << n << " " << (st.what ? st.what : "");
      EXPECT_EQ(out, in);
    }
  }
}

TEST(Codec, DecompressExactlyMaxSize) {
  std::string in = compressible(50000);
  auto z = compress(bytes_of(in), 6);
  ASSERT_TRUE(z.has_value());
  std::string out;
  ASSERT_TRUE(decompress(bytes_of(*z), in.size(), out).ok());
  EXPECT_EQ(out, in);
  // One byte less than the value is a bound it breaks.
  EXPECT_EQ(decompress(bytes_of(*z), in.size() - 1, out).code, Code::kCorrupt);
}

TEST(Codec, CompressRefusesWhenNotSmaller) {
  std::string noise = random_bytes(1000, 7);
  EXPECT_EQ(compress(bytes_of(noise), 6), std::nullopt);
  EXPECT_EQ(compress(bytes_of(std::string("ab")), 6), std::nullopt);
}

TEST(Codec, DecompressGarbageIsCorrupt) {
  std::string out;
  EXPECT_EQ(decompress(bytes_of(random_bytes(500, 1)), 1 << 20, out).code, Code::kCorrupt);
  EXPECT_EQ(decompress(bytes_of(std::string("plain text, not zlib")), 1 << 20, out).code,
            Code::kCorrupt);
  EXPECT_EQ(decompress({}, 1 << 20, out).code, Code::kCorrupt);
  // A valid zlib header followed by noise.
  std::string bad = std::string("\x78\x9c", 2) + random_bytes(200, 3);
  EXPECT_EQ(decompress(bytes_of(bad), 1 << 20, out).code, Code::kCorrupt);
}

TEST(Codec, DecompressDamagedChecksumIsCorrupt) {
  std::string in = compressible(10000);
  auto z = compress(bytes_of(in), 6);
  ASSERT_TRUE(z.has_value());
  std::string damaged = *z;
  damaged.back() = static_cast<char>(damaged.back() ^ 0x55);  // adler32 trailer
  std::string out;
  EXPECT_EQ(decompress(bytes_of(damaged), 1 << 20, out).code, Code::kCorrupt);
}

TEST(Codec, DecompressTruncatedIsCorrupt) {
  std::string in = compressible(100000);
  auto z = compress(bytes_of(in), 6);
  ASSERT_TRUE(z.has_value());
  for (std::size_t cut : {std::size_t{1}, std::size_t{2}, z->size() / 2, z->size() - 4,
                          z->size() - 1}) {
    std::string out;
    std::string part = z->substr(0, cut);
    EXPECT_EQ(decompress(bytes_of(part), 1 << 20, out).code, Code::kCorrupt) << cut;
  }
}

TEST(Codec, InflateBombIsBounded) {
  // 64 MiB of zeros compresses to ~64 KiB; a 1 MiB bound must stop it early.
  std::string zeros(64u << 20, '\0');
  auto z = compress(bytes_of(zeros), 9);
  ASSERT_TRUE(z.has_value());
  ASSERT_LT(z->size(), 1u << 20);
  zeros.clear();
  zeros.shrink_to_fit();
  std::string out;
  auto st = decompress(bytes_of(*z), 1u << 20, out);
  EXPECT_EQ(st.code, Code::kCorrupt);
  EXPECT_LE(out.size(), 1u << 20);
  EXPECT_LE(out.capacity(), 4u << 20);  // never inflated far past the bound
}

TEST(Codec, DecompressEmptyPayload) {
  // compress() declines tiny inputs, so build the stream by hand: zlib of "" at level 6.
  const unsigned char empty[] = {0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01};
  std::string out = "x";
  auto st = decompress({reinterpret_cast<const std::byte*>(empty), sizeof empty}, 100, out);
  EXPECT_TRUE(st.ok());
  EXPECT_TRUE(out.empty());
}

}  // namespace

TEST(Base64, RoundTripsAndMatchesTheStandard) {
  using nativecache::codec::base64_decode;
  using nativecache::codec::base64_encode;
  const std::pair<std::string_view, std::string_view> vectors[] = {
      {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
  };
  for (auto [plain, encoded] : vectors) {
    std::string out;
    base64_encode({reinterpret_cast<const std::byte*>(plain.data()), plain.size()}, out);
    EXPECT_EQ(out, encoded);
    std::string back;
    ASSERT_TRUE(base64_decode(encoded, back));
    EXPECT_EQ(back, plain);
  }
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  std::string enc, dec;
  base64_encode({reinterpret_cast<const std::byte*>(all.data()), all.size()}, enc);
  ASSERT_TRUE(base64_decode(enc, dec));
  EXPECT_EQ(dec, all);
  std::string junk;
  EXPECT_FALSE(base64_decode("abc", junk));
  EXPECT_FALSE(base64_decode("ab:d", junk));
}
