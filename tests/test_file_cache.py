"""FileBasedCache beyond Django's suite: several processes on one directory, a writer
killed mid-write, a full disk, damaged files, modes, and what replaces the Django tests
that patch ``open``."""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from django_nativecache.backends.filebased import FileBasedCache
from django_nativecache.exceptions import CacheIOError, StorageFull, ValueTooLarge


def build(path: Path | str, **options) -> FileBasedCache:
    return FileBasedCache(str(path), {"OPTIONS": {"MAX_ENTRIES": 100_000, **options}})


def entry_files(root: Path) -> list[Path]:
    return sorted(root.glob("*/*.djc"))


def temp_files(root: Path) -> list[Path]:
    return sorted(root.glob("*/.tmp-*"))


def test_modes_and_layout(tmp_path):
    root = tmp_path / "a" / "b" / "cache"
    cache = build(root)
    cache.set("k", "v")
    for d in (root, root.parent, root.parent.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    [entry] = entry_files(root)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert stat.S_IMODE(entry.parent.stat().st_mode) == 0o700
    assert Path(cache._key_to_file("k")) == entry


def test_read_errors_other_than_a_missing_file_raise(tmp_path):
    cache = build(tmp_path)
    path = Path(cache._key_to_file("k"))
    path.mkdir()  # the entry's path is a directory: reading it fails with EISDIR
    with pytest.raises(OSError) as info:
        cache.get("k")
    assert isinstance(info.value, CacheIOError)


def test_a_counters_file_that_is_a_symlink_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("not the cache's")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / ".nativecache").symlink_to(victim)
    cache = build(tmp_path / "cache")
    with pytest.raises(CacheIOError) as raised:
        cache.set("k", "v")
    assert raised.value.errno == errno.ELOOP
    assert str(raised.value).count(os.strerror(errno.ELOOP)) == 1
    assert ".nativecache" in str(raised.value)
    assert victim.read_text() == "not the cache's"


def test_a_compressible_value_too_large_to_read_back_is_refused(tmp_path):
    cache = build(tmp_path, COMPRESS_MIN_LENGTH=1024)
    cache.set("k", "old")
    huge = b"a" * (300 << 20)  # would compress to a few hundred KB
    with pytest.raises(ValueTooLarge):
        cache.set("k", huge)
    assert cache.get("k") == "old"
    roomy = build(tmp_path / "roomy", COMPRESS_MIN_LENGTH=1024, MAX_ITEM_SIZE="512MB")
    roomy.set("k", huge)  # kept as it is, and readable
    assert roomy.get("k") == huge


def test_a_counters_file_truncated_by_hand_kills_no_worker(tmp_path):
    cache = build(tmp_path)
    cache.set("k", "v")
    counters = tmp_path / ".nativecache"
    size = counters.stat().st_size
    os.truncate(counters, 0)  # as `: > .nativecache`: the mapped page is gone
    assert cache.get("k") == "v"  # a hit is counted on it: SIGBUS, unguarded
    cache.set("k2", "v2")  # the file is repaired and mapped again
    assert counters.stat().st_size == size
    assert cache.get("k2") == "v2"
    assert cache.stats()["sets"] == 1


def test_has_key_after_the_file_vanished(tmp_path):
    cache = build(tmp_path)
    assert cache.add("key", "value") is True
    os.unlink(cache._key_to_file("key"))
    assert cache.has_key("key") is False
    assert cache.get("key", "gone") == "gone"


@pytest.mark.parametrize(
    "damage",
    ["truncate", "garbage", "flip", "empty"],
)
def test_damaged_files_read_as_misses_and_are_removed(tmp_path, damage):
    cache = build(tmp_path)
    cache.set("k", {"value": "x" * 500})
    path = Path(cache._key_to_file("k"))
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(os.urandom(len(data)))
    elif damage == "flip":
        data[-10] ^= 0x40
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    assert cache.get("k", "miss") == "miss"
    assert not path.exists()
    cache.set("k", "fine")
    assert cache.get("k") == "fine"


def test_truncated_entry_is_absent_for_has_key_and_ttl_too(tmp_path):
    # has_key and ttl read only the header; the file's length still gives a truncated
    # entry away.
    cache = build(tmp_path)
    cache.set("k", "x" * 500, 300)
    path = Path(cache._key_to_file("k"))
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 100)
    assert cache.has_key("k") is False
    assert cache.ttl("k") == 0
    assert cache.get("k") is None


def test_refused_add_at_the_limit_evicts_nothing(tmp_path):
    # Django's add checks the key before its set culls: an add refused for a live key
    # must not cull, least of all that key.
    cache = build(tmp_path, MAX_ENTRIES=3, CULL_FREQUENCY=1)
    cache.set_many({"a": 1, "b": 2, "c": 3})
    for key in "abc":
        assert cache.add(key, 0) is False
    assert cache.get_many(["a", "b", "c"]) == {"a": 1, "b": 2, "c": 3}
    assert cache.add("d", 4) is True  # an add that writes culls as set does
    assert cache.get("d") == 4 and len(entry_files(tmp_path)) <= 3


def test_key_to_file_makes_private_directories_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        cache = build(tmp_path / "cache")
        path = Path(cache._key_to_file("k"))
    finally:
        os.umask(old)
    for d in (path.parent, path.parent.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d


def test_clear_keeps_foreign_files_and_the_directory(tmp_path):
    cache = build(tmp_path)
    cache.set_many({f"k{i}": i for i in range(50)})
    (tmp_path / "notes.txt").write_text("mine")
    cache.clear()
    assert entry_files(tmp_path) == []
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert tmp_path.is_dir()
    assert cache.get("k1") is None


def test_culling_keeps_max_entries(tmp_path):
    cache = build(tmp_path, MAX_ENTRIES=50, CULL_FREQUENCY=5)
    for i in range(400):
        cache.set(f"k{i}", i)
    assert len(entry_files(tmp_path)) <= 50
    assert cache.get("k399") == 399  # the newest survive


def test_expired_entries_are_culled_first(tmp_path):
    cache = build(tmp_path, MAX_ENTRIES=20, CULL_FREQUENCY=2)
    for i in range(10):
        cache.set(f"short{i}", i, 1)
    for i in range(9):
        cache.set(f"long{i}", i)
    time.sleep(1.2)
    for i in range(9, 12):
        cache.set(f"long{i}", i)
    assert all(cache.get(f"long{i}") == i for i in range(12))


# -- several processes ------------------------------------------------------------------


def _writer(root: str, n: int, rounds: int, queue) -> None:
    cache = build(root)
    bad = 0
    for i in range(rounds):
        key = f"shared{i % 20}"
        cache.set(key, {"writer": n, "i": i, "pad": "x" * (i % 2000)})
        got = cache.get(key)
        # Nothing deletes or culls here, so a miss would be a lost or partial entry.
        if got is None or set(got) != {"writer", "i", "pad"}:
            bad += 1
        cache.incr("counter")
    queue.put(bad)


def test_four_processes_on_one_directory(tmp_path):
    cache = build(tmp_path)
    cache.set("counter", 0)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), n, 300, queue)) for n in range(4)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert results == [0, 0, 0, 0]
    assert cache.get("counter") == 1200  # incr is atomic across processes
    assert temp_files(tmp_path) == []


_KILLED_WRITER = """
import sys
sys.path.insert(0, {repo!r})
import django
from django.conf import settings
settings.configure()
from django_nativecache.backends.filebased import FileBasedCache
cache = FileBasedCache({root!r}, {{"OPTIONS": {{"MAX_ENTRIES": 100000}}}})
big = b"v" * (8 << 20)
print("ready", flush=True)
i = 0
while True:
    cache.set("big", big + str(i).encode())
    i += 1
"""


def test_writer_killed_mid_write_leaves_no_partial_entry(tmp_path):
    repo = str(Path(__file__).resolve().parents[1])
    cache = build(tmp_path)
    cache.set("big", b"old")
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER.format(repo=repo, root=str(tmp_path))],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout.readline().strip() == b"ready"
    seen = 0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:  # a reader meanwhile: whole values only
        value = cache.get("big")
        assert value == b"old" or (value.startswith(b"v" * 100) and len(value) > 8 << 20)
        seen += 1
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    value = cache.get("big")
    assert value == b"old" or len(value) > 8 << 20
    # A temp file the killed writer may have left is never read; clear() and culling
    # remove such files once they are a minute old (a younger one may be another
    # process's write in progress).
    cache.clear()
    assert entry_files(tmp_path) == [] and len(temp_files(tmp_path)) <= 1
    cache.set("after", 1)
    assert cache.get("after") == 1 and seen > 0


def test_file_io_runs_without_the_gil(tmp_path):
    # While one thread writes and reads a large value, another keeps running Python.
    import threading

    cache = build(tmp_path, MAX_ITEM_SIZE="512MB")
    value = b"z" * (96 << 20)
    ticks = 0
    done = threading.Event()

    def io() -> None:
        try:
            for _ in range(2):
                cache.set("big", value)
                assert cache.get("big") == value
        finally:
            done.set()

    worker = threading.Thread(target=io)
    started = time.perf_counter()
    worker.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    elapsed = time.perf_counter() - started
    worker.join()
    # One tick per millisecond while the I/O ran; with the GIL held there would be a
    # handful in all (the switch interval is 5 ms, but a native call never yields).
    assert elapsed > 0.05 and ticks > elapsed * 1000 / 4, (ticks, elapsed)


def test_stale_temp_files_are_swept_below_max_entries(tmp_path):
    # Temp files of writers that died are removed by writes in turn, though a cache
    # below MAX_ENTRIES never culls; a fresh one (a write in flight) is left.
    cache = build(tmp_path)
    cache.set("first", 1)
    old = time.time() - 120
    stale = []
    for fanout in ("00", "7f", "ff"):
        (tmp_path / fanout).mkdir(mode=0o700, exist_ok=True)
        path = tmp_path / fanout / ".tmp-0123456789abcdef"
        path.write_bytes(b"partial")
        os.utime(path, (old, old))
        stale.append(path)
    fresh = tmp_path / "7f" / ".tmp-fedcba9876543210"
    fresh.write_bytes(b"in flight")
    for i in range(256 * 32 + 64):  # one sweep of every fan-out directory
        cache.set(f"k{i % 50}", i)
    assert [p for p in stale if p.exists()] == []
    assert fresh.exists()


# -- a full disk ------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.decode().strip()}")
    yield mount
    # Lazy: the cache under test still maps its counter file.
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_raises_and_leaves_nothing_behind(small_disk):
    cache = build(small_disk / "cache")
    cache.set("k", "old value")
    with pytest.raises(StorageFull) as info:
        cache.set("k", b"x" * (1 << 20))  # twice the disk
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    assert str(info.value).count(os.strerror(errno.ENOSPC)) == 1
    assert cache.get("k") == "old value"
    assert temp_files(small_disk / "cache") == []
    # Filling it with many entries: the ones that fit are whole, the rest raise.
    stored = []
    for i in range(200):
        try:
            cache.set(f"fill{i}", b"y" * 8192)
            stored.append(i)
        except StorageFull:
            break
    assert stored and len(stored) < 200
    assert all(cache.get(f"fill{i}") == b"y" * 8192 for i in stored)
    assert temp_files(small_disk / "cache") == []
