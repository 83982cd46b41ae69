#include "py/codec_glue.hpp"

#include "core/codec.hpp"
#include "py/gil.hpp"

#include <cstring>
#include <string>

namespace nativecache::py {

namespace {
constexpr std::size_t kReleaseGilAbove = 64 * 1024;
constexpr std::size_t kMaxInflated = std::size_t{256} << 20;
// sys.int_info.default_max_str_digits: the longest decimal int every process can read.
constexpr Py_ssize_t kDefaultMaxStrDigits = 4300;
// An int of more bits has more than kDefaultMaxStrDigits digits (4300 × log2(10) > 14284).
constexpr long long kMaxDecimalBits = 14285;

std::span<const std::byte> bytes_of(const char* p, Py_ssize_t n) noexcept {
  return {reinterpret_cast<const std::byte*>(p), static_cast<std::size_t>(n)};
}

void maybe_compress(const CodecOptions& opts, Encoded& out) {
  if (opts.compress_min == 0 || out.data.size() < opts.compress_min) return;
  // A value that would inflate past what a read inflates stays as it is: the store's size
  // limit then refuses it (ValueTooLarge) or keeps it readable, never stored unreadable.
  if (out.data.size() > kMaxInflated) return;
  std::optional<std::string> packed;
  if (out.data.size() > kReleaseGilAbove) {
    GilReleased released;
    packed = codec::compress(out.data, opts.compress_level);
  } else {
    packed = codec::compress(out.data, opts.compress_level);
  }
  if (!packed) return;
  out.buf = std::move(*packed);
  out.data = bytes_of(out.buf.data(), static_cast<Py_ssize_t>(out.buf.size()));
  out.flags |= codec::kZlib;
}
}  // namespace

bool encode_raw(PyObject* value, Encoded& out) {
  if (PyBytes_CheckExact(value)) {
    out.flags = codec::kBytes;
    out.data = bytes_of(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value));
    return true;
  }
  if (PyUnicode_CheckExact(value)) {
    Py_ssize_t n = 0;
    const char* p = PyUnicode_AsUTF8AndSize(value, &n);
    if (p == nullptr) return false;
    out.flags = codec::kText;
    out.data = bytes_of(p, n);
    return true;
  }
  PyErr_Format(PyExc_TypeError, "append/prepend take bytes or str, not %.200s",
               Py_TYPE(value)->tp_name);
  return false;
}

bool encode(ModuleState* st, const CodecOptions& opts, PyObject* value, Encoded& out) {
  if (PyBytes_CheckExact(value)) {
    out.flags = codec::kBytes;
    out.data = bytes_of(PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value));
    maybe_compress(opts, out);
    return true;
  }
  if (PyUnicode_CheckExact(value)) {
    Py_ssize_t n = 0;
    const char* p = PyUnicode_AsUTF8AndSize(value, &n);
    if (p != nullptr) {
      out.flags = codec::kText;
      out.data = bytes_of(p, n);
      maybe_compress(opts, out);
      return true;
    }
    PyErr_Clear();  // lone surrogates: pickle keeps them
  } else if (PyLong_CheckExact(value)) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    bool decimal = true;
    long long bits = 0;
    if (overflow != 0) {
      Ref n(PyObject_CallMethod(value, "bit_length", nullptr));
      if (!n) return false;
      bits = PyLong_AsLongLong(n.get());
    }
    if (overflow == 0) {
      out.buf.resize(24);
      out.buf.resize(codec::format_int(v, out.buf.data()));
    } else if ((overflow < 0 && bits == 64) || bits > kMaxDecimalBits) {
      // From -(2**64 - 1) to -(2**63 + 1), memcached would read the decimal text as an
      // unsigned number (its strtoull wraps it) and increment that: pickled, the server
      // refuses to, and incr adds in Python. Ints too long for decimal text are pickled
      // without being formatted first (str() of a huge int takes quadratic time).
      decimal = false;
    } else if (Ref text(PyObject_Str(value)); text) {
      Py_ssize_t n = 0;
      const char* p = PyUnicode_AsUTF8AndSize(text.get(), &n);
      if (p == nullptr) return false;
      // Decimal text only as long as a process with Python's default limit can read it
      // back (this one may have raised its own); pickle stores any int.
      decimal = n - (p[0] == '-' ? 1 : 0) <= kDefaultMaxStrDigits;
      out.buf.assign(p, static_cast<std::size_t>(n));
    } else if (PyErr_ExceptionMatches(PyExc_ValueError)) {
      // Over sys.get_int_max_str_digits(): no decimal text, but pickle stores it.
      PyErr_Clear();
      decimal = false;
    } else {
      return false;
    }
    if (decimal) {
      out.flags = codec::kLong;
      out.data = bytes_of(out.buf.data(), static_cast<Py_ssize_t>(out.buf.size()));
      return true;
    }
  }
  PyObject* args[] = {value, st->pickle_protocol};
  Ref pickled(PyObject_Vectorcall(st->pickle_dumps, args, 2, nullptr));
  if (!pickled) return false;
  out.flags = codec::kPickle;
  out.data = bytes_of(PyBytes_AS_STRING(pickled.get()), PyBytes_GET_SIZE(pickled.get()));
  out.owner = std::move(pickled);
  maybe_compress(opts, out);
  return true;
}

PyObject* decode(ModuleState* st, std::uint32_t flags, const std::byte* data, std::size_t n) {
  std::string inflated;
  if (flags & codec::kZlib) {
    Status s;
    std::span<const std::byte> in(data, n);
    if (n > kReleaseGilAbove) {
      GilReleased released;
      s = codec::decompress(in, kMaxInflated, inflated);
    } else {
      s = codec::decompress(in, kMaxInflated, inflated);
    }
    if (!s.ok()) {
      PyErr_SetString(st->corrupt_data, s.what);
      return nullptr;
    }
    data = reinterpret_cast<const std::byte*>(inflated.data());
    n = inflated.size();
  }
  const char* p = reinterpret_cast<const char*>(data);
  auto len = static_cast<Py_ssize_t>(n);
  switch (flags & codec::kTypeMask) {
    case codec::kBytes:
      return PyBytes_FromStringAndSize(p, len);
    case codec::kText: {
      PyObject* text = PyUnicode_DecodeUTF8(p, len, nullptr);
      if (text == nullptr && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_SetString(st->corrupt_data, "stored text is not UTF-8");
      }
      return text;
    }
    case codec::kInt:
    case codec::kLong: {
      if (auto v = codec::parse_int({p, n})) return PyLong_FromLongLong(*v);
      if (std::memchr(p, 0, n) != nullptr) {  // PyLong_FromString would stop at it
        PyErr_SetString(st->corrupt_data, "stored integer holds a NUL byte");
        return nullptr;
      }
      std::string text(p, n);  // big integers: NUL-terminated for PyLong_FromString
      PyObject* number = PyLong_FromString(text.c_str(), nullptr, 10);
      if (number == nullptr && PyErr_ExceptionMatches(PyExc_ValueError)) {
        PyErr_SetString(st->corrupt_data, "stored integer is not a decimal number");
      }
      return number;
    }
    case codec::kPickle: {
      // A private copy: unpickling may run code that reenters the cache.
      Ref raw(PyBytes_FromStringAndSize(p, len));
      if (!raw) return nullptr;
      return PyObject_CallOneArg(st->pickle_loads, raw.get());
    }
    default:
      PyErr_Format(st->corrupt_data, "stored value has unknown flags %u", flags);
      return nullptr;
  }
}

PyObject* encode_text(ModuleState* st, const CodecOptions& opts, PyObject* value) {
  Encoded enc;
  if (!encode(st, opts, value, enc)) return nullptr;
  std::string text;
  const auto* p = reinterpret_cast<const char*>(enc.data.data());
  bool has_nul = std::memchr(p, 0, enc.data.size()) != nullptr;  // a text column refuses NUL
  if (enc.flags == codec::kText && !has_nul) {
    text.reserve(enc.data.size() + 2);
    text.append("s:").append(p, enc.data.size());
  } else if (enc.flags == codec::kLong) {
    text.append("i:").append(p, enc.data.size());
  } else {
    if (enc.flags == codec::kText) {  // a str with NUL: pickled, like any other value
      PyObject* args[] = {value, st->pickle_protocol};
      Ref pickled(PyObject_Vectorcall(st->pickle_dumps, args, 2, nullptr));
      if (!pickled) return nullptr;
      enc.owner = std::move(pickled);
      enc.flags = codec::kPickle;
      enc.data = bytes_of(PyBytes_AS_STRING(enc.owner.get()), PyBytes_GET_SIZE(enc.owner.get()));
    }
    text.append(std::to_string(enc.flags)).append(":");
    codec::base64_encode(enc.data, text);
  }
  return PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "strict");
}

PyObject* decode_text(ModuleState* st, PyObject* text) {
  Py_ssize_t n = 0;
  const char* p = PyUnicode_AsUTF8AndSize(text, &n);
  if (p == nullptr) return nullptr;
  std::string_view t(p, static_cast<std::size_t>(n));
  std::size_t colon = t.substr(0, 3).find(':');
  std::string raw;
  if (colon == std::string_view::npos) {
    // Written by Django's DatabaseCache: base64 of a pickle.
    if (!codec::base64_decode(t, raw)) {
      PyErr_SetString(st->corrupt_data, "stored value is neither ours nor Django's");
      return nullptr;
    }
    return decode(st, codec::kPickle, reinterpret_cast<const std::byte*>(raw.data()),
                  raw.size());
  }
  std::string_view tag = t.substr(0, colon);
  std::string_view body = t.substr(colon + 1);
  if (tag == "s") return PyUnicode_DecodeUTF8(body.data(), static_cast<Py_ssize_t>(body.size()), nullptr);
  if (tag == "i") {
    return decode(st, codec::kLong, reinterpret_cast<const std::byte*>(body.data()), body.size());
  }
  auto flags = codec::parse_int(tag);
  if (!flags || *flags < 0 || !codec::base64_decode(body, raw)) {
    PyErr_SetString(st->corrupt_data, "stored value is damaged");
    return nullptr;
  }
  return decode(st, static_cast<std::uint32_t>(*flags), reinterpret_cast<const std::byte*>(raw.data()),
                raw.size());
}

}  // namespace nativecache::py
