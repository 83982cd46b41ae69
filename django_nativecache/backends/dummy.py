"""DummyCache: Django's dummy backend (caches nothing), natively.

Every call answers as Django's ``DummyCache`` does: ``get`` returns the default,
``add`` returns True, ``delete``/``touch``/``has_key`` return False, ``incr`` raises
``ValueError``; keys are still checked and warn (``CacheKeyWarning``) as on every
backend, so a site developed on it meets its key problems before production.
"""

from __future__ import annotations

from typing import Any

from django_nativecache import _native
from django_nativecache.backends.base import InlineAsyncMixin, NativeCache


class DummyCache(InlineAsyncMixin, NativeCache):
    _enforce_max_entries = False

    def __init__(self, host: Any, params: dict[str, Any]) -> None:
        self._settle(host, params)
        self._store = _native.open_dummy()
