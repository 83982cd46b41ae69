"""What the cache commands can learn about a configured cache, ours or anyone's.

Each function takes a cache instance and answers from whatever that backend can tell:
our backends natively, Django's own from their internals or their table, anything else
as unknown (``None``) or ``NotImplementedError``. Nothing here is on a request path.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.db import BaseDatabaseCache
from django.core.cache.backends.dummy import DummyCache as DjangoDummyCache
from django.core.cache.backends.filebased import FileBasedCache as DjangoFileBasedCache
from django.core.cache.backends.locmem import LocMemCache as DjangoLocMemCache
from django.core.cache.backends.memcached import BaseMemcachedCache
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.management.base import CommandError
from django.db import connections, router
from django.utils.module_loading import import_string

from django_nativecache.backends.base import NativeCache
from django_nativecache.backends.dummy import DummyCache
from django_nativecache.backends.filebased import FileBasedCache
from django_nativecache.backends.memcached import MemcachedCache
from django_nativecache.backends.shm import SharedMemoryCache, segment_exists


def resolve_aliases(requested: Sequence[str]) -> list[str]:
    """The aliases named (each once, in order), or every configured one when none is."""
    configured = list(settings.CACHES)
    unknown = [alias for alias in requested if alias not in settings.CACHES]
    if unknown:
        raise CommandError(
            f"Unknown cache alias{'es' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))}; CACHES has {', '.join(map(repr, configured))}."
        )
    return list(dict.fromkeys(requested)) if requested else configured


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (libraries and servers put newlines in theirs)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def backend_path(alias: str) -> str:
    return str(settings.CACHES[alias].get("BACKEND", ""))


def open_cache(alias: str) -> BaseCache:
    """``caches[alias]``, with any failure to build it as a CommandError naming it."""
    try:
        return caches[alias]
    except Exception as exc:
        raise CommandError(
            f"Cache {alias!r} ({backend_path(alias)}) cannot be opened: {one_line(exc)}"
        ) from exc


def unmade_segment(alias: str) -> str | None:
    """The segment of a SharedMemoryCache alias when no process has created it yet, else
    None. The commands answer for such a cache without building it: building it would
    create the segment (and reserve its SIZE of memory) only to find it empty."""
    params = dict(settings.CACHES[alias])
    try:
        cls = import_string(params.pop("BACKEND", ""))
        if not (isinstance(cls, type) and issubclass(cls, SharedMemoryCache)):
            return None
        name = cls.segment_for(params.pop("LOCATION", ""), params)
    except Exception:  # building it gives the error, where the command reports it
        return None
    return None if segment_exists(name) else name


PROCESS_LOCAL_NOTE = (
    "Note: Django's LocMemCache keeps a private copy in each process; this is the copy of "
    "this command's process, not the site's (django_nativecache's LocMemCache is shared)."
)


def process_local(cache: BaseCache) -> bool:
    """Whether what the commands see of this cache is their own process's copy alone."""
    return isinstance(cache, DjangoLocMemCache)


@dataclass
class StatsRow:
    """One line of ``cache_stats``: a cache, or one server of a memcached cache.
    ``None`` is what the backend cannot tell."""

    alias: str
    backend: str
    location: str
    items: int | None = None
    bytes: int | None = None
    hits: int | None = None
    misses: int | None = None
    evictions: int | None = None
    error: str | None = None

    @property
    def hit_ratio(self) -> float | None:
        if self.hits is None or self.misses is None or self.hits + self.misses == 0:
            return None
        return self.hits / (self.hits + self.misses)


_RowMaker = Callable[..., StatsRow]


def describe_location(location: Any) -> str:
    if isinstance(location, (list, tuple)):
        return ", ".join(str(x) for x in location)
    return str(location or "")


def stats_rows(alias: str, backend: str, location: Any, cache: BaseCache) -> list[StatsRow]:
    """The rows of one cache. Errors of the backend propagate (the caller shows them)."""

    def row(where: str = describe_location(location), **values: Any) -> StatsRow:
        return StatsRow(alias, backend, where, **values)

    if isinstance(cache, MemcachedCache):
        return [_memcached_row(row, server, values) for server, values in cache.stats().items()]
    if isinstance(cache, (DummyCache, DjangoDummyCache)):
        return [row(items=0, bytes=0)]
    if isinstance(cache, NativeCache):
        s = cache.stats()
        where = cache._dir if isinstance(cache, FileBasedCache) else describe_location(location)
        return [row(where, items=s["items"], bytes=s["bytes"], hits=s["hits"],
                    misses=s["misses"], evictions=s["evictions"])]
    if isinstance(cache, BaseDatabaseCache):
        return [row(items=_db_count(cache))]
    if isinstance(cache, DjangoLocMemCache):
        values = [value for _, value in _locmem_live(cache)]
        where = f"{describe_location(location)} (this process)".lstrip()
        return [row(where, items=len(values), bytes=sum(len(v) for v in values))]
    if isinstance(cache, DjangoFileBasedCache):
        sizes = [_size(path) for path in cache._list_cache_files()]
        return [row(cache._dir, items=len(sizes), bytes=sum(sizes))]
    if isinstance(cache, BaseMemcachedCache):
        return _django_memcached_rows(row, cache)
    if isinstance(cache, DjangoRedisCache):
        return [_redis_row(row, cache)]
    return [row()]


def _redis_row(row: _RowMaker, cache: DjangoRedisCache) -> StatsRow:
    """Django's RedisCache, from its primary server's INFO: items are the keys of its
    database (whatever their prefix), the other figures the whole server's."""
    client = cache._cache.get_client(write=True)
    info = client.info()
    db = client.connection_pool.connection_kwargs.get("db", 0)
    return row(items=info.get(f"db{db}", {}).get("keys", 0), bytes=info.get("used_memory"),
               hits=info.get("keyspace_hits"), misses=info.get("keyspace_misses"),
               evictions=info.get("evicted_keys"))


def _memcached_row(row: _RowMaker, server: str, values: dict[str, Any]) -> StatsRow:
    if "error" in values:
        return row(server, error=" ".join(str(values["error"]).split()))
    return row(server, items=values.get("curr_items"), bytes=values.get("bytes"),
               hits=values.get("get_hits"), misses=values.get("get_misses"),
               evictions=values.get("evictions"))


def _django_memcached_rows(row: _RowMaker, cache: BaseMemcachedCache) -> list[StatsRow]:
    """Django's PyLibMCCache and PyMemcacheCache, through their client libraries."""
    client = cache._cache
    if hasattr(client, "get_stats"):  # pylibmc: [(b"host:port (n)", {b"name": b"value"})]
        return [
            _memcached_row(row, _text(server).split(" ")[0],
                           {_text(k): _number(_text(v)) for k, v in values.items()})
            for server, values in client.get_stats()
        ]
    rows = []
    for server, one in getattr(client, "clients", {}).items():  # pymemcache's HashClient
        try:
            values = {_text(k): _number(_text(v)) for k, v in one.stats().items()}
        except Exception as exc:  # a server down: its row says so, the others still show
            values = {"error": one_line(exc)}
        rows.append(_memcached_row(row, str(server), values))
    return rows or [row()]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return text


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:  # removed meanwhile
        return 0


def _locmem_live(cache: DjangoLocMemCache) -> list[tuple[str, bytes]]:
    """The unexpired (key, pickled value) pairs of a Django LocMemCache in this process."""
    now = time.time()
    with cache._lock:
        return [
            (key, value) for key, value in cache._cache.items()
            if (expiry := cache._expire_info.get(key, -1)) is None or expiry > now
        ]


def _db_now(connection: Any) -> Any:
    # As Django's DatabaseCache compares expiry: naive local time unless USE_TZ.
    now = datetime.now(timezone.utc) if settings.USE_TZ else datetime.now()
    return connection.ops.adapt_datetimefield_value(now.replace(microsecond=0))


def _db_query(cache: BaseDatabaseCache, what: str) -> list[tuple[Any, ...]]:
    connection = connections[router.db_for_read(cache.cache_model_class)]
    q = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {what} FROM {q(cache._table)} WHERE {q('expires')} > %s",
            [_db_now(connection)],
        )
        return cursor.fetchall()


def _db_count(cache: BaseDatabaseCache) -> int:
    return _db_query(cache, "COUNT(*)")[0][0]


# -- keys ---------------------------------------------------------------------------

KEY_LISTING_BACKENDS = (
    "SharedMemoryCache and LocMemCache (django_nativecache), FileBasedCache "
    "(django_nativecache), DatabaseCache (django_nativecache and Django's), "
    "Django's LocMemCache"
)


def stored_keys(cache: BaseCache) -> list[str]:
    """Every live key of the cache as stored (prefix and version included).

    ``NotImplementedError`` when the backend cannot list its keys.
    """
    if isinstance(cache, (SharedMemoryCache, FileBasedCache)):
        return cache._store.keys()
    if isinstance(cache, BaseDatabaseCache):
        q = connections[router.db_for_read(cache.cache_model_class)].ops.quote_name
        return [key for (key,) in _db_query(cache, q("cache_key"))]
    if isinstance(cache, DjangoLocMemCache):
        return [key for key, _ in _locmem_live(cache)]
    raise NotImplementedError(f"{type(cache).__module__}.{type(cache).__qualname__}")
