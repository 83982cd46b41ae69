// Semantics of the shared-memory store, one operation at a time.
#include <gtest/gtest.h>

#include <chrono>
#include <limits>
#include <set>
#include <thread>

#include "shm_test_util.hpp"

namespace {

using namespace nctest;
using nativecache::codec::kBytes;
using nativecache::codec::kInt;
using nativecache::codec::kLong;
using nativecache::codec::kPickle;
using nativecache::codec::kText;

constexpr std::uint64_t kMiB = 1u << 20;

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

class Store : public ShmTest {};

TEST_F(Store, SetGetOverwrite) {
  ShmStore& s = make(kMiB);
  EXPECT_EQ(get(s, "a").code, Code::kNotFound);
  ASSERT_TRUE(put(s, "a", "hello", Ttl::Forever(), kText).ok());
  Got g = get(s, "a");
  ASSERT_TRUE(g.hit());
  EXPECT_EQ(g.value, "hello");
  EXPECT_EQ(g.flags, kText);
  // Same size, smaller, much larger: every overwrite reads back exactly.
  for (std::string v : {std::string("world"), std::string("x"), std::string(5000, 'y'),
                        std::string("z")}) {
    ASSERT_TRUE(put(s, "a", v, Ttl::Forever(), kPickle).ok());
    g = get(s, "a");
    ASSERT_TRUE(g.hit());
    EXPECT_EQ(g.value, v);
    EXPECT_EQ(g.flags, kPickle);
  }
  EXPECT_TRUE(s.contains("a").ok());
  EXPECT_EQ(s.contains("b").code, Code::kNotFound);
}

// Each segment keys its hash with a random secret of its own: which keys share a
// shard (and a bucket) cannot be known in advance, yet every process attached to one
// segment places every key alike.
TEST_F(Store, EachSegmentSeedsTheKeyHash) {
  SegmentOptions a = options(1 << 20, 16), b = options(1 << 20, 16);
  ShmStore& first = open(a);
  ShmStore& other = open(b);
  ShmStore& again = open(a);  // a second attach to the first segment
  EXPECT_NE(first.header().hash_secret[0], other.header().hash_secret[0]);
  EXPECT_NE(first.header().hash_secret[1], other.header().hash_secret[1]);
  int moved = 0;
  for (int i = 0; i < 200; ++i) {
    const std::string key = kname("seeded", i);
    EXPECT_EQ(first.shard_of(key), again.shard_of(key)) << key;
    moved += first.shard_of(key) != other.shard_of(key);
  }
  EXPECT_GT(moved, 150);  // about 15/16 of them, for independent seeds
  ASSERT_TRUE(put(first, "shared", "v").ok());
  EXPECT_EQ(get(again, "shared").value, "v");
}

TEST_F(Store, BinaryKeysAndValues) {
  ShmStore& s = make(kMiB);
  std::string key("k\0\xff\n", 4);
  std::string other("k\0\xfe\n", 4);
  std::string value("\0\1\2\xff\0", 5);
  ASSERT_TRUE(put(s, key, value).ok());
  EXPECT_EQ(get(s, key).value, value);
  EXPECT_EQ(get(s, other).code, Code::kNotFound);
  EXPECT_EQ(get(s, std::string_view("k", 1)).code, Code::kNotFound);
}

TEST_F(Store, EmptyKeyAndEmptyValue) {
  ShmStore& s = make(kMiB);
  ASSERT_TRUE(put(s, "", "for the empty key").ok());
  EXPECT_EQ(get(s, "").value, "for the empty key");
  // An empty value from an empty span (a null data pointer), new and over an old value.
  Write w{"e", {}, kBytes, Ttl::Forever()};
  ASSERT_TRUE(s.store(w, Mode::kSet, 0, Limits{}).ok());
  Got g = get(s, "e");
  ASSERT_TRUE(g.hit());
  EXPECT_EQ(g.value, "");
  ASSERT_TRUE(put(s, "e", "abc").ok());
  ASSERT_TRUE(s.store(w, Mode::kSet, 0, Limits{}).ok());
  g = get(s, "e");
  ASSERT_TRUE(g.hit());
  EXPECT_EQ(g.value, "");
  // Appending nothing, and reading an empty value into no buffer at all.
  ASSERT_TRUE(s.concat("e", {}, kBytes, false).ok());
  ValueOut none;
  ASSERT_TRUE(s.get("e", none).ok());
  EXPECT_EQ(none.size, 0u);
  // An empty key given as a view with no data at all is the same key as "".
  const std::string_view null_key;
  ASSERT_EQ(null_key.data(), nullptr);
  EXPECT_EQ(get(s, null_key).value, "for the empty key");
  Write nw{null_key, bytes_of("via null"), kBytes, Ttl::Forever()};
  ASSERT_TRUE(s.store(nw, Mode::kSet, 0, Limits{}).ok());
  EXPECT_EQ(get(s, "").value, "via null");
  ASSERT_TRUE(s.concat(null_key, bytes_of("!"), kBytes, true).ok());
  EXPECT_EQ(get(s, null_key).value, "!via null");
  ASSERT_TRUE(s.remove(null_key).ok());
  EXPECT_EQ(s.contains("").code, Code::kNotFound);
}

TEST_F(Store, KeyTooLong) {
  ShmStore& s = make(kMiB);
  std::string key(65536, 'k');
  EXPECT_EQ(put(s, key, "v").code, Code::kBadKey);
  std::string ok_key(65535, 'k');
  ASSERT_TRUE(put(s, ok_key, "v").ok());
  EXPECT_EQ(get(s, ok_key).value, "v");
}

TEST_F(Store, AddReplace) {
  ShmStore& s = make(kMiB);
  EXPECT_EQ(put(s, "k", "r", Ttl::Forever(), 0, Mode::kReplace).code, Code::kNotFound);
  EXPECT_EQ(get(s, "k").code, Code::kNotFound);
  ASSERT_TRUE(put(s, "k", "first", Ttl::Forever(), 0, Mode::kAdd).ok());
  EXPECT_EQ(put(s, "k", "second", Ttl::Forever(), 0, Mode::kAdd).code, Code::kExists);
  EXPECT_EQ(get(s, "k").value, "first");
  ASSERT_TRUE(put(s, "k", "third", Ttl::Forever(), 0, Mode::kReplace).ok());
  EXPECT_EQ(get(s, "k").value, "third");
  ASSERT_TRUE(s.remove("k").ok());
  ASSERT_TRUE(put(s, "k", "fourth", Ttl::Forever(), 0, Mode::kAdd).ok());
  EXPECT_EQ(get(s, "k").value, "fourth");
}

TEST_F(Store, AddOverExpiredEntry) {
  ShmStore& s = make(kMiB);
  ASSERT_TRUE(put(s, "k", "old", Ttl::Relative(20)).ok());
  sleep_ms(60);
  ASSERT_TRUE(put(s, "k", "new", Ttl::Forever(), 0, Mode::kAdd).ok());
  EXPECT_EQ(get(s, "k").value, "new");
  EXPECT_EQ(put(s, "gone", "x", Ttl::Forever(), 0, Mode::kReplace).code, Code::kNotFound);
}

TEST_F(Store, Cas) {
  ShmStore& s = make(kMiB);
  EXPECT_EQ(put(s, "k", "v", Ttl::Forever(), 0, Mode::kCas, 1).code, Code::kNotFound);
  ASSERT_TRUE(put(s, "k", "v1").ok());
  Got g1 = get(s, "k");
  ASSERT_TRUE(g1.hit());
  EXPECT_NE(g1.cas, 0u);
  EXPECT_EQ(put(s, "k", "bad", Ttl::Forever(), 0, Mode::kCas, g1.cas + 1).code, Code::kExists);
  EXPECT_EQ(get(s, "k").value, "v1");
  ASSERT_TRUE(put(s, "k", "v2", Ttl::Forever(), 0, Mode::kCas, g1.cas).ok());
  Got g2 = get(s, "k");
  EXPECT_EQ(g2.value, "v2");
  EXPECT_NE(g2.cas, g1.cas);
  // The old token is spent.
  EXPECT_EQ(put(s, "k", "v3", Ttl::Forever(), 0, Mode::kCas, g1.cas).code, Code::kExists);
  // Any write changes the token: a plain set, an append, an incr.
  ASSERT_TRUE(put(s, "k", "7", Ttl::Forever(), kLong).ok());
  Got g3 = get(s, "k");
  std::int64_t r = 0;
  ASSERT_TRUE(s.incr("k", 1, r).ok());
  EXPECT_EQ(put(s, "k", "x", Ttl::Forever(), kLong, Mode::kCas, g3.cas).code, Code::kExists);
  Got g4 = get(s, "k");
  ASSERT_TRUE(s.concat("k", bytes_of("0"), kLong, false).ok());
  EXPECT_EQ(put(s, "k", "x", Ttl::Forever(), kLong, Mode::kCas, g4.cas).code, Code::kExists);
  EXPECT_EQ(get(s, "k").value, "80");
}

TEST_F(Store, CasKeepsExpiry) {
  ShmStore& s = make(kMiB);
  ASSERT_TRUE(put(s, "k", "v1", Ttl::Relative(60000)).ok());
  Got g = get(s, "k");
  ASSERT_TRUE(put(s, "k", std::string(3000, 'v'), Ttl::Keep(), 0, Mode::kCas, g.cas).ok());
  std::int64_t left = 0;
  ASSERT_TRUE(s.ttl("k", left).ok());
  EXPECT_GT(left, 50000);
  EXPECT_LE(left, 60000);
  // Keep on a key without expiry keeps it forever; Keep on a new key means forever.
  ASSERT_TRUE(put(s, "f", "v").ok());
  ASSERT_TRUE(put(s, "f", "w", Ttl::Keep()).ok());
  ASSERT_TRUE(s.ttl("f", left).ok());
  EXPECT_EQ(left, -1);
  ASSERT_TRUE(put(s, "n", "v", Ttl::Keep()).ok());
  ASSERT_TRUE(s.ttl("n", left).ok());
  EXPECT_EQ(left, -1);
}

TEST_F(Store, DropTtlDeletes) {
  ShmStore& s = make(kMiB);
  ASSERT_TRUE(put(s, "k", "v").ok());
  ASSERT_TRUE(put(s, "k", "w", Ttl::Drop()).ok());
  EXPECT_EQ(get(s, "k").code, Code::kNotFound);
  ASSERT_TRUE(put(s, "n", "w", Ttl::Drop()).ok());
  EXPECT_EQ(get(s, "n").code, Code::kNotFound);
  ASSERT_TRUE(put(s, "a", "w", Ttl::Drop(), 0, Mode::kAdd).ok());
  EXPECT_EQ(get(s, "a").code, Code::kNotFound);
  EXPECT_EQ(Ttl::Relative(0).kind, Ttl::Kind::kDrop);
  EXPECT_EQ(Ttl::Relative(-5).kind, Ttl::Kind::kDrop);
  EXPECT_EQ(s.stats().items, 0u);
}

TEST_F(Store, Expiry) {
  ShmStore& s = make(kMiB);
  ASSERT_TRUE(put(s, "short", "v", Ttl::Relative(30)).ok());
  ASSERT_TRUE(put(s, "long", "v", Ttl::Relative(60000)).ok());
  ASSERT_TRUE(put(s, "never", "v").ok());
  EXPECT_TRUE(get(s, "short").hit());
  sleep_ms(80);
  EXPECT_EQ(get(s, "short").code, Code::kNotFound);
  EXPECT_EQ(s.contains("short").code, Code::kNotFound);
  EXPECT_TRUE(get(s, "long").hit());
  EXPECT_TRUE(get(s, "never").hit());
  StoreStats st = s.stats();
  EXPECT_EQ(st.expirations, 1u);
  EXPECT_EQ(st.items, 2u);
  // Expired entries cannot be touched, incremented, appended or read for ttl.
  ASSERT_TRUE(put(s, "n", "5", Ttl::Relative(20), kLong).ok());
  sleep_ms(60);
  std::int64_t r = 0;
  EXPECT_EQ(s.incr("n", 1, r).code, Code::kNotFound);
  ASSERT_TRUE(put(s, "c", "5", Ttl::Relative(20)).ok());
  sleep_ms(60);
  EXPECT_EQ(s.concat("c", bytes_of("x"), 0, false).code, Code::kNotFound);
  ASSERT_TRUE(put(s, "t", "5", Ttl::Relative(20)).ok());
  sleep_ms(60);
  EXPECT_EQ(s.touch("t", Ttl::Forever()).code, Code::kNotFound);
  EXPECT_EQ(s.ttl("t", r).code, Code::kNotFound);
}

TEST_F(Store, TouchAndTtl) {
  ShmStore& s = make(kMiB);
  std::int64_t left = 0;
  EXPECT_EQ(s.ttl("k", left).code, Code::kNotFound);
  EXPECT_EQ(s.touch("k", Ttl::Forever()).code, Code::kNotFound);
  ASSERT_TRUE(put(s, "k", "v", Ttl::Relative(30)).ok());
  ASSERT_TRUE(s.ttl("k", left).ok());
  EXPECT_GT(left, 0);
  EXPECT_LE(left, 30);
  ASSERT_TRUE(s.touch("k", Ttl::Relative(60000)).ok());
  sleep_ms(60);
  EXPECT_EQ(get(s, "k").value, "v");  // touched past its first deadline
  ASSERT_TRUE(s.ttl("k", left).ok());
  EXPECT_GT(left, 50000);
  ASSERT_TRUE(s.touch("k", Ttl::Keep()).ok());
  ASSERT_TRUE(s.ttl("k", left).ok());
  EXPECT_GT(left, 50000);
  ASSERT_TRUE(s.touch("k", Ttl::Forever()).ok());
  ASSERT_TRUE(s.ttl("k", left).ok());
  EXPECT_EQ(left, -1);
  ASSERT_TRUE(s.touch("k", Ttl::Relative(20)).ok());
  sleep_ms(60);
  EXPECT_EQ(get(s, "k").code, Code::kNotFound);
  ASSERT_TRUE(put(s, "d", "v").ok());
  ASSERT_TRUE(s.touch("d", Ttl::Drop()).ok());
  EXPECT_EQ(get(s, "d").code, Code::kNotFound);
  EXPECT_EQ(s.stats().items, 0u);
}

TEST_F(Store, Remove) {
  ShmStore& s = make(kMiB);
  EXPECT_EQ(s.remove("k").code, Code::kNotFound);
  ASSERT_TRUE(put(s, "k", "v").ok());
  ASSERT_TRUE(put(s, "j", "w").ok());
  ASSERT_TRUE(s.remove("k").ok());
  EXPECT_EQ(s.remove("k").code, Code::kNotFound);
  EXPECT_EQ(get(s, "k").code, Code::kNotFound);
  EXPECT_EQ(get(s, "j").value, "w");
  EXPECT_EQ(s.stats().items, 1u);
}

TEST_F(Store, BufferTooSmall) {
  ShmStore& s = make(kMiB);
  std::string value(1000, 'q');
  value[999] = 'e';
  ASSERT_TRUE(put(s, "k", value, Ttl::Forever(), kText).ok());
  std::vector<std::byte> small(10);
  ValueOut out{small.data(), small.size()};
  Status st = s.get("k", out);
  EXPECT_EQ(st.code, Code::kBufferTooSmall);
  EXPECT_EQ(st.needed, 1000u);
  std::vector<std::byte> big(st.needed);
  out = ValueOut{big.data(), big.size()};
  ASSERT_TRUE(s.get("k", out).ok());
  EXPECT_EQ(out.size, 1000u);
  EXPECT_EQ(out.flags, kText);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(big.data()), out.size), value);
  // A buffer of exactly the value's size is enough.
  ValueOut zero{big.data(), 999};
  EXPECT_EQ(s.get("k", zero).code, Code::kBufferTooSmall);
}

TEST_F(Store, TooLargeLeavesOldValue) {
  ShmStore& s = make(kMiB, 1, 10000);
  EXPECT_EQ(s.max_value_size(), 10000u);
  ASSERT_TRUE(put(s, "k", "old").ok());
  EXPECT_EQ(put(s, "k", std::string(10001, 'x')).code, Code::kTooLarge);
  EXPECT_EQ(get(s, "k").value, "old");
  ASSERT_TRUE(put(s, "k", std::string(10000, 'x')).ok());
  EXPECT_EQ(get(s, "k").value, std::string(10000, 'x'));
  // Appending past the limit fails and keeps the value.
  EXPECT_EQ(s.concat("k", bytes_of("y"), 0, false).code, Code::kTooLarge);
  EXPECT_EQ(s.concat("k", bytes_of("y"), 0, true).code, Code::kTooLarge);
  EXPECT_EQ(get(s, "k").value, std::string(10000, 'x'));
}

TEST_F(Store, DefaultMaxItemSize) {
  ShmStore& s = make(kMiB);
  std::size_t max = s.max_value_size();
  EXPECT_EQ(max, s.header().max_item_size);
  EXPECT_GT(max, 1000u);
  std::string big(max, 'b');
  big.front() = 'F';
  big.back() = 'L';
  ASSERT_TRUE(put(s, "big", big).ok());
  EXPECT_EQ(get(s, "big").value, big);
  EXPECT_EQ(put(s, "big", big + "!").code, Code::kTooLarge);
  EXPECT_EQ(get(s, "big").value, big);
}

TEST_F(Store, Concat) {
  ShmStore& s = make(kMiB);
  EXPECT_EQ(s.concat("k", bytes_of("x"), kText, false).code, Code::kNotFound);
  ASSERT_TRUE(put(s, "k", "mid", Ttl::Relative(60000), kText).ok());
  ASSERT_TRUE(s.concat("k", bytes_of("-end"), kText, false).ok());
  ASSERT_TRUE(s.concat("k", bytes_of("start-"), kText, true).ok());
  EXPECT_EQ(get(s, "k").value, "start-mid-end");
  EXPECT_EQ(s.concat("k", bytes_of("x"), kBytes, false).code, Code::kTypeMismatch);
  EXPECT_EQ(get(s, "k").value, "start-mid-end");
  // Growing far past the record's room moves it; the expiry goes with it.
  std::string expect = "start-mid-end";
  for (int i = 0; i < 50; ++i) {
    std::string part(100 + i, static_cast<char>('a' + i % 26));
    bool prepend = i % 2 == 1;
    ASSERT_TRUE(s.concat("k", bytes_of(part), kText, prepend).ok());
    expect = prepend ? part + expect : expect + part;
  }
  Got g = get(s, "k");
  EXPECT_EQ(g.value, expect);
  EXPECT_EQ(g.flags, kText);
  std::int64_t left = 0;
  ASSERT_TRUE(s.ttl("k", left).ok());
  EXPECT_GT(left, 50000);
  EXPECT_EQ(s.stats().items, 1u);
}

TEST_F(Store, IncrBasics) {
  ShmStore& s = make(kMiB);
  std::int64_t r = 0;
  EXPECT_EQ(s.incr("n", 1, r).code, Code::kNotFound);
  ASSERT_TRUE(put(s, "n", "5", Ttl::Forever(), kLong).ok());
  ASSERT_TRUE(s.incr("n", 1, r).ok());
  EXPECT_EQ(r, 6);
  ASSERT_TRUE(s.incr("n", -10, r).ok());
  EXPECT_EQ(r, -4);
  Got g = get(s, "n");
  EXPECT_EQ(g.value, "-4");
  EXPECT_EQ(g.flags, kLong);
  ASSERT_TRUE(s.incr("n", 4, r).ok());
  EXPECT_EQ(get(s, "n").value, "0");
  ASSERT_TRUE(put(s, "i", "41", Ttl::Forever(), kInt).ok());
  ASSERT_TRUE(s.incr("i", 1, r).ok());
  EXPECT_EQ(r, 42);
  EXPECT_EQ(get(s, "i").flags, kInt);
}

TEST_F(Store, IncrNotNumeric) {
  ShmStore& s = make(kMiB);
  std::int64_t r = 0;
  ASSERT_TRUE(put(s, "b", "12", Ttl::Forever(), kBytes).ok());
  EXPECT_EQ(s.incr("b", 1, r).code, Code::kNotNumeric);
  ASSERT_TRUE(put(s, "t", "12", Ttl::Forever(), kText).ok());
  EXPECT_EQ(s.incr("t", 1, r).code, Code::kNotNumeric);
  ASSERT_TRUE(put(s, "p", "12", Ttl::Forever(), kPickle).ok());
  EXPECT_EQ(s.incr("p", 1, r).code, Code::kNotNumeric);
  for (std::string bad : {std::string("abc"), std::string(""), std::string("1 "),
                          std::string("1.5")}) {
    ASSERT_TRUE(put(s, "l", bad, Ttl::Forever(), kLong).ok());
    EXPECT_EQ(s.incr("l", 1, r).code, Code::kNotNumeric) << bad;
    EXPECT_EQ(get(s, "l").value, bad);
  }
  EXPECT_EQ(get(s, "b").value, "12");
}

TEST_F(Store, IncrOverflow) {
  ShmStore& s = make(kMiB);
  std::int64_t r = 0;
  const std::int64_t max = std::numeric_limits<std::int64_t>::max();
  const std::int64_t min = std::numeric_limits<std::int64_t>::min();
  ASSERT_TRUE(put(s, "n", num(max - 1), Ttl::Forever(), kLong).ok());
  ASSERT_TRUE(s.incr("n", 1, r).ok());
  EXPECT_EQ(r, max);
  EXPECT_EQ(s.incr("n", 1, r).code, Code::kOverflow);
  EXPECT_EQ(get(s, "n").value, num(max));
  ASSERT_TRUE(put(s, "m", num(min + 1), Ttl::Forever(), kLong).ok());
  ASSERT_TRUE(s.incr("m", -1, r).ok());
  EXPECT_EQ(r, min);
  EXPECT_EQ(s.incr("m", -1, r).code, Code::kOverflow);
  EXPECT_EQ(get(s, "m").value, num(min));
  ASSERT_TRUE(s.incr("m", max, r).ok());
  EXPECT_EQ(r, -1);
}

TEST_F(Store, IncrGrowingDigitsKeepsValueAndExpiry) {
  ShmStore& s = make(kMiB);
  // Key lengths chosen so the record has no spare byte: 40 + key + digits = 48.
  struct Case {
    std::string key, start;
    std::int64_t delta;
    std::string end;
  } cases[] = {{"abcdefg", "9", 1, "10"},
               {"abc", "99999", 1, "100000"},
               {"ab", "-99999", -1, "-100000"},
               {"a", "9999999", 1, "10000000"}};
  for (const Case& c : cases) {
    ASSERT_EQ(40 + c.key.size() + c.start.size(), 48u);
    ASSERT_TRUE(put(s, "neighbour-" + c.key, "before").ok());
    ASSERT_TRUE(put(s, c.key, c.start, Ttl::Relative(60000), kLong).ok());
    ASSERT_TRUE(put(s, "after-" + c.key, "after").ok());
    std::int64_t r = 0;
    ASSERT_TRUE(s.incr(c.key, c.delta, r).ok()) << c.key;
    EXPECT_EQ(num(r), c.end);
    Got g = get(s, c.key);
    EXPECT_EQ(g.value, c.end);
    EXPECT_EQ(g.flags, kLong);
    std::int64_t left = 0;
    ASSERT_TRUE(s.ttl(c.key, left).ok());
    EXPECT_GT(left, 50000) << c.key;
    ASSERT_TRUE(s.incr(c.key, -c.delta, r).ok());
    EXPECT_EQ(get(s, c.key).value, c.start);
    EXPECT_EQ(get(s, "neighbour-" + c.key).value, "before");
    EXPECT_EQ(get(s, "after-" + c.key).value, "after");
  }
  // A forever entry stays forever.
  ASSERT_TRUE(put(s, "abcdefg", "9", Ttl::Forever(), kLong).ok());
  std::int64_t r = 0;
  ASSERT_TRUE(s.incr("abcdefg", 1, r).ok());
  std::int64_t left = 0;
  ASSERT_TRUE(s.ttl("abcdefg", left).ok());
  EXPECT_EQ(left, -1);
  EXPECT_EQ(s.stats().items, 12u);
}

TEST_F(Store, ClearAndStats) {
  ShmStore& s = make(4 * kMiB, 4);
  EXPECT_EQ(s.header().n_shards, 4u);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(put(s, kname("k", i), "v").ok());
  StoreStats st = s.stats();
  EXPECT_EQ(st.items, 100u);
  EXPECT_EQ(st.sets, 100u);
  EXPECT_GT(st.bytes, 100u * 40);
  EXPECT_EQ(st.capacity, std::uint64_t{s.header().ring_capacity} * 4);
  EXPECT_EQ(get(s, "k1").value, "v");
  EXPECT_EQ(get(s, "nope").code, Code::kNotFound);
  st = s.stats();
  EXPECT_EQ(st.hits, 1u);
  EXPECT_EQ(st.misses, 1u);
  ASSERT_TRUE(s.clear().ok());
  st = s.stats();
  EXPECT_EQ(st.items, 0u);
  EXPECT_EQ(st.bytes, 0u);
  EXPECT_EQ(s.header().item_count.load(), 0);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(s.contains(kname("k", i)).code, Code::kNotFound);
  ASSERT_TRUE(put(s, "k1", "again").ok());
  EXPECT_EQ(get(s, "k1").value, "again");
}

TEST_F(Store, ShardsSpreadKeys) {
  ShmStore& s = make(8 * kMiB, 8);
  std::vector<int> per(8);
  for (int i = 0; i < 4000; ++i) {
    std::uint32_t sh = s.shard_of(kname("key:", i));
    ASSERT_LT(sh, 8u);
    ++per[sh];
  }
  for (int n : per) {
    EXPECT_GT(n, 350);
    EXPECT_LT(n, 650);
  }
}

TEST_F(Store, TwoHandlesShareData) {
  SegmentOptions o = options(kMiB);
  ShmStore& a = open(o);
  ShmStore& b = open(o);
  ASSERT_TRUE(put(a, "k", "from a").ok());
  EXPECT_EQ(get(b, "k").value, "from a");
  std::int64_t r = 0;
  ASSERT_TRUE(put(b, "n", "1", Ttl::Forever(), kLong).ok());
  ASSERT_TRUE(a.incr("n", 1, r).ok());
  EXPECT_EQ(get(b, "n").value, "2");
  ASSERT_TRUE(b.remove("k").ok());
  EXPECT_EQ(get(a, "k").code, Code::kNotFound);
  EXPECT_EQ(a.header().generation, b.header().generation);
}

TEST_F(Store, ReopenWithOtherOptionsAttachesToExisting) {
  SegmentOptions o = options(kMiB);
  ShmStore& a = open(o);
  ASSERT_TRUE(put(a, "k", "kept").ok());
  SegmentOptions o2 = o;
  o2.size = 2 * kMiB;
  o2.shards = 2;
  ShmStore& b = open(o2);
  EXPECT_EQ(b.header().n_shards, 1u);
  EXPECT_EQ(get(b, "k").value, "kept");
}

TEST_F(Store, UnlinkThenOpenStartsEmpty) {
  SegmentOptions o = options(kMiB);
  {
    ShmStore& a = open(o);
    ASSERT_TRUE(put(a, "k", "v").ok());
  }
  stores_.clear();
  std::string detail;
  ASSERT_TRUE(nativecache::shm::Segment::unlink(o.name, detail).ok());
  EXPECT_NE(::access(("/dev/shm/" + o.name).c_str(), F_OK), 0);
  EXPECT_NE(::access(("/dev/shm/" + o.name + ".lock").c_str(), F_OK), 0);
  ShmStore& b = open(o);
  EXPECT_EQ(get(b, "k").code, Code::kNotFound);
}

TEST_F(Store, UnlinkWhileAttachedReattaches) {
  SegmentOptions o = options(kMiB);
  ShmStore& a = open(o);
  ASSERT_TRUE(put(a, "k", "v").ok());
  std::string detail;
  ASSERT_TRUE(nativecache::shm::Segment::unlink(o.name, detail).ok());
  // The retired segment is left: a recreates the name and starts afresh.
  EXPECT_EQ(get(a, "k").code, Code::kNotFound);
  ASSERT_TRUE(put(a, "k", "w").ok());
  ShmStore& b = open(o);
  EXPECT_EQ(get(b, "k").value, "w");
}

// The stamps a caller keeping decoded values relies on: a record still the one it names
// is reported unchanged without a copy; any write, in any shard, and a new segment under
// the same name name something else.
ValueOut stamped(ShmStore& s, std::string_view key, std::uint64_t epoch, std::uint64_t cas,
                 std::vector<std::byte>& buf, Status& st) {
  buf.assign(64, std::byte{0});
  ValueOut out{buf.data(), buf.size()};
  out.known_epoch = epoch;
  out.known_cas = cas;
  st = s.get(key, out);
  return out;
}

TEST_F(Store, StampsNameOneWriteOfOneValue) {
  SegmentOptions o = options(kMiB);
  ShmStore& s = open(o);
  ASSERT_TRUE(put(s, "k", "v1").ok());
  std::vector<std::byte> buf;
  Status st;
  ValueOut first = stamped(s, "k", 0, 0, buf, st);
  ASSERT_TRUE(st.ok());
  EXPECT_NE(first.epoch, 0u);
  EXPECT_FALSE(first.unchanged);
  EXPECT_EQ(first.size, 2u);
  ValueOut again = stamped(s, "k", first.epoch, first.cas, buf, st);
  ASSERT_TRUE(st.ok());
  EXPECT_TRUE(again.unchanged);
  EXPECT_EQ(again.size, 0u);
  EXPECT_EQ(again.cas, first.cas);
  // A wrong epoch with the right cas is not the same value.
  EXPECT_FALSE(stamped(s, "k", first.epoch + 1, first.cas, buf, st).unchanged);
  ASSERT_TRUE(put(s, "k", "v2").ok());
  ValueOut after = stamped(s, "k", first.epoch, first.cas, buf, st);
  ASSERT_TRUE(st.ok());
  EXPECT_FALSE(after.unchanged);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(after.data), after.size), "v2");
  // Unique across shards: many keys, every write a token no other write had.
  std::set<std::uint64_t> tokens;
  for (int i = 0; i < 2000; ++i) {
    std::string key = "key" + std::to_string(i);
    ASSERT_TRUE(put(s, key, "x").ok());
    ASSERT_TRUE(put(s, key, "y").ok());
    Got g = get(s, key);
    ASSERT_TRUE(g.hit());
    EXPECT_TRUE(tokens.insert(g.cas).second) << key;
  }
  // The same name, a new segment: another epoch.
  std::string detail;
  ASSERT_TRUE(nativecache::shm::Segment::unlink(o.name, detail).ok());
  ASSERT_TRUE(put(s, "k", "v1").ok());
  ValueOut fresh = stamped(s, "k", first.epoch, first.cas, buf, st);
  ASSERT_TRUE(st.ok());
  EXPECT_FALSE(fresh.unchanged);
  EXPECT_NE(fresh.epoch, first.epoch);
}

}  // namespace
