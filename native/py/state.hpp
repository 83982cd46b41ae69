// Module state: the objects the binding looks up once at import.
#pragma once

#include "py/ref.hpp"

namespace nativecache::py {

struct ModuleState {
  PyTypeObject* store_type = nullptr;
  PyObject* pickle_dumps = nullptr;
  PyObject* pickle_loads = nullptr;
  PyObject* pickle_protocol = nullptr;
  PyObject* cache_key_warning = nullptr;  // django's CacheKeyWarning
  PyObject* invalid_cache_key = nullptr;  // django's InvalidCacheKey
  PyObject* improperly_configured = nullptr;
  PyObject* cache_error = nullptr;        // django_nativecache.exceptions.*
  PyObject* cache_unavailable = nullptr;
  PyObject* value_too_large = nullptr;
  PyObject* corrupt_data = nullptr;
  PyObject* permission_error = nullptr;
  PyObject* storage_full = nullptr;
  PyObject* io_error = nullptr;
};

ModuleState* state_of(PyObject* module) noexcept;

}  // namespace nativecache::py
