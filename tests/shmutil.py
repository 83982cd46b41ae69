"""Helpers for tests that drive SharedMemoryCache directly, in this process and others.

Caches are built with an explicit NAMESPACE so that processes started with spawn (which
have no Django settings) name the same segment as the test process.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

from django_nativecache.backends.shm import SharedMemoryCache

_counter = itertools.count()
NAMESPACE = "nativecache-tests"


def unique_location(tag: str = "t") -> str:
    return f"{tag}-{os.getpid()}-{next(_counter)}"


def build(location: str, **options: Any) -> SharedMemoryCache:
    params: dict[str, Any] = {
        "OPTIONS": {"NAMESPACE": NAMESPACE, "SIZE": "4MB", "MAX_ENTRIES": 100_000, **options}
    }
    for name in ("TIMEOUT", "KEY_PREFIX", "VERSION", "KEY_FUNCTION"):
        if name in options:
            params[name] = params["OPTIONS"].pop(name)
    return SharedMemoryCache(location, params)
