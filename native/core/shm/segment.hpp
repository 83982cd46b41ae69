// Naming, creating, validating, mapping and unlinking a shared-memory segment.
// Boost.Interprocess does the OS work; nothing of Boost runs on the hot path.
#pragma once

#include <boost/interprocess/mapped_region.hpp>

#include <cstdint>
#include <memory>
#include <string>

#include "core/shm/geometry.hpp"
#include "core/shm/layout.hpp"
#include "core/status.hpp"

namespace nativecache::shm {

struct SegmentOptions {
  std::string name;           // a POSIX shm name without the leading '/'
  std::uint64_t size = 64ull << 20;
  std::uint32_t shards = 0;
  std::uint32_t max_item_size = 0;
  bool recreate_on_mismatch = true;
  // A shard lock not taken within this is broken: the segment is retired (0: no limit).
  std::int64_t lock_timeout_ms = 10'000;
};

class Segment {
 public:
  // Attaches to the named segment, creating it when absent and recreating it when its
  // header does not match this build (unless told to fail). Serialised across
  // processes by an flock on a lock file beside the segment.
  static Status open(const SegmentOptions& opts, std::unique_ptr<Segment>& out,
                     std::string& detail);
  static Status unlink(const std::string& name, std::string& detail);

  // What this build's segment names end with ("-l<layout version><fingerprint>"): builds
  // that cannot read each other's segments never share one (they would take it from
  // each other, back and forth, while both run, as in a rolling deploy). Another build's
  // segment is left alone: unlinking its name would split that build's processes
  // between the old segment and a new one made under the same name.
  static std::string build_tag();

  SegmentHeader* header() const noexcept { return header_; }
  std::byte* shard_base(std::uint32_t i) const noexcept {
    return base_ + header_->shards_offset + header_->shard_stride * i;
  }
  bool ready() const noexcept {
    return header_->state.load(std::memory_order_acquire) == kReady &&
           header_->magic == kMagic;
  }
  void retire() noexcept { header_->state.store(kRetired, std::memory_order_release); }

 private:
  explicit Segment(boost::interprocess::mapped_region region);
  boost::interprocess::mapped_region region_;
  std::byte* base_;
  SegmentHeader* header_;
};

}  // namespace nativecache::shm
