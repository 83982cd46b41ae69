"""The CACHES setting of the demo site for each backend it can run on."""

from __future__ import annotations

import os
import tempfile
from typing import Any

# name: (BACKEND, the kind of LOCATION it takes)
BACKENDS: dict[str, tuple[str, str]] = {
    "shm": ("django_nativecache.backends.shm.SharedMemoryCache", "name"),
    "memcached": ("django_nativecache.backends.memcached.MemcachedCache", "server"),
    "file": ("django_nativecache.backends.filebased.FileBasedCache", "directory"),
    "db": ("django_nativecache.backends.db.DatabaseCache", "table"),
    "dummy": ("django_nativecache.backends.dummy.DummyCache", "none"),
    "django-locmem": ("django.core.cache.backends.locmem.LocMemCache", "name"),
    "django-pylibmc": ("django.core.cache.backends.memcached.PyLibMCCache", "server"),
    "django-pymemcache": ("django.core.cache.backends.memcached.PyMemcacheCache", "server"),
    "django-file": ("django.core.cache.backends.filebased.FileBasedCache", "directory"),
    "django-db": ("django.core.cache.backends.db.DatabaseCache", "table"),
    "django-redis": ("django.core.cache.backends.redis.RedisCache", "redis"),
}

DEFAULT_LOCATIONS = {
    "name": "demo",
    "server": "127.0.0.1:11211",
    "directory": os.path.join(tempfile.gettempdir(), "django-nativecache-demo"),
    "table": "demo_cache",
    "none": "",
    "redis": "redis://127.0.0.1:6379/15",
}

# Pages of the demo are small; the entry limit must not be what the demo measures.
MAX_ENTRIES = 100_000


def cache_setting(backend: str, location: str | None = None) -> dict[str, Any]:
    """One entry of CACHES for ``backend`` (a key of BACKENDS)."""
    try:
        path, kind = BACKENDS[backend]
    except KeyError:
        raise ValueError(
            f"unknown demo backend {backend!r}; choose one of: {', '.join(BACKENDS)}"
        ) from None
    entry: dict[str, Any] = {"BACKEND": path, "LOCATION": location or DEFAULT_LOCATIONS[kind]}
    if kind in ("name", "directory", "table"):
        entry["OPTIONS"] = {"MAX_ENTRIES": MAX_ENTRIES}
    return entry
