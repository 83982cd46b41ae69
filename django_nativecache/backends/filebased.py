"""FileBasedCache: Django's filesystem cache, natively.

Same settings as Django's (``LOCATION`` a directory, ``TIMEOUT``, ``MAX_ENTRIES``,
``CULL_FREQUENCY``). Each entry is one file under a two-level fan-out
(``<dir>/<2 hex>/<16 hex>.djc``): a binary header with the expiry and checksums, then
the key and the value. Writes go to a temp file and are renamed into place, so several
processes can share the directory and never see a partial entry; a damaged or truncated
file reads as a miss and is removed; a full disk raises ``StorageFull`` and leaves
nothing behind. The entry count for MAX_ENTRIES is a counter shared through a small file
in the directory, so a write does not list the directory; culling rescans it, and
removes expired entries first, then the oldest. Directories are created 0700, files
0600, and ``clear()`` removes only the cache's own files.
"""

from __future__ import annotations

import os
import struct
import time
from typing import IO, Any

from django_nativecache import _native
from django_nativecache.backends.base import NativeCache, ThreadAsyncMixin
from django_nativecache.options import count_option, in_range, parse_size, validate_options

_SCHEMA = {
    "MAX_ENTRIES": count_option(-(1 << 62), 1 << 62, 300),
    "CULL_FREQUENCY": count_option(0, 1 << 31, 3),
    "MAX_ITEM_SIZE": (in_range(0, 1 << 40, parse_size), 0),
    "COMPRESS_MIN_LENGTH": (in_range(0, 1 << 40, parse_size), 0),
    "COMPRESS_LEVEL": (in_range(1, 9), 6),
}
# The entry header (native/core/file_store.hpp): magic, version, header size, flags,
# key length, value length, expiry (Unix ms, 0 = never), cas, two CRCs.
_HEADER = struct.Struct("=IHHIIQqQII")
_MAGIC = 0x434E4A44


class FileBasedCache(ThreadAsyncMixin, NativeCache):
    cache_suffix = ".djc"

    def __init__(self, dir: str | os.PathLike[str], params: dict[str, Any]) -> None:
        self._settle(dir, params)
        self._store = _native.open_file(*self._open_args)

    @classmethod
    def _settings_context(cls, location: Any) -> tuple[Any, ...]:
        if isinstance(location, str) and os.path.isabs(location):
            return ()
        return (os.getcwd(),)  # a relative LOCATION is made absolute

    def _configure(self, dir: Any, params: dict[str, Any]) -> None:
        options = validate_options(
            f"{type(self).__name__} {dir!r}", params.get("OPTIONS") or {}, _SCHEMA
        )
        super()._configure(dir, params)
        self._dir = os.path.abspath(os.fspath(dir))
        self._open_args = (
            self._dir,
            options["MAX_ITEM_SIZE"],
            options["COMPRESS_MIN_LENGTH"],
            options["COMPRESS_LEVEL"],
        )

    def _key_to_file(self, key: Any, version: int | None = None) -> str:
        """The file that holds key (its fan-out directory is created if missing)."""
        path = self._store.path_for(*self._key_args(key, version))
        # makedirs applies its mode through the umask and only to the last directory;
        # the umask makes every directory it creates 0700, as the native store does.
        old_umask = os.umask(0o077)
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        finally:
            os.umask(old_umask)
        return path

    def _is_expired(self, f: IO[bytes]) -> bool:
        """Whether the open entry file f is expired or unreadable (as Django's)."""
        header = f.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return True
        magic, _, _, _, _, _, expire_ms, _, _, _ = _HEADER.unpack(header)
        return magic != _MAGIC or (expire_ms != 0 and expire_ms <= time.time() * 1000)
