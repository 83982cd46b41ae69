// Store::keys(): the key listing behind `manage.py cache_keys`, for the shared-memory and
// file stores, and the "cannot list" answer of the stores that have none.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/dummy_store.hpp"
#include "core/file_store.hpp"
#include "shm_test_util.hpp"

namespace {

using namespace nctest;
namespace fs = std::filesystem;
using nativecache::DummyStore;
using nativecache::kNoKeyListing;
using nativecache::file::FileOptions;
using nativecache::file::FileStore;

constexpr std::uint64_t kMiB = 1u << 20;

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

std::set<std::string> listed(nativecache::Store& s) {
  std::vector<std::string> keys;
  Status st = s.keys(keys);
  EXPECT_TRUE(st.ok()) << "keys() failed: code " << static_cast<int>(st.code);
  std::set<std::string> unique(keys.begin(), keys.end());
  EXPECT_EQ(unique.size(), keys.size()) << "a key was listed twice";
  return unique;
}

Status put_any(nativecache::Store& s, std::string_view key, std::string_view value,
               Ttl ttl = Ttl::Forever()) {
  Write w{key, bytes_of(value), 0, ttl};
  return s.store(w, Mode::kSet, 0, Limits{});
}

// ------------------------------------------------------------------- shared memory

class ShmKeys : public ShmTest {};

TEST_F(ShmKeys, EmptyStoreListsNothing) {
  ShmStore& s = make(kMiB, 2);
  EXPECT_TRUE(listed(s).empty());
}

TEST_F(ShmKeys, ListsEveryLiveKeyOfEveryShard) {
  ShmStore& s = make(4 * kMiB, 4);
  std::set<std::string> want;
  for (int i = 0; i < 2000; ++i) {
    std::string k = kname(":1:key-", i);
    ASSERT_TRUE(put(s, k, "v").ok());
    want.insert(k);
  }
  // Keys are bytes: empty, binary, and long ones come back exactly.
  for (std::string k : {std::string(), std::string("k\0\xff\n", 4), std::string(30000, 'L')}) {
    ASSERT_TRUE(put(s, k, "v").ok());
    want.insert(k);
  }
  std::set<std::uint32_t> shards;
  for (const std::string& k : want) shards.insert(s.shard_of(k));
  ASSERT_EQ(shards.size(), 4u);
  EXPECT_EQ(listed(s), want);
  EXPECT_EQ(s.stats().items, want.size());
}

TEST_F(ShmKeys, DeletedOverwrittenAndExpiredKeysAreNotListed) {
  ShmStore& s = make(kMiB, 1);
  ASSERT_TRUE(put(s, "stays", "v").ok());
  ASSERT_TRUE(put(s, "deleted", "v").ok());
  ASSERT_TRUE(s.remove("deleted").ok());
  ASSERT_TRUE(put(s, "rewritten", "short").ok());
  ASSERT_TRUE(put(s, "rewritten", std::string(3000, 'x')).ok());  // moves to a new record
  ASSERT_TRUE(put(s, "expires", "v", Ttl::Relative(30)).ok());
  ASSERT_TRUE(put(s, "later", "v", Ttl::Relative(60'000)).ok());
  EXPECT_EQ(listed(s), (std::set<std::string>{"stays", "rewritten", "expires", "later"}));
  sleep_ms(60);
  EXPECT_EQ(listed(s), (std::set<std::string>{"stays", "rewritten", "later"}));
  // Listing changes nothing: no hit, miss or expiry is counted, the entry stays.
  StoreStats st = s.stats();
  EXPECT_EQ(st.hits + st.misses + st.expirations, 0u);
}

TEST_F(ShmKeys, ListingLargerThanTheFirstBufferIsComplete) {
  // One shard whose keys take far more than the 64 KiB the listing starts with, so the
  // shard is listed again with a larger buffer.
  ShmStore& s = make(2 * kMiB, 1);
  std::set<std::string> want;
  for (int i = 0; i < 600; ++i) {
    std::string k = kname(std::string(1000, 'p'), i);
    ASSERT_TRUE(put(s, k, "v").ok());
    want.insert(k);
  }
  ASSERT_EQ(s.stats().items, want.size()) << "the shard evicted: make it larger";
  EXPECT_EQ(listed(s), want);
}

TEST_F(ShmKeys, FullRingOfTinyRecordsFitsTheLargestBuffer) {
  // The densest listing there is: empty values, short keys, a ring full of records.
  ShmStore& s = make(256 * 1024, 1);
  for (int i = 0; i < 20000; ++i) ASSERT_TRUE(put(s, kname("", i), "").ok());
  std::set<std::string> keys = listed(s);
  EXPECT_EQ(keys.size(), s.stats().items);
  EXPECT_GT(keys.size(), 1000u);
}

TEST_F(ShmKeys, GarbageIndexResetsTheShard) {
  SegmentOptions o = options(256 * 1024, 1);
  ShmStore& s = open(o);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(put(s, kname("k", i), "value").ok());
  RawMap raw(o.name);
  ASSERT_TRUE(raw.ok());
  std::memset(raw.buckets(0).data(), 0xAB, raw.buckets(0).size());
  EXPECT_TRUE(listed(s).empty());
  EXPECT_GE(s.stats().recoveries, 1u);
  ASSERT_TRUE(put(s, "after", "v").ok());
  EXPECT_EQ(listed(s), std::set<std::string>{"after"});
}

TEST_F(ShmKeys, ChainCycleEndsTheListing) {
  SegmentOptions o = options(256 * 1024, 1);
  ShmStore& s = open(o);
  ASSERT_TRUE(put(s, "looped", "v").ok());
  RawMap raw(o.name);
  ASSERT_TRUE(raw.ok());
  // Point the record's chain link back at itself: a walk that trusted it would never end.
  std::uint32_t link = 0;
  auto buckets = raw.buckets(0);
  for (std::size_t i = 0; i < buckets.size(); i += sizeof link) {
    std::memcpy(&link, buckets.data() + i, sizeof link);
    if (link != 0) break;
  }
  ASSERT_NE(link, 0u);
  auto* rec = reinterpret_cast<nativecache::shm::Record*>(raw.ring(0).data() + (link - 1));
  rec->next = link;
  EXPECT_TRUE(listed(s).empty());
  EXPECT_GE(s.stats().recoveries, 1u);
}

TEST_F(ShmKeys, ListingWhileOthersWrite) {
  // The writers stop before the rings wrap around, so nothing is evicted and every
  // stable key must be listed each time, whatever the writers do meanwhile.
  ShmStore& s = make(16 * kMiB, 4);
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(put(s, kname("stable-", i), "v").ok());
  std::atomic<int> running{3};
  std::vector<std::thread> writers;
  for (int t = 0; t < 3; ++t) {
    writers.emplace_back([&s, &running, t] {
      for (long long i = 0; i < 6000; ++i) {
        std::string k = kname("churn-" + std::to_string(t) + "-", i % 500);
        if (i % 3 == 2) {
          s.remove(k);
        } else {
          put(s, k, std::string(static_cast<std::size_t>(i % 700), 'c'));
        }
      }
      --running;
    });
  }
  int rounds = 0, missing = 0, foreign = 0;
  do {
    std::set<std::string> keys = listed(s);
    for (int i = 0; i < 200; ++i) missing += keys.count(kname("stable-", i)) == 1 ? 0 : 1;
    for (const std::string& k : keys) {
      foreign += k.starts_with("stable-") || k.starts_with("churn-") ? 0 : 1;
    }
    ++rounds;
  } while (running.load() > 0);
  for (auto& w : writers) w.join();
  StoreStats st = s.stats();
  ASSERT_EQ(st.evictions, 0u);
  EXPECT_EQ(missing, 0) << "over " << rounds << " listings";
  EXPECT_EQ(foreign, 0);
  EXPECT_EQ(st.recoveries, 0u);
}

// ------------------------------------------------------------------------- files

class FileKeys : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "dnc-keys-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    dir_ = (root_ / "cache").string();
  }
  void TearDown() override {
    store_.reset();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  FileStore& open() {
    std::string detail;
    Status st = FileStore::open(FileOptions{dir_, 0}, store_, detail);
    EXPECT_TRUE(st.ok()) << detail;
    return *store_;
  }

  fs::path root_;
  std::string dir_;
  std::unique_ptr<FileStore> store_;
};

TEST_F(FileKeys, MissingDirectoryListsNothing) {
  FileStore& s = open();
  EXPECT_TRUE(listed(s).empty());
  EXPECT_FALSE(fs::exists(dir_)) << "a listing must not create the directory";
}

TEST_F(FileKeys, ListsLiveKeysOnly) {
  FileStore& s = open();
  std::set<std::string> want;
  for (int i = 0; i < 300; ++i) {
    std::string k = kname(":1:file-", i);
    ASSERT_TRUE(put_any(s, k, "v").ok());
    want.insert(k);
  }
  for (std::string k : {std::string(), std::string("k\0\xff\n", 4), std::string(5000, 'L')}) {
    ASSERT_TRUE(put_any(s, k, "v").ok());
    want.insert(k);
  }
  ASSERT_TRUE(put_any(s, "gone", "v").ok());
  ASSERT_TRUE(s.remove("gone").ok());
  ASSERT_TRUE(put_any(s, "expires", "v", Ttl::Relative(30)).ok());
  std::set<std::string> with_expiring = want;
  with_expiring.insert("expires");
  EXPECT_EQ(listed(s), with_expiring);
  sleep_ms(60);
  EXPECT_EQ(listed(s), want);
  // The expired file is still there: a listing removes nothing.
  EXPECT_TRUE(fs::exists(s.path_for("expires")));
}

TEST_F(FileKeys, DamagedMisplacedAndForeignFilesAreNotListed) {
  FileStore& s = open();
  ASSERT_TRUE(put_any(s, "good", "value").ok());
  ASSERT_TRUE(put_any(s, "bad-crc", "value").ok());
  ASSERT_TRUE(put_any(s, "short", "value").ok());
  ASSERT_TRUE(put_any(s, "moved", "value").ok());
  // A flipped byte of the key: the header CRC covers it.
  {
    std::fstream f(s.path_for("bad-crc"), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(sizeof(nativecache::file::FileHeader));
    f.put('X');
  }
  // A file cut inside its header.
  fs::resize_file(s.path_for("short"), 20);
  // An intact entry under a name its key does not hash to (copied by hand).
  fs::path moved = s.path_for("moved");
  fs::rename(moved, moved.parent_path() / "0000000000000000.djc");
  // Temp files of writers in flight, and files that are not the cache's.
  fs::path fan = fs::path(s.path_for("good")).parent_path();
  fs::copy_file(s.path_for("good"), fan / ".tmp-123.djc");
  std::ofstream(fan / "notes.txt") << "not an entry";
  std::ofstream(fs::path(dir_) / "README") << "not an entry";
  fs::create_directory(fan / "sub.djc");
  EXPECT_EQ(listed(s), std::set<std::string>{"good"});
}

// ------------------------------------------------------------------ no listing

TEST(NoKeys, StoresWithoutAListingSaySo) {
  DummyStore s;
  std::vector<std::string> keys;
  Status st = s.keys(keys);
  EXPECT_EQ(st.code, Code::kUnsupported);
  EXPECT_STREQ(st.what, kNoKeyListing);
  EXPECT_TRUE(keys.empty());
}

}  // namespace
