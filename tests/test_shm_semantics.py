"""SharedMemoryCache behaviour beyond Django's suite: LRU culling, expiry kept by incr,
the value codec's types, memcached-style commands, key hooks and inline async."""

from __future__ import annotations

import asyncio
import enum
import time
import warnings
from unittest import mock

import pytest
from django.core.cache.backends.base import CacheKeyWarning

from tests import shmutil


@pytest.fixture
def cache():
    c = shmutil.build(shmutil.unique_location("sem"), SIZE="1MB", SHARDS=1)
    yield c
    c.delete_segment()


def test_cull_removes_least_recently_used(cache):
    cache._max_entries = 10
    cache._cull_frequency = 2
    for i in range(10):
        cache.set(f"k{i}", i)
    cache.get("k0")
    cache.get("k1")
    cache.set("k10", 10)  # 10 entries reached the limit: 5 go first
    present = {k for k in (f"k{i}" for i in range(11)) if cache.has_key(k)}
    assert present == {"k0", "k1", "k7", "k8", "k9", "k10"}


def test_incr_keeps_the_expiry(cache):
    cache.set("n", 1, timeout=30)
    cache.incr("n", 5)
    assert 25 < cache.ttl("n") <= 30
    cache.set("f", 1.5, timeout=30)  # not an integer: the cas path
    assert cache.incr("f") == 2.5
    assert 25 < cache.ttl("f") <= 30
    cache.set("short", 1, timeout=1)
    cache.incr("short")
    time.sleep(1.2)
    assert cache.get("short") is None


def test_incr_beyond_64_bits_and_of_non_numbers(cache):
    cache.set("big", 2**70)
    assert cache.incr("big") == 2**70 + 1
    cache.set("edge", 2**63 - 1)
    assert cache.incr("edge") == 2**63
    assert cache.decr("edge", 2**64) == 2**63 - 2**64
    cache.set("text", "1")
    with pytest.raises(TypeError):
        cache.incr("text")
    with pytest.raises(ValueError, match="Key 'missing' not found"):
        cache.incr("missing")


class Colour(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    "value",
    [b"raw \x00 bytes", "żółw", "", 0, -7, 2**100, True, False, None, 1.25, Colour.RED,
     bytearray(b"ba"), "\ud800 lone surrogate", {"a": [1, (2, 3)]}],
)
def test_values_keep_type_and_value(cache, value):
    cache.set("v", value)
    got = cache.get("v")
    assert got == value and type(got) is type(value)


def test_append_checks_the_stored_type(cache):
    cache.set("k", "text")
    with pytest.raises(TypeError):
        cache.append("k", b"bytes onto text")
    assert cache.get("k") == "text"


def test_append_to_a_compressed_value_says_why_it_cannot():
    c = shmutil.build(shmutil.unique_location("sem"), SIZE="1MB", COMPRESS_MIN_LENGTH=10)
    try:
        c.set("k", "x" * 100)  # stored compressed
        with pytest.raises(TypeError, match=r"not compressed \(see COMPRESS_MIN_LENGTH\)"):
            c.append("k", "y")
        assert c.get("k") == "x" * 100
    finally:
        c.delete_segment()


def test_ttl(cache):
    cache.set("forever", 1, timeout=None)
    cache.set("soon", 1, timeout=100)
    cache.set("far", 1, timeout=60 * 60 * 24 * 31)  # over 30 days is still relative here
    assert cache.ttl("forever") is None
    assert 99 < cache.ttl("soon") <= 100
    assert cache.ttl("far") > 60 * 60 * 24 * 30
    assert cache.ttl("missing") == 0


def test_stats_count_what_happened(cache):
    before = cache.stats()
    cache.set("a", 1)
    cache.get("a")
    cache.get("b")
    after = cache.stats()
    assert after["sets"] - before["sets"] == 1
    assert after["hits"] - before["hits"] == 1
    assert after["misses"] - before["misses"] == 1
    assert after["items"] == 1 and 0 < after["bytes"] <= after["capacity"]


def test_key_warnings_match_django(cache):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache.set("x" * 300, 1)
        cache.get("with space")
    messages = [str(w.message) for w in caught if w.category is CacheKeyWarning]
    assert messages[0] == (
        "Cache key will cause errors if used with memcached: %r (longer than 250)"
        % (":1:" + "x" * 300)
    )
    assert messages[1] == (
        "Cache key contains characters that will cause errors if used with memcached: "
        "':1:with space'"
    )


def test_custom_key_function_and_validate_override_are_honoured():
    c = shmutil.build(
        shmutil.unique_location("keys"), SIZE="1MB", KEY_FUNCTION=lambda k, p, v: f"custom|{k}"
    )
    try:
        c.set("a", 1)
        assert c._store.get("custom|a", None) == 1
        with mock.patch.object(c, "validate_key") as validate:
            c.get("b")
            validate.assert_called_once_with("custom|b")
        c.key_prefix = "p"  # read live on the native path too
    finally:
        c.delete_segment()


def test_prefix_and_version_are_read_live(cache):
    cache.set("k", "v1")
    cache.version = 2
    assert cache.get("k") is None
    cache.set("k", "v2")
    cache.key_prefix = "other"
    assert cache.get("k") is None
    cache.key_prefix, cache.version = "", 1
    assert cache.get("k") == "v1"


def test_async_methods_run_inline_without_a_thread_hop(cache):
    async def scenario():
        await cache.aset("a", 1)
        await cache.aset_many({"b": 2})
        assert await cache.aadd("c", 3)
        assert await cache.aget("a") == 1
        assert await cache.aget_many(["a", "b"]) == {"a": 1, "b": 2}
        assert await cache.aincr("a") == 2 and await cache.adecr("a") == 1
        assert await cache.ahas_key("b") and await cache.atouch("b", 10)
        assert await cache.aget_or_set("d", 4) == 4
        assert await cache.aincr_version("d") == 2
        assert await cache.adelete("a")
        await cache.adelete_many(["b"])
        await cache.aclear()
        await cache.aclose()

    with mock.patch(
        "django.core.cache.backends.base.sync_to_async", side_effect=AssertionError("thread hop")
    ):
        asyncio.run(scenario())
