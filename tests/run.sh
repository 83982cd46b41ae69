#!/usr/bin/env bash
# The test command of django-nativecache: `bash tests/run.sh` (from any directory).
#
#   1. setup      Debian and Python packages (tests/setup.sh)
#   2. native     C++ unit tests, optimised build      (build/native, ctest)
#   3. asan       C++ unit tests under ASan + UBSan    (build/asan,   ctest)
#   4. extension  django_nativecache._native built in place (pip install -e .)
#   5. pytest     python -m pytest tests (SQLite), then the database-cache tests again on
#                 PostgreSQL (tests.settings_pg; the server is started if it is not running)
#
# A build failure stops the run at once; a failing test stage is recorded and the later stages
# still run, so one run reports everything. The exit status is non-zero if any stage failed
# (pytest's own status when it is the only one).
#
# Environment: PYTHON (interpreter to use), CMAKE_BUILD_PARALLEL_LEVEL (compile jobs),
# NATIVECACHE_SKIP_ASAN=1 (skip stage 3 for a quick local run; CI never sets it),
# PYTEST_ADDOPTS (extra pytest arguments, read by pytest itself).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

RUN_START=$SECONDS
STAGE_START=$SECONDS
declare -a FAILED=()
declare -a TIMINGS=()

section() {
  STAGE_START=$SECONDS
  printf '\n==================== %s ====================\n' "$*"
}
done_section() {
  local secs=$((SECONDS - STAGE_START))
  TIMINGS+=("$(printf '%-34s %4ds' "$1" "$secs")")
}

section "1/5 setup: system and Python packages"
# shellcheck source=tests/setup.sh
. "$ROOT/tests/setup.sh"
done_section "setup"

JOBS="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"
# The test builds must not quietly lose the memcached client when pkg-config cannot find it.
declare -a CMAKE_COMMON=(-DNATIVECACHE_BUILD_TESTS=ON -DNATIVECACHE_REQUIRE_LIBMEMCACHED=ON
  "-DPython3_EXECUTABLE=$PYTHON")
if command -v ccache >/dev/null 2>&1; then
  CMAKE_COMMON+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

section "2/5 C++ unit tests (build/native)"
# The module is compiled here too (not installed), so compiler warnings in native/py show up
# in this log; pip hides the output of its own build in stage 4 unless that fails.
cmake -S "$ROOT" -B "$ROOT/build/native" "${CMAKE_COMMON[@]}" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNATIVECACHE_BUILD_PYTHON=ON
cmake --build "$ROOT/build/native" --parallel "$JOBS"
if ! ctest --test-dir "$ROOT/build/native" --output-on-failure --no-tests=error; then
  FAILED+=("C++ unit tests (build/native)")
fi
done_section "C++ unit tests"

if [[ "${NATIVECACHE_SKIP_ASAN:-0}" == "1" ]]; then
  section "3/5 C++ unit tests under ASan+UBSan: skipped (NATIVECACHE_SKIP_ASAN=1)"
else
  section "3/5 C++ unit tests under ASan+UBSan (build/asan)"
  cmake -S "$ROOT" -B "$ROOT/build/asan" "${CMAKE_COMMON[@]}" \
    -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" -DNATIVECACHE_SANITIZE=ON \
    -DNATIVECACHE_BUILD_PYTHON=OFF
  cmake --build "$ROOT/build/asan" --parallel "$JOBS"
  if ! ctest --test-dir "$ROOT/build/asan" --output-on-failure --no-tests=error; then
    FAILED+=("C++ unit tests under ASan+UBSan (build/asan)")
  fi
fi
done_section "C++ unit tests, ASan+UBSan"

section "4/5 Python extension (pip install -e .)"
NATIVECACHE_CMAKE_ARGS="-DNATIVECACHE_REQUIRE_LIBMEMCACHED=ON ${NATIVECACHE_CMAKE_ARGS:-}" \
  CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" \
  "$PYTHON" -m pip install --disable-pip-version-check --root-user-action=ignore \
  --no-build-isolation -e "$ROOT"
"$PYTHON" -c 'import django_nativecache._native as m; print("extension:", m.__file__)'
done_section "extension build"

section "5/5 pytest"
PYTEST_STATUS=0
"$PYTHON" -m pytest tests || PYTEST_STATUS=$?
if ((PYTEST_STATUS != 0)); then
  FAILED+=("pytest (exit status $PYTEST_STATUS)")
fi

# The database cache once more, on PostgreSQL at 127.0.0.1:5432 (trust, database test).
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null && command -v pg_ctlcluster >/dev/null; then
  for cluster in /etc/postgresql/*/main; do
    pg_ctlcluster --skip-systemctl-redirect "$(basename "$(dirname "$cluster")")" main start || true
  done
fi
PG_STATUS=0
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  echo "run.sh: no PostgreSQL answers at 127.0.0.1:5432 (trust auth, database test);" \
    "the database tests cannot run there" >&2
fi
"$PYTHON" -m pytest --ds=tests.settings_pg -p no:cacheprovider \
  tests/conformance/test_django_db.py tests/test_db_cache.py tests/test_shared_behaviour.py \
  || PG_STATUS=$?
if ((PG_STATUS != 0)); then
  FAILED+=("pytest on PostgreSQL (exit status $PG_STATUS)")
  if ((PYTEST_STATUS == 0)); then PYTEST_STATUS=$PG_STATUS; fi
fi
done_section "pytest"

section "summary"
printf '%s\n' "${TIMINGS[@]}"
printf '%-34s %4ds\n' "total" "$((SECONDS - RUN_START))"
if ((${#FAILED[@]} > 0)); then
  printf 'FAILED: %s\n' "${FAILED[@]}"
  if ((PYTEST_STATUS != 0)); then exit "$PYTEST_STATUS"; fi
  exit 1
fi
echo "all stages passed"
