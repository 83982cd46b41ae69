// Codec helpers that need no Python: integers as memcached-compatible decimal text, zlib.
#include "core/codec.hpp"

#include <zlib.h>

#include <charconv>
#include <limits>

namespace nativecache::codec {

std::optional<std::int64_t> parse_int(std::string_view text) noexcept {
  if (text.empty() || text.size() > 20) return std::nullopt;
  const char* first = text.data();
  const char* last = text.data() + text.size();
  std::int64_t value = 0;
  auto [ptr, ec] = std::from_chars(first, last, value);
  if (ec != std::errc() || ptr != last) return std::nullopt;
  return value;
}

std::size_t format_int(std::int64_t v, char* buf) noexcept {
  auto [ptr, ec] = std::to_chars(buf, buf + 20, v);
  (void)ec;
  return static_cast<std::size_t>(ptr - buf);
}

std::optional<std::string> compress(std::span<const std::byte> data, int level) {
  uLongf bound = compressBound(static_cast<uLong>(data.size()));
  std::string out(bound, '\0');
  int rc = compress2(reinterpret_cast<Bytef*>(out.data()), &bound,
                     reinterpret_cast<const Bytef*>(data.data()),
                     static_cast<uLong>(data.size()), level);
  if (rc != Z_OK || bound >= data.size()) return std::nullopt;
  out.resize(bound);
  return out;
}

Status decompress(std::span<const std::byte> data, std::size_t max_size, std::string& out) {
  z_stream zs{};
  if (inflateInit(&zs) != Z_OK) return Status::Of(Code::kCorrupt, "zlib init failed");
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  out.clear();
  std::size_t chunk = data.size() * 4 + 64;
  Status st = Status::Ok();
  for (;;) {
    std::size_t have = out.size();
    if (have >= max_size) {
      st = Status::Of(Code::kCorrupt, "compressed value inflates past the size limit");
      break;
    }
    std::size_t grow = std::min(chunk, max_size - have);
    out.resize(have + grow);
    zs.next_out = reinterpret_cast<Bytef*>(out.data() + have);
    zs.avail_out = static_cast<uInt>(grow);
    int rc = inflate(&zs, Z_NO_FLUSH);
    out.resize(out.size() - zs.avail_out);
    if (rc == Z_STREAM_END) break;
    if (rc != Z_OK) {
      st = Status::Of(Code::kCorrupt, "compressed value is damaged");
      break;
    }
    if (zs.avail_in == 0 && zs.avail_out != 0) {
      st = Status::Of(Code::kCorrupt, "compressed value is truncated");
      break;
    }
    chunk *= 2;
  }
  inflateEnd(&zs);
  return st;
}

namespace {
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int sextet(char c) noexcept {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}
}  // namespace

void base64_encode(std::span<const std::byte> data, std::string& out) {
  out.reserve(out.size() + (data.size() + 2) / 3 * 4);
  std::size_t i = 0;
  auto at = [&](std::size_t k) { return static_cast<std::uint32_t>(data[k]); };
  for (; i + 3 <= data.size(); i += 3) {
    std::uint32_t v = at(i) << 16 | at(i + 1) << 8 | at(i + 2);
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += kAlphabet[v >> 6 & 63];
    out += kAlphabet[v & 63];
  }
  if (std::size_t rest = data.size() - i; rest != 0) {
    std::uint32_t v = at(i) << 16 | (rest == 2 ? at(i + 1) << 8 : 0U);
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += rest == 2 ? kAlphabet[v >> 6 & 63] : '=';
    out += '=';
  }
}

bool base64_decode(std::string_view text, std::string& out) {
  if (text.size() % 4 != 0) return false;
  out.reserve(out.size() + text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    bool last = i + 4 == text.size();
    int pad = last ? (text[i + 3] == '=') + (text[i + 2] == '=') : 0;
    int a = sextet(text[i]), b = sextet(text[i + 1]);
    int c = pad >= 2 ? 0 : sextet(text[i + 2]);
    int d = pad >= 1 ? 0 : sextet(text[i + 3]);
    if ((a | b | c | d) < 0) return false;
    auto v = static_cast<std::uint32_t>(a << 18 | b << 12 | c << 6 | d);
    out += static_cast<char>(v >> 16 & 0xFF);
    if (pad < 2) out += static_cast<char>(v >> 8 & 0xFF);
    if (pad < 1) out += static_cast<char>(v & 0xFF);
  }
  return true;
}

}  // namespace nativecache::codec
