// Helpers shared by the tests of every store: byte/string conversions, key names, and a
// get and a put through the Store interface.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/codec.hpp"
#include "core/store.hpp"

namespace nctest {

using nativecache::Code;
using nativecache::Limits;
using nativecache::Mode;
using nativecache::Status;
using nativecache::StoreStats;
using nativecache::Ttl;
using nativecache::ValueOut;
using nativecache::Write;

inline std::span<const std::byte> bytes_of(std::string_view s) noexcept {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// prefix followed by i in decimal, e.g. kname("k", 7) == "k7".
inline std::string kname(std::string_view prefix, long long i) {
  std::string s(prefix);
  s += std::to_string(i);
  return s;
}

inline std::string num(std::int64_t v) {
  char buf[24];
  return std::string(buf, nativecache::codec::format_int(v, buf));
}

// What a get returned: found or not, the bytes and the flags.
struct Got {
  Code code = Code::kOk;
  std::string value;
  std::uint32_t flags = 0;
  std::uint64_t cas = 0;
  bool hit() const noexcept { return code == Code::kOk; }
};

// Reads key into a buffer that starts small on purpose: a store that can grow it does
// (ValueOut::grow), one that cannot says how much it needs, and the get is asked again,
// as often as it takes (another process may replace the value with a larger one between
// two tries).
inline Got get(nativecache::Store& s, std::string_view key) {
  std::vector<std::byte> buf(8);
  ValueOut out{buf.data(), buf.size()};
  out.grow = &buf;
  Status st = s.get(key, out);
  while (st.code == Code::kBufferTooSmall) {
    buf.resize(st.needed);
    out = ValueOut{buf.data(), buf.size()};
    out.grow = &buf;
    st = s.get(key, out);
  }
  Got g;
  g.code = st.code;
  if (st.ok()) {
    g.value.assign(reinterpret_cast<const char*>(out.data), out.size);
    g.flags = out.flags;
    g.cas = out.cas;
  }
  return g;
}

inline Status put(nativecache::Store& s, std::string_view key, std::string_view value,
                  Ttl ttl = Ttl::Forever(), std::uint32_t flags = 0, Mode mode = Mode::kSet,
                  std::uint64_t cas = 0, const Limits& limits = Limits{}) {
  return s.store(Write{key, bytes_of(value), flags, ttl}, mode, cas, limits);
}

}  // namespace nctest
