// The value format shared by every store: a flags word plus a payload. The flags are
// wire-compatible with pylibmc, python-memcached and pymemcache, so a memcached
// server can hold values written by either side.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/status.hpp"

namespace nativecache::codec {

inline constexpr std::uint32_t kBytes = 0;
inline constexpr std::uint32_t kPickle = 1;
inline constexpr std::uint32_t kInt = 2;
inline constexpr std::uint32_t kLong = 4;
inline constexpr std::uint32_t kZlib = 8;
inline constexpr std::uint32_t kText = 16;
inline constexpr std::uint32_t kTypeMask = kPickle | kInt | kLong | kText;

// Parses an ASCII decimal integer (optional sign, no spaces). nullopt when the text is
// not one or does not fit in int64.
std::optional<std::int64_t> parse_int(std::string_view text) noexcept;

// Writes v in decimal into buf (at least 20 bytes); returns the length.
std::size_t format_int(std::int64_t v, char* buf) noexcept;

// zlib: compress at `level` (1-9); nullopt if it would not make the payload smaller.
std::optional<std::string> compress(std::span<const std::byte> data, int level);

// Inflates into out; kCorrupt when the stream is damaged or inflates past max_size.
Status decompress(std::span<const std::byte> data, std::size_t max_size, std::string& out);

// Standard base64 (RFC 4648, padded), appended to out.
void base64_encode(std::span<const std::byte> data, std::string& out);
// false when text is not padded standard base64.
bool base64_decode(std::string_view text, std::string& out);

}  // namespace nativecache::codec
