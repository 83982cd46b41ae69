"""Crash safety and damage: a process killed while holding a shard lock, a segment
whose header or offsets were overwritten. The cache may forget; it never hangs,
crashes or returns a value that was not stored."""

from __future__ import annotations

import mmap
import multiprocessing as mp
import os
import ctypes
import fcntl
import select
import signal
import struct
import threading
import time

import pytest

from django_nativecache import _native
from django_nativecache.backends import shm
from django_nativecache.exceptions import CacheUnavailable, CorruptData
from tests import shmutil

SHARD_HEADER_BYTES = 256


@pytest.fixture
def location():
    loc = shmutil.unique_location("fault")
    cache = shmutil.build(loc, SHARDS=4)
    yield loc
    cache.delete_segment()


def _segment_path(cache) -> str:
    return f"/dev/shm/{cache.segment}"


def _hold_lock(location: str, key: str, fd: int) -> None:
    cache = shmutil.build(location, SHARDS=4)
    cache._store._debug_hold_lock(cache._store.make_key(key, "", 1), fd)


def _blocked_reader(location: str, key: str, started, results) -> None:
    cache = shmutil.build(location, SHARDS=4)
    started.set()
    value = cache.get(key, "miss")
    results.put((time.monotonic(), value))


def test_process_killed_holding_a_shard_lock(location):
    cache = shmutil.build(location, SHARDS=4)
    values = {f"key{i}": f"value {i}" * (i % 7 + 1) for i in range(200)}
    cache.set_many(values)
    held_shard = cache._store._layout(cache._store.make_key("key0", "", 1))["shard"]
    shard_of = {k: cache._store._layout(cache._store.make_key(k, "", 1))["shard"] for k in values}

    ctx = mp.get_context("fork")
    read_fd, write_fd = os.pipe()
    holder = ctx.Process(target=_hold_lock, args=(location, "key0", write_fd))
    holder.start()
    ready, _, _ = select.select([read_fd], [], [], 30)
    assert ready, "the holder never took the lock"
    assert os.read(read_fd, 1) == b"L"

    # Another process queues up on the held lock and must not return while it is held.
    started, results = ctx.Event(), ctx.Queue()
    reader = ctx.Process(target=_blocked_reader, args=(location, "key0", started, results))
    reader.start()
    assert started.wait(30)
    time.sleep(0.5)
    assert results.empty(), "a reader got through a lock held by another process"

    killed_at = time.monotonic()
    os.kill(holder.pid, signal.SIGKILL)
    holder.join(30)
    done_at, seen = results.get(timeout=30)
    reader.join(30)
    assert done_at - killed_at < 1.0
    assert seen in ("miss", values["key0"])

    start = time.monotonic()
    for key, value in values.items():
        got = cache.get(key, "miss")
        if shard_of[key] == held_shard:
            assert got in ("miss", value)  # that shard was reset: forgotten, not wrong
        else:
            assert got == value  # other shards are untouched
    assert time.monotonic() - start < 1.0
    assert cache.stats()["recoveries"] >= 1
    cache.set("key0", "after")
    assert cache.get("key0") == "after"
    os.close(read_fd)
    os.close(write_fd)


def _mutex_at(path: str, offset: int) -> tuple[mmap.mmap, ctypes.c_void_p]:
    """The shard mutex at ``offset`` of the segment file, for pthread calls through ctypes
    (the mapping must outlive its use)."""
    with open(path, "r+b") as f:
        region = mmap.mmap(f.fileno(), 0)
    return region, ctypes.c_void_p(ctypes.addressof(ctypes.c_char.from_buffer(region)) + offset)


def _lock_then_release(path: str, offset: int, fd: int, release_fd: int) -> None:
    """Takes the shard mutex at ``offset`` of the segment file as a plain pthread mutex,
    writes one byte to ``fd``, and releases it when a byte arrives on ``release_fd``."""
    _region, mutex = _mutex_at(path, offset)
    libc = ctypes.CDLL(None)
    assert libc.pthread_mutex_lock(mutex) == 0
    os.write(fd, b"L")
    os.read(release_fd, 1)
    assert libc.pthread_mutex_unlock(mutex) == 0
    os._exit(0)


@pytest.mark.parametrize("read", ["get", "get_stamped"])
def test_reader_waiting_while_the_segment_is_recreated_reads_the_old_one(read):
    """A thread waits on a shard lock (the GIL released) while another thread of the
    process re-attaches to a recreated segment: the waiter finishes on the segment it
    started on, and the stamp it reports names that segment, not the new one, whose first
    record may well carry the same cas."""
    location = shmutil.unique_location("reattach")
    cache = shmutil.build(location, SHARDS=1)
    try:
        cache.set("page", "old")
        old = cache.get_stamped("page")
        layout = cache._store._layout()
        ctx = mp.get_context("fork")
        locked_r, locked_w = os.pipe()
        release_r, release_w = os.pipe()
        holder = ctx.Process(target=_lock_then_release,
                             args=(_segment_path(cache), layout["shards_offset"], locked_w, release_r))
        holder.start()
        ready, _, _ = select.select([locked_r], [], [], 30)
        assert ready and os.read(locked_r, 1) == b"L", "the holder never took the lock"

        seen: list = []
        reader = threading.Thread(target=lambda: seen.append(getattr(cache, read)("page")))
        reader.start()
        time.sleep(0.3)
        assert not seen, "the reader got through a held lock"

        _native.unlink_shm(cache.segment)
        cache.set("page", "new")  # this thread re-attaches: a new segment, cas counted anew
        new = cache.get_stamped("page")
        assert new[1] == "new" and new[2] != old[2]

        os.write(release_w, b"U")
        reader.join(30)
        holder.join(30)
        assert holder.exitcode == 0
        if read == "get":
            assert seen == ["old"]
        else:
            assert seen == [old]  # the old segment's record, under the old segment's stamp
            changed, value, epoch, cas = cache.get_stamped("page", *seen[0][2:])
            assert (changed, value, epoch, cas) == (True, "new", new[2], new[3])
        assert cache.get("page") == "new"
        for fd in (locked_r, locked_w, release_r, release_w):
            os.close(fd)
    finally:
        cache.delete_segment()


def _lock_in_bursts(path: str, offset: int, fd: int, stop_fd: int) -> None:
    """Holds the shard mutex 3 ms at a time with 0.3 ms free between, until told to stop."""
    _region, mutex = _mutex_at(path, offset)
    libc = ctypes.CDLL(None)
    os.write(fd, b"S")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not select.select([stop_fd], [], [], 0)[0]:
        assert libc.pthread_mutex_lock(mutex) == 0
        until = time.monotonic() + 0.003
        while time.monotonic() < until:
            pass
        libc.pthread_mutex_unlock(mutex)
        until = time.monotonic() + 0.0003
        while time.monotonic() < until:
            pass
    os._exit(0)


def test_a_waiter_gets_through_a_lock_another_process_takes_in_bursts():
    """After waiting for a shard lock the reader keeps it: it takes the GIL back (which a
    busy Python thread here can delay by a switch interval) only after letting it go, so
    the holder's next burst cannot send it back to wait, again and again."""
    location = shmutil.unique_location("bursts")
    cache = shmutil.build(location, SHARDS=1)
    try:
        cache.set("page", "x")
        ctx = mp.get_context("fork")
        started_r, started_w = os.pipe()
        stop_r, stop_w = os.pipe()
        holder = ctx.Process(target=_lock_in_bursts, args=(
            _segment_path(cache), cache._store._layout()["shards_offset"], started_w, stop_r))
        holder.start()
        assert select.select([started_r], [], [], 30)[0], "the holder never started"
        busy = True

        def spin() -> None:
            while busy:
                pass

        spinner = threading.Thread(target=spin, daemon=True)
        spinner.start()
        try:
            waits = []
            for _ in range(30):
                began = time.monotonic()
                assert cache.get("page") == "x"
                waits.append(time.monotonic() - began)
        finally:
            busy = False
            os.write(stop_w, b"x")
            holder.join(30)
            spinner.join(30)
        assert max(waits) < 1.0, f"a get waited {max(waits):.2f} s for a lock free every 3 ms"
        for fd in (started_r, started_w, stop_r, stop_w):
            os.close(fd)
    finally:
        cache.delete_segment()


_AT_SHUTDOWN = """
import builtins, ctypes, os, threading, time
from tests import shmutil
from tests.test_shm_faults import _mutex_at
cache = shmutil.build(shmutil.unique_location("shutdown"), SHARDS=1)
cache.set("page", "x")
path = "/dev/shm/" + cache.segment
offset = cache._store._layout()["shards_offset"]
locked_r, locked_w = os.pipe()
go_r, go_w = os.pipe()
release_r, release_w = os.pipe()
WHO = %r
if os.fork() == 0:
    region, mutex = _mutex_at(path, offset)
    libc = ctypes.CDLL(None)
    os.read(go_r, 1)
    libc.pthread_mutex_lock(mutex)
    os.write(locked_w, b"L")
    if WHO == "main thread":  # no thread can be started to release it during shutdown
        time.sleep(0.5)
    else:
        os.read(release_r, 1)
    libc.pthread_mutex_unlock(mutex)
    os._exit(0)

class AtShutdown:
    def __del__(self):  # runs while the interpreter shuts down
        if WHO == "main thread":  # the finalizing thread itself waits, then must go on
            os.write(go_w, b"g")
            os.read(locked_r, 1)
            print("got", cache.get("page"), flush=True)
        else:  # a daemon thread has been waiting since before shutdown began
            os.write(release_w, b"U")
            time.sleep(0.3)
            print("released", flush=True)
        os.unlink(path)
        os.unlink(path + ".lock")

if WHO == "daemon thread":
    os.write(go_w, b"g")
    os.read(locked_r, 1)
    threading.Thread(target=lambda: cache.get("page"), daemon=True).start()
    time.sleep(0.3)  # the daemon thread now waits for the lock, without the GIL
builtins._at_shutdown = AtShutdown()
"""


@pytest.mark.parametrize("who", ["daemon thread", "main thread"])
def test_a_wait_for_a_lock_during_shutdown_lets_the_process_exit(who):
    """CPython ends a daemon thread that wants the GIL after shutdown began with
    pthread_exit, which from inside the extension would abort the process: that thread
    is parked. The thread doing the shutdown still runs finalizers that may use the
    cache: it goes on."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", _AT_SHUTDOWN % who], cwd=root,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "terminate" not in proc.stderr
    assert ("got x" if who == "main thread" else "released") in proc.stdout


def test_builds_that_cannot_read_each_others_segments_never_share_one():
    """Segment names end with the build's tag, so in a rolling deploy across a layout
    change neither build retires and recreates the other's segment at every call. Another
    build's segment is left alone (unlinking its name would split that build's processes
    between it and a new one made under the same name)."""
    location = shmutil.unique_location("builds")
    name = shm.segment_name(location, shmutil.NAMESPACE)
    tag = _native.SEGMENT_TAG
    assert name.endswith("-" + tag)
    base = name[: -len(tag) - 1]
    others = [base, f"{base}-l1deadbeef"]  # an untagged older release, another build
    for other in others:
        with open(f"/dev/shm/{other}", "wb") as f:
            f.write(b"another build's segment")
    cache = shmutil.build(location, SHARDS=1)
    try:
        assert cache.segment == name
        cache.set("k", "v")
        assert cache.get("k") == "v"
        for other in others:
            with open(f"/dev/shm/{other}", "rb") as f:
                assert f.read() == b"another build's segment", other
    finally:
        cache.delete_segment()
        for other in others:
            os.unlink(f"/dev/shm/{other}")


def test_wrong_magic_is_recreated_not_read(location):
    cache = shmutil.build(location, SHARDS=4)
    cache.set("k", "v")
    path = _segment_path(cache)
    inode = os.stat(path).st_ino
    with open(path, "r+b") as f:
        f.write(b"NOTMAGIC")
    assert cache.get("k") is None  # the damaged segment is left, a fresh one made
    assert os.stat(path).st_ino != inode
    cache.set("k", "v2")
    assert cache.get("k") == "v2"


def _attach_and_read(location: str, results) -> None:
    results.put(shmutil.build(location, SHARDS=4).get("k", "miss"))


def test_wrong_layout_version_is_recreated_by_the_next_process(location):
    cache = shmutil.build(location, SHARDS=4)
    cache.set("k", "v")
    with open(_segment_path(cache), "r+b") as f:
        f.seek(8)
        f.write(struct.pack("<I", 999))
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    p = ctx.Process(target=_attach_and_read, args=(location, results))
    p.start()
    assert results.get(timeout=60) == "miss"
    p.join(60)
    # This process was attached to the old segment: it is told to move to the new one.
    assert cache.get("k") is None
    cache.set("k", "again")
    assert cache.get("k") == "again"


def test_mismatch_fails_clearly_when_asked_to(location):
    cache = shmutil.build(location, SHARDS=4)
    with open(_segment_path(cache), "r+b") as f:
        f.write(b"NOTMAGIC")
    shm.detach(cache.segment)
    with pytest.raises(CorruptData, match="wrong magic"):
        shmutil.build(location, SHARDS=4, ON_MISMATCH="fail")


def _damage(cache, key: str, where: str) -> int:
    layout = cache._store._layout(cache._store.make_key(key, "", 1))
    base = layout["shards_offset"] + layout["shard"] * layout["shard_stride"]
    with open(_segment_path(cache), "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
        if where == "buckets":
            start = base + SHARD_HEADER_BYTES
            m[start : start + layout["bucket_count"] * 4] = b"\xfe\xff\xff\x7f" * layout["bucket_count"]
        else:
            start = base + layout["ring_offset"]
            size = min(layout["ring_capacity"], 64 * 1024)
            m[start : start + size] = os.urandom(size)
    return layout["shard"]


@pytest.mark.parametrize("where", ["buckets", "ring"])
def test_corrupt_offsets_reset_the_shard_never_crash(location, where):
    cache = shmutil.build(location, SHARDS=4)
    values = {f"k{i}": os.urandom(i % 300 + 1) for i in range(300)}
    cache.set_many(values)
    before = cache.stats()["recoveries"]
    _damage(cache, "k1", where)
    for _ in range(2):
        for key, value in values.items():
            assert cache.get(key, "miss") in ("miss", value)
    cache.set_many(values)
    assert cache.get_many(list(values)) == values
    assert cache.stats()["recoveries"] > before


# Offsets in the segment header (native/core/shm/layout.hpp).
SEGMENT_SHARD_STRIDE, SEGMENT_ITEM_COUNT = 48, 192


def _write_until(location: str, tag: str, seconds: float) -> None:
    cache = shmutil.build(location, SIZE="32MB", MAX_ENTRIES=20_000, CULL_FREQUENCY=3)
    end, i = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        cache.set(f"{tag}-{i}", b"v")
        i += 1


def test_writers_that_reach_max_entries_together_cull_once():
    location = shmutil.unique_location("cull")
    cache = shmutil.build(location, SIZE="32MB", MAX_ENTRIES=20_000, CULL_FREQUENCY=3)
    try:
        ctx = mp.get_context("fork")
        writers = [ctx.Process(target=_write_until, args=(location, f"w{n}", 4.0))
                   for n in range(4)]
        for w in writers:
            w.start()
        time.sleep(1.5)  # past the first culls
        seen = []
        with open(_segment_path(cache), "rb") as f, \
                mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ) as header:
            end = time.monotonic() + 2.0
            while time.monotonic() < end:
                # The segment's count, read at once (stats() sums the shards one by one).
                seen.append(struct.unpack_from("<q", header, SEGMENT_ITEM_COUNT)[0])
                time.sleep(0.001)
        for w in writers:
            w.join(30)
        # One cull leaves 13,334 of 20,000; each writer culled a third of its own view, so
        # writers reaching the limit together took the cache far lower.
        assert min(seen) >= 13_300, min(seen)
    finally:
        cache.delete_segment()


# Offsets in a shard header (native/core/shm/layout.hpp).
SHARD_ITEMS = 56


@pytest.mark.parametrize("damaged_items", [0, 0x7FFF_FFFF])
def test_a_reset_of_a_shard_whose_count_was_damaged_leaves_max_entries_exact(damaged_items):
    """A shard's count overwritten, then the shard reset: the segment's count must not
    keep the damage. Too high, it culled entries Django keeps (below MAX_ENTRIES); too
    low, it let the cache grow past MAX_ENTRIES for good."""
    location = shmutil.unique_location("drift")
    cache = shmutil.build(location, SHARDS=4, MAX_ENTRIES=50, CULL_FREQUENCY=3)
    try:
        cache.set_many({f"k{i}": b"v" for i in range(40)})
        layout = cache._store._layout(cache._store.make_key("k1", "", 1))
        base = layout["shards_offset"] + layout["shard"] * layout["shard_stride"]
        with open(_segment_path(cache), "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
            struct.pack_into("<I", m, base + SHARD_ITEMS, damaged_items)
        _damage(cache, "k1", "buckets")
        assert cache.get("k1") is None  # the damaged shard is reset
        assert cache.stats()["recoveries"] >= 1
        # Up to MAX_ENTRIES live entries, nothing is culled.
        left = cache.stats()["items"]
        cache.set_many({f"n{i}": b"v" for i in range(50 - left)})
        assert cache.stats()["items"] == 50
        # Past it, Django's cull: never more than MAX_ENTRIES.
        for i in range(500):
            cache.set(f"m{i}", b"v")
            assert cache.stats()["items"] <= 50
        with open(_segment_path(cache), "rb") as f, \
                mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ) as header:
            assert struct.unpack_from("<q", header, SEGMENT_ITEM_COUNT)[0] == cache.stats()["items"]
    finally:
        cache.delete_segment()


SEGMENT_COUNT_STALE = 208


def _write_one(location: str) -> None:
    shmutil.build(location, SHARDS=2, MAX_ENTRIES=1000).set("trigger", b"v")


def test_a_writer_killed_while_it_recounts_leaves_no_shard_to_reset():
    """A recount holds shard 0 while it waits for shard 1. Killed there, it must leave
    shard 0 as it was (it only read it) and the count still marked stale."""
    location = shmutil.unique_location("recount")
    cache = shmutil.build(location, SHARDS=2, MAX_ENTRIES=1000)
    try:
        values = {f"k{i}": b"v" for i in range(100)}
        cache.set_many(values)
        in_first = [k for k in values
                    if cache._store._layout(cache._store.make_key(k, "", 1))["shard"] == 0]
        assert in_first
        layout = cache._store._layout()
        path = _segment_path(cache)
        with open(path, "r+b") as f, mmap.mmap(f.fileno(), 4096) as header:
            struct.pack_into("<I", header, SEGMENT_COUNT_STALE, 1)  # the next write recounts
        ctx = mp.get_context("fork")
        locked_r, locked_w = os.pipe()
        release_r, release_w = os.pipe()
        second = layout["shards_offset"] + layout["shard_stride"]
        holder = ctx.Process(target=_lock_then_release, args=(path, second, locked_w, release_r))
        holder.start()
        ready, _, _ = select.select([locked_r], [], [], 30)
        assert ready and os.read(locked_r, 1) == b"L", "the holder never took the lock"
        writer = ctx.Process(target=_write_one, args=(location,))
        writer.start()
        time.sleep(0.5)  # holding shard 0, waiting for shard 1
        assert writer.is_alive()
        writer.kill()
        writer.join(30)
        os.write(release_w, b"U")
        holder.join(30)
        assert holder.exitcode == 0
        before = cache.stats()["recoveries"]
        assert cache.get_many(in_first) == dict.fromkeys(in_first, b"v")
        assert cache.stats()["recoveries"] == before
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ) as header:
            assert struct.unpack_from("<I", header, SEGMENT_COUNT_STALE)[0] == 1
        for fd in (locked_r, locked_w, release_r, release_w):
            os.close(fd)
    finally:
        cache.delete_segment()


def _tick_while_reattaching(location: str, locked, out) -> None:
    cache = shmutil.build(location, SHARDS=2)
    locked.wait(30)
    got = []
    waiter = threading.Thread(target=lambda: got.append(cache.get("k", "miss")))
    waiter.start()
    time.sleep(0.2)  # the waiter is waiting for the lock file by now
    ticks, end = 0, time.monotonic() + 0.8
    while time.monotonic() < end and waiter.is_alive():
        time.sleep(0.005)  # needs the GIL back each time
        ticks += 1
    waiter.join(30)
    out.put((ticks, got))


def test_reattaching_waits_for_the_lock_file_without_the_gil():
    """A segment replaced by name is reattached by the next operation, which waits for the
    lock file while another process makes the new segment: the other threads run meanwhile."""
    location = shmutil.unique_location("reattach")
    cache = shmutil.build(location, SHARDS=2)
    cache.set("k", "old")
    try:
        _native.unlink_shm(cache.segment)  # retired: every attached process reattaches
        ctx = mp.get_context("fork")
        out, locked = ctx.Queue(), ctx.Event()
        # Started first: a child would inherit the lock file's descriptor, and its flock.
        child = ctx.Process(target=_tick_while_reattaching, args=(location, locked, out))
        child.start()
        fd = os.open(f"/dev/shm/{cache.segment}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # as a process making the segment holds it
            locked.set()
            time.sleep(1.5)
        finally:
            os.close(fd)
        try:
            ticks, got = out.get(timeout=30)
        finally:
            child.join(30)
            if child.is_alive():
                child.kill()
        assert got == ["miss"]  # the new segment, empty
        assert ticks >= 20, ticks  # about 160 at 5 ms a tick; none while the GIL was held
    finally:
        cache.delete_segment()


@pytest.mark.parametrize("lock_timeout", [0.3, None])
def test_a_lock_word_overwritten_with_garbage_ends_the_wait_at_lock_timeout(lock_timeout):
    """A stray write leaves a shard's lock naming a thread that never existed: no death
    frees it. The call waits LOCK_TIMEOUT, raises, and every process moves to a new
    segment; with no limit (None) it would wait for ever, so a child shows that."""
    location = shmutil.unique_location("garbage")
    cache = shmutil.build(location, SHARDS=1, LOCK_TIMEOUT=0.3)
    cache.set("k", "old")
    other = mp.get_context("fork").Process(
        target=lambda: shmutil.build(location, SHARDS=1).get("k"))
    try:
        with open(_segment_path(cache), "r+b") as f, mmap.mmap(f.fileno(), 0) as m:
            struct.pack_into("<i", m, cache._store._layout()["shards_offset"], 0x3FFF_FFF0)
        if lock_timeout is None:
            # Attached afresh in the child, with no limit: it waits until it is killed.
            shm.detach(cache.segment)
            code = (
                "from django.conf import settings; settings.configure()\n"
                "from tests import shmutil\n"
                f"shmutil.build({location!r}, SHARDS=1, LOCK_TIMEOUT=None).get('k')\n"
            )
            import subprocess
            import sys

            root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
            with pytest.raises(subprocess.TimeoutExpired):
                subprocess.run([sys.executable, "-c", code], cwd=root, timeout=3)
            return
        started = time.monotonic()
        with pytest.raises(CacheUnavailable, match="segment retired"):
            cache.get("k")
        assert 0.25 <= time.monotonic() - started < 5
        # The next call, here or in another process, works on a new, empty segment.
        assert cache.get("k") is None
        other.start()
        other.join(10)
        assert other.exitcode == 0
        cache.set("k", "new")
        assert shmutil.build(location, SHARDS=1).get("k") == "new"
    finally:
        if other.is_alive():
            other.kill()
        cache.delete_segment()


def test_a_header_whose_geometry_overflows_is_recreated_not_mapped(location):
    cache = shmutil.build(location, SIZE="4MB", SHARDS=2)
    cache.set("k", "v")
    with open(_segment_path(cache), "r+b") as f, mmap.mmap(f.fileno(), 4096) as m:
        struct.pack_into("<Q", m, SEGMENT_SHARD_STRIDE, 1 << 63)  # 2 × 2**63 wraps to 0
    code = (
        "from django.conf import settings; settings.configure()\n"
        "from tests import shmutil\n"
        f"c = shmutil.build({location!r}, SIZE='4MB', SHARDS=2)\n"
        "assert c.get('k') is None\n"
        "c.set('k', 'new'); assert c.get('k') == 'new'\n"
    )
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)


def _shm_used() -> int:
    s = os.statvfs("/dev/shm")
    return (s.f_blocks - s.f_bfree) * s.f_frsize


def test_a_replaced_segment_is_unmapped_once_nothing_uses_it():
    # Each segment takes its whole SIZE of /dev/shm; one removed by name stays in memory
    # while a process maps it. A process that reattached lets the old one go.
    size = 64 << 20
    cache = shmutil.build(shmutil.unique_location("replaced"), SIZE=size)
    try:
        cache.set("k", 0)
        before = _shm_used()
        for n in range(4):
            _native.unlink_shm(cache.segment)  # as another process's delete_segment() does
            cache.set("k", n)  # reattaches to a new segment
            assert cache.get("k") == n
        grown = _shm_used() - before
        assert grown < 2 * size, f"{grown >> 20} MiB more in /dev/shm"  # 4 × SIZE before
    finally:
        cache.delete_segment()


def test_a_value_that_expires_while_a_reader_waits_for_the_lock_is_a_miss():
    cache = shmutil.build(shmutil.unique_location("expiring"), SHARDS=1)
    try:
        cache.set("page", "x", 1)
        locked_r, locked_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # holds the shard's lock past the value's expiry
            _region, mutex = _mutex_at(_segment_path(cache), cache._store._layout()["shards_offset"])
            libc = ctypes.CDLL(None)
            libc.pthread_mutex_lock(mutex)
            os.write(locked_w, b"L")
            time.sleep(1.5)
            libc.pthread_mutex_unlock(mutex)
            os._exit(0)
        os.read(locked_r, 1)
        assert cache.get("page", "expired") == "expired"  # its clock read after the wait
        os.waitpid(pid, 0)
        os.close(locked_r)
        os.close(locked_w)
    finally:
        cache.delete_segment()
