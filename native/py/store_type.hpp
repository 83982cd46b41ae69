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

namespace nativecache::py {

struct StoreObject {
  PyObject_HEAD
  Store* store;             // owned
  shm::ShmStore* shm;       // the same object when it is a shared-memory store
  ModuleState* st;
  PyObject* module;         // strong: keeps the state alive
  CodecOptions codec;
  KeyPolicy policy;
};

PyTypeObject* make_store_type(PyObject* module);

// Wraps a freshly opened store in a new Python object (takes ownership).
PyObject* wrap_store(PyObject* module, std::unique_ptr<Store> store, shm::ShmStore* shm,
                     CodecOptions codec, KeyPolicy policy);

}  // namespace nativecache::py
