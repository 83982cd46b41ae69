#!/usr/bin/env bash
# Installs what building and testing django-nativecache needs on Debian bookworm, then picks
# the Python interpreter and exports it as PYTHON (absolute path):
#   1. Debian packages (compiler, CMake, Boost 1.81, zlib, libmemcached, GoogleTest, memcached,
#      and Python's headers/venv when the interpreter needs them); apt is skipped when every
#      package is already installed;
#   2. the interpreter: $PYTHON if set, else .venv/bin/python if present, else python3. An
#      externally managed interpreter (PEP 668, e.g. Debian's /usr/bin/python3) gets a
#      virtualenv in .venv instead of having packages forced into it;
#   3. the Python packages of tests/requirements.txt.
#
# Run it (`bash tests/setup.sh`) or source it (`. tests/setup.sh`) to get PYTHON set in the
# calling shell, as tests/run.sh and the Makefile do. Every failing step returns non-zero, so
# it stops even when sourced by a shell without `set -e`.

nativecache_setup() {
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

  local -a packages=(
    build-essential cmake pkg-config
    libboost1.81-dev zlib1g-dev libmemcached-dev libsasl2-dev
    libssl-dev  # libmemcached.pc requires libcrypto, which libmemcached-dev does not pull in
    libgtest-dev memcached
    wrk  # HTTP load generator of the http benchmark group
  )

  # --- which interpreter, and what it needs from apt -----------------------------------------
  local py="${PYTHON:-}"
  if [[ -z "$py" && -x "$root/.venv/bin/python" ]]; then
    py="$root/.venv/bin/python"
  fi
  if [[ -z "$py" ]] && command -v python3 >/dev/null 2>&1; then
    py="python3"
  fi
  if [[ -z "$py" ]]; then
    packages+=(python3 python3-dev python3-venv)
  else
    if ! command -v "$py" >/dev/null 2>&1; then
      echo "setup: PYTHON=$py is not an executable" >&2
      return 1
    fi
    if ! "$py" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
      packages+=(python3-dev)
    fi
    if _nativecache_externally_managed "$py"; then
      packages+=(python3-venv)
    fi
  fi

  # --- Debian packages ------------------------------------------------------------------------
  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "setup: not a Debian system; make sure these (or equivalents) are installed: ${packages[*]}"
  else
    local -a missing=()
    local p
    for p in "${packages[@]}"; do
      if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != "installed" ]]; then
        missing+=("$p")
      fi
    done
    if ((${#missing[@]} == 0)); then
      echo "setup: all ${#packages[@]} Debian packages are installed"
    else
      echo "setup: missing Debian packages: ${missing[*]}"
      local -a sudo=()
      if ((EUID != 0)); then
        if command -v sudo >/dev/null 2>&1; then
          sudo=(sudo)
        else
          echo "setup: not root and no sudo; install them with apt-get first" >&2
          return 1
        fi
      fi
      "${sudo[@]}" apt-get update || return 1
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y --no-install-recommends "${packages[@]}" || return 1
    fi
  fi

  # --- the interpreter ------------------------------------------------------------------------
  [[ -n "$py" ]] || py="python3"
  if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "setup: $("$py" --version 2>&1) is too old; Python >= 3.11 is required" >&2
    return 1
  fi
  if _nativecache_externally_managed "$py"; then
    if [[ ! -x "$root/.venv/bin/python" ]]; then
      echo "setup: $py is externally managed; creating a virtualenv in $root/.venv"
      "$py" -m venv "$root/.venv" || return 1
    fi
    py="$root/.venv/bin/python"
  fi
  # The interpreter itself, not a wrapper such as a pyenv shim.
  PYTHON="$("$py" -c 'import sys; print(sys.executable)')" || return 1
  export PYTHON
  echo "setup: using $PYTHON ($("$PYTHON" --version 2>&1))"

  # --- Python packages ------------------------------------------------------------------------
  if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    "$PYTHON" -m ensurepip --upgrade || return 1
  fi
  "$PYTHON" -m pip install --disable-pip-version-check --root-user-action=ignore --progress-bar off \
    -r "$root/tests/requirements.txt" || return 1
}

_nativecache_externally_managed() {
  "$1" -c 'import os, sys, sysconfig
in_venv = sys.prefix != sys.base_prefix
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
sys.exit(0 if (not in_venv and os.path.exists(marker)) else 1)'
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  nativecache_setup
else
  nativecache_setup || return
fi
