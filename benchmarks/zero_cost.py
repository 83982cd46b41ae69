"""A cache that costs nothing, for the http group: what ``cache_page`` gives at best.

Not a cache: each worker process keeps the values it was given in a dict and hands back the
very objects it stored (no copy, no serialization, no key checks, no expiry, no bound).
Under it, a page served from cache costs only what Django's ``cache_page`` machinery costs
(keys, headers, ``Age``), so its requests/s are the most any backend could reach. Only what
``cache_page`` calls is here (``get`` and ``set``); the rest is ``BaseCache``'s.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

_values: dict[str, Any] = {}


class ZeroCostCache(BaseCache):
    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        return _values.get(key, default)

    def set(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT,
            version: int | None = None) -> None:
        _values[key] = value
