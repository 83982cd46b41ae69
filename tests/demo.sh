#!/usr/bin/env bash
# The demo command: `bash tests/demo.sh [--backend NAME] [--workers N] [--seconds S]`.
# Installs what it needs (tests/setup.sh), builds the extension in place, then runs
# `python -m django_nativecache demo`: the demo site under gunicorn on SharedMemoryCache.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=tests/setup.sh
. tests/setup.sh >/dev/null
"$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  --no-build-isolation -e . >/dev/null
exec "$PYTHON" -m django_nativecache demo "$@"
