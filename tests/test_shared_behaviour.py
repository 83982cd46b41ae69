"""The same behavioural tests on every backend that keeps values: shared memory,
memcached, filesystem and database (Django's own suite runs on each too, in
tests/conformance). What a backend cannot do is stated where it is left out."""

from __future__ import annotations

import asyncio
import enum
import tempfile
import warnings
from collections.abc import Iterator
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from django.core import management
from django.core.cache.backends.base import CacheKeyWarning, InvalidCacheKey
from django.db import connection

from django_nativecache.backends.db import DatabaseCache
from django_nativecache.backends.dummy import DummyCache
from django_nativecache.backends.filebased import FileBasedCache
from tests import mcutil, shmutil

BACKENDS = ["shm", "memcached", "file", "db"]
# Beyond Django's API: memcached's commands, on the stores that have them.
WITH_CAS = ["shm", "memcached", "file"]
DB_TABLE = "nativecache shared tests"


def _build(kind: str, request: pytest.FixtureRequest, **params) -> object:
    if kind == "shm":
        return shmutil.build(shmutil.unique_location("shared"), SIZE="2MB", **params)
    if kind == "memcached":
        server = request.getfixturevalue("memcached_module")
        server.flush()
        return mcutil.build(server.location, **params)
    top = {k: params.pop(k) for k in ("KEY_FUNCTION", "KEY_PREFIX", "VERSION") if k in params}
    if kind == "file":
        directory = tempfile.mkdtemp(prefix="nativecache-shared-")
        return FileBasedCache(directory, {**top, "OPTIONS": {"MAX_ENTRIES": 10_000, **params}})
    request.getfixturevalue("transactional_db")
    management.call_command("createcachetable", DB_TABLE, verbosity=0)
    request.addfinalizer(_drop_table)
    return DatabaseCache(DB_TABLE, {**top, "OPTIONS": {"MAX_ENTRIES": 10_000, **params}})


def _drop_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS %s" % connection.ops.quote_name(DB_TABLE))


def _cleanup(cache: object) -> None:
    if hasattr(cache, "delete_segment"):
        cache.delete_segment()
    else:
        cache.clear()


@pytest.fixture(params=BACKENDS)
def cache(request) -> Iterator[object]:
    c = _build(request.param, request)
    c.kind = request.param
    yield c
    _cleanup(c)


@pytest.fixture(params=WITH_CAS)
def cas_cache(request) -> Iterator[object]:
    c = _build(request.param, request)
    c.kind = request.param
    yield c
    _cleanup(c)


class Colour(enum.IntEnum):
    RED = 1


# 10**5000 has more digits than str() gives by default (sys.get_int_max_str_digits()).
VALUES = [b"raw \x00 bytes", "żółw", "", 0, -7, 2**100, 10**5000, -(10**5000), True, False, None, 1.25, Colour.RED,
          bytearray(b"ba"), "\ud800 lone surrogate", "nul \x00 inside", {"a": [1, (2, 3)]}]


def _value_id(value: object) -> str:
    if isinstance(value, int) and value.bit_length() > 1000:
        return f"{'-' if value < 0 else ''}int of {value.bit_length()} bits"
    return repr(value)[:20]


@pytest.mark.parametrize("value", VALUES, ids=[_value_id(v) for v in VALUES])
def test_values_keep_type_and_value(cache, value):
    cache.set("v", value)
    got = cache.get("v")
    assert got == value and type(got) is type(value)
    assert cache.get_many(["v"]) == {"v": value}


def test_add_set_delete_touch_has_key(cache):
    assert cache.add("k", 1) is True
    assert cache.add("k", 2) is False
    cache.set("k", 3)
    assert cache.get("k") == 3 and cache.has_key("k")
    assert cache.touch("k", 100) is True
    assert cache.touch("missing", 100) is False
    assert cache.delete("k") is True
    assert cache.delete("k") is False
    assert cache.get("k", "default") == "default"


def test_zero_and_negative_timeouts_keep_nothing(cache):
    cache.set("k", "old")
    cache.set("k", "new", 0)
    assert cache.get("k") is None
    cache.set("n", 1, -5)
    assert cache.get("n") is None
    assert cache.set_many({"a": 1}, 0) == []
    assert cache.get("a") is None


@pytest.mark.parametrize("timeout", ["10", b"10", [10]])
def test_a_timeout_that_is_not_a_number_raises_and_changes_nothing(cache, timeout):
    # As on Django's backends that keep values (LocMemCache: time.time() + timeout).
    cache.set("t", "kept")
    for call in (cache.set, cache.add):
        with pytest.raises(TypeError):
            call("t", "new", timeout)
    with pytest.raises(TypeError):
        cache.touch("t", timeout)
    with pytest.raises(TypeError):
        async_to_sync(cache.aset)("t", "new", timeout)
    assert cache.get("t") == "kept"


def test_dummy_checks_timeouts_as_the_backends_that_keep_values_do():
    dummy = DummyCache("", {})
    for call in (dummy.set, dummy.add):
        with pytest.raises(TypeError):
            call("t", "new", "10")
    with pytest.raises(TypeError):
        async_to_sync(dummy.aset)("t", "new", "10")
    assert dummy.add("t", "new", 10) is True


def test_incr_decr(cache):
    cache.set("n", 10)
    assert cache.incr("n") == 11
    assert cache.decr("n", 5) == 6
    assert cache.incr("n", -2) == 4
    cache.set("big", 2**70)
    assert cache.incr("big") == 2**70 + 1
    cache.set("edge", 2**63 - 1)
    assert cache.incr("edge") == 2**63
    assert cache.get("edge") == 2**63
    cache.set("huge", 10**5000)
    assert cache.incr("huge") == 10**5000 + 1
    assert cache.get("huge") == 10**5000 + 1
    cache.set("f", 1.5)
    assert cache.incr("f") == 2.5
    cache.set("none", None)
    with pytest.raises(TypeError):
        cache.incr("none")
    with pytest.raises(ValueError, match="Key 'missing' not found"):
        cache.incr("missing")


def test_async_incr_and_batches_are_the_sync_calls(cache):
    async def run() -> None:
        await cache.aset("n", 0)
        await asyncio.gather(*(cache.aincr("n") for _ in range(50)))  # none lost
        assert await cache.aget("n") == 50
        # decr as the sync one: memcached's stops at 0, the others go below.
        assert await cache.adecr("n", 60) == (0 if cache.kind == "memcached" else -10)
        assert await cache.aset_many({"a": 1, "b": 2}) == []
        assert await cache.aget_many(iter(["a", "b", "c"])) == {"a": 1, "b": 2}
        await cache.adelete_many(["a", "b"])
        assert await cache.aget_many(["a", "b"]) == {}

    async_to_sync(run)()


def test_many(cache):
    assert cache.set_many({"a": 1, 2: "two", "é": [3]}) == []
    assert cache.get_many(["a", 2, "é", "missing"]) == {"a": 1, 2: "two", "é": [3]}
    cache.delete_many(["a", 2])
    assert cache.get_many(["a", 2, "é"]) == {"é": [3]}
    cache.clear()
    assert cache.get_many(["é"]) == {}


def test_unpicklable_values_change_nothing(cache):
    cache.set("k", "old")
    with pytest.raises(Exception):
        cache.set("k", lambda: None)
    with pytest.raises(Exception):
        cache.set_many({"a": 1, "k": lambda: None})
    assert cache.get("k") == "old"
    assert cache.get("a") is None


def test_key_checks(cache):
    if cache.kind == "memcached":
        # Django's memcached backends raise where the others warn.
        with pytest.raises(InvalidCacheKey):
            cache.set("with space", 1)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache.set("with space", 1)
    assert [str(w.message) for w in caught if w.category is CacheKeyWarning] == [
        "Cache key contains characters that will cause errors if used with memcached: "
        "':1:with space'"
    ]
    with pytest.warns(CacheKeyWarning):
        assert cache.get("with space") == 1


@pytest.fixture(params=["shm", "file"])
def record_cache(request) -> Iterator[object]:
    """The stores that keep each key whole in a record (up to 65,535 bytes)."""
    c = _build(request.param, request)
    yield c
    _cleanup(c)


def test_keys_over_65535_bytes_are_refused_on_writes_and_absent_on_reads(record_cache):
    cache, key = record_cache, "k" * 70_000
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CacheKeyWarning)
        for write in (lambda: cache.set(key, 1), lambda: cache.add(key, 1),
                      lambda: cache.set_many({"first": 1, key: 2})):
            with pytest.raises(InvalidCacheKey, match="key longer than 65535 bytes"):
                write()
        assert cache.get("first") is None  # a batch is checked whole before it is written
        assert cache.get(key, "default") == "default" and cache.get_many([key]) == {}
        assert cache.has_key(key) is False and cache.delete(key) is False
        assert cache.touch(key) is False
        cache.delete_many([key, "other"])
        longest = "k" * (65_535 - len(":1:"))
        cache.set(longest, "kept")
        assert cache.get(longest) == "kept"


def test_prefix_and_version_are_read_live(cache):
    cache.set("k", "v1")
    cache.version = 2
    assert cache.get("k") is None
    cache.set("k", "v2")
    cache.key_prefix = "other"
    assert cache.get("k") is None
    cache.key_prefix, cache.version = "", 1
    assert cache.get("k") == "v1"
    assert cache.get("k", version=2) == "v2"


def test_custom_key_function_and_validate_override(request):
    for kind in BACKENDS:
        c = _build(kind, request, KEY_FUNCTION=lambda k, p, v: f"custom-{p}-{v}-{k}")
        try:
            c.set("a", 1)
            assert c.get("a") == 1
            assert c.make_key("a") == "custom--1-a"
            with mock.patch.object(c, "validate_key") as validate:
                c.get("b")
                validate.assert_called_once_with("custom--1-b")
        finally:
            _cleanup(c)


def test_close_keeps_the_cache_usable(cache):
    cache.set("k", 1)
    cache.close()
    assert cache.get("k") == 1


# -- memcached's commands, on the stores that have them --------------------------------------


def test_gets_and_cas(cas_cache):
    cache = cas_cache
    assert cache.gets("k") == (None, None)
    cache.set("k", "a")
    value, token = cache.gets("k")
    assert value == "a"
    assert cache.cas("k", "b", token) is True
    assert cache.cas("k", "c", token) is False  # stale token
    assert cache.get("k") == "b"
    assert cache.cas("missing", "x", token) is False


def test_append_prepend_replace(cas_cache):
    cache = cas_cache
    assert cache.append("k", "x") is False
    cache.set("k", "mid")
    assert cache.append("k", "-end") and cache.prepend("k", "start-")
    assert cache.get("k") == "start-mid-end"
    cache.set("b", b"\x00")
    assert cache.append("b", b"\x01" * 5000)
    assert cache.get("b") == b"\x00" + b"\x01" * 5000
    assert cache.replace("nope", 1) is False and not cache.has_key("nope")
    assert cache.replace("k", 2) is True and cache.get("k") == 2
    # Only to a stored value of the same type: anything else would no longer decode.
    cache.set_many({"s": "text", "p": [1], "i": 7})
    for key, data in (("s", b"bytes"), ("p", b"x"), ("p", "x"), ("i", "8")):
        with pytest.raises(TypeError, match="stored type"):
            cache.append(key, data)
        with pytest.raises(TypeError, match="stored type"):
            cache.prepend(key, data)
    assert cache.get_many(["s", "p", "i"]) == {"s": "text", "p": [1], "i": 7}
