#include "py/keys.hpp"

#include "core/codec.hpp"
#include "py/ref.hpp"

namespace nativecache::py {

namespace {
constexpr std::size_t kMemcachedMaxKey = 250;

bool append_utf8(PyObject* s, KeyBuf& out) {
  Py_ssize_t n = 0;
  const char* p = PyUnicode_AsUTF8AndSize(s, &n);
  if (p != nullptr) {
    out.append(p, static_cast<std::size_t>(n));
    return true;
  }
  if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) return false;
  PyErr_Clear();  // lone surrogates: keep them distinct rather than fail
  Ref b(PyUnicode_AsEncodedString(s, "utf-8", "surrogatepass"));
  if (!b) return false;
  out.append(PyBytes_AS_STRING(b.get()), static_cast<std::size_t>(PyBytes_GET_SIZE(b.get())));
  return true;
}

// Appends what "%s" % obj gives.
bool append_text(PyObject* o, KeyBuf& out) {
  if (PyUnicode_CheckExact(o)) return append_utf8(o, out);
  if (PyLong_CheckExact(o)) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow == 0 && !(v == -1 && PyErr_Occurred())) {
      char buf[24];
      std::size_t n = codec::format_int(v, buf);
      out.append(buf, n);
      return true;
    }
    PyErr_Clear();
  }
  Ref s(PyObject_Str(o));
  return s && append_utf8(s.get(), out);
}

std::size_t char_length(std::string_view utf8) noexcept {
  std::size_t n = 0;
  for (char c : utf8) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

bool has_control_chars(std::string_view utf8) noexcept {
  for (char c : utf8) {
    auto b = static_cast<unsigned char>(c);
    if (b <= 0x20 || b == 0x7f) return true;
  }
  return false;
}
}  // namespace

void KeyBuf::append(const char* s, std::size_t n) {
  if (!on_heap_ && size_ + n <= sizeof(inline_)) {
    std::copy(s, s + n, inline_ + size_);
    size_ += n;
    return;
  }
  if (!on_heap_) {
    heap_.assign(inline_, size_);
    on_heap_ = true;
  }
  heap_.append(s, n);
}

bool build_key(ModuleState* st, PyObject* key, PyObject* prefix, PyObject* version,
               KeyPolicy policy, KeyBuf& out) {
  out.clear();
  if (prefix == nullptr || prefix == Py_None) {
    if (!PyUnicode_Check(key)) {
      PyErr_Format(PyExc_TypeError, "cache keys must be str, not %.200s", Py_TYPE(key)->tp_name);
      return false;
    }
    return append_utf8(key, out);
  }
  if (!append_text(prefix, out)) return false;
  out.append(":", 1);
  if (!append_text(version, out)) return false;
  out.append(":", 1);
  if (!append_text(key, out)) return false;

  std::string_view k = out.view();
  bool too_long = k.size() > kMemcachedMaxKey && char_length(k) > kMemcachedMaxKey;
  bool bad_chars = has_control_chars(k);
  if (!too_long && !bad_chars) [[likely]] return true;

  Ref made(PyUnicode_DecodeUTF8(k.data(), static_cast<Py_ssize_t>(k.size()), "surrogatepass"));
  if (!made) return false;
  PyObject* category = policy == KeyPolicy::kWarn ? st->cache_key_warning : st->invalid_cache_key;
  auto report = [&](Ref msg) -> bool {
    if (!msg) return false;
    if (policy == KeyPolicy::kRaise) {
      PyErr_SetObject(category, msg.get());
      return false;
    }
    const char* text = PyUnicode_AsUTF8(msg.get());
    return text != nullptr && PyErr_WarnEx(category, text, 1) == 0;
  };
  if (too_long &&
      !report(Ref(PyUnicode_FromFormat(
          "Cache key will cause errors if used with memcached: %R (longer than %d)", made.get(),
          static_cast<int>(kMemcachedMaxKey))))) {
    return false;
  }
  if (bad_chars &&
      !report(Ref(PyUnicode_FromFormat(
          "Cache key contains characters that will cause errors if used with memcached: %R",
          made.get())))) {
    return false;
  }
  return true;
}

}  // namespace nativecache::py
