"""Keys memcached cannot take never reach the wire, whatever path made them.

In the text protocol a key with a space is read by the server as two arguments: it
answers with an error and then reads the value as a command, so every later reply on
that connection would belong to an earlier request. These tests send such keys through
Django's default key function, a custom one, and a validate_key that lets anything
through, and check that the server saw none of them and the connection stays in step.
"""

from __future__ import annotations

import pytest
from django.core.cache.backends.base import InvalidCacheKey

from django_nativecache.backends.memcached import MemcachedCache
from tests import mcutil
from tests.mcserver import MemcachedServer

BAD_KEYS = {
    "space": "has space",
    "newline": "line\nbreak",
    "carriage return": "cr\rkey",
    "tab": "tab\tkey",
    "nul": "nul\x00key",
    "del": "del\x7fkey",
    "too long": "k" * 251,
}
OPERATIONS = [
    ("get", lambda c, k: c.get(k)),
    ("set", lambda c, k: c.set(k, 1)),
    ("add", lambda c, k: c.add(k, 1)),
    ("delete", lambda c, k: c.delete(k)),
    ("touch", lambda c, k: c.touch(k)),
    ("incr", lambda c, k: c.incr(k)),
    ("has_key", lambda c, k: c.has_key(k)),
    ("get_many", lambda c, k: c.get_many(["ok", k])),
    ("set_many", lambda c, k: c.set_many({"ok": 1, k: 2})),
    ("delete_many", lambda c, k: c.delete_many(["ok", k])),
    ("gets", lambda c, k: c.gets(k)),
    ("replace", lambda c, k: c.replace(k, 1)),
    ("append", lambda c, k: c.append(k, "x")),
]


class AnyKey(MemcachedCache):
    """A backend whose validate_key lets every key through."""

    def validate_key(self, key: str) -> None:
        pass


def raw_key(key: str, key_prefix: str, version: int) -> str:
    return key  # a KEY_FUNCTION that sends the key as it is


@pytest.fixture(scope="module")
def server(memcached_module):
    return memcached_module


@pytest.fixture(params=[False, True], ids=["text", "binary"])
def binary(request):
    return request.param


def commands_seen(server: MemcachedServer) -> tuple[int, ...]:
    stats = server.stats()
    return tuple(
        int(stats[name])
        for name in ("cmd_get", "cmd_set", "cmd_touch", "delete_misses", "delete_hits",
                     "incr_misses", "incr_hits")
    )


def assert_in_step(cache) -> None:
    for i in range(20):
        cache.set(f"step{i}", i)
    assert cache.get_many([f"step{i}" for i in range(20)]) == {f"step{i}": i for i in range(20)}
    assert [cache.get(f"step{i}") for i in range(20)] == list(range(20))


@pytest.mark.parametrize("op_name,op", OPERATIONS, ids=[o[0] for o in OPERATIONS])
def test_default_key_path_raises_djangos_error(server, binary, op_name, op):
    cache = mcutil.build(server.location, binary=binary)
    for label, key in BAD_KEYS.items():
        before = commands_seen(server)
        with pytest.raises(InvalidCacheKey, match="memcached"):
            op(cache, key)
        assert commands_seen(server) == before, f"{label} key reached the server ({op_name})"
    assert_in_step(cache)


@pytest.mark.parametrize("op_name,op", OPERATIONS, ids=[o[0] for o in OPERATIONS])
def test_keys_let_through_by_validate_key_are_refused_by_the_store(server, binary, op_name, op):
    cache = AnyKey(
        server.location,
        {"KEY_FUNCTION": "tests.test_memcached_keys.raw_key", "OPTIONS": {"binary": binary}},
    )
    for label, key in BAD_KEYS.items():
        before = commands_seen(server)
        with pytest.raises(InvalidCacheKey, match="memcached cannot take"):
            op(cache, key)
        assert commands_seen(server) == before, f"{label} key reached the server ({op_name})"
    assert_in_step(cache)


def test_django_message_for_keys_made_too_long_by_the_version(server):
    cache = mcutil.build(server.location)
    key = "a" * 248
    with pytest.raises(InvalidCacheKey) as info:
        cache.set(key, 1)
    assert str(info.value) == (
        "Cache key will cause errors if used with memcached: "
        f"{':1:' + key!r} (longer than 250)"
    )


def test_non_ascii_keys_within_250_bytes_work(server):
    cache = mcutil.build(server.location)
    key = "ключ-" + "é" * 130  # 138 characters with ":1:", but 274 bytes: too many
    assert len(":1:" + key) < 250 < len((":1:" + key).encode())
    with pytest.raises(InvalidCacheKey):
        cache.set(key, 1)
    short = "ключ-é"
    cache.set(short, "value")
    assert cache.get(short) == "value"
    assert server.raw_get(":1:" + short) == (16, b"value")
    assert_in_step(cache)


def test_invalid_and_valid_calls_interleaved_stay_in_step(server, binary):
    cache = AnyKey(
        server.location,
        {"KEY_FUNCTION": "tests.test_memcached_keys.raw_key", "OPTIONS": {"binary": binary}},
    )
    for i in range(200):
        cache.set(f"k{i}", i)
        with pytest.raises(InvalidCacheKey):
            cache.set(f"bad key {i}", i)
        with pytest.raises(InvalidCacheKey):
            cache.get_many([f"k{i}", f"bad\r\nget k{i}"])
        assert cache.get(f"k{i}") == i
