"""The Django side shared by every native backend: one native call per operation.

Keys take the native path (Django's default key function and memcached-portability
check, done in C++) while ``key_func``, ``make_key``, ``validate_key`` and
``make_and_validate_key`` are Django's own; overriding any of them, on the class or on
an instance, switches that instance to calling them. ``key_prefix``, ``version``,
``default_timeout``, ``_max_entries`` and ``_cull_frequency`` are read on every call.
"""

from __future__ import annotations

import marshal
from collections.abc import Iterable, Mapping
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache, default_key_func

from django_nativecache._native import Store

_KEY_HOOKS = frozenset({"key_func", "make_key", "validate_key", "make_and_validate_key"})
_MISSING = object()
_KEEP_EXPIRY = ...  # tells the native store to keep an entry's expiry


class NativeKeys:
    """Django's key path, done natively while the key hooks are Django's own.

    Mixed into a BaseCache subclass; the subclass's ``__init__`` calls
    ``_refresh_key_path()`` after BaseCache's, and sets ``_store`` (whose ``make_key``
    builds and checks keys).
    """

    _store: Store
    _native_keys: bool = False
    #: The validate_key that the native key check reproduces (warn, or raise for memcached).
    _native_validate_key: Any = BaseCache.validate_key

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name in _KEY_HOOKS:
            self._refresh_key_path()

    def __delattr__(self, name: str) -> None:
        object.__delattr__(self, name)
        if name in _KEY_HOOKS:
            self._refresh_key_path()

    def _refresh_key_path(self) -> None:
        cls = type(self)
        attrs = self.__dict__
        native = (
            attrs.get("key_func") is default_key_func
            and not (_KEY_HOOKS - {"key_func"}) & attrs.keys()
            and cls.make_key is BaseCache.make_key
            and cls.validate_key is cls._native_validate_key
            and cls.make_and_validate_key is BaseCache.make_and_validate_key
        )
        object.__setattr__(self, "_native_keys", native)

    def _key_args(self, key: Any, version: int | None) -> tuple[Any, ...]:
        """(key, prefix, version) for the native call, or (made_key,) on the slow path."""
        if self._native_keys:
            return (key, self.key_prefix, self.version if version is None else version)
        return (self.make_and_validate_key(key, version=version),)  # type: ignore[attr-defined]

    def _final_key(self, key: Any, version: int | None) -> str:
        """The made and checked key, as Django's make_and_validate_key gives it."""
        if self._native_keys:
            return self._store.make_key(
                key, self.key_prefix, self.version if version is None else version  # type: ignore[attr-defined]
            )
        return self.make_and_validate_key(key, version=version)  # type: ignore[attr-defined]


# The state settings give an instance, by class and settings. Django makes an instance
# per thread and, under ASGI, one per request task; checking OPTIONS and setting
# BaseCache's attributes again each time cost ten times what the rest of making one
# does. Only what the settings decide is kept: each instance still opens its own handle.
_SETTLED_KEPT = 64
_settled: dict[tuple[Any, ...], dict[str, Any]] = {}


def _snapshot(location: Any, params: dict[str, Any]) -> bytes | None:
    """LOCATION and params as bytes, or None. marshal (format 2, no back-references)
    writes only the core types, each with its own code, so equal bytes mean equal settings
    of the same types (1, 1.0 and True differ); it refuses anything else (a callable,
    a str subclass), and such settings are checked every time."""
    try:
        return marshal.dumps((location, params), 2)
    except ValueError:
        return None


class NativeCache(NativeKeys, BaseCache):
    _enforce_max_entries: bool = True
    #: Whether incr() of a value the store cannot add to natively keeps the entry's expiry
    #: (a store that cannot read an expiry stores the sum with the default timeout, as
    #: Django's BaseCache.incr does).
    _incr_keeps_expiry: bool = True
    #: Whether decr of a non-negative integer stops at 0 (memcached's rule), also when the
    #: delta is too large for the store to apply itself.
    _decr_stops_at_zero: bool = False

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__(params)
        self._refresh_key_path()

    def _configure(self, location: Any, params: dict[str, Any]) -> None:
        """Checks the settings and sets what they decide (not the store handle)."""
        NativeCache.__init__(self, params)

    @classmethod
    def _settings_context(cls, location: Any) -> tuple[Any, ...]:
        """What else than LOCATION and params the state from _configure depends on
        (OSError: nothing to reuse)."""
        return ()

    def _settle(self, location: Any, params: dict[str, Any]) -> None:
        """Runs _configure, or sets what it set for the same class and settings before."""
        cls = type(self)
        snapshot = _snapshot(location, params)
        key = None
        if snapshot is not None:
            try:
                key = (cls, snapshot, cls._settings_context(location))
            except OSError:
                pass
        state = _settled.get(key) if key is not None else None
        if state is not None:
            self.__dict__.update(state)
            # Checked again: a key hook may have been set on the class, or by a subclass
            # on this instance, since the state was kept.
            self._refresh_key_path()
            return
        before = dict(self.__dict__)
        self._configure(location, params)
        if key is None:
            return
        if len(_settled) >= _SETTLED_KEPT:
            _settled.clear()
        _settled[key] = {
            name: value for name, value in self.__dict__.items()
            if before.get(name, _MISSING) is not value
        }

    def _limits(self) -> tuple[int | None, int]:
        if self._enforce_max_entries:
            return self._max_entries, self._cull_frequency
        return None, self._cull_frequency

    # -- Django's API ---------------------------------------------------------------

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        if self._native_keys:
            return self._store.get(
                key, default, self.key_prefix, self.version if version is None else version
            )
        return self._store.get(self.make_and_validate_key(key, version=version), default)

    def set(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> None:
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        max_entries, cull = self._limits()
        if self._native_keys:
            self._store.set(
                key, value, timeout, max_entries, cull,
                self.key_prefix, self.version if version is None else version,
            )
        else:
            made = self.make_and_validate_key(key, version=version)
            self._store.set(made, value, timeout, max_entries, cull)

    def add(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        max_entries, cull = self._limits()
        k = self._key_args(key, version)
        return self._store.add(k[0], value, timeout, max_entries, cull, *k[1:])

    def delete(self, key: Any, version: int | None = None) -> bool:
        return self._store.delete(*self._key_args(key, version))

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return self._store.has(*self._key_args(key, version))

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        k = self._key_args(key, version)
        return self._store.touch(k[0], timeout, *k[1:])

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        k = self._key_args(key, version)
        result = self._store.incr(k[0], delta, *k[1:])
        if result is not NotImplemented:
            return result
        # Not a 64-bit integer: add in Python, committed with cas so that a concurrent
        # writer is never overwritten.
        timeout = _KEEP_EXPIRY if self._incr_keeps_expiry else self.default_timeout
        while True:
            value, token = self._store.gets(k[0], _MISSING, *k[1:])
            if value is _MISSING:
                raise ValueError("Key '%s' not found" % key)
            new_value = value + delta
            if self._decr_stops_at_zero and type(value) is int and value >= 0 > new_value:
                new_value = 0
            if self._store.cas(k[0], new_value, timeout, token, *k[1:]):
                return new_value

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        if self._native_keys:
            return self._store.get_many(
                keys, self.key_prefix, self.version if version is None else version
            )
        made = {self.make_and_validate_key(k, version=version): k for k in keys}
        return {made[mk]: v for mk, v in self._store.get_many(made).items()}

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        max_entries, cull = self._limits()
        if self._native_keys:
            return self._store.set_many(
                data, timeout, max_entries, cull,
                self.key_prefix, self.version if version is None else version,
            )
        originals = {self.make_and_validate_key(k, version=version): k for k in data}
        made = {mk: data[k] for mk, k in originals.items()}
        # The keys that were not stored, as the caller gave them (Django's contract).
        return [originals[mk] for mk in self._store.set_many(made, timeout, max_entries, cull)]

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        if self._native_keys:
            self._store.delete_many(
                keys, self.key_prefix, self.version if version is None else version
            )
        else:
            self._store.delete_many([self.make_and_validate_key(k, version=version) for k in keys])

    def clear(self) -> None:
        self._store.clear()

    # -- beyond Django's API: memcached's commands ------------------------------------

    def get_stamped(
        self, key: Any, epoch: int = 0, cas: int = 0, version: int | None = None
    ) -> tuple[bool, Any, int, int] | None:
        """None on a miss, else ``(changed, value, epoch, cas)``: ``epoch`` and ``cas`` name
        this write of the value (``epoch`` is 0 where the store keeps no stamps); when the
        ones given still name it, ``(False, None, epoch, cas)``, and nothing is decoded."""
        k = self._key_args(key, version)
        return self._store.get_stamped(k[0], epoch, cas, *k[1:])

    def gets(self, key: Any, default: Any = None, version: int | None = None) -> tuple[Any, int | None]:
        """Return (value, token); the token is None on a miss. Pass it to cas()."""
        k = self._key_args(key, version)
        return self._store.gets(k[0], default, *k[1:])

    def cas(
        self, key: Any, value: Any, token: int, timeout: Any = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> bool:
        """Store value only if the entry is unchanged since gets() returned token."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        k = self._key_args(key, version)
        return self._store.cas(k[0], value, timeout, token, *k[1:])

    def replace(
        self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Store value only if the key already holds one."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        k = self._key_args(key, version)
        return self._store.replace(k[0], value, timeout, *k[1:])

    def append(self, key: Any, value: bytes | str, version: int | None = None) -> bool:
        """Append to a stored bytes or str value of the same type; False on a miss."""
        k = self._key_args(key, version)
        return self._store.append(k[0], value, *k[1:])

    def prepend(self, key: Any, value: bytes | str, version: int | None = None) -> bool:
        """Prepend to a stored bytes or str value of the same type; False on a miss."""
        k = self._key_args(key, version)
        return self._store.prepend(k[0], value, *k[1:])

    def ttl(self, key: Any, version: int | None = None) -> float | None:
        """Seconds until the key expires; None if it never does; 0 if it is missing."""
        return self._store.ttl(*self._key_args(key, version))

    def stats(self) -> dict[str, int]:
        return self._store.stats()


class ThreadAsyncMixin:
    """Async methods for stores that wait on I/O (memcached, files, a database): the
    read-modify-write and batch calls run their sync method in a thread, as Django runs
    the others (thread-sensitive, so a database connection is the caller's).

    Django's defaults build these from aget/aset one key at a time, so they would not be
    what the sync calls are: incr atomic and keeping the expiry, set_many checking its
    batch whole and returning the keys it could not store, one round trip per batch.
    """

    async def aincr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        return await sync_to_async(self.incr, thread_sensitive=True)(key, delta, version)

    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> Any:
        return await sync_to_async(self.get_many, thread_sensitive=True)(keys, version)

    async def aset_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> Any:
        return await sync_to_async(self.set_many, thread_sensitive=True)(data, timeout, version)

    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        await sync_to_async(self.delete_many, thread_sensitive=True)(keys, version)


class InlineAsyncMixin:
    """Async methods for stores whose calls never block on I/O: run them inline.

    Django's defaults hop to a thread (sync_to_async) for every call; a shared-memory
    operation takes well under a microsecond, so the hop would cost more than the work.
    """

    async def aget(self, key, default=None, version=None):
        return self.get(key, default, version)

    async def aset(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self.set(key, value, timeout, version)

    async def aadd(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        return self.add(key, value, timeout, version)

    async def atouch(self, key, timeout=DEFAULT_TIMEOUT, version=None):
        return self.touch(key, timeout, version)

    async def adelete(self, key, version=None):
        return self.delete(key, version)

    async def aget_many(self, keys, version=None):
        return self.get_many(keys, version)

    async def aget_or_set(self, key, default, timeout=DEFAULT_TIMEOUT, version=None):
        return self.get_or_set(key, default, timeout, version)

    async def ahas_key(self, key, version=None):
        return self.has_key(key, version)

    async def aincr(self, key, delta=1, version=None):
        return self.incr(key, delta, version)

    async def adecr(self, key, delta=1, version=None):
        return self.decr(key, delta, version)

    async def aset_many(self, data, timeout=DEFAULT_TIMEOUT, version=None):
        return self.set_many(data, timeout, version)

    async def adelete_many(self, keys, version=None):
        return self.delete_many(keys, version)

    async def aclear(self):
        return self.clear()

    async def aincr_version(self, key, delta=1, version=None):
        return self.incr_version(key, delta, version)

    async def adecr_version(self, key, delta=1, version=None):
        return self.decr_version(key, delta, version)

    async def aclose(self, **kwargs):
        return self.close(**kwargs)
