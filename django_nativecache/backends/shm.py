"""SharedMemoryCache: one cache in shared memory for every worker process of a site.

The same LOCATION in any process of the host (same user, same SECRET_KEY or
OPTIONS["NAMESPACE"]) is the same cache; Django's LocMemCache, by contrast, is private
to each process. The segment's size is fixed when it is created.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from django_nativecache import _native
from django_nativecache.backends.base import InlineAsyncMixin, NativeCache
from django_nativecache.options import (
    count_option,
    in_range,
    one_of,
    parse_seconds,
    parse_size,
    validate_options,
)

DEFAULT_SIZE = 64 << 20

_SCHEMA = {
    "MAX_ENTRIES": count_option(-(1 << 62), 1 << 62, 300),
    "CULL_FREQUENCY": count_option(0, 1 << 31, 3),
    "SIZE": (in_range(64 << 10, 1 << 40, parse_size), DEFAULT_SIZE),
    "SHARDS": (in_range(0, 1024), 0),
    "MAX_ITEM_SIZE": (in_range(0, (1 << 31) - 1, parse_size), 0),
    "ON_MISMATCH": (one_of("recreate", "fail"), "recreate"),
    "COMPRESS_MIN_LENGTH": (in_range(0, 1 << 40, parse_size), 0),
    "COMPRESS_LEVEL": (in_range(1, 9), 6),
    "NAMESPACE": (lambda value: None if value is None else str(value), None),  # None: see below
    # A shard lock not taken within this is broken (its holder stopped, or its lock word
    # damaged): the segment is replaced. None waits for ever.
    "LOCK_TIMEOUT": (lambda value: None if value is None else parse_seconds(value), 10.0),
}

# One attachment per segment per process: Django builds a cache instance per thread and
# again on every settings override, and close() runs after every request.
_segments: dict[str, _native.Store] = {}
_segments_lock = threading.Lock()


def _new_lock_in_child() -> None:
    # Attaching releases the GIL under the lock: a thread holding it when another forks
    # does not exist in the child.
    global _segments_lock
    _segments_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


def _secret_key() -> str:
    try:
        return str(settings.SECRET_KEY)
    except ImproperlyConfigured:
        return ""


def segment_name(location: str, namespace: str | None = None) -> str:
    """The /dev/shm name for a LOCATION: distinct per user, per project (NAMESPACE, SECRET_KEY
    when it is None) and per build."""
    if namespace is None:
        namespace = _secret_key()
    digest = hashlib.blake2b(
        f"{os.geteuid()}\0{namespace}\0{location}".encode("utf-8", "surrogatepass"),
        digest_size=12,
        person=b"nativecache-shm",
    ).hexdigest()
    # The build's tag: builds that cannot read each other's segments never share one.
    return f"dnc-{digest}-{_native.SEGMENT_TAG}"


def _milliseconds(seconds: float | None) -> int:
    """LOCK_TIMEOUT for the native store, where 0 is no limit."""
    if seconds is None or math.isinf(seconds):
        return 0
    return max(1, min(round(seconds * 1000), 1 << 62))


def attach(name: str, options: dict[str, Any]) -> _native.Store:
    with _segments_lock:
        store = _segments.get(name)
        if store is None:
            store = _native.open_shm(
                name,
                options["SIZE"],
                options["SHARDS"],
                options["MAX_ITEM_SIZE"],
                options["ON_MISMATCH"] == "recreate",
                options["COMPRESS_MIN_LENGTH"],
                options["COMPRESS_LEVEL"],
                _milliseconds(options["LOCK_TIMEOUT"]),
            )
            _segments[name] = store
        return store


def segment_exists(name: str) -> bool:
    """Whether the segment is on the host (or attached by this process) already."""
    with _segments_lock:
        if name in _segments:
            return True
    return os.path.exists(os.path.join("/dev/shm", name))


def attached_segments() -> list[str]:
    """Names of the segments this process has attached to."""
    with _segments_lock:
        return list(_segments)


def detach(name: str) -> None:
    """Forget this process's attachment, so the next cache instance attaches afresh."""
    with _segments_lock:
        _segments.pop(name, None)


def unlink(name: str) -> None:
    """Remove a segment by name; processes still attached reattach to a fresh one."""
    with _segments_lock:
        _segments.pop(name, None)
        _native.unlink_shm(name)


class SharedMemoryCache(InlineAsyncMixin, NativeCache):
    def __init__(self, location: str, params: dict[str, Any]) -> None:
        self._settle(location, params)
        self._store = attach(self._segment, self._segment_options)

    def _configure(self, location: str, params: dict[str, Any]) -> None:
        options = self._options(location, params)
        super()._configure(location, params)
        self._location = location
        self._segment = segment_name(location, options["NAMESPACE"])
        self._segment_options = options

    @classmethod
    def _settings_context(cls, location: Any) -> tuple[Any, ...]:
        return (os.geteuid(), _secret_key())

    @classmethod
    def _options(cls, location: str, params: dict[str, Any]) -> dict[str, Any]:
        return validate_options(f"{cls.__name__} {location!r}", params.get("OPTIONS") or {},
                                _SCHEMA)

    @classmethod
    def segment_for(cls, location: str, params: dict[str, Any]) -> str:
        """The segment an instance of these settings uses, found without attaching (bad
        OPTIONS raise ImproperlyConfigured, as building the cache would)."""
        return segment_name(location, cls._options(location, params)["NAMESPACE"])

    @property
    def segment(self) -> str:
        """The segment's name under /dev/shm."""
        return self._segment

    def delete_segment(self) -> None:
        """Remove this cache's segment (all its data) from the host."""
        unlink(self._segment)
