"""Errors raised by django_nativecache's backends.

Key errors use Django's own classes (``InvalidCacheKey``, ``CacheKeyWarning``);
configuration errors raise ``ImproperlyConfigured``.
"""


class CacheError(Exception):
    """Base class of every error a native store reports."""


class CacheUnavailable(CacheError):
    """A server or segment cannot be reached or used."""


class ValueTooLarge(CacheError, ValueError):
    """The encoded value exceeds the store's item size limit; nothing was changed."""


class CacheIOError(CacheError, OSError):
    """An operating-system error reading or writing the store (errno is set)."""


class CorruptData(CacheError):
    """Stored data failed validation and was discarded."""


class CachePermissionError(CacheError, PermissionError):
    """The store belongs to another user and was refused."""


class StorageFull(CacheError, OSError):
    """The medium (shared memory, disk) has no room; nothing partial was left."""
