// Python values <-> (flags, payload) of the shared codec. bytes, str and int take fast
// paths; everything else is pickled at the highest protocol and pickle errors propagate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "py/ref.hpp"
#include "py/state.hpp"

namespace nativecache::py {

struct CodecOptions {
  std::size_t compress_min = 0;  // 0: never compress
  int compress_level = 6;
};

struct Encoded {
  std::uint32_t flags = 0;
  std::span<const std::byte> data;
  Ref owner;         // keeps `data` alive when it points into a Python object
  std::string buf;   // or holds it here
};

bool encode(ModuleState* st, const CodecOptions& opts, PyObject* value, Encoded& out);

// Encodes bytes or str for append/prepend (no pickling: they concatenate).
bool encode_raw(PyObject* value, Encoded& out);

PyObject* decode(ModuleState* st, std::uint32_t flags, const std::byte* data, std::size_t n);

// The value as text, for a database column: "s:" + the str itself, "i:" + an int's
// decimal digits, otherwise "<flags>:" + base64 of the payload. Base64 has no ':', so
// a text without one in its first three characters is a value Django's DatabaseCache
// wrote (base64 of a pickle), which decode_text reads too.
PyObject* encode_text(ModuleState* st, const CodecOptions& opts, PyObject* value);
PyObject* decode_text(ModuleState* st, PyObject* text);

}  // namespace nativecache::py
