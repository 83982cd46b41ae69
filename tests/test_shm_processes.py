"""SharedMemoryCache across real OS processes: atomic incr and add, visibility to
processes started afterwards with spawn and with fork."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from tests import shmutil


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
