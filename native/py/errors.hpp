// Turns a core Status into the precise Python exception.
#pragma once

#include <string>

#include "core/status.hpp"
#include "py/state.hpp"

namespace nativecache::py {

// Always returns nullptr, for `return raise_status(...)`.
PyObject* raise_status(ModuleState* st, const Status& s, PyObject* key = nullptr,
                       const std::string& detail = {});

}  // namespace nativecache::py
