#include "core/shm/shm_store.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <optional>

#include "core/codec.hpp"
#include "core/hash.hpp"
#include "core/shm/robust_mutex.hpp"

namespace nativecache::shm {

namespace {
void set_dirty(ShardHeader& h, std::uint8_t v) noexcept {
  std::atomic_ref<std::uint8_t>(h.dirty).store(v, std::memory_order_relaxed);
  // The flag must reach memory before (dirty=1) or after (dirty=0) the mutation it
  // guards, whatever the compiler would like to reorder: a SIGKILL can land anywhere.
  std::atomic_signal_fence(std::memory_order_seq_cst);
}

std::span<const std::byte> as_bytes(std::string_view s) noexcept {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
}  // namespace

// Holds one shard's lock for a scope; repairs the shard if its last owner died in a
// critical section, and marks the shard dirty while held, unless told it only reads
// (a reader killed holding it then leaves nothing to reset).
class ShmStore::ShardLock {
 public:
  // After a wait, everything up to the end of the scope runs without the GIL: critical
  // sections touch only shared memory, their mapping and the caller's buffers.
  // With `shared`, a wait gives up the GIL into it and the owner of `shared` takes it back,
  // after every lock taken with it is let go (several shards held at once).
  ShardLock(Mapping& m, ShardView& v, Waited* shared = nullptr, bool writes = true) noexcept
      : v_(v), waited_(shared != nullptr ? *shared : own_), writes_(writes) {
    Torn torn{&m, &v};
    LockResult r = lock(&v.header().mutex, waited_, {&ShardLock::repair, &torn},
                        m.lock_timeout_ms);
    if (r == LockResult::kUnrecoverable || r == LockResult::kTimedOut) {
      m.seg->retire();  // every process moves to a new segment
      return;
    }
    held_ = true;
    if (writes_) set_dirty(v.header(), 1);
  }
  ~ShardLock() {
    if (held_) {
      if (writes_) set_dirty(v_.header(), 0);
      unlock(&v_.header().mutex);
    }
    own_.resume();  // the GIL is taken back only with the lock let go
  }
  ShardLock(const ShardLock&) = delete;
  ShardLock& operator=(const ShardLock&) = delete;
  [[nodiscard]] bool held() const noexcept { return held_; }
  // A lock taken read-only is about to write after all: a holder killed from here on
  // leaves the shard to be reset.
  void begin_writing() noexcept {
    if (held_ && !writes_) {
      set_dirty(v_.header(), 1);
      writes_ = true;
    }
  }

 private:
  struct Torn {
    Mapping* m;
    ShardView* v;
  };
  // The last owner died holding the lock: a shard it left dirty is reset.
  static void repair(void* ctx) noexcept {
    auto* t = static_cast<Torn*>(ctx);
    if (t->v->header().dirty != 0) recover(*t->m, *t->v);
  }

  ShardView& v_;
  Waited own_;
  Waited& waited_;
  bool writes_;
  bool held_ = false;
};

Status ShmStore::open(const SegmentOptions& opts, std::unique_ptr<ShmStore>& out,
                      std::string& detail) {
  std::unique_ptr<ShmStore> store(new ShmStore(opts));
  if (Status st = store->attach(detail); !st.ok()) return st;
  out = std::move(store);
  return Status::Ok();
}

Status ShmStore::attach(std::string& detail) {
  std::unique_ptr<Segment> seg;
  if (Status st = Segment::open(opts_, seg, detail); !st.ok()) return st;
  install(std::move(seg));
  return Status::Ok();
}

// Opening waits for the segment's lock file, which another process holds while it makes
// the segment (allocating all of its SIZE), so the GIL is given up meanwhile. Installing
// needs it back: current_ and retired_ are the GIL's. A thread that reattached meanwhile
// leaves nothing to do.
Status ShmStore::reattach() {
  std::unique_ptr<Segment> seg;
  std::string detail;
  Status st = Status::Ok();
  {
    InterpreterReleased released;
    st = Segment::open(opts_, seg, detail);
  }
  if (!st.ok()) return st;
  if (!current_->seg->ready()) install(std::move(seg));
  return Status::Ok();
}

void ShmStore::install(std::unique_ptr<Segment> seg) {
  auto m = std::make_unique<Mapping>();
  m->shards.reserve(seg->header()->n_shards);
  for (std::uint32_t i = 0; i < seg->header()->n_shards; ++i) {
    m->shards.emplace_back(seg->header(), seg->shard_base(i), i);
  }
  m->seg = std::move(seg);
  m->lock_timeout_ms = opts_.lock_timeout_ms;
  if (current_) retired_.push_back(std::move(current_));
  current_ = std::move(m);
}

// Runs with the GIL held, as every operation begins: a mapping becomes a user's here,
// when it is current, so a retired one seen unused stays unused.
Status ShmStore::attached(Mapping*& out) {
  if (!retired_.empty()) [[unlikely]] {
    std::erase_if(retired_, [](const std::unique_ptr<Mapping>& r) {
      return r->users.load(std::memory_order_acquire) == 0;
    });
  }
  if (!current_->seg->ready()) [[unlikely]] {
    if (Status st = reattach(); !st.ok()) {
      return Status::Of(Code::kUnavailable, "the shared-memory segment could not be reattached");
    }
  }
  out = current_.get();
  return Status::Ok();
}

namespace {
std::size_t shard_index(std::uint64_t h, std::size_t n) noexcept {
  return static_cast<std::size_t>(((h >> 32) * n) >> 32);
}
}  // namespace

std::uint32_t ShmStore::shard_of(std::string_view key) const noexcept {
  const SegmentHeader& h = current_->header();
  return static_cast<std::uint32_t>(shard_index(
      keyed_hash(key, h.hash_secret[0], h.hash_secret[1]), current_->shards.size()));
}

ShardView& ShmStore::Mapping::shard_for(std::string_view key, std::uint32_t& hash) noexcept {
  // The secret is read from the segment on every call, as every process does: one
  // damaged there leaves old entries unreachable in every process alike, never a key
  // found by one process and missed by another.
  const SegmentHeader& sh = header();
  std::uint64_t h = keyed_hash(key, sh.hash_secret[0], sh.hash_secret[1]);
  hash = static_cast<std::uint32_t>(h);
  return shards[shard_index(h, shards.size())];
}

void ShmStore::recover(Mapping& m, ShardView& v) noexcept {
  v.reset();
  m.header().recoveries.fetch_add(1, std::memory_order_relaxed);
  m.header().count_stale.store(1, std::memory_order_relaxed);
}

// The exact count: every shard's lock, taken in index order (no other path holds two),
// then the sum of their counts. A lock found unrecoverable or timed out retires the
// segment and ends the recount.
std::int64_t ShmStore::recount(Mapping& m) {
  const std::size_t n = m.shards.size();
  Waited waited;  // outlives `held`: the GIL comes back once every lock is let go
  // Made before the first lock: nothing is allocated while one is held.
  auto held = std::make_unique<std::optional<ShardLock>[]>(n);
  for (std::size_t i = 0; i < n; ++i) {
    held[i].emplace(m, m.shards[i], &waited, /*writes=*/false);
    // Retired: the count stays as it is, stale or not, and no more locks are waited for.
    if (!held[i]->held()) return m.header().item_count.load(std::memory_order_relaxed);
  }
  // A shard whose counts its ring cannot hold is damaged: summed, they would stand for
  // entries that do not exist (a count near 2^31 culls everything). Reset it as any
  // other damage is, then count.
  for (std::size_t i = 0; i < n; ++i) {
    if (!m.shards[i].ring_sane()) {
      held[i]->begin_writing();
      recover(m, m.shards[i]);
    }
  }
  std::int64_t total = 0;
  for (std::size_t i = 0; i < n; ++i) {
    total += m.shards[i].header().items.load(std::memory_order_relaxed);
  }
  m.header().item_count.store(total, std::memory_order_relaxed);
  // Cleared only once the count is right: a recount that ends before this (killed,
  // retired) leaves it set, and no reset or count change can run while every lock is
  // held.
  m.header().count_stale.store(0, std::memory_order_relaxed);
  return total;
}

std::size_t ShmStore::max_value_size() const noexcept { return current_->header().max_item_size; }

// Counts an operation as a user of its mapping until it returns.
class InUse {
 public:
  explicit InUse(std::atomic<std::int64_t>& users) noexcept : users_(users) {
    users_.fetch_add(1, std::memory_order_relaxed);
  }
  ~InUse() { users_.fetch_sub(1, std::memory_order_release); }
  InUse(const InUse&) = delete;
  InUse& operator=(const InUse&) = delete;

 private:
  std::atomic<std::int64_t>& users_;
};

// Declares `m`, the mapping the operation works on to its end.
#define NC_ATTACHED()                           \
  Mapping* m_ptr_ = nullptr;                    \
  if (Status st_ = attached(m_ptr_); !st_.ok()) { \
    return st_;                                 \
  }                                             \
  InUse in_use_(m_ptr_->users);                 \
  Mapping& m = *m_ptr_

#define NC_LOCKED(lk)                                                                     \
  if (!(lk).held()) {                                                                     \
    return Status::Of(Code::kUnavailable, "a shard lock is unrecoverable; segment retired"); \
  }

Status ShmStore::get(std::string_view key, ValueOut& out) {
  NC_ATTACHED();
  std::uint32_t hash;
  ShardView& v = m.shard_for(key, hash);
  ShardLock lk(m, v);
  NC_LOCKED(lk);
  const std::int64_t now = now_ms();  // after the lock: a wait for it may have been long
  auto f = v.find(key, hash, now);
  if (f.corrupt) {
    recover(m, v);
    ++v.header().misses;
    return Status::Of(Code::kNotFound);
  }
  if (f.rec == nullptr) {
    ++v.header().misses;
    return Status::Of(Code::kNotFound);
  }
  out.epoch = m.header().generation;
  if (out.known_cas != 0 && out.known_cas == f.rec->cas && out.known_epoch == out.epoch) {
    out.unchanged = true;
    out.size = 0;
    out.flags = f.rec->flags;
    out.cas = f.rec->cas;
    f.rec->ref = 1;
    ++v.header().hits;
    return Status::Ok();
  }
  if (f.rec->val_len > out.capacity) {
    Status st = Status::Of(Code::kBufferTooSmall);
    st.needed = f.rec->val_len;
    return st;
  }
  copy_bytes(out.data, v.value_of(f.rec), f.rec->val_len);
  out.size = f.rec->val_len;
  out.flags = f.rec->flags;
  out.cas = f.rec->cas;
  f.rec->ref = 1;
  ++v.header().hits;
  return Status::Ok();
}

Status ShmStore::contains(std::string_view key) {
  NC_ATTACHED();
  std::uint32_t hash;
  ShardView& v = m.shard_for(key, hash);
  ShardLock lk(m, v);
  NC_LOCKED(lk);
  const std::int64_t now = now_ms();  // after the lock: a wait for it may have been long
  auto f = v.find(key, hash, now);
  if (f.corrupt) recover(m, v);
  return f.rec != nullptr ? Status::Ok() : Status::Of(Code::kNotFound);
}

Status ShmStore::store(const Write& w, Mode mode, std::uint64_t cas, const Limits& limits) {
  NC_ATTACHED();
  const SegmentHeader& sh = m.header();
  if (const char* refusal = key_refusal(w.key, true)) return Status::Of(Code::kBadKey, refusal);
  if (w.data.size() > sh.max_item_size ||
      align8(sizeof(Record) + w.key.size() + w.data.size()) > sh.ring_capacity / 2) {
    return Status::Of(Code::kTooLarge);
  }
  std::uint32_t hash;
  ShardView& v = m.shard_for(w.key, hash);
  std::int64_t now = 0;
  bool may_cull = limits.enforce && mode != Mode::kReplace && mode != Mode::kCas;
  if (may_cull && sh.count_stale.load(std::memory_order_relaxed) != 0) [[unlikely]] {
    recount(m);  // before any shard lock of this write is taken
  }
  for (;;) {
    {
      ShardLock lk(m, v);
      NC_LOCKED(lk);
      now = now_ms();  // after the lock: a wait for it may have been long
      auto f = v.find(w.key, hash, now);
      if (f.corrupt) {
        recover(m, v);
        f = {};
      }
      switch (mode) {
        case Mode::kAdd:
          if (f.rec != nullptr) return Status::Of(Code::kExists);
          break;
        case Mode::kReplace:
          if (f.rec == nullptr) return Status::Of(Code::kNotFound);
          break;
        case Mode::kCas:
          if (f.rec == nullptr) return Status::Of(Code::kNotFound);
          if (f.rec->cas != cas) return Status::Of(Code::kExists);
          break;
        case Mode::kSet:
          break;
      }
      if (w.ttl.kind == Ttl::Kind::kDrop) {  // Django: a timeout <= 0 keeps nothing
        if (f.rec != nullptr) v.unlink(f.link, f.off);
        return Status::Ok();
      }
      std::int64_t count = sh.item_count.load(std::memory_order_relaxed);
      // Django culls before inserting once the count reaches the limit: after this block,
      // without the shard's lock.
      if (!may_cull || count < limits.max_entries) {
        std::int64_t expire = w.ttl.kind == Ttl::Kind::kKeep
                                  ? (f.rec != nullptr ? f.rec->expire : 0)
                                  : w.ttl.deadline(now);
        ++v.header().sets;
        if (f.rec != nullptr) {
          std::uint32_t room = ShardView::value_room(f.rec);
          if (w.data.size() <= room &&
              room - w.data.size() <= std::max<std::uint32_t>(64, room / 4)) {
            copy_bytes(v.value_of(f.rec), w.data.data(), w.data.size());
            f.rec->val_len = static_cast<std::uint32_t>(w.data.size());
            f.rec->flags = static_cast<std::uint16_t>(w.flags);
            f.rec->expire = expire;
            f.rec->cas = v.next_cas();
            f.rec->ref = 1;
            return Status::Ok();
          }
          v.unlink(f.link, f.off);
        }
        auto flags = static_cast<std::uint16_t>(w.flags);
        if (v.insert(w.key, hash, w.data, {}, flags, expire, now) == ShardView::kNone) {
          recover(m, v);
          if (v.insert(w.key, hash, w.data, {}, flags, expire, now) == ShardView::kNone) {
            return Status::Of(Code::kCorrupt, "shard could not take the value after a reset");
          }
        }
        return Status::Ok();
      }
    }
    // No shard lock is held here: culling takes the shards one at a time.
    cull_all(m, limits.max_entries, limits.cull_frequency, now);
    may_cull = false;
  }
}

// Culls as Django does once the count reached MAX_ENTRIES: everything for frequency 0,
// else count / frequency entries. Writers that reach the limit together share one cull:
// one that finds the count below the limit already culls nothing, and each stops, entry
// by entry, once the count is down to what Django's cull leaves.
void ShmStore::cull_all(Mapping& m, std::int64_t max_entries, std::int64_t frequency,
                        std::int64_t now) {
  std::atomic<std::int64_t>& count = m.header().item_count;
  if (count.load(std::memory_order_relaxed) < max_entries) return;  // culled meanwhile
  // The running count only moves by one per insert or removal; the cull goes by the
  // exact one, so a count that drifted up never culls what Django would keep.
  const std::int64_t at = recount(m);
  if (at < max_entries) return;
  const std::size_t n = m.shards.size();
  std::vector<std::uint32_t> items(n);
  std::int64_t total = 0;
  for (std::size_t i = 0; i < n; ++i) {
    items[i] = m.shards[i].header().items.load(std::memory_order_relaxed);
    total += items[i];
  }
  if (total == 0) return;
  if (frequency == 0) {
    for (ShardView& v : m.shards) {
      ShardLock lk(m, v);
      if (!lk.held()) continue;
      v.header().evictions += v.header().items.load(std::memory_order_relaxed);
      v.reset();
    }
    return;
  }
  const std::int64_t target = at / frequency;
  if (target <= 0) return;
  const std::int64_t floor = at - target;  // what Django's cull leaves
  std::vector<std::uint32_t> quota(n, 0);
  std::uint64_t assigned = 0;
  for (std::size_t i = 0; i < n; ++i) {
    quota[i] = static_cast<std::uint32_t>(static_cast<std::uint64_t>(target) * items[i] /
                                          static_cast<std::uint64_t>(total));
    assigned += quota[i];
  }
  // Hand out the remainder so exactly `target` entries go, as Django removes.
  for (std::size_t i = 0; assigned < static_cast<std::uint64_t>(target) && i < 4 * n; ++i) {
    std::size_t s = i % n;
    if (quota[s] < items[s]) {
      ++quota[s];
      ++assigned;
    }
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (quota[i] == 0) continue;
    if (count.load(std::memory_order_relaxed) <= floor) return;  // another writer culled
    ShardLock lk(m, m.shards[i]);
    if (!lk.held()) continue;
    if (!m.shards[i].cull(quota[i], now, floor)) recover(m, m.shards[i]);
  }
}

Status ShmStore::concat(std::string_view key, std::span<const std::byte> data,
                        std::uint32_t flags, bool prepend) {
  NC_ATTACHED();
  std::uint32_t hash;
  ShardView& v = m.shard_for(key, hash);
  // The old value's copy while room is made: per call, since after a wait for the lock
  // the critical section runs without the GIL, beside other threads of this process.
  std::vector<std::byte> scratch;
  for (;;) {
    std::size_t grow_to = 0;
    {
      ShardLock lk(m, v);
      NC_LOCKED(lk);
      const std::int64_t now = now_ms();  // after the lock: a wait for it may have been long
      auto f = v.find(key, hash, now);
      if (f.corrupt) {
        recover(m, v);
        return Status::Of(Code::kNotFound);
      }
      if (f.rec == nullptr) return Status::Of(Code::kNotFound);
      if (f.rec->flags != flags) return Status::Of(Code::kTypeMismatch);
      std::size_t old_len = f.rec->val_len;
      std::size_t new_len = old_len + data.size();
      if (new_len > m.header().max_item_size ||
          align8(sizeof(Record) + key.size() + new_len) > m.header().ring_capacity / 2) {
        return Status::Of(Code::kTooLarge);
      }
      if (!prepend && ShardView::value_room(f.rec) >= new_len) {
        ++v.header().sets;
        copy_bytes(v.value_of(f.rec) + old_len, data.data(), data.size());
        f.rec->val_len = static_cast<std::uint32_t>(new_len);
        f.rec->cas = v.next_cas();
        return Status::Ok();
      }
      // The old record may move or be overwritten while room is made, so its value is
      // copied out first; the buffer only grows with no lock held.
      if (scratch.size() >= old_len) {
        ++v.header().sets;
        copy_bytes(scratch.data(), v.value_of(f.rec), old_len);
        std::int64_t expire = f.rec->expire;
        std::span<const std::byte> old(scratch.data(), old_len);
        v.unlink(f.link, f.off);
        auto first = prepend ? data : old;
        auto second = prepend ? old : data;
        auto fl = static_cast<std::uint16_t>(flags);
        if (v.insert(key, hash, first, second, fl, expire, now) == ShardView::kNone) {
          recover(m, v);  // a damaged ring: reset, then the value still goes in
          if (v.insert(key, hash, first, second, fl, expire, now) == ShardView::kNone) {
            return Status::Of(Code::kCorrupt, "shard could not take the value after a reset");
          }
        }
        return Status::Ok();
      }
      grow_to = old_len;
    }
    scratch.resize(grow_to);
  }
}

Status ShmStore::remove(std::string_view key) {
  NC_ATTACHED();
  std::uint32_t hash;
  ShardView& v = m.shard_for(key, hash);
  ShardLock lk(m, v);
  NC_LOCKED(lk);
  const std::int64_t now = now_ms();  // after the lock: a wait for it may have been long
  auto f = v.find(key, hash, now);
  if (f.corrupt) {
    recover(m, v);
    return Status::Of(Code::kNotFound);
  }
  if (f.rec == nullptr) return Status::Of(Code::kNotFound);
  v.unlink(f.link, f.off);
  return Status::Ok();
}

Status ShmStore::touch(std::string_view key, Ttl ttl) {
  NC_ATTACHED();
  std::uint32_t hash;
  ShardView& v = m.shard_for(key, hash);
  ShardLock lk(m, v);
  NC_LOCKED(lk);
  const std::int64_t now = now_ms();  // after the lock: a wait for it may have been long
  auto f = v.find(key, hash, now);
  if (f.corrupt) {
    recover(m, v);
    return Status::Of(Code::kNotFound);
  }
  if (f.rec == nullptr) return Status::Of(Code::kNotFound);
  if (ttl.kind == Ttl::Kind::kDrop) {
    v.unlink(f.link, f.off);
  } else if (ttl.kind != Ttl::Kind::kKeep) {
    f.rec->expire = ttl.deadline(now);
  }
  return Status::Ok();
}

Status ShmStore::incr(std::string_view key, std::int64_t delta, std::int64_t& result) {
  NC_ATTACHED();
  std::uint32_t hash;
  ShardView& v = m.shard_for(key, hash);
  ShardLock lk(m, v);
  NC_LOCKED(lk);
  const std::int64_t now = now_ms();  // after the lock: a wait for it may have been long
  auto f = v.find(key, hash, now);
  if (f.corrupt) {
    recover(m, v);
    return Status::Of(Code::kNotFound);
  }
  if (f.rec == nullptr) return Status::Of(Code::kNotFound);
  if (f.rec->flags != codec::kLong && f.rec->flags != codec::kInt) {
    return Status::Of(Code::kNotNumeric);
  }
  std::string_view text(reinterpret_cast<const char*>(v.value_of(f.rec)), f.rec->val_len);
  auto old = codec::parse_int(text);
  if (!old) return Status::Of(Code::kNotNumeric);
  std::int64_t updated;
  if (__builtin_add_overflow(*old, delta, &updated)) return Status::Of(Code::kOverflow);
  char buf[24];
  std::size_t n = codec::format_int(updated, buf);
  ++v.header().sets;
  if (n <= ShardView::value_room(f.rec)) {
    std::memcpy(v.value_of(f.rec), buf, n);
    f.rec->val_len = static_cast<std::uint32_t>(n);
    f.rec->cas = v.next_cas();
    f.rec->ref = 1;
  } else {
    std::int64_t expire = f.rec->expire;
    auto flags = f.rec->flags;
    v.unlink(f.link, f.off);
    if (v.insert(key, hash, as_bytes({buf, n}), {}, flags, expire, now) == ShardView::kNone) {
      recover(m, v);
      return Status::Of(Code::kNotFound);
    }
  }
  result = updated;
  return Status::Ok();
}

Status ShmStore::ttl(std::string_view key, std::int64_t& remaining_ms) {
  NC_ATTACHED();
  std::uint32_t hash;
  ShardView& v = m.shard_for(key, hash);
  ShardLock lk(m, v);
  NC_LOCKED(lk);
  const std::int64_t now = now_ms();  // after the lock: a wait for it may have been long
  auto f = v.find(key, hash, now);
  if (f.corrupt) {
    recover(m, v);
    return Status::Of(Code::kNotFound);
  }
  if (f.rec == nullptr) return Status::Of(Code::kNotFound);
  remaining_ms = f.rec->expire == 0 ? -1 : f.rec->expire - now;
  return Status::Ok();
}

Status ShmStore::clear() {
  NC_ATTACHED();
  for (ShardView& v : m.shards) {
    ShardLock lk(m, v);
    if (lk.held()) v.reset();
  }
  return Status::Ok();
}

StoreStats ShmStore::stats() {
  StoreStats s;
  Mapping* mp = nullptr;
  if (!attached(mp).ok()) return s;
  Mapping& m = *mp;
  for (ShardView& v : m.shards) {
    ShardLock lk(m, v);
    if (!lk.held()) continue;
    const ShardHeader& h = v.header();
    s.hits += h.hits;
    s.misses += h.misses;
    s.sets += h.sets;
    s.evictions += h.evictions;
    s.expirations += h.expirations;
    s.items += h.items.load(std::memory_order_relaxed);
    s.bytes += h.live_bytes;
  }
  s.recoveries = m.header().recoveries.load(std::memory_order_relaxed);
  s.capacity = std::uint64_t{m.header().ring_capacity} * m.shards.size();
  return s;
}

// The design forbids allocation under a shard lock, and a vector of strings allocates
// per key, so each shard's keys are first copied into one byte buffer sized before the
// lock is taken and turned into strings after it is released. A shard whose keys did not
// fit is listed again once the buffer has grown (with no lock held); since one ring's
// worth of bytes always fits (ShardView::copy_keys), that happens at most a few times.
// Shards are locked one at a time, as culling does, so the listing is not a snapshot of
// the whole cache, and a writer waits for one shard's copy at most.
Status ShmStore::keys(std::vector<std::string>& out) {
  NC_ATTACHED();
  const std::size_t ring = m.header().ring_capacity;
  std::vector<std::byte> buf(std::min<std::size_t>(ring, std::size_t{64} << 10));
  for (ShardView& v : m.shards) {
    std::size_t needed = 0;
    for (;;) {
      {
        ShardLock lk(m, v);
        NC_LOCKED(lk);
        if (!v.copy_keys(now_ms(), buf, needed)) {
          recover(m, v);  // as every other operation does on damage: the shard forgets
          needed = 0;
        }
      }
      if (needed <= buf.size()) break;
      buf.resize(std::min(ring, needed + needed / 4));
    }
    for (std::size_t at = 0; at < needed;) {
      std::uint16_t len = 0;
      std::memcpy(&len, buf.data() + at, sizeof len);
      out.emplace_back(reinterpret_cast<const char*>(buf.data() + at + sizeof len), len);
      at += sizeof len + len;
    }
  }
  return Status::Ok();
}

void ShmStore::debug_hold_lock(std::string_view key, int notify_fd) {
  std::uint32_t hash;
  Mapping& m = *current_;
  ShardView& v = m.shard_for(key, hash);
  ShardLock lk(m, v);
  v.scribble_torn_write();
  char c = 'L';
  ssize_t rc = ::write(notify_fd, &c, 1);
  (void)rc;
  for (;;) ::pause();
}

}  // namespace nativecache::shm
