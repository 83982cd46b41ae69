#include "py/errors.hpp"

#include <cstring>
#include <string>

#include "py/ref.hpp"

namespace nativecache::py {
namespace {

// An OSError subclass with errno and text when the OS gave an errno, as Python's own I/O
// raises it; the text names the OS error once (the file store's already does).
void set_os_error(PyObject* type, const Status& s, const char* what) {
  if (s.err == 0) {
    PyErr_SetString(type, what);
    return;
  }
  std::string text(what);
  const char* reason = std::strerror(s.err);
  if (text.find(reason) == std::string::npos) text.append(": ").append(reason);
  Ref args(Py_BuildValue("(is)", s.err, text.c_str()));
  if (args) PyErr_SetObject(type, args.get());
}

}  // namespace

PyObject* raise_status(ModuleState* st, const Status& s, PyObject* key,
                       const std::string& detail) {
  const char* what = !detail.empty() ? detail.c_str() : (s.what ? s.what : "cache error");
  switch (s.code) {
    case Code::kOk:
    case Code::kNotFound:
    case Code::kExists:
    case Code::kBufferTooSmall:
      PyErr_Format(st->cache_error, "unexpected cache status %d", static_cast<int>(s.code));
      break;
    case Code::kTooLarge:
      if (key) {
        PyErr_Format(st->value_too_large, "value for key %R is too large for the cache%s%s", key,
                     detail.empty() ? "" : ": ", detail.c_str());
      } else {
        PyErr_SetString(st->value_too_large, what);
      }
      break;
    case Code::kBadKey:
      if (key != nullptr) {
        PyErr_Format(st->invalid_cache_key, "%s: %R", what, key);
      } else {
        PyErr_SetString(st->invalid_cache_key, what);
      }
      break;
    case Code::kTypeMismatch:
      PyErr_SetString(PyExc_TypeError,
                      "append/prepend needs a value of the stored type (both bytes or both str) "
                      "and a stored value that is not compressed (see COMPRESS_MIN_LENGTH)");
      break;
    case Code::kNotNumeric:
    case Code::kOverflow:
      PyErr_SetString(PyExc_TypeError, what);
      break;
    case Code::kInvalidArgument:
      PyErr_SetString(st->improperly_configured, what);
      break;
    case Code::kUnsupported:
      PyErr_SetString(PyExc_NotImplementedError, what);
      break;
    case Code::kPermission:
      PyErr_SetString(st->permission_error, what);
      break;
    case Code::kNoSpace:
      set_os_error(st->storage_full, s, what);
      break;
    case Code::kCorrupt:
      PyErr_SetString(st->corrupt_data, what);
      break;
    case Code::kUnavailable:
      PyErr_SetString(st->cache_unavailable, what);
      break;
    case Code::kIo:
      set_os_error(st->io_error, s, what);
      break;
  }
  return nullptr;
}

}  // namespace nativecache::py
