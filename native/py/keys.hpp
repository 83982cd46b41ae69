// Django's default key function ("%s:%s:%s" % (key_prefix, version, key)) and its
// memcached-portability warnings, done natively for the common case.
#pragma once

#include <string>
#include <string_view>

#include "py/state.hpp"

namespace nativecache::py {

// A key under construction: inline storage for typical keys, heap beyond.
class KeyBuf {
 public:
  void clear() noexcept { heap_.clear(), size_ = 0, on_heap_ = false; }
  void append(const char* s, std::size_t n);
  std::string_view view() const noexcept {
    return on_heap_ ? std::string_view(heap_) : std::string_view(inline_, size_);
  }

 private:
  char inline_[256];
  std::size_t size_ = 0;
  bool on_heap_ = false;
  std::string heap_;
};

enum class KeyPolicy { kWarn, kRaise };

// prefix == nullptr or None: `key` is a final key (a str made by the cache's own
// make_key) and is only encoded. Otherwise builds Django's default key and checks it
// (warning or raising per policy). false with a Python error set on failure.
bool build_key(ModuleState* st, PyObject* key, PyObject* prefix, PyObject* version,
               KeyPolicy policy, KeyBuf& out);

}  // namespace nativecache::py
