// The extension module django_nativecache._native: multi-phase init, module state,
// and the functions that open stores.
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include "core/dummy_store.hpp"
#include "core/file_store.hpp"
#include "core/memcached_client.hpp"
#include "core/shm/robust_mutex.hpp"
#include "core/shm/shm_store.hpp"
#include "py/errors.hpp"
#include "py/gil.hpp"
#include "py/store_type.hpp"

namespace nativecache::py {

ModuleState* state_of(PyObject* module) noexcept {
  return static_cast<ModuleState*>(PyModule_GetState(module));
}

namespace {

void* release_gil() { return PyEval_SaveThread(); }
// The thread that ran the atexit handlers: the one finalizing the interpreter (CPython
// runs them in Py_FinalizeEx before it marks the runtime as finalizing), which still runs
// Python (finalizers, module teardown) and must never be parked.
std::atomic<unsigned long> g_finalizer{0};

PyObject* note_finalizer(PyObject*, PyObject*) {
  g_finalizer.store(PyThread_get_thread_ident(), std::memory_order_relaxed);
  Py_RETURN_NONE;
}
PyMethodDef k_note_finalizer = {"_note_finalizer", note_finalizer, METH_NOARGS,
                                "records the thread that finalizes the interpreter"};

// Runs once a wait for a shard lock is over and the lock let go. Another thread whose
// wait outlasted the interpreter would be ended by PyEval_RestoreThread with
// pthread_exit, an unwind that cannot cross the core's noexcept frames (std::terminate):
// it holds no lock and the process is exiting, so it is parked instead.
void restore_gil(void* token) {
#if PY_VERSION_HEX >= 0x030D0000
  const bool finalizing = Py_IsFinalizing() != 0;
#else
  const bool finalizing = _Py_IsFinalizing() != 0;
#endif
  if (finalizing && PyThread_get_thread_ident() != g_finalizer.load(std::memory_order_relaxed)) {
    for (;;) ::pause();
  }
  PyEval_RestoreThread(static_cast<PyThreadState*>(token));
}

// atexit.register(_note_finalizer)
bool register_finalizer_note() {
  Ref atexit(PyImport_ImportModule("atexit"));
  if (!atexit) return false;
  Ref fn(PyCFunction_New(&k_note_finalizer, nullptr));
  if (!fn) return false;
  Ref done(PyObject_CallMethod(atexit.get(), "register", "O", fn.get()));
  return static_cast<bool>(done);
}

PyObject* import_attr(const char* module, const char* name) {
  Ref m(PyImport_ImportModule(module));
  return m ? PyObject_GetAttrString(m.get(), name) : nullptr;
}

// open_shm(name, size, shards, max_item_size, recreate, compress_min, compress_level,
//          lock_timeout_ms)
PyObject* open_shm(PyObject* module, PyObject* args) {
  return guard([&]() -> PyObject* {
    const char* name = nullptr;
    unsigned long long size = 0;
    unsigned int shards = 0, max_item = 0;
    int recreate = 1, level = 6;
    Py_ssize_t compress_min = 0;
    long long lock_timeout_ms = 0;
    if (!PyArg_ParseTuple(args, "sKIIpniL:open_shm", &name, &size, &shards, &max_item,
                          &recreate, &compress_min, &level, &lock_timeout_ms)) {
      return nullptr;
    }
    shm::SegmentOptions opts;
    opts.name = name;
    opts.size = size;
    opts.shards = shards;
    opts.max_item_size = max_item;
    opts.recreate_on_mismatch = recreate != 0;
    opts.lock_timeout_ms = lock_timeout_ms;
    std::unique_ptr<shm::ShmStore> store;
    std::string detail;
    Status s;
    {
      GilReleased released;  // creation may wait on another process's flock
      s = shm::ShmStore::open(opts, store, detail);
    }
    if (!s.ok()) return raise_status(state_of(module), s, nullptr, detail);
    shm::ShmStore* raw = store.get();
    StoreOptions options;
    options.codec = CodecOptions{static_cast<std::size_t>(compress_min), level};
    return wrap_store(module, std::move(store), raw, options);
  });
}

#ifdef NATIVECACHE_HAVE_LIBMEMCACHED
bool parse_servers(PyObject* list, std::vector<mc::ServerSpec>& out) {
  Ref seq(PySequence_Fast(list, "servers must be a sequence"));
  if (!seq) return false;
  for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq.get()); ++i) {
    const char* host = nullptr;
    unsigned int port = 0, weight = 1;
    int unix_socket = 0;
    if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq.get(), i), "sIpI:server", &host, &port,
                          &unix_socket, &weight)) {
      return false;
    }
    if (port > 65535) {
      PyErr_Format(PyExc_ValueError, "port %u is out of range", port);
      return false;
    }
    out.push_back({host, static_cast<std::uint16_t>(port), unix_socket != 0, weight});
  }
  return true;
}

bool parse_behaviors(PyObject* list, std::vector<mc::ClientConfig::Behavior>& out) {
  Ref seq(PySequence_Fast(list, "behaviors must be a sequence"));
  if (!seq) return false;
  for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq.get()); ++i) {
    const char* name = nullptr;
    PyObject* value = nullptr;
    if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq.get(), i), "sO:behavior", &name,
                          &value)) {
      return false;
    }
    mc::ClientConfig::Behavior b;
    b.name = name;
    if (PyUnicode_Check(value)) {
      const char* text = PyUnicode_AsUTF8(value);
      if (text == nullptr) return false;
      b.text = text;
    } else {
      b.value = PyLong_AsLongLong(value);
      if (b.value == -1 && PyErr_Occurred()) return false;
    }
    out.push_back(std::move(b));
  }
  return true;
}

// open_memcached(servers, binary, behaviors, compress_min, compress_level, ignore_errors,
//                on_error, max_idle, idle_timeout): servers [(host, port, unix, weight)],
// behaviors [(name, value)], max_idle handles kept between calls (-1: as many as were
// ever in use at once), idle_timeout in seconds (0: handles are kept however long idle)
PyObject* open_memcached(PyObject* module, PyObject* args) {
  return guard([&]() -> PyObject* {
    PyObject *servers = nullptr, *behaviors = nullptr, *on_error = nullptr;
    int binary = 0, ignore = 0, level = 6;
    Py_ssize_t compress_min = 0, max_idle = -1;
    double idle_timeout = 0;
    if (!PyArg_ParseTuple(args, "OpOnipOnd:open_memcached", &servers, &binary, &behaviors,
                          &compress_min, &level, &ignore, &on_error, &max_idle,
                          &idle_timeout)) {
      return nullptr;
    }
    mc::ClientConfig cfg;
    cfg.binary = binary != 0;
    if (max_idle >= 0) cfg.max_idle = static_cast<std::size_t>(max_idle);
    if (idle_timeout > 0) cfg.idle_timeout_ms = static_cast<std::int64_t>(idle_timeout * 1000);
    if (!parse_servers(servers, cfg.servers) || !parse_behaviors(behaviors, cfg.behaviors)) {
      return nullptr;
    }
    std::unique_ptr<mc::MemcachedStore> store;
    std::string detail;
    Status s = mc::MemcachedStore::open(cfg, store, detail);
    if (!s.ok()) return raise_status(state_of(module), s, nullptr, detail);
    StoreOptions options;
    options.codec = CodecOptions{static_cast<std::size_t>(compress_min), level};
    options.policy = KeyPolicy::kRaise;
    options.ignore_errors = ignore != 0;
    options.on_error = on_error == Py_None ? nullptr : on_error;
    return wrap_store(module, std::move(store), nullptr, options);
  });
}
#endif

// open_dummy([compress_min, compress_level]): a store that keeps nothing; also what the
// database backend uses for keys and its text codec.
PyObject* open_dummy(PyObject* module, PyObject* args) {
  return guard([&]() -> PyObject* {
    Py_ssize_t compress_min = 0;
    int level = 6;
    if (!PyArg_ParseTuple(args, "|ni:open_dummy", &compress_min, &level)) return nullptr;
    StoreOptions options;
    options.keeps_values = false;
    options.codec = CodecOptions{static_cast<std::size_t>(compress_min), level};
    return wrap_store(module, std::make_unique<DummyStore>(), nullptr, options);
  });
}

// open_file(dir, max_value_size, compress_min, compress_level)
PyObject* open_file(PyObject* module, PyObject* args) {
  return guard([&]() -> PyObject* {
    PyObject* dir = nullptr;
    Py_ssize_t max_value = 0, compress_min = 0;
    int level = 6;
    if (!PyArg_ParseTuple(args, "O&nni:open_file", PyUnicode_FSConverter, &dir, &max_value,
                          &compress_min, &level)) {
      return nullptr;
    }
    Ref dir_bytes(dir);
    file::FileOptions opts;
    opts.dir.assign(PyBytes_AS_STRING(dir), static_cast<std::size_t>(PyBytes_GET_SIZE(dir)));
    opts.max_value_size = static_cast<std::size_t>(max_value);
    std::unique_ptr<file::FileStore> store;
    std::string detail;
    Status s = file::FileStore::open(opts, store, detail);
    if (!s.ok()) return raise_status(state_of(module), s, nullptr, detail);
    StoreOptions options;
    options.codec = CodecOptions{static_cast<std::size_t>(compress_min), level};
    return wrap_store(module, std::move(store), nullptr, options);
  });
}

PyObject* unlink_shm(PyObject* module, PyObject* arg) {
  return guard([&]() -> PyObject* {
    const char* name = PyUnicode_AsUTF8(arg);
    if (name == nullptr) return nullptr;
    std::string detail;
    Status s;
    std::string n(name);
    {
      GilReleased released;
      s = shm::Segment::unlink(n, detail);
    }
    if (!s.ok()) return raise_status(state_of(module), s, nullptr, detail);
    Py_RETURN_NONE;
  });
}

PyMethodDef module_methods[] = {
    {"open_shm", open_shm, METH_VARARGS,
     "open_shm(name, size, shards, max_item_size, recreate, compress_min, compress_level, "
     "lock_timeout_ms)"},
    {"unlink_shm", unlink_shm, METH_O, "unlink_shm(name): remove a segment by name"},
    {"open_file", open_file, METH_VARARGS,
     "open_file(dir, max_value_size, compress_min, compress_level)"},
    {"open_dummy", open_dummy, METH_VARARGS,
     "open_dummy([compress_min, compress_level]): a store that keeps nothing"},
#ifdef NATIVECACHE_HAVE_LIBMEMCACHED
    {"open_memcached", open_memcached, METH_VARARGS,
     "open_memcached(servers, binary, behaviors, compress_min, compress_level, ignore_errors, "
     "on_error, max_idle, idle_timeout)"},
#endif
    {nullptr, nullptr, 0, nullptr},
};

int module_exec(PyObject* module) {
  ModuleState* st = state_of(module);
  st->store_type = make_store_type(module);
  if (st->store_type == nullptr) return -1;
  if (PyModule_AddObjectRef(module, "Store", reinterpret_cast<PyObject*>(st->store_type)) < 0) {
    return -1;
  }
  if (PyModule_AddStringConstant(module, "SEGMENT_TAG", shm::Segment::build_tag().c_str()) < 0) {
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
  st->io_error = import_attr(exc, "CacheIOError");
  if (!st->pickle_dumps || !st->pickle_loads || !st->pickle_protocol || !st->cache_key_warning ||
      !st->invalid_cache_key || !st->improperly_configured || !st->cache_error ||
      !st->cache_unavailable || !st->value_too_large || !st->corrupt_data ||
      !st->permission_error || !st->storage_full || !st->io_error) {
    return -1;
  }
  if (!register_finalizer_note()) return -1;
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
  Py_CLEAR(st->io_error);
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
