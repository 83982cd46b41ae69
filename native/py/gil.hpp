// The GIL released for a scope, and taken back on every path out of it, an exception
// included (a bare Py_BEGIN_ALLOW_THREADS would leave it released past a throw).
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

namespace nativecache::py {

class GilReleased {
 public:
  GilReleased() noexcept : state_(PyEval_SaveThread()) {}
  ~GilReleased() { PyEval_RestoreThread(state_); }
  GilReleased(const GilReleased&) = delete;
  GilReleased& operator=(const GilReleased&) = delete;

 private:
  PyThreadState* state_;
};

}  // namespace nativecache::py
