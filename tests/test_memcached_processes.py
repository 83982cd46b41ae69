"""Threads and processes: every reply belongs to its request.

Django gives each thread its own cache instance, and so its own connections; a single
instance shared by threads is still safe (calls on it take turns). After fork() (as
under gunicorn --preload) a child never uses its parent's sockets: it connects afresh,
and the parent keeps its own connection.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

import pytest
from django.core.cache import CacheHandler

from tests import mcutil
from tests.procutil import wait_exit

BACKEND = "django_nativecache.backends.memcached.MemcachedCache"


@pytest.fixture(scope="module")
def server(memcached_module):
    return memcached_module


def hammer(cache, tag: str, rounds: int) -> list[str]:
    """set/get/get_many/incr on keys of its own; returns every mismatch it saw."""
    wrong = []
    cache.set(f"{tag}-n", 0)
    for i in range(rounds):
        key = f"{tag}-{i % 50}"
        value = {"tag": tag, "i": i, "pad": "x" * (i % 300)}
        cache.set(key, value)
        got = cache.get(key)
        if got != value:
            wrong.append(f"get {key}: {got!r}")
        many = cache.get_many([key, f"{tag}-n"])
        if many.get(key) != value:
            wrong.append(f"get_many {key}: {many!r}")
        if cache.incr(f"{tag}-n") != i + 1:
            wrong.append(f"incr {tag}-n at {i}")
    return wrong


def test_threads_with_their_own_caches(server):
    handler = CacheHandler({"default": {"BACKEND": BACKEND, "LOCATION": server.location}})
    instances: dict[int, object] = {}
    wrong: list[str] = []

    def run(n: int) -> None:
        cache = handler["default"]
        assert handler["default"] is cache  # one instance per thread
        instances[n] = cache
        wrong.extend(hammer(cache, f"thread{n}", 1500))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong
    assert len({id(c) for c in instances.values()}) == 8


def test_threads_sharing_one_instance(server):
    cache = mcutil.build(server.location)
    wrong: list[str] = []
    threads = [
        threading.Thread(target=lambda n=n: wrong.extend(hammer(cache, f"shared{n}", 800)))
        for n in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong


def _child(location_cache, tag: str, conn) -> None:
    try:
        conn.send(hammer(location_cache, tag, 500))
    except BaseException as exc:  # noqa: BLE001
        conn.send([f"raised {exc!r}"])


def test_fork_children_connect_afresh_and_the_parent_keeps_its_connection(server):
    cache = mcutil.build(server.location)
    cache.set("parent", "p")
    assert cache.get("parent") == "p"  # the parent's connection is open now
    before = int(server.stats()["total_connections"])

    ctx = multiprocessing.get_context("fork")
    pipes = []
    procs = []
    for n in range(4):
        parent_end, child_end = ctx.Pipe()
        p = ctx.Process(target=_child, args=(cache, f"child{n}", child_end))
        p.start()
        pipes.append(parent_end)
        procs.append(p)
    # The parent works on, on its own connection, while the children run.
    wrong = hammer(cache, "parent", 500)
    results = [pipe.recv() for pipe in pipes]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert not wrong
    assert results == [[]] * 4
    # Four children connected once each; the parent did not reconnect, and the
    # children's exit (which frees their inherited handle) did not close its socket.
    after = int(server.stats()["total_connections"])
    assert after - before == 4 + 1  # + the probe itself
    assert cache.get("parent") == "p"
    assert int(server.stats()["total_connections"]) == after + 1


def test_child_that_drops_its_inherited_cache_sends_nothing(server):
    cache = mcutil.build(server.location)
    cache.set("k", "v")
    before = int(server.stats()["total_connections"])
    pid = os.fork()
    if pid == 0:  # the child: drop the inherited instance without using it
        try:
            del cache
            import gc

            gc.collect()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    # A "quit" sent on the inherited socket would have closed the parent's connection.
    assert cache.get("k") == "v"
    assert int(server.stats()["total_connections"]) == before + 1


def test_fork_while_another_thread_is_inside_a_call(memcached_server):
    # A thread waits inside get() on a stopped server, with a connection set checked out
    # of the pool, when the main thread forks: the child must neither use nor wait for
    # that set, whose thread does not exist in it.
    cache = mcutil.build(memcached_server.location, timeout=5.0)
    cache.set("k", "v")
    memcached_server.pause()
    waiting = threading.Thread(target=cache.get, args=("k",))
    waiting.start()
    time.sleep(0.3)  # the thread is inside the call, waiting for the reply
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if cache.get("k") == "v" else 2
        finally:
            os._exit(code)
    memcached_server.resume()
    status = wait_exit(pid, 15)
    waiting.join(10)
    assert status is not None, "the child hung on the lock its parent's thread held"
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert cache.get("k") == "v"


def test_fork_while_another_thread_makes_cache_instances(memcached_server):
    # Making an instance takes the process's table of clients under a lock, and may
    # close the connections of a client it drops from the table (more than 16 settings
    # here): a child forked meanwhile must still make instances.
    stop = threading.Event()

    def make_instances() -> None:
        n = 0
        while not stop.is_set():
            mcutil.build(memcached_server.location, COMPRESS_MIN_LENGTH=10 + n % 40).get("k")
            n += 1

    maker = threading.Thread(target=make_instances)
    maker.start()
    statuses = []
    try:
        for _ in range(30):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    cache = mcutil.build(memcached_server.location, COMPRESS_MIN_LENGTH=5)
                    code = 0 if cache.get("k", "miss") == "miss" else 2
                finally:
                    os._exit(code)
            statuses.append(wait_exit(pid, 5))
    finally:
        stop.set()
        maker.join(10)
    assert None not in statuses, f"{statuses.count(None)} of 30 children hung"
    assert all(os.WIFEXITED(s) and os.WEXITSTATUS(s) == 0 for s in statuses)


def test_get_many_while_another_thread_changes_the_key_list(memcached_server):
    cache = mcutil.build(memcached_server.location, timeout=5.0)
    cache.set_many({f"k{i}": i for i in range(50)})
    keys = [f"k{i}" for i in range(50)]
    memcached_server.pause()
    got: list[dict] = []
    caller = threading.Thread(target=lambda: got.append(cache.get_many(keys)))
    caller.start()
    time.sleep(0.3)  # the call waits on the server, without the GIL
    keys.clear()
    keys.extend(f"other{i}" * 3 for i in range(200))
    memcached_server.resume()
    caller.join(10)
    assert got == [{f"k{i}": i for i in range(50)}]
