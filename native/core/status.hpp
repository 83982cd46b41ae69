// Status: the result of every core operation. Carries a static message so it can be
// built while a store lock is held (no allocation); native/py turns it into an exception.
#pragma once

#include <cstdint>

namespace nativecache {

enum class Code : std::uint8_t {
  kOk,
  kNotFound,        // key absent or expired
  kExists,          // add on a live key, cas token mismatch
  kNotNumeric,      // incr on a value that is not a decimal integer
  kOverflow,        // incr beyond int64
  kTypeMismatch,    // append of bytes to text, or the reverse
  kTooLarge,        // value over the item size limit
  kBadKey,          // key the store cannot take
  kCorrupt,         // segment or file content failed validation
  kInvalidArgument, // bad configuration
  kPermission,      // segment owned by someone else
  kNoSpace,         // the medium is full
  kIo,              // any other OS error (errno in err)
  kUnavailable,     // server or segment cannot be reached
  kBufferTooSmall,  // caller's buffer cannot hold the value; `needed` says how much
  kUnsupported,     // the store has no such capability (e.g. listing its keys)
};

struct Status {
  Code code = Code::kOk;
  int err = 0;                  // errno where one applies
  const char* what = nullptr;   // static text, never owned
  std::uint64_t needed = 0;     // for kBufferTooSmall

  [[nodiscard]] bool ok() const noexcept { return code == Code::kOk; }
  static Status Ok() noexcept { return {}; }
  static Status Of(Code c, const char* what = nullptr, int err = 0) noexcept {
    return Status{c, err, what, 0};
  }
};

}  // namespace nativecache
