// The one Python-facing type, `_native.Store`, written once over the core Store
// interface. Stores differ below it (shared memory now; memcached, file, dummy later).
#pragma once

#include <memory>

#include "core/store.hpp"
#include "py/codec_glue.hpp"
#include "py/keys.hpp"
#include "py/state.hpp"

namespace nativecache::shm {
class ShmStore;
}
namespace nativecache::mc {
class MemcachedStore;
}

namespace nativecache::py {

struct StoreObject {
  PyObject_HEAD
  Store* store;             // owned
  shm::ShmStore* shm;       // the same object when it is a shared-memory store
  ModuleState* st;
  PyObject* module;         // strong: keeps the state alive
  CodecOptions codec;
  KeyPolicy policy;
  bool ignore_errors;       // IGNORE_EXCEPTIONS: server and I/O failures read as misses
  bool keeps_values;        // false for the dummy store: values are never even encoded
  PyObject* on_error;       // strong or nullptr: called with each ignored exception
  PyObject* weakrefs;       // the weak references to this store, or nullptr
};

// How a store is presented to Python.
struct StoreOptions {
  CodecOptions codec;
  KeyPolicy policy = KeyPolicy::kWarn;
  bool ignore_errors = false;
  bool keeps_values = true;
  PyObject* on_error = nullptr;  // borrowed
};

PyTypeObject* make_store_type(PyObject* module);

// Wraps a freshly opened store in a new Python object (takes ownership).
PyObject* wrap_store(PyObject* module, std::unique_ptr<Store> store, shm::ShmStore* shm,
                     const StoreOptions& options);

}  // namespace nativecache::py
