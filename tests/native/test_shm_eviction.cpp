// Eviction, CLOCK second chance, culling, and a long randomised run against a model.
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <chrono>
#include <cstdio>

#include "shm_test_util.hpp"

namespace {

using namespace nctest;
using nativecache::codec::kBytes;
using nativecache::codec::kLong;
using nativecache::codec::kText;

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * kKiB;

std::uint64_t record_bytes(std::size_t key, std::size_t value) {
  return (sizeof(nativecache::shm::Record) + key + value + 7) & ~std::uint64_t{7};
}

// A value whose every byte depends on the key, its version and its position.
std::string value_for(int key, int version, std::size_t size) {
  std::string v(size, '\0');
  std::uint32_t x = static_cast<std::uint32_t>(key) * 2654435761u ^
                    static_cast<std::uint32_t>(version) * 40503u;
  for (std::size_t i = 0; i < size; ++i) {
    x = x * 1103515245u + 12345u;
    v[i] = static_cast<char>(x >> 24);
  }
  return v;
}

std::size_t pick_size(std::mt19937& rng) {
  switch (rng() % 4) {
    case 0: return rng() % 64;
    case 1: return 64 + rng() % 1000;
    case 2: return 1000 + rng() % 8000;
    default: return 9000 + rng() % 20000;
  }
}

class Eviction : public ShmTest {};

TEST_F(Eviction, OverfilledStoreNeverLies) {
  ShmStore& s = make(256 * kKiB, 1);
  const std::uint64_t capacity = s.stats().capacity;
  ASSERT_EQ(capacity, s.header().ring_capacity);
  std::mt19937 rng(2024);
  const int kKeys = 400;
  struct Entry {
    int version;
    std::size_t size;
  };
  std::map<int, Entry> model;  // keys that may be present, with their latest value
  std::uint64_t inserted_absent = 0;
  std::uint64_t total_set_bytes = 0;
  auto key = [](int k) { return kname("key:", k); };
  auto check_all = [&]() {
    std::uint64_t present = 0;
    std::uint64_t min_bytes = 0;
    for (int k = 0; k < kKeys; ++k) {
      Got g = get(s, key(k));
      auto it = model.find(k);
      if (g.hit()) {
        ASSERT_NE(it, model.end()) << "key " << k << " came back after it was gone";
        ASSERT_EQ(g.value, value_for(k, it->second.version, it->second.size)) << k;
        ASSERT_EQ(g.flags, static_cast<std::uint32_t>(k % 3 == 0 ? kText : kBytes));
        ++present;
        min_bytes += record_bytes(key(k).size(), it->second.size);
      } else {
        ASSERT_EQ(g.code, Code::kNotFound);
        if (it != model.end()) model.erase(it);
      }
    }
    StoreStats st = s.stats();
    EXPECT_EQ(st.items, present);
    EXPECT_LE(st.bytes, capacity);
    EXPECT_GE(st.bytes, min_bytes);
    EXPECT_EQ(s.header().item_count.load(), static_cast<std::int64_t>(present));
  };
  for (int op = 0; op < 20000; ++op) {
    int k = static_cast<int>(rng() % kKeys);
    std::size_t size = pick_size(rng);
    int version = op;
    bool was_present = s.contains(key(k)).ok();
    if (!was_present) {
      ++inserted_absent;
      model.erase(k);
    }
    ASSERT_TRUE(put(s, key(k), value_for(k, version, size), Ttl::Forever(),
                    k % 3 == 0 ? kText : kBytes)
                    .ok());
    total_set_bytes += size;
    model[k] = Entry{version, size};
    // The value just written is always there, whatever it pushed out.
    Got g = get(s, key(k));
    ASSERT_TRUE(g.hit()) << op;
    ASSERT_EQ(g.value.size(), size);
    ASSERT_EQ(g.value, value_for(k, version, size));
    // And a random other key is either gone or exactly its latest value.
    int o = static_cast<int>(rng() % kKeys);
    Got h = get(s, key(o));
    auto it = model.find(o);
    if (h.hit()) {
      ASSERT_NE(it, model.end()) << o;
      ASSERT_EQ(h.value, value_for(o, it->second.version, it->second.size)) << o;
    } else if (it != model.end()) {
      model.erase(it);
    }
    if (op % 2000 == 1999) check_all();
  }
  check_all();
  ASSERT_GT(total_set_bytes, 50 * capacity);
  StoreStats st = s.stats();
  EXPECT_GT(st.evictions, 1000u);
  EXPECT_EQ(st.evictions + st.items, inserted_absent);
  EXPECT_EQ(st.recoveries, 0u);
  EXPECT_EQ(st.expirations, 0u);
  EXPECT_EQ(st.sets, 20000u);
}

TEST_F(Eviction, ExpiredRecordsAtTheTailCountAsExpirations) {
  ShmStore& s = make(256 * kKiB, 1);
  const std::string value(1000, 'v');
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(put(s, kname("exp", i), value, Ttl::Relative(20)).ok());
  }
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(put(s, kname("keep", i), value).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  // 260 records of ~1 KiB overflow a ~248 KiB ring; the oldest (expired) make the room.
  for (int i = 0; i < 60; ++i) ASSERT_TRUE(put(s, kname("new", i), value).ok());
  StoreStats st = s.stats();
  EXPECT_EQ(st.evictions, 0u);
  EXPECT_GE(st.expirations, 18u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(get(s, kname("exp", i)).code, Code::kNotFound);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(get(s, kname("keep", i)).value, value);
  for (int i = 0; i < 60; ++i) EXPECT_EQ(get(s, kname("new", i)).value, value);
  st = s.stats();
  EXPECT_EQ(st.expirations, 100u);
  EXPECT_EQ(st.evictions, 0u);
  EXPECT_EQ(st.items, 160u);
}

class SecondChance : public ShmTest {
 protected:
  // 100 old keys of which the first `hot` are read, then 200 new keys of the same size.
  void run(ShmStore& s, int hot) {
    const std::string value(1000, 'x');
    for (int i = 0; i < 100; ++i) ASSERT_TRUE(put(s, name('k', i), value).ok());
    for (int i = 0; i < hot; ++i) ASSERT_TRUE(get(s, name('k', i)).hit());
    for (int i = 0; i < 200; ++i) ASSERT_TRUE(put(s, name('f', i), value).ok());
  }
  static std::string name(char prefix, int i) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%c%03d", prefix, i);
    return buf;
  }
};

TEST_F(SecondChance, ReadKeysOutliveUnreadOnes) {
  ShmStore& s = make(256 * kKiB, 1);
  // 300 records of 1048 bytes cannot fit: at least 58 must go.
  ASSERT_LT(s.header().ring_capacity / record_bytes(4, 1000), 300u);
  run(s, 10);
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(s.contains(name('k', i)).ok()) << i;
  for (int i = 10; i < 20; ++i) EXPECT_EQ(s.contains(name('k', i)).code, Code::kNotFound) << i;
  for (int i = 100; i < 200; ++i) EXPECT_TRUE(s.contains(name('f', i)).ok()) << i;
  EXPECT_GE(s.stats().evictions, 58u);
  // Their reference bits were spent: unread from now on, they go like any other.
  const std::string value(1000, 'x');
  for (int i = 0; i < 300; ++i) ASSERT_TRUE(put(s, name('g', i), value).ok());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(s.contains(name('k', i)).code, Code::kNotFound) << i;
  // And the values that were moved to make room for them are intact until then.
  EXPECT_EQ(get(s, name('g', 299)).value, value);
}

TEST_F(SecondChance, WithoutReadsOldestGoFirst) {
  ShmStore& s = make(256 * kKiB, 1);
  run(s, 0);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(s.contains(name('k', i)).code, Code::kNotFound) << i;
  for (int i = 100; i < 200; ++i) EXPECT_TRUE(s.contains(name('f', i)).ok()) << i;
}

TEST_F(SecondChance, MovedRecordsKeepTheirContent) {
  ShmStore& s = make(256 * kKiB, 1);
  std::mt19937 rng(5);
  // Hot keys of assorted sizes are slid to the head over and over as the ring turns.
  std::vector<std::string> hot_values;
  for (int i = 0; i < 20; ++i) {
    hot_values.push_back(value_for(i, 0, 100 + rng() % 3000));
    ASSERT_TRUE(put(s, kname("hot", i), hot_values.back(), Ttl::Relative(600000),
                    kText)
                    .ok());
  }
  for (int round = 0; round < 3000; ++round) {
    for (int i = 0; i < 20; ++i) {
      Got g = get(s, kname("hot", i));
      ASSERT_TRUE(g.hit()) << round << " " << i;
      ASSERT_EQ(g.value, hot_values[i]);
      ASSERT_EQ(g.flags, kText);
    }
    std::size_t size = pick_size(rng);
    ASSERT_TRUE(put(s, kname("cold", round), value_for(1000 + round, 0, size)).ok());
  }
  std::int64_t left = 0;
  ASSERT_TRUE(s.ttl("hot0", left).ok());
  EXPECT_GT(left, 500000);
  EXPECT_GT(s.stats().evictions, 1000u);
}

TEST_F(SecondChance, CullAtTheRingEndMovesReadKeysSafely) {
  ShmStore& s = make(256 * kKiB, 1);
  const std::uint32_t cap = s.header().ring_capacity;
  const std::uint64_t rec = record_bytes(4, 1000);
  const int fits = static_cast<int>(cap / rec);
  ASSERT_LT(cap - fits * rec, rec) << "the ring must end in a gap too small for a record";
  // Fill the ring without wrapping, so its head sits in that last small gap.
  std::vector<std::string> values;
  for (int i = 0; i < fits; ++i) {
    values.push_back(value_for(i, 1, 1000));
    ASSERT_TRUE(put(s, name('k', i), values.back()).ok());
  }
  ASSERT_EQ(s.stats().evictions, 0u);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(get(s, name('k', i)).hit());
  // A cull reaches the read keys first at the tail; they must move without running off
  // the end of the ring.
  Limits lim{fits, 3, true};
  ASSERT_TRUE(put(s, "new!", std::string(1000, 'n'), Ttl::Forever(), 0, Mode::kSet, 0, lim).ok());
  EXPECT_EQ(s.stats().items, static_cast<std::uint64_t>(fits - fits / 3 + 1));
  for (int i = 0; i < 5; ++i) {
    Got g = get(s, name('k', i));
    ASSERT_TRUE(g.hit()) << i;
    EXPECT_EQ(g.value, values[static_cast<std::size_t>(i)]) << i;
  }
  for (int i = 5; i < 5 + fits / 3; ++i) EXPECT_EQ(s.contains(name('k', i)).code, Code::kNotFound) << i;
  for (int i = 5 + fits / 3; i < fits; ++i) {
    EXPECT_EQ(get(s, name('k', i)).value, values[static_cast<std::size_t>(i)]) << i;
  }
  EXPECT_EQ(get(s, "new!").value, std::string(1000, 'n'));
  // And the ring keeps working once it wraps.
  for (int i = 0; i < 400; ++i) {
    ASSERT_TRUE(put(s, name('w', i % 1000), value_for(i, 2, 900 + i % 200)).ok());
    ASSERT_EQ(get(s, name('w', i % 1000)).value, value_for(i, 2, 900 + i % 200));
  }
  EXPECT_EQ(s.stats().recoveries, 0u);
}

// A randomised run of every mutating operation against a model. The store may forget
// anything (it evicts), but what it returns must be the model's latest value, and a
// key it forgot never comes back.
struct StressParam {
  std::uint64_t size;
  std::uint32_t shards;
  unsigned seed;
};

class Stress : public ShmTest, public ::testing::WithParamInterface<StressParam> {};

TEST_P(Stress, MatchesModel) {
  const StressParam p = GetParam();
  ShmStore& s = make(p.size, p.shards);
  const std::size_t max_item = s.max_value_size();
  std::mt19937 rng(p.seed);
  struct Entry {
    std::string value;
    std::uint32_t flags;
  };
  std::map<std::string, Entry> model;
  const int kKeys = 300;
  auto key = [](int k) { return kname(k % 2 ? "n" : "s", k); };
  auto random_value = [&](std::size_t n) {
    std::string v(n, '\0');
    for (char& c : v) c = static_cast<char>('a' + rng() % 26);
    return v;
  };
  auto numeric = [](const Entry& e) -> std::optional<std::int64_t> {
    if (e.flags != kLong) return std::nullopt;
    return nativecache::codec::parse_int(e.value);
  };
  auto observe_miss = [&](const std::string& k) { model.erase(k); };
  auto check_hit = [&](const std::string& k, const Got& g) {
    auto it = model.find(k);
    ASSERT_NE(it, model.end()) << k << " present but the model says it is gone";
    ASSERT_EQ(g.value, it->second.value) << k;
    ASSERT_EQ(g.flags, it->second.flags) << k;
  };
  std::uint64_t ops_ok = 0;
  const int kOps = 150000;
  for (int op = 0; op < kOps; ++op) {
    std::string k = key(static_cast<int>(rng() % kKeys));
    bool counter = k[0] == 'n';
    auto what = static_cast<unsigned>(rng() % 100);
    if (what < 35) {  // set, add or replace
      Entry e;
      if (counter && rng() % 4 != 0) {
        e = {num(static_cast<std::int64_t>(rng() % 2000) - 1000), kLong};
      } else {
        e = {random_value(pick_size(rng)), rng() % 2 ? kText : kBytes};
      }
      Mode mode = what < 25 ? Mode::kSet : what < 30 ? Mode::kAdd : Mode::kReplace;
      Status st = put(s, k, e.value, Ttl::Forever(), e.flags, mode);
      if (mode == Mode::kSet) {
        ASSERT_TRUE(st.ok());
        model[k] = e;
      } else if (mode == Mode::kAdd) {
        if (st.ok()) {
          model[k] = e;
        } else {
          ASSERT_EQ(st.code, Code::kExists);
          ASSERT_TRUE(model.count(k)) << "add refused on a key the model says is gone";
        }
      } else {
        if (st.ok()) {
          ASSERT_TRUE(model.count(k)) << "replace found a key the model says is gone";
          model[k] = e;
        } else {
          ASSERT_EQ(st.code, Code::kNotFound);
          observe_miss(k);
        }
      }
      if (st.ok()) {
        Got g = get(s, k);
        ASSERT_TRUE(g.hit()) << "a value just written is missing";
        check_hit(k, g);
      }
    } else if (what < 60) {  // get
      Got g = get(s, k);
      if (g.hit()) {
        check_hit(k, g);
      } else {
        ASSERT_EQ(g.code, Code::kNotFound);
        observe_miss(k);
      }
    } else if (what < 68) {  // delete
      Status st = s.remove(k);
      if (st.ok()) {
        ASSERT_TRUE(model.count(k)) << "deleted a key the model says is gone";
      } else {
        ASSERT_EQ(st.code, Code::kNotFound);
      }
      model.erase(k);
    } else if (what < 82) {  // append / prepend
      bool prepend = rng() % 2;
      std::string part = random_value(rng() % 3 == 0 ? rng() % 4000 : rng() % 40);
      auto it = model.find(k);
      std::uint32_t flags = it != model.end() && rng() % 8 != 0 ? it->second.flags
                                                                 : (rng() % 2 ? kText : kBytes);
      Status st = s.concat(k, bytes_of(part), flags, prepend);
      if (st.ok()) {
        ASSERT_NE(it, model.end()) << "appended to a key the model says is gone";
        ASSERT_EQ(it->second.flags, flags);
        it->second.value = prepend ? part + it->second.value : it->second.value + part;
      } else if (st.code == Code::kNotFound) {
        observe_miss(k);
      } else if (st.code == Code::kTypeMismatch) {
        ASSERT_NE(it, model.end());
        ASSERT_NE(it->second.flags, flags);
      } else {
        ASSERT_EQ(st.code, Code::kTooLarge);
        ASSERT_NE(it, model.end());
        std::size_t grown = it->second.value.size() + part.size();
        ASSERT_TRUE(grown > max_item ||
                    record_bytes(k.size(), grown) > s.header().ring_capacity / 2)
            << grown;
      }
      if (st.ok()) {
        Got g = get(s, k);
        ASSERT_TRUE(g.hit());
        check_hit(k, g);
      }
    } else if (what < 97) {  // incr / decr
      std::int64_t delta = rng() % 3 == 0 ? -static_cast<std::int64_t>(rng() % 100000)
                                          : static_cast<std::int64_t>(rng() % 100000);
      std::int64_t result = 0;
      Status st = s.incr(k, delta, result);
      auto it = model.find(k);
      if (st.ok()) {
        ASSERT_NE(it, model.end()) << "incremented a key the model says is gone";
        auto old = numeric(it->second);
        ASSERT_TRUE(old.has_value()) << it->second.value;
        ASSERT_EQ(result, *old + delta);
        it->second.value = num(result);
        Got g = get(s, k);
        ASSERT_TRUE(g.hit());
        check_hit(k, g);
      } else if (st.code == Code::kNotFound) {
        observe_miss(k);
      } else {
        ASSERT_EQ(st.code, Code::kNotNumeric);
        ASSERT_NE(it, model.end());
        ASSERT_FALSE(numeric(it->second).has_value()) << it->second.value;
      }
    } else {  // touch keeps the value
      Status st = s.touch(k, Ttl::Forever());
      if (st.ok()) {
        ASSERT_TRUE(model.count(k));
      } else {
        ASSERT_EQ(st.code, Code::kNotFound);
        observe_miss(k);
      }
    }
    ++ops_ok;
    if (op % 5000 == 4999 || op == kOps - 1) {
      std::uint64_t present = 0;
      for (int i = 0; i < kKeys; ++i) {
        std::string kk = key(i);
        Got g = get(s, kk);
        if (g.hit()) {
          check_hit(kk, g);
          ++present;
        } else {
          observe_miss(kk);
        }
      }
      StoreStats st = s.stats();
      ASSERT_EQ(st.items, present);
      ASSERT_LE(st.bytes, st.capacity);
      ASSERT_EQ(st.recoveries, 0u);
    }
  }
  EXPECT_EQ(ops_ok, static_cast<std::uint64_t>(kOps));
  EXPECT_GT(s.stats().evictions, 100u);
}

INSTANTIATE_TEST_SUITE_P(Rings, Stress,
                         ::testing::Values(StressParam{256 * kKiB, 1, 1},
                                           StressParam{256 * kKiB, 1, 77},
                                           StressParam{512 * kKiB, 3, 2},
                                           StressParam{kMiB, 2, 3}),
                         [](const ::testing::TestParamInfo<StressParam>& info) {
                           return std::to_string(info.param.size / kKiB) + "KiB_" +
                                  std::to_string(info.param.shards) + "shards_seed" +
                                  std::to_string(info.param.seed);
                         });

class Cull : public ShmTest, public ::testing::WithParamInterface<std::uint32_t> {
 protected:
  std::uint64_t present(ShmStore& s, int n) {
    std::uint64_t c = 0;
    for (int i = 0; i < n; ++i) c += s.contains(kname("c", i)).ok() ? 1 : 0;
    return c;
  }
  ShmStore& store() { return make(GetParam() * 2 * kMiB, GetParam()); }
};

TEST_P(Cull, EveryThirdGoesAtTheLimit) {
  ShmStore& s = store();
  Limits lim{30, 3, true};
  for (int i = 0; i < 49; ++i) ASSERT_TRUE(put(s, kname("c", i), "v", Ttl::Forever(), 0, Mode::kSet, 0, lim).ok());
  EXPECT_EQ(present(s, 49), 29u);
  EXPECT_EQ(s.stats().items, 29u);
  EXPECT_EQ(s.header().item_count.load(), 29);
  EXPECT_TRUE(s.contains("c48").ok());  // the value being set is stored after the cull
}

TEST_P(Cull, FrequencyZeroClears) {
  ShmStore& s = store();
  Limits lim{30, 0, true};
  for (int i = 0; i < 49; ++i) ASSERT_TRUE(put(s, kname("c", i), "v", Ttl::Forever(), 0, Mode::kSet, 0, lim).ok());
  EXPECT_EQ(present(s, 49), 19u);
  for (int i = 30; i < 49; ++i) EXPECT_TRUE(s.contains(kname("c", i)).ok()) << i;
  EXPECT_EQ(s.stats().items, 19u);
}

TEST_P(Cull, NegativeLimitStillStores) {
  ShmStore& s = store();
  Limits lim{-1, 3, true};
  for (int i = 0; i < 20; ++i) {
    std::string k = kname("c", i);
    ASSERT_TRUE(put(s, k, "v", Ttl::Forever(), 0, Mode::kSet, 0, lim).ok());
    EXPECT_TRUE(s.contains(k).ok()) << i;
  }
  // Each set culls a third (rounded down) first: the count settles at 3.
  EXPECT_EQ(present(s, 20), 3u);
  Limits zero{-1, 0, true};
  ASSERT_TRUE(put(s, "c20", "v", Ttl::Forever(), 0, Mode::kSet, 0, zero).ok());
  EXPECT_EQ(present(s, 21), 1u);
  EXPECT_TRUE(s.contains("c20").ok());
}

TEST_P(Cull, ReplaceAndCasDoNotCull) {
  ShmStore& s = store();
  Limits lim{5, 0, true};
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(put(s, kname("c", i), "v", Ttl::Forever(), 0, Mode::kSet, 0, lim).ok());
  ASSERT_TRUE(put(s, "c0", "w", Ttl::Forever(), 0, Mode::kReplace, 0, lim).ok());
  Got g = get(s, "c1");
  ASSERT_TRUE(put(s, "c1", "w", Ttl::Forever(), 0, Mode::kCas, g.cas, lim).ok());
  EXPECT_EQ(present(s, 5), 5u);
  // An add on a live key is refused before any cull.
  EXPECT_EQ(put(s, "c2", "w", Ttl::Forever(), 0, Mode::kAdd, 0, lim).code, Code::kExists);
  EXPECT_EQ(present(s, 5), 5u);
  ASSERT_TRUE(put(s, "c5", "w", Ttl::Forever(), 0, Mode::kAdd, 0, lim).ok());
  EXPECT_EQ(present(s, 6), 1u);
  // Without enforcement the limit is not applied.
  Limits off{1, 0, false};
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(put(s, kname("c", i), "v", Ttl::Forever(), 0, Mode::kSet, 0, off).ok());
  EXPECT_EQ(present(s, 10), 10u);
}

INSTANTIATE_TEST_SUITE_P(Shards, Cull, ::testing::Values(1u, 4u));

}  // namespace
