// The extension module django_nativecache._native: multi-phase init, module state,
// and the functions that open stores.
#include <memory>
#include <string>

#include "core/shm/robust_mutex.hpp"
#include "core/shm/shm_store.hpp"
#include "py/errors.hpp"
#include "py/store_type.hpp"

namespace nativecache::py {

ModuleState* state_of(PyObject* module) noexcept {
  return static_cast<ModuleState*>(PyModule_GetState(module));
}

namespace {

void* release_gil() { return PyEval_SaveThread(); }
void restore_gil(void* token) { PyEval_RestoreThread(static_cast<PyThreadState*>(token)); }

PyObject* import_attr(const char* module, const char* name) {
  Ref m(PyImport_ImportModule(module));
  return m ? PyObject_GetAttrString(m.get(), name) : nullptr;
}

// open_shm(name, size, shards, max_item_size, recreate, compress_min, compress_level)
PyObject* open_shm(PyObject* module, PyObject* args) {
  return guard([&]() -> PyObject* {
    const char* name = nullptr;
    unsigned long long size = 0;
    unsigned int shards = 0, max_item = 0;
    int recreate = 1, level = 6;
    Py_ssize_t compress_min = 0;
    if (!PyArg_ParseTuple(args, "sKIIpni:open_shm", &name, &size, &shards, &max_item, &recreate,
                          &compress_min, &level)) {
      return nullptr;
    }
    shm::SegmentOptions opts;
    opts.name = name;
    opts.size = size;
    opts.shards = shards;
    opts.max_item_size = max_item;
    opts.recreate_on_mismatch = recreate != 0;
    std::unique_ptr<shm::ShmStore> store;
    std::string detail;
    Status s;
    Py_BEGIN_ALLOW_THREADS  // creation may wait on another process's flock
    s = shm::ShmStore::open(opts, store, detail);
    Py_END_ALLOW_THREADS
    if (!s.ok()) return raise_status(state_of(module), s, nullptr, detail);
    shm::ShmStore* raw = store.get();
    CodecOptions codec{static_cast<std::size_t>(compress_min), level};
    return wrap_store(module, std::move(store), raw, codec, KeyPolicy::kWarn);
  });
}

PyObject* unlink_shm(PyObject* module, PyObject* arg) {
  return guard([&]() -> PyObject* {
    const char* name = PyUnicode_AsUTF8(arg);
    if (name == nullptr) return nullptr;
    std::string detail;
    Status s;
    std::string n(name);
    Py_BEGIN_ALLOW_THREADS
    s = shm::Segment::unlink(n, detail);
    Py_END_ALLOW_THREADS
    if (!s.ok()) return raise_status(state_of(module), s, nullptr, detail);
    Py_RETURN_NONE;
  });
}

PyMethodDef module_methods[] = {
    {"open_shm", open_shm, METH_VARARGS,
     "open_shm(name, size, shards, max_item_size, recreate, compress_min, compress_level)"},
    {"unlink_shm", unlink_shm, METH_O, "unlink_shm(name): remove a segment by name"},
    {nullptr, nullptr, 0, nullptr},
};

int module_exec(PyObject* module) {
  ModuleState* st = state_of(module);
  st->store_type = make_store_type(module);
  if (st->store_type == nullptr) return -1;
  if (PyModule_AddObjectRef(module, "Store", reinterpret_cast<PyObject*>(st->store_type)) < 0) {
    return -1;
  }
  st->pickle_dumps = import_attr("pickle", "dumps");
  st->pickle_loads = import_attr("pickle", "loads");
  st->pickle_protocol = import_attr("pickle", "HIGHEST_PROTOCOL");
  st->cache_key_warning = import_attr("django.core.cache.backends.base", "CacheKeyWarning");
  st->invalid_cache_key = import_attr("django.core.cache.backends.base", "InvalidCacheKey");
  st->improperly_configured = import_attr("django.core.exceptions", "ImproperlyConfigured");
  const char* exc = "django_nativecache.exceptions";
  st->cache_error = import_attr(exc, "CacheError");
  st->cache_unavailable = import_attr(exc, "CacheUnavailable");
  st->value_too_large = import_attr(exc, "ValueTooLarge");
  st->corrupt_data = import_attr(exc, "CorruptData");
  st->permission_error = import_attr(exc, "CachePermissionError");
  st->storage_full = import_attr(exc, "StorageFull");
  if (!st->pickle_dumps || !st->pickle_loads || !st->pickle_protocol || !st->cache_key_warning ||
      !st->invalid_cache_key || !st->improperly_configured || !st->cache_error ||
      !st->cache_unavailable || !st->value_too_large || !st->corrupt_data ||
      !st->permission_error || !st->storage_full) {
    return -1;
  }
  shm::set_wait_hooks({release_gil, restore_gil});
  return 0;
}

int module_traverse(PyObject* module, visitproc visit, void* arg) {
  ModuleState* st = state_of(module);
  Py_VISIT(st->store_type);
  return 0;
}

int module_clear(PyObject* module) {
  ModuleState* st = state_of(module);
  Py_CLEAR(st->store_type);
  Py_CLEAR(st->pickle_dumps);
  Py_CLEAR(st->pickle_loads);
  Py_CLEAR(st->pickle_protocol);
  Py_CLEAR(st->cache_key_warning);
  Py_CLEAR(st->invalid_cache_key);
  Py_CLEAR(st->improperly_configured);
  Py_CLEAR(st->cache_error);
  Py_CLEAR(st->cache_unavailable);
  Py_CLEAR(st->value_too_large);
  Py_CLEAR(st->corrupt_data);
  Py_CLEAR(st->permission_error);
  Py_CLEAR(st->storage_full);
  return 0;
}

void module_free(void* module) { module_clear(static_cast<PyObject*>(module)); }

PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, reinterpret_cast<void*>(module_exec)},
    {0, nullptr},
};

PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "django_nativecache._native",
    "Native stores behind django_nativecache's cache backends.",
    sizeof(ModuleState),
    module_methods,
    module_slots,
    module_traverse,
    module_clear,
    module_free,
};

}  // namespace
}  // namespace nativecache::py

PyMODINIT_FUNC PyInit__native() { return PyModuleDef_Init(&nativecache::py::module_def); }
