"""MemcachedCache beyond Django's suite: Django's memcached timeout rules as the server
sees them, the delete-on-failed-set rule, incr/decr, memcached's own commands,
connections kept across requests and shared by the instances of one configuration,
IGNORE_EXCEPTIONS, and async calls that leave the event loop free. Most tests run on
both protocols (text and binary)."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
import time
import weakref

import pytest
from asgiref.sync import ThreadSensitiveContext, async_to_sync
from django.core.cache import caches
from django.core.cache.backends.base import InvalidCacheKey
from django.core.exceptions import ImproperlyConfigured

from django_nativecache.backends import memcached as memcached_backend
from django_nativecache.exceptions import CacheUnavailable, CorruptData, ValueTooLarge
from tests import mcutil

THIRTY_DAYS = 60 * 60 * 24 * 30


@pytest.fixture(scope="module")
def server(memcached_module):
    return memcached_module


@pytest.fixture(params=[False, True], ids=["text", "binary"])
def cache(request, server):
    server.flush()
    return mcutil.build(server.location, binary=request.param)


# -- timeouts, as the server holds them ------------------------------------------------


def test_timeouts_reach_the_server_as_django_sends_them(cache, server):
    cache.set("relative", 1, 100)
    cache.set("float", 1, 100.9)  # Django truncates to whole seconds
    cache.set("forever", 1, None)
    cache.set("month", 1, THIRTY_DAYS)
    cache.set("beyond", 1, THIRTY_DAYS + 10)  # an absolute time on the wire
    assert 98 <= server.ttl(":1:relative") <= 100
    assert 98 <= server.ttl(":1:float") <= 100
    assert server.ttl(":1:forever") == -1
    assert THIRTY_DAYS - 2 <= server.ttl(":1:month") <= THIRTY_DAYS
    assert THIRTY_DAYS + 8 <= server.ttl(":1:beyond") <= THIRTY_DAYS + 10


def test_timeout_past_2038_is_kept_until_the_servers_limit(cache, server):
    # The server parses exptime as a signed 32-bit number: an absolute time past it
    # would be refused (and in the text protocol leave the value's bytes to be read as
    # a command). It is clamped to the end of that range instead.
    fifty_years = 50 * 365 * 86400
    cache.set("far", "value", fifty_years)
    assert cache.get("far") == "value"
    assert server.ttl(":1:far") >= 2**31 - 1 - int(time.time()) - 5
    cache.set("after", "still in sync")
    assert cache.get("after") == "still in sync"


@pytest.mark.parametrize("timeout", [0, -1, 0.5, 0.9996])
def test_timeouts_under_a_second_keep_nothing(cache, server, timeout):
    cache.set("k", "old")
    cache.set("k", "new", timeout)
    assert cache.get("k") is None
    assert server.raw_get(":1:k") is None
    assert cache.add("fresh", 1, timeout) is True
    assert cache.get("fresh") is None
    cache.set("live", 1)
    assert cache.add("live", 2, timeout) is False
    assert cache.get("live") == 1
    assert cache.set_many({"m1": 1, "m2": 2}, timeout) == []
    assert cache.get_many(["m1", "m2"]) == {}
    assert cache.touch("live", timeout) is True
    assert cache.get("live") is None
    assert cache.touch("live", timeout) is False


def test_replace_and_cas_with_a_zero_timeout(cache):
    assert cache.replace("missing", 1, 0) is False
    cache.set("k", 1)
    assert cache.replace("k", 2, 0) is True
    assert cache.get("k") is None
    cache.set("c", 1)
    _, token = cache.gets("c")
    assert cache.cas("c", 2, token + 1, 0) is False
    assert cache.get("c") == 1
    assert cache.cas("c", 2, token, 0) is True
    assert cache.get("c") is None


def test_touch_sets_a_new_expiry(cache, server):
    cache.set("k", 1, 10)
    assert cache.touch("k", 500) is True
    assert 498 <= server.ttl(":1:k") <= 500
    assert cache.touch("k", None) is True
    assert server.ttl(":1:k") == -1
    assert cache.touch("missing", 10) is False


# -- failed sets ---------------------------------------------------------------------


def test_refused_value_raises_and_deletes_the_old_one(cache, server):
    cache.set("session", "small")
    with pytest.raises(ValueTooLarge, match="too large"):
        cache.set("session", b"x" * (2 << 20))
    assert cache.get("session") is None
    assert server.raw_get(":1:session") is None
    cache.set("next", "fine")  # the connection is still in step
    assert cache.get("next") == "fine"


@pytest.mark.parametrize("mode", ["add", "replace", "cas"])
def test_refused_add_replace_or_cas_changes_nothing(cache, mode):
    # Django's delete-on-failure rule is set()'s alone: a refused add, replace or cas
    # leaves what another writer stored.
    cache.set("k", "kept")
    big = b"x" * (2 << 20)
    with pytest.raises(ValueTooLarge):
        if mode == "cas":
            _, token = cache.gets("k")
            cache.cas("k", big, token)
        else:
            getattr(cache, mode)("k", big)
    assert cache.get("k") == "kept"


def test_zero_timeouts_are_one_command(cache, server):
    # add/replace/cas with a timeout that keeps nothing are sent as the command itself
    # (already expired), never as a get then a delete, which could remove what another
    # client wrote in between.
    cache.set("live", 1)
    _, token = cache.gets("live")
    before = server.stats()
    assert cache.add("fresh", 1, 0) is True
    assert cache.add("live", 2, 0) is False
    assert cache.replace("live", 3, 0) is True
    cache.set("c", 1)
    _, token = cache.gets("c")
    after_gets = server.stats()
    assert cache.cas("c", 2, token, -1) is True
    after = server.stats()
    assert int(after_gets["cmd_get"]) - int(before["cmd_get"]) == 1  # the gets above
    assert int(after["cmd_get"]) == int(after_gets["cmd_get"])
    assert int(after["delete_hits"]) + int(after["delete_misses"]) == int(
        before["delete_hits"]
    ) + int(before["delete_misses"])
    assert cache.get_many(["fresh", "live", "c"]) == {}


def test_backend_timeout_as_djangos_memcached_backends_report_it(cache):
    from django.core.cache.backends.memcached import PyMemcacheCache

    django_cache = PyMemcacheCache("127.0.0.1:1", {"TIMEOUT": 300})  # connects on first use
    cache.default_timeout = 300
    now = int(time.time())
    for timeout in [None, 0, -5, 0.4, 1, 100.9, THIRTY_DAYS, THIRTY_DAYS + 0.5, THIRTY_DAYS + 1]:
        ours, theirs = cache.get_backend_timeout(timeout), django_cache.get_backend_timeout(timeout)
        assert abs(ours - theirs) <= 1 and (ours > now) == (theirs > now), timeout
    assert cache.get_backend_timeout() == django_cache.get_backend_timeout() == 300


def test_set_many_returns_refused_keys(cache):
    cache.set("big", "old")
    failed = cache.set_many({"small": 1, "big": b"x" * (2 << 20), "other": "v"})
    assert failed == ["big"]
    assert cache.get_many(["small", "big", "other"]) == {"small": 1, "other": "v"}
    # aset_many is set_many, in a thread.
    cache.delete("small")
    failed = async_to_sync(cache.aset_many)({"small": 1, "big": b"x" * (2 << 20)})
    assert failed == ["big"] and cache.get("small") == 1


def test_async_incr_keeps_the_expiry(cache, server):
    cache.set("n", 1, 500)
    assert async_to_sync(cache.aincr)("n") == 2
    assert 495 <= server.ttl(":1:n") <= 500


def test_set_many_returns_the_callers_keys_under_a_key_function(server):
    cache = mcutil.build(server.location, KEY_FUNCTION=lambda key, prefix, version: f"kf-{key}")
    failed = cache.set_many({"small": 1, "big": b"x" * (2 << 20)})
    assert failed == ["big"]
    assert cache.get_many(["small", "big"]) == {"small": 1}


def test_ints_are_decimal_only_as_long_as_every_process_can_read_them(cache, server):
    # This process may lift its own limit; another, with Python's default, must still
    # read the value back: longer ints are pickled.
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        cache.set_many({"short": 10**4299, "long": 10**4300})  # 4300 and 4301 digits
        assert server.raw_get(":1:short") == (4, str(10**4299).encode())
        assert server.raw_get(":1:long")[0] == 1  # pickled
    finally:
        sys.set_int_max_str_digits(limit)
    assert cache.get_many(["short", "long"]) == {"short": 10**4299, "long": 10**4300}


@pytest.mark.parametrize("start", [-(2**64 - 1), -(2**63 + 1)])
def test_negative_ints_the_server_would_read_as_unsigned_are_added_in_python(
        cache, server, start):
    # memcached's strtoull wraps "-18446744073709551615" to 1 and accepts it for incr; as
    # decimal text this value would be incremented as 1 (to 2).
    cache.set("neg", start)
    assert server.raw_get(":1:neg")[0] == 1  # pickled: the server refuses to incr it
    assert cache.incr("neg") == start + 1
    assert cache.get("neg") == start + 1
    assert cache.decr("neg", 3) == start - 2
    assert cache.get("neg") == start - 2


def test_huge_ints_are_pickled_without_being_written_out(cache, server):
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        huge = 7 ** 400_000  # 338,000 digits: str() of it would take seconds
        started = time.monotonic()
        cache.set("huge", huge)
        assert time.monotonic() - started < 1.0
        assert server.raw_get(":1:huge")[0] == 1
        assert cache.get("huge") == huge
    finally:
        sys.set_int_max_str_digits(limit)


def test_an_integer_with_a_nul_byte_is_corrupt_not_cut_short(cache, server):
    server.command("set :1:damaged 4 0 6\r\n12\x00345")
    with pytest.raises(CorruptData, match="NUL"):
        cache.get("damaged")


@pytest.mark.parametrize("flags, data, message", [
    (4, b"12ab", "not a decimal number"),
    (2, b"9" * 30 + b"x", "not a decimal number"),  # past 64 bits: parsed by Python
    (16, b"caf\xe9", "not UTF-8"),  # Latin-1, as another client may have written it
])
def test_a_value_its_flags_cannot_read_is_corrupt(cache, server, flags, data, message):
    with server.connect() as s:
        s.sendall(b"set :1:damaged %d 0 %d\r\n%s\r\n" % (flags, len(data), data))
        assert s.recv(64) == b"STORED\r\n"
    with pytest.raises(CorruptData, match=message):
        cache.get("damaged")
    assert cache.get("other", "fine") == "fine"  # the connection still answers


def test_key_errors_on_reads_name_the_key(cache):
    key = "é" * 150  # 150 characters, 300 bytes: over memcached's 250
    for call in (lambda: cache.get(key), lambda: cache.has_key(key), lambda: cache.delete(key),
                 lambda: cache.touch(key), lambda: cache.incr(key), lambda: cache.gets(key),
                 lambda: cache.set(key, 1), lambda: cache.get_many(["ok", key]),
                 lambda: cache.server_for(key)):
        with pytest.raises(InvalidCacheKey) as raised:
            call()
        assert "None" not in str(raised.value) and key in str(raised.value)


def test_server_with_a_larger_item_size(memcached_factory):
    server = memcached_factory(item_size="4m", memory_mb=64)
    cache = mcutil.build(server.location)
    value = b"y" * (3 << 20)
    cache.set("big", value)
    assert cache.get("big") == value


# -- incr / decr -----------------------------------------------------------------------


def test_incr_and_decr(cache):
    cache.set("n", 10)
    assert cache.incr("n") == 11
    assert cache.incr("n", 5) == 16
    assert cache.decr("n", 6) == 10
    assert cache.incr("n", -4) == 6
    assert cache.get("n") == 6
    with pytest.raises(ValueError, match="not found"):
        cache.incr("missing")
    with pytest.raises(ValueError, match="not found"):
        cache.decr("missing")


def test_decr_by_more_than_32_bits_stops_at_zero(cache):
    cache.set("n", 10)
    assert cache.decr("n", 2**33) == 0
    assert cache.get("n") == 0
    assert cache.incr("n", 2**33) == 2**33


def test_decr_stops_at_zero_as_memcached_does(cache):
    cache.set("n", 3)
    assert cache.decr("n", 10) == 0


def test_incr_keeps_the_expiry(cache, server):
    cache.set("n", 1, 500)
    cache.incr("n")
    assert 495 <= server.ttl(":1:n") <= 500
    # Deltas over 32 bits too: one command on the server, as pymemcache sends it.
    cache.set("forever", 5, None)
    assert cache.incr("forever", 5 * 2**30) == 5 + 5 * 2**30
    assert cache.decr("forever", 2**40) == 0
    assert server.ttl(":1:forever") == -1


def test_incr_of_values_memcached_cannot_add_to(cache):
    cache.set("neg", -5)
    assert cache.incr("neg") == -4
    cache.set("f", 1.5)
    assert cache.incr("f") == 2.5
    cache.set("big", 2**70)
    assert cache.incr("big") == 2**70 + 1
    cache.set("n", 1)
    assert cache.incr("n", 2**40) == 2**40 + 1
    # Past 2**64 the server would wrap (to 0 here): added in Python instead, as above.
    for start, delta in ((2**63 + 2**62, 2**62), (2**64 - 5, 2**40), (2**64 - 2, 1)):
        cache.set("top", start)
        assert cache.incr("top", delta) == start + delta
        assert cache.get("top") == start + delta
    cache.set("none", None)
    with pytest.raises(TypeError):
        cache.incr("none")
    cache.set("text", "abc")
    with pytest.raises(TypeError):
        cache.incr("text")
    assert cache.get("text") == "abc"


# -- memcached's commands ----------------------------------------------------------------


def test_add_replace_append_prepend(cache):
    assert cache.add("k", "a") is True
    assert cache.add("k", "b") is False
    assert cache.replace("k", "c") is True
    assert cache.replace("missing", "c") is False
    assert cache.append("k", "d") is True
    assert cache.prepend("k", "<") is True
    assert cache.get("k") == "<cd"
    assert cache.append("missing", "x") is False
    cache.set("b", b"\x00\x01")
    assert cache.append("b", b"\x02") is True
    assert cache.get("b") == b"\x00\x01\x02"


def test_append_to_a_compressed_value_is_refused(server):
    cache = mcutil.build(server.location, COMPRESS_MIN_LENGTH=100)
    cache.set("z", "y" * 1000)
    with pytest.raises(TypeError, match="compressed"):
        cache.append("z", "more")
    assert cache.get("z") == "y" * 1000


def test_gets_and_cas(cache):
    assert cache.gets("missing") == (None, None)
    cache.set("k", {"v": 1})
    value, token = cache.gets("k")
    assert value == {"v": 1} and isinstance(token, int)
    assert cache.cas("k", {"v": 2}, token) is True
    assert cache.cas("k", {"v": 3}, token) is False  # changed since
    assert cache.get("k") == {"v": 2}
    assert cache.cas("missing", 1, token) is False


def test_delete_has_key_flush_all(cache):
    cache.set_many({"a": 1, "b": 2})
    assert cache.has_key("a") and not cache.has_key("zz")
    assert cache.delete("a") is True
    assert cache.delete("a") is False
    cache.delete_many(["b", "never"])
    assert cache.get("b") is None
    cache.set("c", 3)
    cache.flush_all()
    assert cache.get("c") is None


def test_get_many_keeps_the_callers_keys(cache):
    cache.set_many({"a": 1, 2: "two", "é": "accent"})
    assert cache.get_many(["a", 2, "é", "missing", "a"]) == {"a": 1, 2: "two", "é": "accent"}
    assert cache.get_many(iter(["a"])) == {"a": 1}
    assert cache.get_many([]) == {}


def test_ttl_is_not_available(cache):
    with pytest.raises(NotImplementedError):
        cache.ttl("k")


def test_stats_per_server(cache, server):
    cache.set("k", "v")
    cache.get("k")
    stats = cache.stats()
    assert list(stats) == [server.address]
    assert stats[server.address]["curr_items"] >= 1
    assert stats[server.address]["get_hits"] >= 1
    assert stats[server.address]["pid"] == server.proc.pid
    assert "item_size_max" in cache.stats("settings")[server.address]


def test_stats_name_a_dead_server(server, memcached_factory):
    dead = memcached_factory()
    cache = mcutil.build([server.location, dead.location])
    dead.kill()
    stats = cache.stats()
    assert "error" in stats[dead.address]
    assert "pid" in stats[server.address]


# -- connections ---------------------------------------------------------------------------


def test_close_keeps_connections(cache, server):
    cache.set("k", 1)
    before = int(server.stats()["total_connections"])
    for _ in range(5):
        cache.close()
        assert cache.get("k") == 1
    # Only our own probe connected since.
    assert int(server.stats()["total_connections"]) == before + 1


def test_disconnect_all_closes_and_the_next_call_reconnects(cache, server):
    cache.set("k", 1)
    before = int(server.stats()["total_connections"])
    cache.disconnect_all()
    assert cache.get("k") == 1
    assert int(server.stats()["total_connections"]) == before + 2


def _connections(server) -> int:
    return int(server.stats()["total_connections"])


def test_instances_with_the_same_settings_share_one_client(server):
    first, second = mcutil.build(server.location), mcutil.build(server.location)
    binary = mcutil.build(server.location, binary=True)
    assert first._store is second._store and binary._store is not first._store
    other: list[object] = []
    thread = threading.Thread(target=lambda: other.append(mcutil.build(server.location)))
    thread.start()
    thread.join()
    assert other[0]._store is first._store  # another thread's instance too
    first.set("shared", 1)
    before = _connections(server)
    second.disconnect_all()  # closes the connections of every instance with these settings
    assert first.get("shared") == 1
    assert _connections(server) == before + 2  # the probe and the reconnection
    # Kept after its last instance has gone, while among the latest configurations.
    client = weakref.ref(first._store)
    del first, second, other
    gc.collect()
    assert mcutil.build(server.location)._store is client()
    for n in range(memcached_backend._CLIENTS_KEPT):
        mcutil.build(server.location, COMPRESS_MIN_LENGTH=1000 + n)
    gc.collect()
    assert client() is None
    assert len(memcached_backend._recent) == memcached_backend._CLIENTS_KEPT


def _asgi_request(body):
    """Runs body(cache) as Django's ASGI handler runs a request: in a task of its own, in
    its own thread-sensitive context, on a cache instance made for that task. (Run the
    loop with asyncio.run: under async_to_sync, every sync call would go to its caller's
    thread instead.)"""

    async def request(*args):
        async with ThreadSensitiveContext():
            return await body(caches["default"], *args)

    return request


def test_async_requests_reuse_connections(server, settings):
    # Django makes a cache instance per request task under ASGI and never closes it.
    settings.CACHES = {"default": {"BACKEND": "django_nativecache.backends.memcached."
                                              "MemcachedCache", "LOCATION": server.location}}

    async def body(cache, n):
        await cache.aset("per-task", n)
        return await cache.aget("per-task")

    request = _asgi_request(body)

    async def requests_one_after_another() -> list[int]:
        return [await asyncio.create_task(request(n)) for n in range(30)]

    asyncio.run(requests_one_after_another())
    before = _connections(server)
    assert asyncio.run(requests_one_after_another()) == list(range(30))
    assert _connections(server) - before == 1  # the probe; without sharing, 30


def test_concurrent_async_requests_do_not_wait_for_each_other(server, settings):
    server.flush()
    with mcutil.DelayProxy(server.port, 0.2) as link:  # 0.4 s for each round trip
        settings.CACHES = {"default": {"BACKEND": "django_nativecache.backends.memcached."
                                                  "MemcachedCache", "LOCATION": link.location}}

        async def body(cache, n):
            return await cache.aget(f"concurrent-{n}", n)

        request = _asgi_request(body)

        async def ten_at_once() -> list[int]:
            return await asyncio.gather(*(request(n) for n in range(10)))

        started = time.monotonic()
        assert asyncio.run(ten_at_once()) == list(range(10))
        elapsed = time.monotonic() - started
    assert elapsed < 2.0, elapsed  # one after another, at least 4 s


def test_pool_options_bound_the_connection_sets_kept(server):
    server.flush()
    with mcutil.DelayProxy(server.port, 0.2) as link:
        capped = mcutil.build(link.location, max_pool_size=1)
        expiring = mcutil.build(link.location, pool_idle_timeout=1)
        for cache in (capped, expiring):
            threads = [threading.Thread(target=cache.get, args=(f"pool-{n}",))
                       for n in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert capped._store._idle_handles() == 1  # the other three closed on return
        assert expiring._store._idle_handles() == 4  # one per call that ran at once
        time.sleep(1.2)
        assert expiring._store._idle_handles() == 0  # idle past pool_idle_timeout
        assert expiring.get("pool-0", "miss") == "miss"


# -- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"nonsense": 1}, "unknown OPTIONS 'nonsense'"),
        ({"binary": "yes"}, "'binary'"),
        ({"behaviors": {"no_such_behavior": 1}}, "unknown memcached behavior 'no_such_behavior'"),
        ({"behaviors": {"hash": "sha9"}}, "'hash' cannot be 'sha9'"),
        ({"behaviors": {"distribution": "nearest"}}, "'distribution' cannot be 'nearest'"),
        ({"behaviors": {"buffer_requests": True}}, "needs the server's reply"),
        ({"behaviors": ["tcp_nodelay"]}, "'behaviors'"),
        ({"connect_timeout": 0}, "'connect_timeout'"),
        ({"timeout": "fast"}, "'timeout'"),
        ({"serde": object()}, "'serde'"),
        ({"default_noreply": True}, "'default_noreply'"),
        ({"username": "u"}, "SASL"),
        ({"COMPRESS_LEVEL": 12}, "'COMPRESS_LEVEL'"),
    ],
)
def test_bad_options_name_the_option(server, options, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        mcutil.build(server.location, **options)


@pytest.mark.parametrize(
    "location", ["", ";", "host:port", "1:2:3", "[::1]:x", "unix:", ["127.0.0.1", 5]]
)
def test_bad_locations(location):
    with pytest.raises(ImproperlyConfigured, match="LOCATION"):
        mcutil.build(location)


def test_options_pylibmc_and_pymemcache_users_write(server):
    cache = mcutil.build(
        server.location,
        binary=True,
        behaviors={"tcp_nodelay": True, "ketama": True, "retry_timeout": 7, "hash": "md5"},
    )
    assert cache.behavior("binary_protocol") == 1
    assert cache.behavior("tcp_nodelay") == 1
    assert cache.behavior("retry_timeout") == 7
    cache = mcutil.build(
        server.location, no_delay=False, connect_timeout=0.25, timeout=2, ignore_exc=True,
        use_pooling=True, max_pool_size=4, allow_unicode_keys=True,
    )
    assert cache.behavior("tcp_nodelay") == 0
    assert cache.behavior("connect_timeout") == 250
    assert cache.behavior("_poll_timeout") == 2000
    cache.set("k", "v")
    assert cache.get("k") == "v"


def test_defaults_fail_fast_and_hash_consistently(server):
    cache = mcutil.build(server.location)
    assert cache.behavior("binary_protocol") == 0
    assert cache.behavior("tcp_nodelay") == 1
    assert cache.behavior("ketama") == 1
    assert cache.behavior("connect_timeout") == 1000
    assert cache.behavior("_poll_timeout") == 1000
    assert cache.behavior("retry_timeout") == 2


# -- IGNORE_EXCEPTIONS ------------------------------------------------------------------------


def test_server_errors_raise_by_default(memcached_server):
    cache = mcutil.build(memcached_server.location)
    memcached_server.kill()
    with pytest.raises(CacheUnavailable, match="memcached"):
        cache.get("k")
    with pytest.raises(CacheUnavailable):
        cache.set("k", 1)


def test_ignore_exceptions_turns_errors_into_logged_misses(memcached_server, caplog):
    cache = mcutil.build(memcached_server.location, IGNORE_EXCEPTIONS=True)
    cache.set("k", 1)
    memcached_server.kill()
    caplog.set_level(logging.WARNING, logger="django_nativecache")
    assert cache.get("k", "default") == "default"
    assert cache.get_many(["k", "j"]) == {}
    assert cache.set("k", 2) is None
    assert cache.add("k", 2) is False
    assert cache.delete("k") is False
    assert cache.touch("k") is False
    assert cache.has_key("k") is False
    assert cache.set_many({"a": 1, "b": 2}) == ["a", "b"]
    cache.delete_many(["a"])
    cache.clear()
    with pytest.raises(ValueError, match="not found"):
        cache.incr("k")
    assert cache.gets("k") == (None, None)
    ignored = [r for r in caplog.records if "IGNORE_EXCEPTIONS" in r.getMessage()]
    assert len(ignored) >= 12
    # Each names the failure, set_many's too (the first of its keys' failures).
    assert all("memcached" in r.getMessage() for r in ignored), [r.getMessage() for r in ignored]


def test_set_many_reports_its_first_failure_readably(memcached_server, caplog):
    cache = mcutil.build(memcached_server.location, IGNORE_EXCEPTIONS=True)
    memcached_server.kill()
    caplog.set_level(logging.WARNING, logger="django_nativecache")
    assert cache.set_many({f"k{i}": "v" * 100 for i in range(5)}) == [f"k{i}" for i in range(5)]
    (record,) = [r for r in caplog.records if "IGNORE_EXCEPTIONS" in r.getMessage()]
    assert record.getMessage().startswith("memcached error ignored (IGNORE_EXCEPTIONS): memcached")


def test_pymemcaches_ignore_exc_alone_turns_errors_into_misses(memcached_server):
    cache = mcutil.build(memcached_server.location, ignore_exc=True)
    cache.set("k", 1)
    memcached_server.kill()
    assert cache.get("k", "default") == "default"
    assert cache.add("k", 2) is False


def test_ignore_exceptions_keeps_bad_input_errors(memcached_server):
    from django.core.cache.backends.base import InvalidCacheKey

    cache = mcutil.build(memcached_server.location, ignore_exc=True)
    with pytest.raises(InvalidCacheKey):
        cache.get("has space")
    with pytest.raises(ValueTooLarge):
        cache.set("big", b"x" * (2 << 20))


# -- async ------------------------------------------------------------------------------------------


def test_async_methods(cache):
    async def main():
        await cache.aset("a", 1)
        assert await cache.aget("a") == 1
        assert await cache.aadd("a", 2) is False
        await cache.aset_many({"b": 2, "c": 3})
        assert await cache.aget_many(["a", "b", "c"]) == {"a": 1, "b": 2, "c": 3}
        assert await cache.aincr("a") == 2
        assert await cache.adelete("a") is True
        assert await cache.ahas_key("a") is False

    asyncio.run(main())


def test_async_calls_leave_the_event_loop_free(memcached_server):
    cache = mcutil.build(memcached_server.location, timeout=1.0)
    cache.set("k", 1)
    memcached_server.pause()  # every call now waits for the I/O timeout
    ticks = 0

    async def ticker(stop: asyncio.Event) -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    async def main() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(ticker(stop))
        started = time.monotonic()
        with pytest.raises(CacheUnavailable):
            await cache.aget("k")
        elapsed = time.monotonic() - started
        stop.set()
        await task
        return elapsed

    try:
        elapsed = asyncio.run(main())
    finally:
        memcached_server.resume()
    assert 0.8 < elapsed < 3.0
    assert ticks >= 20  # the loop ran on while the call waited
