// Tests of how a segment size is cut into shards, buckets and rings.
#include <gtest/gtest.h>

#include <string>

#include "core/shm/geometry.hpp"
#include "core/shm/segment.hpp"

namespace {

using nativecache::Code;
using nativecache::shm::compute_geometry;
using nativecache::shm::Geometry;
using nativecache::shm::kHeaderBytes;
using nativecache::shm::kMaxShards;
using nativecache::shm::kMinSize;
using nativecache::shm::ring_offset;

constexpr std::uint64_t kMiB = 1u << 20;

void expect_sane(const Geometry& g, std::uint64_t size) {
  EXPECT_LE(g.total_size, size);
  EXPECT_EQ(g.total_size, kHeaderBytes + g.shard_stride * g.n_shards);
  EXPECT_EQ(g.shard_stride % 64, 0u);
  EXPECT_GT(g.bucket_count, 0u);
  EXPECT_EQ(g.bucket_count & (g.bucket_count - 1), 0u) << "power of two";
  EXPECT_EQ(g.ring_capacity % 8, 0u);
  EXPECT_GE(g.ring_capacity, 4096u);
  EXPECT_LE(ring_offset(g.bucket_count) + g.ring_capacity, g.shard_stride);
  EXPECT_LE(g.max_item_size + sizeof(nativecache::shm::Record), g.ring_capacity / 2);
}

TEST(Geometry, Defaults) {
  struct Case {
    std::uint64_t size;
    std::uint32_t shards;
  } cases[] = {{kMinSize, 1}, {kMiB, 1}, {4 * kMiB, 4}, {64 * kMiB, 16}, {1024 * kMiB, 16}};
  for (const Case& c : cases) {
    Geometry g;
    std::string why;
    ASSERT_TRUE(compute_geometry(c.size, 0, 0, g, why).ok()) << c.size << ": " << why;
    EXPECT_EQ(g.n_shards, c.shards) << c.size;
    EXPECT_EQ(g.max_item_size, std::min<std::uint32_t>(1u << 20, g.ring_capacity / 4));
    expect_sane(g, c.size);
  }
}

TEST(Geometry, ExplicitShardsAndItemSize) {
  Geometry g;
  std::string why;
  ASSERT_TRUE(compute_geometry(8 * kMiB, 3, 100000, g, why).ok()) << why;
  EXPECT_EQ(g.n_shards, 3u);
  EXPECT_EQ(g.max_item_size, 100000u);
  expect_sane(g, 8 * kMiB);

  // The largest item size allowed is accepted, one more byte is not.
  std::uint32_t limit = g.ring_capacity / 2 - static_cast<std::uint32_t>(sizeof(nativecache::shm::Record));
  ASSERT_TRUE(compute_geometry(8 * kMiB, 3, limit, g, why).ok()) << why;
  EXPECT_EQ(compute_geometry(8 * kMiB, 3, limit + 1, g, why).code, Code::kInvalidArgument);
}

TEST(Geometry, TooSmall) {
  Geometry g;
  std::string why;
  auto st = compute_geometry(kMinSize - 1, 0, 0, g, why);
  EXPECT_EQ(st.code, Code::kInvalidArgument);
  EXPECT_NE(why.find("at least"), std::string::npos) << why;
  EXPECT_NE(why.find(std::to_string(kMinSize)), std::string::npos) << why;
  why.clear();
  EXPECT_EQ(compute_geometry(0, 0, 0, g, why).code, Code::kInvalidArgument);
  EXPECT_FALSE(why.empty());
}

TEST(Geometry, TooManyShards) {
  Geometry g;
  std::string why;
  auto st = compute_geometry(1024 * kMiB, kMaxShards + 1, 0, g, why);
  EXPECT_EQ(st.code, Code::kInvalidArgument);
  EXPECT_NE(why.find("SHARDS"), std::string::npos) << why;
  ASSERT_TRUE(compute_geometry(1024 * kMiB, kMaxShards, 0, g, why).ok()) << why;
  EXPECT_EQ(g.n_shards, kMaxShards);
}

TEST(Geometry, TooSmallForShards) {
  Geometry g;
  std::string why;
  auto st = compute_geometry(kMinSize, 64, 0, g, why);
  EXPECT_EQ(st.code, Code::kInvalidArgument);
  EXPECT_NE(why.find("too small"), std::string::npos) << why;
  why.clear();
  EXPECT_EQ(compute_geometry(kMinSize, kMaxShards, 0, g, why).code, Code::kInvalidArgument);
  EXPECT_FALSE(why.empty());
}

TEST(Geometry, ItemOverHalfAShard) {
  Geometry g;
  std::string why;
  auto st = compute_geometry(kMiB, 1, 600 * 1024, g, why);
  EXPECT_EQ(st.code, Code::kInvalidArgument);
  EXPECT_NE(why.find("MAX_ITEM_SIZE"), std::string::npos) << why;
  EXPECT_NE(why.find("614400"), std::string::npos) << why;
}

TEST(Geometry, ShardOver2GiB) {
  Geometry g;
  std::string why;
  auto st = compute_geometry(5ull << 30, 1, 0, g, why);
  EXPECT_EQ(st.code, Code::kInvalidArgument);
  EXPECT_NE(why.find("2 GiB"), std::string::npos) << why;
  ASSERT_TRUE(compute_geometry(5ull << 30, 4, 0, g, why).ok()) << why;
  expect_sane(g, 5ull << 30);
}

TEST(Geometry, SegmentOpenReportsBadGeometry) {
  nativecache::shm::SegmentOptions o;
  o.name = "dnc-test-geometry-never-created";
  o.size = 1000;
  std::unique_ptr<nativecache::shm::Segment> seg;
  std::string detail;
  auto st = nativecache::shm::Segment::open(o, seg, detail);
  EXPECT_EQ(st.code, Code::kInvalidArgument);
  EXPECT_EQ(seg, nullptr);
  EXPECT_NE(detail.find("SIZE"), std::string::npos) << detail;
}

TEST(Geometry, SegmentOpenRejectsBadNames) {
  for (std::string name : {std::string(), std::string("a/b"), std::string(300, 'n')}) {
    nativecache::shm::SegmentOptions o;
    o.name = name;
    o.size = kMiB;
    std::unique_ptr<nativecache::shm::Segment> seg;
    std::string detail;
    EXPECT_EQ(nativecache::shm::Segment::open(o, seg, detail).code, Code::kInvalidArgument)
        << name;
    EXPECT_FALSE(detail.empty());
  }
}

}  // namespace
