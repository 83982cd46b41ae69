#include "py/errors.hpp"

#include <cstring>
#include <string>

#include "py/ref.hpp"

namespace nativecache::py {

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
      PyErr_Format(st->invalid_cache_key, "%s%s%R", what, key ? ": " : "", key ? key : Py_None);
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
      PyErr_SetString(st->storage_full, what);
      break;
    case Code::kCorrupt:
      PyErr_SetString(st->corrupt_data, what);
      break;
    case Code::kUnavailable:
      PyErr_SetString(st->cache_unavailable, what);
      break;
    case Code::kIo:
      if (s.err != 0) {
        // An OSError with errno and text, as Python's own I/O would raise; the text
        // names the OS error once (the file store's already ends with it).
        std::string text(what);
        const std::string reason = std::string(": ") + std::strerror(s.err);
        if (!text.ends_with(reason)) text += reason;
        Ref args(Py_BuildValue("(is)", s.err, text.c_str()));
        if (args) PyErr_SetObject(st->io_error, args.get());
      } else {
        PyErr_SetString(st->io_error, what);
      }
      break;
  }
  return nullptr;
}

}  // namespace nativecache::py
