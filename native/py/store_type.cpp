// Methods of `_native.Store`. Key arguments are always (key, ..., prefix, version):
// with prefix None the key is final (made by a Python key function); otherwise the
// Django default key is built and validated natively. Values are encoded before any
// store lock is taken and decoded after it is released.
#include "py/store_type.hpp"

#include <structmember.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/file_store.hpp"
#include "core/memcached_client.hpp"
#include "core/shm/shm_store.hpp"
#include "py/errors.hpp"

namespace nativecache::py {

namespace {

// Values are copied out of a store here, then decoded with no lock held.
thread_local std::vector<std::byte> t_scratch(16 * 1024);

PyObject* opt_arg(PyObject* const* args, Py_ssize_t nargs, Py_ssize_t i) noexcept {
  return i < nargs ? args[i] : nullptr;
}

// Releases the GIL for the lifetime of the object, when the store waits on I/O.
class AllowThreads {
 public:
  explicit AllowThreads(const StoreObject* self) noexcept
      : state_(self->store->blocks() ? PyEval_SaveThread() : nullptr) {}
  ~AllowThreads() {
    if (state_ != nullptr) PyEval_RestoreThread(state_);
  }
  AllowThreads(const AllowThreads&) = delete;
  AllowThreads& operator=(const AllowThreads&) = delete;

 private:
  PyThreadState* state_;
};

// Calls into the store, with the GIL released if it blocks.
template <typename F>
Status call(const StoreObject* self, F&& f) {
  AllowThreads allow(self);
  return f(*self->store);
}

bool soft_error(const Status& s) noexcept {
  return s.code == Code::kUnavailable || s.code == Code::kIo;
}

// With IGNORE_EXCEPTIONS, a server or I/O failure is reported to the backend's
// on_error callback (which logs it) and the call answers as on a miss: returns a new
// reference to `miss`. Otherwise raises. nullptr when an error is set.
PyObject* key_object(std::string_view k) {
  return PyUnicode_DecodeUTF8(k.data(), static_cast<Py_ssize_t>(k.size()), "surrogatepass");
}

PyObject* fail(StoreObject* self, const Status& s, PyObject* miss, std::string_view key = {}) {
  if (s.code == Code::kBadKey && !key.empty()) {  // the message names the key
    Ref k(key_object(key));
    if (!k) return nullptr;
    raise_status(self->st, s, k.get());
  } else {
    raise_status(self->st, s);
  }
  if (!self->ignore_errors || !soft_error(s)) return nullptr;
  PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
  PyErr_Fetch(&type, &value, &tb);
  PyErr_NormalizeException(&type, &value, &tb);
  Ref t(type), v(value), b(tb);
  if (self->on_error != nullptr) {
    Ref r(PyObject_CallOneArg(self->on_error, v ? v.get() : Py_None));
    if (!r) PyErr_WriteUnraisable(self->on_error);
  }
  return Py_NewRef(miss);
}

bool check_nargs(const char* name, Py_ssize_t nargs, Py_ssize_t lo, Py_ssize_t hi) {
  if (nargs >= lo && nargs <= hi) [[likely]] return true;
  PyErr_Format(PyExc_TypeError, "Store.%s takes %zd to %zd arguments (%zd given)", name, lo, hi,
               nargs);
  return false;
}

// None: never; a number <= 0: keep nothing; Ellipsis: keep the entry's expiry.
bool parse_ttl(PyObject* t, Ttl& out) {
  if (t == Py_None) {
    out = Ttl::Forever();
    return true;
  }
  if (t == Py_Ellipsis) {
    out = Ttl::Keep();
    return true;
  }
  constexpr double kMaxSeconds = 100.0 * 365 * 86400;  // beyond this, "never" in practice
  double seconds;
  if (PyLong_Check(t)) {
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(t, &overflow);
    if (v == -1 && PyErr_Occurred()) return false;
    if (overflow != 0) {
      out = overflow > 0 ? Ttl::Forever() : Ttl::Drop();
      return true;
    }
    seconds = static_cast<double>(v);
  } else {
    seconds = PyFloat_AsDouble(t);
    if (seconds == -1.0 && PyErr_Occurred()) return false;
    if (std::isnan(seconds)) {
      PyErr_SetString(PyExc_ValueError, "timeout must not be NaN");
      return false;
    }
  }
  if (seconds <= 0) {
    out = Ttl::Drop();
  } else if (seconds >= kMaxSeconds) {
    out = Ttl::Forever();
  } else {
    // Truncated, as Django truncates for memcached (0.9996 s is under a second); the
    // epsilon keeps 0.29 s from reading as 289.99... ms.
    out = Ttl::Relative(std::max<std::int64_t>(1, static_cast<std::int64_t>(seconds * 1000.0 + 1e-6)));
  }
  return true;
}

bool parse_limits(PyObject* max_entries, PyObject* cull, Limits& out) {
  if (max_entries == Py_None) {
    out.enforce = false;
    return true;
  }
  out.enforce = true;
  out.max_entries = PyLong_AsLongLong(max_entries);
  if (out.max_entries == -1 && PyErr_Occurred()) return false;
  out.cull_frequency = PyLong_AsLongLong(cull);
  return !(out.cull_frequency == -1 && PyErr_Occurred());
}

// Copies key's value into the thread's scratch buffer, growing it as needed.
Status fetch_raw(StoreObject* self, std::string_view key, ValueOut& out) {
  for (;;) {
    out.data = t_scratch.data();
    out.capacity = t_scratch.size();
    out.grow = &t_scratch;
    Status s = call(self, [&](Store& st) { return st.get(key, out); });
    if (s.code != Code::kBufferTooSmall) return s;
    t_scratch.resize(static_cast<std::size_t>(s.needed));
  }
}

// The decoded value, `dflt` (new reference) on a miss, nullptr on error.
PyObject* fetch(StoreObject* self, std::string_view key, PyObject* dflt) {
  ValueOut out;
  Status s = fetch_raw(self, key, out);
  if (s.ok()) return decode(self->st, out.flags, out.data, out.size);
  if (s.code == Code::kNotFound) return Py_NewRef(dflt);
  return fail(self, s, dflt, key);
}

PyObject* raise_for_key(StoreObject* self, const Status& s, std::string_view key) {
  Ref k(key_object(key));
  if (!k) return nullptr;
  std::string detail;
  if (s.code == Code::kTooLarge && s.what != nullptr) {
    detail = s.what;
  } else if (s.code == Code::kTooLarge) {
    detail = "the limit is " + std::to_string(self->store->max_value_size()) +
             " bytes per value (MAX_ITEM_SIZE)";
  }
  return raise_status(self->st, s, k.get(), detail);
}

// False (with InvalidCacheKey set) for a key the store would refuse, to write it when
// `writing`, else to look it up.
bool accepted(StoreObject* self, std::string_view key, bool writing) {
  const char* refusal = self->store->key_refusal(key, writing);
  if (refusal == nullptr) [[likely]] return true;
  raise_for_key(self, Status::Of(Code::kBadKey, refusal), key);
  return false;
}

bool encode_checked(StoreObject* self, PyObject* value, Encoded& enc, std::string_view key) {
  if (!self->keeps_values) return true;  // as Django's DummyCache: anything is accepted
  if (!encode(self->st, self->codec, value, enc)) return false;
  if (enc.data.size() > self->store->max_value_size()) {
    raise_for_key(self, Status::Of(Code::kTooLarge), key);
    return false;
  }
  return true;
}

#define NC_KEY(kb, keyobj, pi)                                                            \
  KeyBuf kb;                                                                              \
  if (!build_key(self->st, keyobj, opt_arg(args, nargs, pi), opt_arg(args, nargs, (pi) + 1), \
                 self->policy, kb)) {                                                      \
    return nullptr;                                                                        \
  }

PyObject* Store_get(StoreObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guard([&]() -> PyObject* {
    if (!check_nargs("get", nargs, 2, 4)) return nullptr;
    NC_KEY(kb, args[0], 2);
    return fetch(self, kb.view(), args[1]);
  });
}

PyObject* Store_gets(StoreObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guard([&]() -> PyObject* {
    if (!check_nargs("gets", nargs, 2, 4)) return nullptr;
    NC_KEY(kb, args[0], 2);
    ValueOut out;
    Status s = fetch_raw(self, kb.view(), out);
    if (s.code == Code::kNotFound) return Py_BuildValue("(OO)", args[1], Py_None);
    if (!s.ok()) {
      Ref miss(Py_BuildValue("(OO)", args[1], Py_None));
      return miss ? fail(self, s, miss.get(), kb.view()) : nullptr;
    }
    std::uint64_t token = out.cas;
    Ref v(decode(self->st, out.flags, out.data, out.size));
    if (!v) return nullptr;
    return Py_BuildValue("(NK)", v.release(), static_cast<unsigned long long>(token));
  });
}

// get_stamped(key, epoch, cas[, prefix, version]): None on a miss, else
// (changed, value, epoch, cas); (False, None, epoch, cas) when the record is still the one
// `epoch` and `cas` name (nothing copied or decoded). epoch 0: the store has no stamps.
PyObject* Store_get_stamped(StoreObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guard([&]() -> PyObject* {
    if (!check_nargs("get_stamped", nargs, 3, 5)) return nullptr;
    NC_KEY(kb, args[0], 3);
    ValueOut out;
    out.known_epoch = PyLong_AsUnsignedLongLong(args[1]);
    if (out.known_epoch == static_cast<std::uint64_t>(-1) && PyErr_Occurred()) return nullptr;
    out.known_cas = PyLong_AsUnsignedLongLong(args[2]);
    if (out.known_cas == static_cast<std::uint64_t>(-1) && PyErr_Occurred()) return nullptr;
    Status s = fetch_raw(self, kb.view(), out);
    if (s.code == Code::kNotFound) Py_RETURN_NONE;
    if (!s.ok()) return fail(self, s, Py_None, kb.view());
    const auto epoch = static_cast<unsigned long long>(out.epoch);
    const auto cas = static_cast<unsigned long long>(out.cas);
    if (out.unchanged) return Py_BuildValue("(OOKK)", Py_False, Py_None, epoch, cas);
    Ref v(decode(self->st, out.flags, out.data, out.size));
    if (!v) return nullptr;
    return Py_BuildValue("(ONKK)", Py_True, v.release(), epoch, cas);
  });
}

PyObject* Store_has(StoreObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guard([&]() -> PyObject* {
    if (!check_nargs("has", nargs, 1, 3)) return nullptr;
    NC_KEY(kb, args[0], 1);
    Status s = call(self, [&](Store& st) { return st.contains(kb.view()); });
    if (s.ok()) Py_RETURN_TRUE;
    if (s.code == Code::kNotFound) Py_RETURN_FALSE;
    return fail(self, s, Py_False, kb.view());
  });
}

// set/add: (key, value, timeout, max_entries, cull_frequency[, prefix, version])
PyObject* store_with_limits(StoreObject* self, PyObject* const* args, Py_ssize_t nargs,
                            Mode mode, const char* name) {
  if (!check_nargs(name, nargs, 5, 7)) return nullptr;
  NC_KEY(kb, args[0], 5);
  Write w;
  Limits limits;
  if (!parse_ttl(args[2], w.ttl) || !parse_limits(args[3], args[4], limits)) return nullptr;
  Encoded enc;
  if (!encode_checked(self, args[1], enc, kb.view())) return nullptr;
  w.key = kb.view();
  w.data = enc.data;
  w.flags = enc.flags;
  Status s = call(self, [&](Store& st) { return st.store(w, mode, 0, limits); });
  if (s.ok()) return mode == Mode::kSet ? Py_NewRef(Py_None) : Py_NewRef(Py_True);
  if (s.code == Code::kExists) Py_RETURN_FALSE;
  if (soft_error(s)) return fail(self, s, mode == Mode::kSet ? Py_None : Py_False);
  return raise_for_key(self, s, kb.view());
}

PyObject* Store_set(StoreObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guard([&] { return store_with_limits(self, args, nargs, Mode::kSet, "set"); });
}

PyObject* Store_add(StoreObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guard([&] { return store_with_limits(self, args, nargs, Mode::kAdd, "add"); });
}

PyObject* Store_replace(StoreObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guard([&]() -> PyObject* {
    if (!check_nargs("replace", nargs, 3, 5)) return nullptr;
    NC_KEY(kb, args[0], 3);
    Write w;
    if (!parse_ttl(args[2], w.ttl)) return nullptr;
    Encoded enc;
    if (!encode_checked(self, args[1], enc, kb.view())) return nullptr;
    w.key = kb.view();
    w.data = enc.data;
    w.flags = enc.flags;
    Status s = call(self, [&](Store& st) { return st.store(w, Mode::kReplace, 0, Limits{}); });
    if (s.ok()) Py_RETURN_TRUE;
    if (s.code == Code::kNotFound) Py_RETURN_FALSE;
    if (soft_error(s)) return fail(self, s, Py_False);
    return raise_for_key(self, s, kb.view());
  });
}

// cas: (key, value, timeout, token[, prefix, version])
PyObject* Store_cas(StoreObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guard([&]() -> PyObject* {
    if (!check_nargs("cas", nargs, 4, 6)) return nullptr;
    NC_KEY(kb, args[0], 4);
    Write w;
    if (!parse_ttl(args[2], w.ttl)) return nullptr;
    unsigned long long token = PyLong_AsUnsignedLongLong(args[3]);
    if (token == static_cast<unsigned long long>(-1) && PyErr_Occurred()) return nullptr;
    Encoded enc;
    if (!encode_checked(self, args[1], enc, kb.view())) return nullptr;
    w.key = kb.view();
    w.data = enc.data;
    w.flags = enc.flags;
    Status s = call(self, [&](Store& st) { return st.store(w, Mode::kCas, token, Limits{}); });
    if (s.ok()) Py_RETURN_TRUE;
    if (s.code == Code::kNotFound || s.code == Code::kExists) Py_RETURN_FALSE;
    if (soft_error(s)) return fail(self, s, Py_False);
    return raise_for_key(self, s, kb.view());
  });
}

PyObject* concat(StoreObject* self, PyObject* const* args, Py_ssize_t nargs, bool prepend) {
  if (!check_nargs(prepend ? "prepend" : "append", nargs, 2, 4)) return nullptr;
  NC_KEY(kb, args[0], 2);
  Encoded enc;
  if (!encode_raw(args[1], enc)) return nullptr;
  Status s =
      call(self, [&](Store& st) { return st.concat(kb.view(), enc.data, enc.flags, prepend); });
  if (s.ok()) Py_RETURN_TRUE;
  if (s.code == Code::kNotFound) Py_RETURN_FALSE;
  if (soft_error(s)) return fail(self, s, Py_False);
  return raise_for_key(self, s, kb.view());
}

PyObject* Store_append(StoreObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guard([&] { return concat(self, args, nargs, false); });
}

PyObject* Store_prepend(StoreObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guard([&] { return concat(self, args, nargs, true); });
}

PyObject* Store_delete(StoreObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guard([&]() -> PyObject* {
    if (!check_nargs("delete", nargs, 1, 3)) return nullptr;
    NC_KEY(kb, args[0], 1);
    Status s = call(self, [&](Store& st) { return st.remove(kb.view()); });
    if (s.ok()) Py_RETURN_TRUE;
    if (s.code == Code::kNotFound) Py_RETURN_FALSE;
    return fail(self, s, Py_False, kb.view());
  });
}

PyObject* Store_touch(StoreObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guard([&]() -> PyObject* {
    if (!check_nargs("touch", nargs, 2, 4)) return nullptr;
    NC_KEY(kb, args[0], 2);
    Ttl ttl;
    if (!parse_ttl(args[1], ttl)) return nullptr;
    Status s = call(self, [&](Store& st) { return st.touch(kb.view(), ttl); });
    if (s.ok()) Py_RETURN_TRUE;
    if (s.code == Code::kNotFound) Py_RETURN_FALSE;
    return fail(self, s, Py_False, kb.view());
  });
}

// incr: (key, delta[, prefix, version]). NotImplemented when the stored value or delta
// is not a 64-bit integer: the caller then adds in Python under cas.
PyObject* Store_incr(StoreObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guard([&]() -> PyObject* {
    if (!check_nargs("incr", nargs, 2, 4)) return nullptr;
    NC_KEY(kb, args[0], 2);
    if (!PyLong_CheckExact(args[1])) return Py_NewRef(Py_NotImplemented);
    int overflow = 0;
    long long delta = PyLong_AsLongLongAndOverflow(args[1], &overflow);
    if (overflow != 0) return Py_NewRef(Py_NotImplemented);
    if (delta == -1 && PyErr_Occurred()) return nullptr;
    std::int64_t result = 0;
    Status s = call(self, [&](Store& st) { return st.incr(kb.view(), delta, result); });
    if (s.ok()) return PyLong_FromLongLong(result);
    if (soft_error(s)) {
      // Ignored, the failure reads as a missing key: Django raises ValueError for that.
      Ref miss(fail(self, s, Py_None));
      if (!miss) return nullptr;
      s = Status::Of(Code::kNotFound);
    }
    if (s.code == Code::kNotFound) {
      PyErr_Format(PyExc_ValueError, "Key '%S' not found", args[0]);
      return nullptr;
    }
    if (s.code == Code::kNotNumeric || s.code == Code::kOverflow) {
      return Py_NewRef(Py_NotImplemented);
    }
    return fail(self, s, Py_None, kb.view());
  });
}

// Seconds left (float), None for no expiry, 0 for a missing key.
PyObject* Store_ttl(StoreObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guard([&]() -> PyObject* {
    if (!check_nargs("ttl", nargs, 1, 3)) return nullptr;
    NC_KEY(kb, args[0], 1);
    std::int64_t ms = 0;
    Status s = call(self, [&](Store& st) { return st.ttl(kb.view(), ms); });
    if (s.code == Code::kNotFound) return PyLong_FromLong(0);
    if (!s.ok()) return raise_status(self->st, s);
    if (ms < 0) Py_RETURN_NONE;
    return PyFloat_FromDouble(static_cast<double>(ms) / 1000.0);
  });
}

// get_many: (keys[, prefix, version]) -> {key: value} for the keys present.
PyObject* Store_get_many(StoreObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guard([&]() -> PyObject* {
    if (!check_nargs("get_many", nargs, 1, 3)) return nullptr;
    // A tuple of its own: another thread may change the caller's list while the GIL is
    // released, and the keys are read again after the call.
    Ref seq(PySequence_Tuple(args[0]));
    if (!seq) return nullptr;
    Py_ssize_t n = PyTuple_GET_SIZE(seq.get());
    PyObject** items = PySequence_Fast_ITEMS(seq.get());
    std::vector<KeyBuf> keys(static_cast<std::size_t>(n));
    std::vector<std::string_view> views(static_cast<std::size_t>(n));
    for (Py_ssize_t i = 0; i < n; ++i) {
      auto idx = static_cast<std::size_t>(i);
      if (!build_key(self->st, items[i], opt_arg(args, nargs, 1), opt_arg(args, nargs, 2),
                     self->policy, keys[idx]) ||
          !accepted(self, keys[idx].view(), false)) {  // an error that names the key
        return nullptr;
      }
      views[idx] = keys[idx].view();
    }
    ManyOut out;
    Status s = call(self, [&](Store& st) { return st.get_many(views, out); });
    if (!s.ok()) {
      if (s.code == Code::kBadKey) return raise_status(self->st, s);
      Ref ignored(fail(self, s, Py_None));
      if (!ignored) return nullptr;  // else: keep what the servers that answered sent
    }
    Ref result(PyDict_New());
    if (!result) return nullptr;
    for (const ManyOut::Item& item : out.items) {
      Ref v(decode(self->st, item.flags, out.bytes.data() + item.offset, item.size));
      if (!v || PyDict_SetItem(result.get(), items[item.index], v.get()) < 0) return nullptr;
    }
    return result.release();
  });
}

// set_many: (mapping, timeout, max_entries, cull_frequency[, prefix, version]) -> keys
// that were not stored. Every value is encoded and size-checked before the first write,
// so a bad value changes nothing. A value the server refuses as too large is listed
// (and its old value deleted, as set() does).
PyObject* Store_set_many(StoreObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guard([&]() -> PyObject* {
    if (!check_nargs("set_many", nargs, 4, 6)) return nullptr;
    Ttl ttl;
    Limits limits;
    if (!parse_ttl(args[1], ttl) || !parse_limits(args[2], args[3], limits)) return nullptr;
    Ref items(PyMapping_Items(args[0]));
    if (!items) return nullptr;
    Py_ssize_t n = PyList_GET_SIZE(items.get());
    std::vector<KeyBuf> keys(static_cast<std::size_t>(n));
    std::vector<Encoded> values(static_cast<std::size_t>(n));
    for (Py_ssize_t i = 0; i < n; ++i) {
      PyObject* pair = PyList_GET_ITEM(items.get(), i);
      auto idx = static_cast<std::size_t>(i);
      if (!build_key(self->st, PyTuple_GET_ITEM(pair, 0), opt_arg(args, nargs, 4),
                     opt_arg(args, nargs, 5), self->policy, keys[idx]) ||
          !accepted(self, keys[idx].view(), true) ||
          !encode_checked(self, PyTuple_GET_ITEM(pair, 1), values[idx], keys[idx].view())) {
        return nullptr;
      }
    }
    std::vector<std::size_t> failed;
    Status bad = Status::Ok();
    std::string bad_what;  // a store's message lives only until its next failure
    std::size_t bad_index = 0;
    {
      AllowThreads allow(self);
      for (std::size_t i = 0; i < keys.size(); ++i) {
        Write w{keys[i].view(), values[i].data, values[i].flags, ttl};
        Status s = self->store->store(w, Mode::kSet, 0, limits);
        if (s.ok()) continue;
        if (s.code == Code::kTooLarge && self->store->blocks()) {
          failed.push_back(i);
          continue;
        }
        if (soft_error(s) && self->ignore_errors) {
          if (bad.ok()) {
            bad = s;
            if (s.what != nullptr) bad_what = s.what;
          }
          failed.push_back(i);
          continue;
        }
        bad = s;
        if (s.what != nullptr) bad_what = s.what;
        bad_index = i;
        break;
      }
    }
    if (bad.what != nullptr) bad.what = bad_what.c_str();
    if (!bad.ok()) {
      if (!soft_error(bad) || !self->ignore_errors) {
        return raise_for_key(self, bad, keys[bad_index].view());
      }
      Ref ignored(fail(self, bad, Py_None));
      if (!ignored) return nullptr;
    }
    Ref result(PyList_New(0));
    if (!result) return nullptr;
    for (std::size_t i : failed) {
      PyObject* pair = PyList_GET_ITEM(items.get(), static_cast<Py_ssize_t>(i));
      if (PyList_Append(result.get(), PyTuple_GET_ITEM(pair, 0)) < 0) return nullptr;
    }
    return result.release();
  });
}

PyObject* Store_delete_many(StoreObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guard([&]() -> PyObject* {
    if (!check_nargs("delete_many", nargs, 1, 3)) return nullptr;
    Ref seq(PySequence_Fast(args[0], "delete_many() takes an iterable of keys"));
    if (!seq) return nullptr;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.get());
    std::vector<KeyBuf> keys(static_cast<std::size_t>(n));
    for (Py_ssize_t i = 0; i < n; ++i) {
      if (!build_key(self->st, PySequence_Fast_GET_ITEM(seq.get(), i), opt_arg(args, nargs, 1),
                     opt_arg(args, nargs, 2), self->policy, keys[static_cast<std::size_t>(i)]) ||
          !accepted(self, keys[static_cast<std::size_t>(i)].view(), false)) {
        return nullptr;
      }
    }
    // Every key is tried: a server that does not answer must not keep the keys of the
    // others from being deleted. The first failure is what is reported.
    std::string first_what;  // a store's message lives only until its next failure
    Status s = call(self, [&](Store& st) {
      Status first = Status::Ok();
      for (const KeyBuf& k : keys) {
        Status r = st.remove(k.view());
        if (r.ok() || r.code == Code::kNotFound || !first.ok()) continue;
        first = r;
        if (r.what != nullptr) first_what = r.what;
      }
      if (first.what != nullptr) first.what = first_what.c_str();
      return first;
    });
    if (!s.ok()) return fail(self, s, Py_None);
    Py_RETURN_NONE;
  });
}

PyObject* Store_make_key(StoreObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guard([&]() -> PyObject* {
    if (!check_nargs("make_key", nargs, 3, 3)) return nullptr;
    NC_KEY(kb, args[0], 1);
    return key_object(kb.view());
  });
}

PyObject* Store_encode_text(StoreObject* self, PyObject* value) {
  return guard([&] { return encode_text(self->st, self->codec, value); });
}

PyObject* Store_decode_text(StoreObject* self, PyObject* text) {
  return guard([&] { return decode_text(self->st, text); });
}

PyObject* Store_clear(StoreObject* self, PyObject*) {
  return guard([&]() -> PyObject* {
    Status s = call(self, [](Store& st) { return st.clear(); });
    if (!s.ok()) return fail(self, s, Py_None);
    Py_RETURN_NONE;
  });
}

PyObject* Store_stats(StoreObject* self, PyObject*) {
  return guard([&]() -> PyObject* {
    StoreStats s;
    {
      AllowThreads allow(self);
      s = self->store->stats();
    }
    return Py_BuildValue("{sKsKsKsKsKsKsKsKsK}", "hits", s.hits, "misses", s.misses, "sets",
                         s.sets, "evictions", s.evictions, "expirations", s.expirations, "items",
                         s.items, "bytes", s.bytes, "recoveries", s.recoveries, "capacity",
                         s.capacity);
  });
}

// keys() -> [str]: every live key as stored (made keys), in no particular order.
PyObject* Store_keys(StoreObject* self, PyObject*) {
  return guard([&]() -> PyObject* {
    std::vector<std::string> keys;
    Status s = call(self, [&](Store& st) { return st.keys(keys); });
    if (!s.ok()) return raise_status(self->st, s);
    Ref result(PyList_New(static_cast<Py_ssize_t>(keys.size())));
    if (!result) return nullptr;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      PyObject* k = key_object(keys[i]);
      if (k == nullptr) return nullptr;
      PyList_SET_ITEM(result.get(), static_cast<Py_ssize_t>(i), k);
    }
    return result.release();
  });
}

// Where things are in the segment, for tests that damage it on purpose.
PyObject* Store_layout(StoreObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guard([&]() -> PyObject* {
    if (self->shm == nullptr) {
      PyErr_SetString(PyExc_TypeError, "not a shared-memory store");
      return nullptr;
    }
    if (!check_nargs("_layout", nargs, 0, 1)) return nullptr;
    const shm::SegmentHeader& h = self->shm->header();
    long shard = -1;
    if (nargs == 1) {
      KeyBuf kb;
      if (!build_key(self->st, args[0], nullptr, nullptr, self->policy, kb)) return nullptr;
      shard = static_cast<long>(self->shm->shard_of(kb.view()));
    }
    return Py_BuildValue(
        "{sssKsKsKsIsIsIsIsKsl}", "name", self->shm->name().c_str(), "total_size",
        static_cast<unsigned long long>(h.total_size), "shards_offset",
        static_cast<unsigned long long>(h.shards_offset), "shard_stride",
        static_cast<unsigned long long>(h.shard_stride), "n_shards", h.n_shards, "bucket_count",
        h.bucket_count, "ring_capacity", h.ring_capacity, "max_item_size", h.max_item_size,
        "ring_offset", static_cast<unsigned long long>(shm::ring_offset(h.bucket_count)),
        "shard", shard);
  });
}

PyObject* Store_debug_hold_lock(StoreObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guard([&]() -> PyObject* {
    if (self->shm == nullptr || !check_nargs("_debug_hold_lock", nargs, 2, 2)) {
      if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "not a shared-memory store");
      return nullptr;
    }
    KeyBuf kb;
    if (!build_key(self->st, args[0], nullptr, nullptr, self->policy, kb)) return nullptr;
    int fd = static_cast<int>(PyLong_AsLong(args[1]));
    if (fd == -1 && PyErr_Occurred()) return nullptr;
    self->shm->debug_hold_lock(kb.view(), fd);
  });
}

#ifdef NATIVECACHE_HAVE_LIBMEMCACHED
mc::MemcachedStore* memcached_of(StoreObject* self) {
  auto* m = dynamic_cast<mc::MemcachedStore*>(self->store);
  if (m == nullptr) PyErr_SetString(PyExc_TypeError, "not a memcached store");
  return m;
}

// server_stats(group) -> [(server, {name: value}, error or None)]
PyObject* Store_server_stats(StoreObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guard([&]() -> PyObject* {
    if (!check_nargs("server_stats", nargs, 0, 1)) return nullptr;
    mc::MemcachedStore* m = memcached_of(self);
    if (m == nullptr) return nullptr;
    std::string group;
    if (nargs == 1 && args[0] != Py_None) {
      const char* g = PyUnicode_AsUTF8(args[0]);
      if (g == nullptr) return nullptr;
      group = g;
    }
    std::vector<mc::ServerStats> servers;
    Status s;
    {
      AllowThreads allow(self);
      s = m->server_stats(group, servers);
    }
    if (!s.ok()) return raise_status(self->st, s);
    Ref result(PyList_New(0));
    if (!result) return nullptr;
    for (const auto& server : servers) {
      Ref values(PyDict_New());
      if (!values) return nullptr;
      for (const auto& [name, value] : server.values) {
        Ref v(PyUnicode_DecodeUTF8(value.data(), static_cast<Py_ssize_t>(value.size()),
                                   "replace"));
        if (!v || PyDict_SetItemString(values.get(), name.c_str(), v.get()) < 0) return nullptr;
      }
      Ref entry(Py_BuildValue("(sNz)", server.server.c_str(), values.release(),
                              server.error.empty() ? nullptr : server.error.c_str()));
      if (!entry || PyList_Append(result.get(), entry.get()) < 0) return nullptr;
    }
    return result.release();
  });
}

PyObject* Store_behavior(StoreObject* self, PyObject* arg) {
  return guard([&]() -> PyObject* {
    mc::MemcachedStore* m = memcached_of(self);
    if (m == nullptr) return nullptr;
    const char* name = PyUnicode_AsUTF8(arg);
    if (name == nullptr) return nullptr;
    std::int64_t value = 0;
    Status s;
    {
      AllowThreads allow(self);  // may wait for the store's pool lock
      s = m->behavior(name, value);
    }
    if (!s.ok()) {
      PyErr_Format(PyExc_KeyError, "unknown memcached behavior %R", arg);
      return nullptr;
    }
    return PyLong_FromLongLong(value);
  });
}

// server_for(key[, prefix, version]) -> the server that holds key
PyObject* Store_server_for(StoreObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guard([&]() -> PyObject* {
    if (!check_nargs("server_for", nargs, 1, 3)) return nullptr;
    mc::MemcachedStore* m = memcached_of(self);
    if (m == nullptr) return nullptr;
    NC_KEY(kb, args[0], 1);
    std::string server;
    Status s;
    {
      AllowThreads allow(self);
      s = m->server_for(kb.view(), server);
    }
    if (s.code == Code::kBadKey) return raise_for_key(self, s, kb.view());
    if (!s.ok()) return raise_status(self->st, s);  // no miss to answer: raised even if ignored
    return PyUnicode_FromString(server.c_str());
  });
}

PyObject* Store_disconnect(StoreObject* self, PyObject*) {
  return guard([&]() -> PyObject* {
    mc::MemcachedStore* m = memcached_of(self);
    if (m == nullptr) return nullptr;
    {
      AllowThreads allow(self);
      m->disconnect();
    }
    Py_RETURN_NONE;
  });
}

PyObject* Store_idle_handles(StoreObject* self, PyObject*) {
  return guard([&]() -> PyObject* {
    mc::MemcachedStore* m = memcached_of(self);
    if (m == nullptr) return nullptr;
    std::size_t n = 0;
    {
      AllowThreads allow(self);
      n = m->idle_handles();
    }
    return PyLong_FromSize_t(n);
  });
}
#endif

// path_for(key[, prefix, version]) -> the file that holds key (file stores)
PyObject* Store_path_for(StoreObject* self, PyObject* const* args, Py_ssize_t nargs) {
  return guard([&]() -> PyObject* {
    if (!check_nargs("path_for", nargs, 1, 3)) return nullptr;
    auto* f = dynamic_cast<file::FileStore*>(self->store);
    if (f == nullptr) {
      PyErr_SetString(PyExc_TypeError, "not a file store");
      return nullptr;
    }
    NC_KEY(kb, args[0], 1);
    std::string path = f->path_for(kb.view());
    return PyUnicode_DecodeFSDefaultAndSize(path.data(), static_cast<Py_ssize_t>(path.size()));
  });
}

PyObject* Store_get_max_value_size(StoreObject* self, void*) {
  return PyLong_FromSize_t(self->store->max_value_size());
}

PyObject* Store_get_name(StoreObject* self, void*) {
  if (self->shm == nullptr) Py_RETURN_NONE;
  return PyUnicode_FromString(self->shm->name().c_str());
}

void Store_dealloc(StoreObject* self) {
  PyTypeObject* tp = Py_TYPE(self);
  if (self->weakrefs != nullptr) PyObject_ClearWeakRefs(reinterpret_cast<PyObject*>(self));
  {
    // Closing connections may wait on the network.
    AllowThreads allow(self);
    delete self->store;
  }
  Py_XDECREF(self->on_error);
  Py_XDECREF(self->module);
  tp->tp_free(reinterpret_cast<PyObject*>(self));
  Py_DECREF(tp);
}

#define FAST(name, fn, doc) \
  {name, reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(fn)), METH_FASTCALL, doc}
#define NOARGS(name, fn, doc) \
  {name, reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(fn)), METH_NOARGS, doc}

PyMethodDef store_methods[] = {
    FAST("get", Store_get, "get(key, default[, prefix, version])"),
    FAST("gets", Store_gets, "gets(key, default[, prefix, version]) -> (value, token)"),
    FAST("get_stamped", Store_get_stamped,
         "get_stamped(key, epoch, cas[, prefix, version]) -> None | (changed, value, epoch, cas)"),
    FAST("has", Store_has, "has(key[, prefix, version]) -> bool"),
    FAST("set", Store_set, "set(key, value, timeout, max_entries, cull_frequency[, prefix, version])"),
    FAST("add", Store_add, "add(key, value, timeout, max_entries, cull_frequency[, prefix, version])"),
    FAST("replace", Store_replace, "replace(key, value, timeout[, prefix, version]) -> bool"),
    FAST("cas", Store_cas, "cas(key, value, timeout, token[, prefix, version]) -> bool"),
    FAST("append", Store_append, "append(key, data[, prefix, version]) -> bool"),
    FAST("prepend", Store_prepend, "prepend(key, data[, prefix, version]) -> bool"),
    FAST("delete", Store_delete, "delete(key[, prefix, version]) -> bool"),
    FAST("touch", Store_touch, "touch(key, timeout[, prefix, version]) -> bool"),
    FAST("incr", Store_incr, "incr(key, delta[, prefix, version]) -> int | NotImplemented"),
    FAST("ttl", Store_ttl, "ttl(key[, prefix, version]) -> seconds | None | 0"),
    FAST("get_many", Store_get_many, "get_many(keys[, prefix, version]) -> dict"),
    FAST("set_many", Store_set_many,
         "set_many(mapping, timeout, max_entries, cull_frequency[, prefix, version]) -> []"),
    FAST("delete_many", Store_delete_many, "delete_many(keys[, prefix, version])"),
    FAST("make_key", Store_make_key, "make_key(key, prefix, version) -> str"),
    {"encode_text", reinterpret_cast<PyCFunction>(Store_encode_text), METH_O,
     "encode_text(value) -> str: the value as text for a database column"},
    {"decode_text", reinterpret_cast<PyCFunction>(Store_decode_text), METH_O,
     "decode_text(text) -> value (also reads Django's DatabaseCache values)"},
    NOARGS("clear", Store_clear, "clear()"),
    NOARGS("stats", Store_stats, "stats() -> dict"),
    NOARGS("keys", Store_keys,
           "keys() -> [str]: every live key as stored (NotImplementedError if the store "
           "cannot list them)"),
    FAST("_layout", Store_layout, "segment layout (tests)"),
    FAST("_debug_hold_lock", Store_debug_hold_lock, "hold a shard lock for ever (tests)"),
    FAST("path_for", Store_path_for, "path_for(key[, prefix, version]) -> path (file stores)"),
#ifdef NATIVECACHE_HAVE_LIBMEMCACHED
    FAST("server_stats", Store_server_stats,
         "server_stats([group]) -> [(server, {name: value}, error)] (memcached)"),
    {"behavior", reinterpret_cast<PyCFunction>(Store_behavior), METH_O,
     "behavior(name) -> the value of one of pylibmc's behaviour names (memcached)"},
    FAST("server_for", Store_server_for, "server_for(key[, prefix, version]) -> server (memcached)"),
    NOARGS("disconnect", Store_disconnect, "disconnect(): close every connection (memcached)"),
    NOARGS("_idle_handles", Store_idle_handles,
           "_idle_handles() -> connection sets kept between calls (memcached, tests)"),
#endif
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef store_getset[] = {
    {"max_value_size", reinterpret_cast<getter>(Store_get_max_value_size), nullptr,
     "largest encoded value the store takes", nullptr},
    {"name", reinterpret_cast<getter>(Store_get_name), nullptr, "segment name", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMemberDef store_members[] = {
    // Weak references: the memcached backend shares a store among the cache instances
    // with the same settings for as long as one of them is alive.
    {"__weaklistoffset__", T_PYSSIZET, offsetof(StoreObject, weakrefs), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr},
};

PyType_Slot store_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(Store_dealloc)},
    {Py_tp_members, store_members},
    {Py_tp_methods, store_methods},
    {Py_tp_getset, store_getset},
    {Py_tp_doc, const_cast<char*>("A native cache store (see django_nativecache.backends).")},
    {0, nullptr},
};

PyType_Spec store_spec = {
    "django_nativecache._native.Store",
    sizeof(StoreObject),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION | Py_TPFLAGS_IMMUTABLETYPE,
    store_slots,
};

}  // namespace

PyTypeObject* make_store_type(PyObject* module) {
  return reinterpret_cast<PyTypeObject*>(PyType_FromModuleAndSpec(module, &store_spec, nullptr));
}

PyObject* wrap_store(PyObject* module, std::unique_ptr<Store> store, shm::ShmStore* shm,
                     const StoreOptions& options) {
  ModuleState* st = state_of(module);
  auto* self = PyObject_New(StoreObject, st->store_type);
  if (self == nullptr) return nullptr;
  self->store = store.release();
  self->shm = shm;
  self->st = st;
  self->module = Py_NewRef(module);
  self->codec = options.codec;
  self->policy = options.policy;
  self->ignore_errors = options.ignore_errors;
  self->keeps_values = options.keeps_values;
  self->on_error = Py_XNewRef(options.on_error);
  self->weakrefs = nullptr;
  return reinterpret_cast<PyObject*>(self);
}

}  // namespace nativecache::py
