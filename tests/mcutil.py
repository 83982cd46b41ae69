"""Helpers for tests that drive MemcachedCache directly."""

from __future__ import annotations

from typing import Any

from django_nativecache.backends.memcached import MemcachedCache

_TOP_LEVEL = ("TIMEOUT", "KEY_PREFIX", "VERSION", "KEY_FUNCTION")


def build(location: str | list[str], **options: Any) -> MemcachedCache:
    """A MemcachedCache; TIMEOUT, KEY_PREFIX, VERSION and KEY_FUNCTION go to the top level."""
    params: dict[str, Any] = {"OPTIONS": dict(options)}
    for name in _TOP_LEVEL:
        if name in options:
            params[name] = params["OPTIONS"].pop(name)
    return MemcachedCache(location, params)
