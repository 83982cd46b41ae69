// Ring + index operations of one shard; see shard.hpp for the locking contract.
#include "core/shm/shard.hpp"

#include <cstring>

#include "core/shm/geometry.hpp"

namespace nativecache::shm {

namespace {
constexpr std::uint32_t kRec = sizeof(Record);
constexpr std::uint32_t kSecondChancesPerCall = 32;
}  // namespace

ShardView::ShardView(SegmentHeader* seg, std::byte* shard_base, std::uint32_t index) noexcept
    : seg_(seg),
      h_(reinterpret_cast<ShardHeader*>(shard_base)),
      buckets_(reinterpret_cast<std::uint32_t*>(shard_base + kShardHeaderBytes)),
      ring_(shard_base + ring_offset(seg->bucket_count)),
      cap_(seg->ring_capacity),
      mask_(seg->bucket_count - 1),
      max_chain_(seg->ring_capacity / kRec + 1),
      index_(index) {}

Record* ShardView::at(std::uint32_t off) noexcept {
  if (off % 8 != 0 || off > cap_ - kRec) return nullptr;
  auto* r = reinterpret_cast<Record*>(ring_ + off);
  if (r->total < kRec || r->total % 8 != 0 || r->total > cap_ - off) return nullptr;
  if (r->kind == kLive) {
    if (std::uint64_t{kRec} + r->key_len + r->val_len > r->total) return nullptr;
  } else if (r->kind != kDead && r->kind != kPad) {
    return nullptr;
  }
  return r;
}

ShardView::Found ShardView::find(std::string_view key, std::uint32_t hash,
                                 std::int64_t now) noexcept {
  std::uint32_t* link = &buckets_[hash & mask_];
  for (std::uint32_t steps = 0; steps < max_chain_; ++steps) {
    std::uint32_t v = *link;
    if (v == 0) return {};
    std::uint32_t off = v - 1;
    Record* r = at(off);
    if (r == nullptr || r->kind != kLive) return Found{true};
    if (r->hash == hash && r->key_len == key.size() &&
        (key.empty() || std::memcmp(key_of(r), key.data(), key.size()) == 0)) {
      if (expired(r, now)) {
        drop(link, off, true);
        return {};
      }
      return Found{false, link, off, r};
    }
    link = &r->next;
  }
  return Found{true};
}

void ShardView::unlink(std::uint32_t* link, std::uint32_t off) noexcept {
  auto* r = reinterpret_cast<Record*>(ring_ + off);
  *link = r->next;
  r->kind = kDead;
  h_->items.fetch_sub(1, std::memory_order_relaxed);
  h_->live_bytes -= r->total;
  seg_->item_count.fetch_sub(1, std::memory_order_relaxed);
}

void ShardView::drop(std::uint32_t* link, std::uint32_t off, bool was_expired) noexcept {
  unlink(link, off);
  if (was_expired) {
    ++h_->expirations;
  } else {
    ++h_->evictions;
  }
}

std::uint32_t* ShardView::link_to(std::uint32_t off, std::uint32_t hash) noexcept {
  std::uint32_t* link = &buckets_[hash & mask_];
  for (std::uint32_t steps = 0; steps < max_chain_; ++steps) {
    std::uint32_t v = *link;
    if (v == 0) return nullptr;
    if (v - 1 == off) return link;
    Record* r = at(v - 1);
    if (r == nullptr || r->kind != kLive) return nullptr;
    link = &r->next;
  }
  return nullptr;
}

void ShardView::advance_tail(std::uint32_t n) noexcept {
  h_->used -= n;
  h_->tail += n;
  if (h_->tail == cap_) h_->tail = 0;
  if (h_->used == 0) h_->head = h_->tail = 0;
}

void ShardView::pad_head() noexcept {
  std::uint32_t rest = cap_ - h_->head;
  if (rest >= kRec) {
    auto* r = reinterpret_cast<Record*>(ring_ + h_->head);
    std::memset(r, 0, kRec);
    r->kind = kPad;
    r->total = rest;
  }
  h_->used += rest;
  h_->head = 0;
}

bool ShardView::evict_at_tail(bool second_chance, std::int64_t now,
                              bool* removed_live) noexcept {
  *removed_live = false;
  std::uint32_t tail = h_->tail;
  if (cap_ - tail < kRec) {  // an implicit pad too short for a header
    if (h_->used < cap_ - tail) return false;
    advance_tail(cap_ - tail);
    return true;
  }
  Record* r = at(tail);
  if (r == nullptr || r->total > h_->used) return false;
  std::uint32_t total = r->total;
  if (r->kind != kLive) {
    advance_tail(total);
    return true;
  }
  std::uint32_t* link = link_to(tail, r->hash);
  auto* link_byte = reinterpret_cast<std::byte*>(link);
  if (link == nullptr ||
      (link_byte >= ring_ + tail && link_byte < ring_ + tail + total)) {
    return false;
  }
  bool was_expired = expired(r, now);
  if (second_chance && r->ref != 0 && !was_expired) {
    // Second chance: slide the record to the head. In the wrapped case the head
    // region is disjoint from it; otherwise it moves back into the free gap.
    r->ref = 0;
    if (h_->used != cap_ && h_->head >= tail && cap_ - h_->head < total) pad_head();
    std::uint32_t dst = h_->head;
    std::memmove(ring_ + dst, ring_ + tail, total);
    *link = dst + 1;
    h_->head = dst + total == cap_ ? 0 : dst + total;
    h_->tail = tail + total == cap_ ? 0 : tail + total;
    return true;
  }
  drop(link, tail, was_expired);
  *removed_live = true;
  advance_tail(total);
  return true;
}

bool ShardView::ring_sane() const noexcept {
  std::uint32_t head = h_->head, tail = h_->tail, used = h_->used;
  if (head >= cap_ || tail >= cap_ || used > cap_ || head % 8 != 0 || tail % 8 != 0) {
    return false;
  }
  const std::uint64_t items = h_->items.load(std::memory_order_relaxed);
  if (h_->live_bytes > used || items * sizeof(Record) > h_->live_bytes) return false;
  if (head == tail) return used == 0 || used == cap_;
  return used == (head > tail ? head - tail : cap_ - tail + head);
}

std::uint32_t ShardView::reserve(std::uint32_t n, std::int64_t now) noexcept {
  if (!ring_sane()) return kNone;
  std::uint32_t second_chances = kSecondChancesPerCall;
  const std::uint64_t guard = std::uint64_t{cap_} / 8 + 1024;
  for (std::uint64_t i = 0; i < guard; ++i) {
    if (h_->used == 0) h_->head = h_->tail = 0;
    std::uint32_t head = h_->head;
    std::uint32_t tail = h_->tail;
    bool full = h_->used == cap_;
    if (!full && head >= tail) {  // free: [head, cap) and [0, tail)
      if (cap_ - head >= n) return head;
      pad_head();
      continue;
    }
    if (!full && tail - head >= n) return head;  // free: [head, tail)
    bool removed = false;
    bool sc = second_chances > 0;
    if (!evict_at_tail(sc, now, &removed)) return kNone;
    if (sc && !removed) --second_chances;
  }
  return kNone;
}

std::uint32_t ShardView::insert(std::string_view key, std::uint32_t hash,
                                std::span<const std::byte> first,
                                std::span<const std::byte> second, std::uint16_t flags,
                                std::int64_t expire, std::int64_t now) noexcept {
  std::uint64_t payload = key.size() + first.size() + second.size();
  std::uint32_t total = align8(kRec + payload);
  std::uint32_t off = reserve(total, now);
  if (off == kNone) return kNone;
  auto* r = reinterpret_cast<Record*>(ring_ + off);
  std::uint32_t* bucket = &buckets_[hash & mask_];
  r->next = *bucket;
  r->hash = hash;
  r->total = total;
  r->val_len = static_cast<std::uint32_t>(first.size() + second.size());
  r->key_len = static_cast<std::uint16_t>(key.size());
  r->flags = flags;
  r->kind = kLive;
  r->ref = 0;
  r->reserved = 0;
  r->expire = expire;
  r->cas = next_cas();
  std::byte* p = key_of(r);
  copy_bytes(p, key.data(), key.size());
  copy_bytes(p + key.size(), first.data(), first.size());
  copy_bytes(p + key.size() + first.size(), second.data(), second.size());
  *bucket = off + 1;
  h_->used += total;
  h_->head = off + total == cap_ ? 0 : off + total;
  h_->items.fetch_add(1, std::memory_order_relaxed);
  h_->live_bytes += total;
  seg_->item_count.fetch_add(1, std::memory_order_relaxed);
  return off;
}

bool ShardView::cull(std::uint32_t n, std::int64_t now, std::int64_t floor) noexcept {
  if (!ring_sane()) return false;
  std::uint32_t removed = 0;
  std::uint32_t second_chances = h_->items.load(std::memory_order_relaxed);
  const std::uint64_t guard = std::uint64_t{cap_} / 8 + 1024;
  for (std::uint64_t i = 0; i < guard; ++i) {
    if (removed >= n || h_->items.load(std::memory_order_relaxed) == 0 || h_->used == 0 ||
        seg_->item_count.load(std::memory_order_relaxed) <= floor) {
      return true;
    }
    bool live = false;
    bool sc = second_chances > 0;
    if (!evict_at_tail(sc, now, &live)) return false;
    if (live) {
      ++removed;
    } else if (sc) {
      --second_chances;
    }
  }
  return false;
}

void ShardView::reset() noexcept {
  std::memset(buckets_, 0, std::size_t{mask_ + 1} * sizeof(std::uint32_t));
  h_->head = h_->tail = h_->used = 0;
  std::uint32_t n = h_->items.exchange(0, std::memory_order_relaxed);
  seg_->item_count.fetch_sub(n, std::memory_order_relaxed);
  h_->live_bytes = 0;
}

bool ShardView::copy_keys(std::int64_t now, std::span<std::byte> buf,
                          std::size_t& needed) noexcept {
  needed = 0;
  // Chains hold live records only, each in one chain: more steps than the ring can hold
  // records means a cycle or a record linked twice.
  std::uint32_t steps = max_chain_;
  for (std::uint32_t b = 0; b <= mask_; ++b) {
    for (std::uint32_t v = buckets_[b]; v != 0;) {
      if (steps-- == 0) return false;
      Record* r = at(v - 1);
      if (r == nullptr || r->kind != kLive) return false;
      if (!expired(r, now)) {
        const std::uint16_t len = r->key_len;
        if (needed + sizeof len + len <= buf.size()) {
          std::memcpy(buf.data() + needed, &len, sizeof len);
          copy_bytes(buf.data() + needed + sizeof len, key_of(r), len);
        }
        needed += sizeof len + len;
        if (needed > cap_) return false;
      }
      v = r->next;
    }
  }
  return true;
}

void ShardView::scribble_torn_write() noexcept {
  std::uint32_t off = h_->head;
  if (cap_ - off < kRec) return;
  auto* r = reinterpret_cast<Record*>(ring_ + off);
  r->kind = kLive;
  r->total = 48;
  r->key_len = 0xFFFF;  // a length the record cannot hold
  r->next = 0;
  buckets_[0] = off + 1;
}

}  // namespace nativecache::shm
