"""SharedMemoryCache across real OS processes: atomic incr and add, visibility to
processes started afterwards with spawn and with fork, and forks while another thread
attaches or makes a segment."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from django_nativecache.backends import shm
from tests import shmutil
from tests.procutil import wait_exit


@pytest.fixture
def location():
    loc = shmutil.unique_location("proc")
    cache = shmutil.build(loc)
    yield loc
    cache.delete_segment()


def _incr_worker(location: str, start, n: int) -> None:
    cache = shmutil.build(location)
    start.wait()
    for _ in range(n):
        cache.incr("counter")


def _add_worker(location: str, start, results, i: int) -> None:
    cache = shmutil.build(location)
    start.wait()
    results.put((i, cache.add("winner", i)))


def _read_worker(location: str, results) -> None:
    cache = shmutil.build(location)
    results.put((cache.get("greeting"), cache.get("payload")))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_four_processes_incr_one_key_exactly(location, method):
    ctx = mp.get_context(method)
    cache = shmutil.build(location)
    cache.set("counter", 0)
    start = ctx.Barrier(4)
    procs = [ctx.Process(target=_incr_worker, args=(location, start, 10_000)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert cache.get("counter") == 40_000


def test_concurrent_add_has_exactly_one_winner(location):
    ctx = mp.get_context("fork")
    for round_ in range(5):
        cache = shmutil.build(location)
        cache.delete("winner")
        start = ctx.Barrier(6)
        results = ctx.Queue()
        procs = [
            ctx.Process(target=_add_worker, args=(location, start, results, i)) for i in range(6)
        ]
        for p in procs:
            p.start()
        outcomes = dict(results.get(timeout=60) for _ in procs)
        for p in procs:
            p.join(60)
        winners = [i for i, won in outcomes.items() if won]
        assert len(winners) == 1, (round_, outcomes)
        assert cache.get("winner") == winners[0]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_value_set_here_is_read_by_a_later_process(location, method):
    cache = shmutil.build(location)
    payload = {"numbers": list(range(50)), "text": "żółw", "flag": True}
    cache.set("greeting", "hello from the parent")
    cache.set("payload", payload)
    ctx = mp.get_context(method)
    results = ctx.Queue()
    p = ctx.Process(target=_read_worker, args=(location, results))
    p.start()
    greeting, seen = results.get(timeout=60)
    p.join(60)
    assert greeting == "hello from the parent"
    assert seen == payload and seen["flag"] is True


def _writer_worker(location: str, key: str) -> None:
    shmutil.build(location).set(key, f"written by {key}")


def test_values_written_by_children_are_seen_by_the_parent(location):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer_worker, args=(location, f"k{i}")) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = shmutil.build(location)
    assert cache.get_many(["k0", "k1", "k2"]) == {f"k{i}": f"written by k{i}" for i in range(3)}


def test_fork_while_another_thread_attaches():
    # Attaching holds the process's table of segments while the segment is opened (the
    # GIL released): a child forked meanwhile must still attach.
    locations = [shmutil.unique_location("attach") for _ in range(3)]
    caches = [shmutil.build(loc, SIZE="1MB") for loc in locations]
    stop = threading.Event()

    def attach_again() -> None:
        while not stop.is_set():
            for cache, loc in zip(caches, locations):
                shm.detach(cache.segment)
                shmutil.build(loc, SIZE="1MB")

    attacher = threading.Thread(target=attach_again)
    attacher.start()
    statuses = []
    try:
        for _ in range(20):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    child = shmutil.build(locations[0], SIZE="1MB")
                    child.set("child", 1)
                    code = 0 if child.get("child") == 1 else 2
                finally:
                    os._exit(code)
            statuses.append(wait_exit(pid, 5))
    finally:
        stop.set()
        attacher.join(10)
        for cache in caches:
            cache.delete_segment()
    assert None not in statuses, f"{statuses.count(None)} of 20 children hung"
    assert all(os.WIFEXITED(s) and os.WEXITSTATUS(s) == 0 for s in statuses)


_ATTACH = """
import sys, time
import django
from django.conf import settings
settings.configure()
from tests import shmutil
started = time.monotonic()
shmutil.build(sys.argv[1], SIZE="1GB")
print(time.monotonic() - started)
"""


def test_a_child_forked_while_a_segment_is_made_does_not_keep_it_locked():
    # Making a segment holds its lock file's flock; a child forked by another thread
    # meanwhile shares that open file description. It closes its copy at once, so other
    # processes can attach as soon as the maker is done, not once the child exits.
    location = shmutil.unique_location("made")
    made: list[object] = []
    maker = threading.Thread(target=lambda: made.append(shmutil.build(location, SIZE="1GB")))
    maker.start()
    time.sleep(0.05)  # inside the making (about half a second for 1 GB)
    pid = os.fork()
    if pid == 0:
        time.sleep(8)
        os._exit(0)
    try:
        maker.join(30)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        proc = subprocess.run([sys.executable, "-c", _ATTACH, location], cwd=root,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert float(proc.stdout) < 3.0, f"attaching waited {float(proc.stdout):.1f} s"
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        made[0].delete_segment()
