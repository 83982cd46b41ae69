"""Servers: every LOCATION form Django users write, keys spread by consistent hashing,
and what happens when a server dies, hangs and comes back."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_nativecache.exceptions import CacheUnavailable
from tests import mcutil
from tests.mcserver import MemcachedServer


def test_location_forms(memcached_factory):
    tcp = memcached_factory()
    unix = memcached_factory(unix=True)
    ipv6 = memcached_factory(host="::1")
    forms = {
        "host:port": tcp.location,
        "list": [tcp.location],
        "unix:path": f"unix:{unix.socket_path}",
        "path": unix.socket_path,
        "[ipv6]:port": ipv6.location,
        "semicolons": f"{tcp.location};{unix.location}",
        "commas": f"{tcp.location},{ipv6.location}",
        "spaces and empty entries": f" {tcp.location} ;; ",
        "(host, port) pairs, as pymemcache takes them": [(tcp.host, tcp.port),
                                                          ("::1", ipv6.port)],
    }
    servers_of = {
        "semicolons": 2,
        "commas": 2,
        "(host, port) pairs, as pymemcache takes them": 2,
    }
    for name, location in forms.items():
        cache = mcutil.build(location)
        key = "form-" + name.replace(" ", "-")
        cache.set(key, name)
        assert cache.get(key) == name, name
        # Every server of the string is in the pool, each answering.
        stats = cache.stats()
        assert len(stats) == servers_of.get(name, 1), (name, list(stats))
        assert all("error" not in values for values in stats.values()), (name, stats)


@pytest.mark.parametrize("entry", [("127.0.0.1",), ("127.0.0.1", "11211"), ("127.0.0.1", True),
                                   (11211, "127.0.0.1"), 11211, None])
def test_location_entries_of_no_known_form_are_refused(entry):
    refused = r"LOCATION entries must be str or \(host, port\)"
    with pytest.raises(ImproperlyConfigured, match=refused):
        mcutil.build([entry])


def test_djangos_settings_with_only_the_module_path_changed(memcached_factory):
    servers = [memcached_factory() for _ in range(3)]
    from django_nativecache.backends.memcached import PyLibMCCache, PyMemcacheCache

    for cls in (PyLibMCCache, PyMemcacheCache):
        cache = cls([s.location for s in servers], {})
        cache.set("k", cls.__name__)
        assert cache.get("k") == cls.__name__
    assert PyLibMCCache is PyMemcacheCache


@pytest.fixture
def three(memcached_factory):
    servers = [memcached_factory() for _ in range(3)]
    yield servers


def test_keys_spread_over_all_servers(three):
    cache = mcutil.build([s.location for s in three])
    keys = [f"spread-{i}" for i in range(600)]
    cache.set_many({k: k for k in keys})
    where = Counter(cache.server_for(k) for k in keys)
    assert set(where) == {s.address for s in three}
    assert min(where.values()) > 100  # each holds a fair share
    for server in three:
        items = int(server.stats()["curr_items"])
        assert items == where[server.address]
    # The server the client names is the one that holds the key.
    for k in keys[:50]:
        holder = next(s for s in three if s.address == cache.server_for(k))
        assert holder.raw_get(f":1:{k}") is not None


def test_losing_a_server_moves_only_its_keys(three):
    full = mcutil.build([s.location for s in three])
    without_last = mcutil.build([s.location for s in three[:2]])
    keys = [f"move-{i}" for i in range(2000)]
    moved = [k for k in keys if full.server_for(k) != without_last.server_for(k)]
    assert all(full.server_for(k) == three[2].address for k in moved)
    share = sum(full.server_for(k) == three[2].address for k in keys)
    assert len(moved) == share


def test_dead_server_is_skipped_then_used_again(three):
    cache = mcutil.build([s.location for s in three], retry_timeout=1, IGNORE_EXCEPTIONS=True)
    keys = [f"fo-{i}" for i in range(300)]
    cache.set_many({k: k for k in keys})
    victim = three[1]
    on_victim = [k for k in keys if cache.server_for(k) == victim.address]
    elsewhere = [k for k in keys if k not in on_victim]
    victim.kill()

    started = time.monotonic()
    found = cache.get_many(keys)
    assert time.monotonic() - started < 1.5
    assert set(found) == set(elsewhere)  # the others keep their keys
    assert cache.get(on_victim[0], "miss") == "miss"

    # While it is marked dead, calls for its keys fail at once.
    durations = []
    for k in on_victim[:20]:
        t = time.monotonic()
        cache.set(k, "new")
        durations.append(time.monotonic() - t)
    assert max(durations) < 0.5

    victim.start()  # same port
    time.sleep(1.5)  # past retry_timeout
    deadline = time.monotonic() + 5
    while cache.get(on_victim[0]) != "again" and time.monotonic() < deadline:
        cache.set(on_victim[0], "again")
        time.sleep(0.1)
    assert cache.get(on_victim[0]) == "again"
    assert victim.raw_get(f":1:{on_victim[0]}") is not None


@pytest.mark.parametrize("ignore", [True, False])
def test_delete_many_deletes_on_the_live_servers_when_one_is_dead(three, ignore):
    cache = mcutil.build([s.location for s in three], retry_timeout=1, IGNORE_EXCEPTIONS=ignore)
    keys = [f"dm-{i}" for i in range(300)]
    cache.set_many({k: k for k in keys})
    victim = three[0]
    # The first key is the dead server's, so that stopping there would delete nothing.
    keys.sort(key=lambda k: cache.server_for(k) != victim.address)
    victim.kill()
    if ignore:
        cache.delete_many(keys)
    else:
        with pytest.raises(CacheUnavailable, match=victim.address.split(":")[-1]):
            cache.delete_many(keys)
    for server in three[1:]:
        assert int(server.stats()["curr_items"]) == 0


def test_server_killed_under_load(three):
    """Threads hammer three servers while one is killed: no call waits past the I/O
    timeout, errors read as misses, the other servers' keys stay, and the server is
    used again after it restarts."""
    locations = [s.location for s in three]
    timeout = 0.5
    stop = threading.Event()
    errors: list[BaseException] = []
    slowest = [0.0]
    wrong: list[tuple[str, object]] = []

    def worker(n: int) -> None:
        cache = mcutil.build(locations, timeout=timeout, retry_timeout=1, IGNORE_EXCEPTIONS=True,
                             LOG_IGNORED_EXCEPTIONS=False)
        i = 0
        try:
            while not stop.is_set():
                key = f"load-{n}-{i % 200}"
                t = time.monotonic()
                cache.set(key, key)
                value = cache.get(key)
                slowest[0] = max(slowest[0], time.monotonic() - t)
                if value not in (None, key):
                    wrong.append((key, value))
                i += 1
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    three[2].kill()
    time.sleep(1.5)
    three[2].start()
    time.sleep(2.0)
    stop.set()
    for t in threads:
        t.join(10)
    assert not errors
    assert not wrong
    assert slowest[0] < 2 * timeout + 0.5  # a set and a get, each bounded by the timeout
    assert int(three[2].stats()["cmd_set"]) > 0  # used again after the restart


def test_hung_server_times_out_then_is_skipped(three):
    # A stopped server accepts connections (the kernel does) but never answers: the
    # first call waits the I/O timeout, then its keys fail at once until retry_timeout.
    locations = [s.location for s in three]
    cache = mcutil.build(locations, timeout=0.5, retry_timeout=1)
    lenient = mcutil.build(locations, timeout=0.5, retry_timeout=1, IGNORE_EXCEPTIONS=True,
                           LOG_IGNORED_EXCEPTIONS=False)
    keys = [f"hang-{i}" for i in range(100)]
    cache.set_many({k: k for k in keys})
    hung = three[0]
    on_hung = [k for k in keys if cache.server_for(k) == hung.address]
    elsewhere = [k for k in keys if k not in on_hung]
    hung.pause()
    try:
        started = time.monotonic()
        with pytest.raises(CacheUnavailable):
            cache.get(on_hung[0])
        assert time.monotonic() - started < 1.5
        started = time.monotonic()
        for k in on_hung[:20]:
            with pytest.raises(CacheUnavailable, match="did not answer in time"):
                cache.get(k)
        with pytest.raises(CacheUnavailable, match="did not answer in time"):
            cache.set(on_hung[0], "new")
        with pytest.raises(CacheUnavailable, match="did not answer in time"):
            cache.get_many(keys)
        assert time.monotonic() - started < 0.3  # none of these waited
        assert cache.get(elsewhere[0]) == elsewhere[0]
        # With IGNORE_EXCEPTIONS, get_many alone: one wait, then the others' keys at once.
        started = time.monotonic()
        assert lenient.get_many(keys) == {k: k for k in elsewhere}
        assert time.monotonic() - started < 1.5
        started = time.monotonic()
        assert lenient.get_many(keys) == {k: k for k in elsewhere}
        assert lenient.get(on_hung[0], "miss") == "miss"
        assert time.monotonic() - started < 0.3
    finally:
        hung.resume()
    # disconnect_all() forgets that the server timed out: it is asked again at once.
    lenient.disconnect_all()
    assert lenient.get(on_hung[0]) == on_hung[0]
    time.sleep(1.2)  # past retry_timeout: the server is asked again
    # The reply the server sends once it runs again is never taken for a later call's.
    assert cache.get_many(keys) == {k: k for k in keys}
    assert [cache.get(k) for k in keys] == keys


def test_a_hung_server_costs_one_wait_per_process_not_one_per_request(three):
    # Under ASGI Django makes a cache instance per request: the instances with the same
    # settings share their client, so what one learnt of a hung server, the next knows.
    locations = [s.location for s in three]
    first = mcutil.build(locations, timeout=0.5, retry_timeout=5)
    key = next(k for k in (f"hung-{i}" for i in range(1000))
               if first.server_for(k) == three[1].address)
    first.set(key, 1)
    three[1].pause()
    try:
        with pytest.raises(CacheUnavailable):
            first.get(key)  # waits the timeout
        started = time.monotonic()
        for _ in range(5):
            with pytest.raises(CacheUnavailable, match="did not answer in time"):
                mcutil.build(locations, timeout=0.5, retry_timeout=5).get(key)
        assert time.monotonic() - started < 0.3
    finally:
        three[1].resume()


def test_unreachable_server_fails_within_the_connect_timeout():
    # A TCP port nobody listens on: refused at once, then skipped until retry_timeout.
    server = MemcachedServer()  # never started: its port is free
    cache = mcutil.build(server.location, connect_timeout=0.5)
    started = time.monotonic()
    for _ in range(50):
        with pytest.raises(CacheUnavailable):
            cache.get("k")
    assert time.monotonic() - started < 1.0
