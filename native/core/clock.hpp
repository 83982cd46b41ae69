// The one clock every store uses for setting and checking expiry: the system-wide
// monotonic clock (shared by every process of the host, immune to wall-clock jumps).
#pragma once

#include <cstdint>
#include <ctime>

namespace nativecache {

inline std::int64_t now_ms() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// A timeout as the stores see it: relative, already resolved from Django's rules.
struct Ttl {
  enum class Kind : std::uint8_t { kForever, kRelative, kDrop, kKeep } kind = Kind::kForever;
  std::int64_t ms = 0;  // for kRelative, > 0

  static Ttl Forever() noexcept { return {Kind::kForever, 0}; }
  static Ttl Drop() noexcept { return {Kind::kDrop, 0}; }  // timeout <= 0: not kept
  static Ttl Keep() noexcept { return {Kind::kKeep, 0}; }  // keep the entry's expiry
  static Ttl Relative(std::int64_t ms) noexcept {
    return ms > 0 ? Ttl{Kind::kRelative, ms} : Drop();
  }
  // Absolute deadline in now_ms() terms; 0 means never.
  [[nodiscard]] std::int64_t deadline(std::int64_t now) const noexcept {
    return kind == Kind::kRelative ? now + ms : 0;
  }
};

}  // namespace nativecache
