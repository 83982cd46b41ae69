"""Bad input and bad configuration: a clear error, and nothing lost or half-changed."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import stat

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_nativecache.backends import shm
from django_nativecache.exceptions import CachePermissionError, StorageFull, ValueTooLarge
from tests import shmutil


@pytest.fixture
def cache():
    c = shmutil.build(shmutil.unique_location("err"), SIZE="1MB", SHARDS=2)
    yield c
    c.delete_segment()


class Unpicklable:
    def __reduce__(self):
        raise pickle.PicklingError("this object refuses to be pickled")


def test_unpicklable_value_raises_and_changes_nothing(cache):
    cache.set("k", "original")
    with pytest.raises(pickle.PicklingError, match="refuses"):
        cache.set("k", Unpicklable())
    with pytest.raises(pickle.PicklingError):
        cache.add("fresh", Unpicklable())
    assert cache.get("k") == "original"
    assert not cache.has_key("fresh")


def test_set_many_with_one_bad_value_stores_none_of_them(cache):
    with pytest.raises(pickle.PicklingError):
        cache.set_many({"a": 1, "b": Unpicklable(), "c": 3})
    assert cache.get_many(["a", "b", "c"]) == {}


def test_value_over_the_limit_raises_and_changes_nothing(cache):
    limit = cache._store.max_value_size
    cache.set("k", "original")
    with pytest.raises(ValueTooLarge, match=r"':1:k'.*MAX_ITEM_SIZE"):
        cache.set("k", b"x" * (limit + 1))
    assert cache.get("k") == "original"
    with pytest.raises(ValueTooLarge):
        cache.set_many({"small": 1, "huge": b"x" * (limit + 1)})
    assert not cache.has_key("small")
    with pytest.raises(ValueTooLarge):
        cache.append("k", "y" * limit)
    assert cache.get("k") == "original"
    cache.set("edge", b"x" * limit)  # exactly at the limit is accepted
    assert cache.get("edge") == b"x" * limit


@pytest.mark.parametrize(
    "options, named",
    [
        ({"SIZEE": "1MB"}, "SIZEE"),
        ({"SIZE": "lots"}, "SIZE"),
        ({"SIZE": 1024}, "SIZE"),
        ({"SHARDS": 5000}, "SHARDS"),
        ({"SHARDS": "four"}, "SHARDS"),
        ({"MAX_ENTRIES": "many"}, "MAX_ENTRIES"),
        ({"CULL_FREQUENCY": -1}, "CULL_FREQUENCY"),
        ({"ON_MISMATCH": "ignore"}, "ON_MISMATCH"),
        ({"COMPRESS_LEVEL": 12}, "COMPRESS_LEVEL"),
        ({"SIZE": "1MB", "MAX_ITEM_SIZE": "900KB"}, "MAX_ITEM_SIZE"),
        ({"LOCK_TIMEOUT": 0}, "LOCK_TIMEOUT"),
        ({"LOCK_TIMEOUT": "10s"}, "LOCK_TIMEOUT"),
        ({"LOCK_TIMEOUT": True}, "LOCK_TIMEOUT"),
    ],
)
def test_bad_options_name_the_option(options, named):
    with pytest.raises(ImproperlyConfigured, match=named):
        shmutil.build(shmutil.unique_location("opt"), **options)


@pytest.mark.parametrize(
    "options, max_entries, cull_frequency",
    [
        ({"MAX_ENTRIES": 1e4}, 10_000, 3),
        ({"MAX_ENTRIES": 10_000.0, "CULL_FREQUENCY": 2.0}, 10_000, 2),
        ({"MAX_ENTRIES": " 10000 "}, 10_000, 3),
        ({"MAX_ENTRIES": None, "CULL_FREQUENCY": None}, 300, 3),  # Django's defaults
    ],
)
def test_entry_limits_django_takes_are_taken(options, max_entries, cull_frequency):
    c = shmutil.build(shmutil.unique_location("opt"), **options)
    try:
        assert (c._max_entries, c._cull_frequency) == (max_entries, cull_frequency)
    finally:
        c.delete_segment()


@pytest.mark.parametrize("value", [10_000.5, float("nan"), float("inf"), "1e4"])
def test_entry_limits_that_are_no_integer_are_refused(value):
    with pytest.raises(ImproperlyConfigured, match="MAX_ENTRIES.*expected an integer"):
        shmutil.build(shmutil.unique_location("opt"), MAX_ENTRIES=value)


def test_namespace_none_is_the_default_namespace(settings):
    location = shmutil.unique_location("ns")
    c = shmutil.build(location, NAMESPACE=None)
    try:
        assert c.segment == shm.segment_name(location)  # from SECRET_KEY, not "None"
        assert c.segment != shm.segment_name(location, "None")
    finally:
        c.delete_segment()


def test_human_sizes_are_accepted():
    c = shmutil.build(shmutil.unique_location("size"), SIZE="2 MiB", MAX_ITEM_SIZE="64KB")
    try:
        assert c._store._layout()["total_size"] <= 2 << 20
        assert c._store.max_value_size == 64 << 10
    finally:
        c.delete_segment()


def test_segment_is_private_to_its_owner(cache):
    mode = os.stat(f"/dev/shm/{cache.segment}").st_mode
    assert stat.S_IMODE(mode) == 0o600


def _attach(location: str, results) -> None:
    try:
        shmutil.build(location, SIZE="1MB", SHARDS=2)
        results.put("attached")
    except CachePermissionError as exc:
        results.put(f"refused: {exc}")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand a segment to another user")
def test_segment_owned_by_another_user_is_refused():
    location = shmutil.unique_location("owner")
    c = shmutil.build(location, SIZE="1MB", SHARDS=2)
    path = f"/dev/shm/{c.segment}"
    try:
        os.chown(path, 65534, 65534)
        ctx = mp.get_context("spawn")
        results = ctx.Queue()
        p = ctx.Process(target=_attach, args=(location, results))
        p.start()
        outcome = results.get(timeout=60)
        p.join(60)
        assert outcome.startswith("refused") and "owned by uid 65534" in outcome
    finally:
        os.chown(path, 0, 0)
        c.delete_segment()


def test_segment_names_differ_by_location_and_namespace():
    a = shm.segment_name("one", "ns")
    assert a == shm.segment_name("one", "ns")
    assert a != shm.segment_name("two", "ns")
    assert a != shm.segment_name("one", "other project")


def test_a_segment_that_cannot_be_made_leaves_nothing_in_dev_shm():
    vfs = os.statvfs("/dev/shm")
    size = vfs.f_blocks * vfs.f_frsize + (1 << 30)  # more than /dev/shm holds
    if size > 1 << 40:
        pytest.skip("/dev/shm is larger than the largest SIZE")
    location = shmutil.unique_location("too-big")
    name = shm.segment_name(location, shmutil.NAMESPACE)
    with pytest.raises(StorageFull, match="No space left on device"):
        shmutil.build(location, SIZE=size, SHARDS=-(-size // (1 << 30)))
    assert not [f for f in os.listdir("/dev/shm") if f.startswith(name)]  # nor its lock file


def test_a_removed_segment_takes_its_lock_file_and_is_made_again():
    location = shmutil.unique_location("remade")
    c = shmutil.build(location, SIZE="1MB", SHARDS=2)
    c.set("k", 1)
    assert os.path.exists(f"/dev/shm/{c.segment}.lock")
    c.delete_segment()
    assert not [f for f in os.listdir("/dev/shm") if f.startswith(c.segment)]
    again = shmutil.build(location, SIZE="1MB", SHARDS=2)
    assert again.get("k") is None
    again.set("k", 2)
    assert again.get("k") == 2
    again.delete_segment()
