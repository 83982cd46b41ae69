#!/usr/bin/env bash
# The demo command: `bash tests/demo.sh [--backend django-locmem] [--workers N]`.
# Installs what it needs (tests/setup.sh), builds the extension in place, then runs
# `python -m django_nativecache demo`: worker processes sharing one SharedMemoryCache.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=tests/setup.sh
. tests/setup.sh >/dev/null
"$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  --no-build-isolation -e . >/dev/null
exec "$PYTHON" -m django_nativecache demo "$@"
