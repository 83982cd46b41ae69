"""Making cache instances: Django makes one per thread and, under ASGI, one per request
task, so the native backends reuse what checking the same settings gave before. Each
instance must still be what building it from scratch gives: its own attributes, its
settings' errors every time, and nothing carried over from other settings."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_nativecache.backends.dummy import DummyCache
from django_nativecache.backends.filebased import FileBasedCache
from django_nativecache.backends.memcached import MemcachedCache
from django_nativecache.backends.shm import SharedMemoryCache
from tests import shmutil

Factory = Callable[[dict[str, Any]], Any]
KINDS = ["shm", "memcached", "file", "dummy"]


@pytest.fixture(params=KINDS)
def make(request) -> Iterator[Factory]:
    """Builds caches of one kind and LOCATION from params."""
    made: list[Any] = []
    if request.param == "shm":
        location = shmutil.unique_location("inst")

        def factory(params: dict[str, Any]) -> Any:
            params = {**params, "OPTIONS": {"NAMESPACE": shmutil.NAMESPACE, "SIZE": "1MB",
                                            **params.get("OPTIONS", {})}}
            made.append(SharedMemoryCache(location, params))
            return made[-1]
    elif request.param == "memcached":
        location = request.getfixturevalue("memcached_module").location

        def factory(params: dict[str, Any]) -> Any:
            return MemcachedCache(location, params)
    elif request.param == "file":
        location = tempfile.mkdtemp(prefix="nativecache-inst-")

        def factory(params: dict[str, Any]) -> Any:
            return FileBasedCache(location, params)
    else:
        def factory(params: dict[str, Any]) -> Any:
            return DummyCache("", params)
    factory.kind = request.param  # type: ignore[attr-defined]
    yield factory
    for cache in made[:1]:
        cache.delete_segment()


def test_instances_of_the_same_settings_are_distinct_and_each_its_own(make):
    params = {"KEY_PREFIX": "p", "VERSION": 3, "TIMEOUT": 40}
    first = make(dict(params))
    first.key_prefix = "changed"
    first.version = 9
    first.make_key = lambda key, version=None: f"mine:{key}"
    second = make(dict(params))
    assert second is not first
    assert (second.key_prefix, second.version, second.default_timeout) == ("p", 3, 40)
    assert second.make_key("k") == "p:3:k"
    assert first.make_key("k") == "mine:k"
    if make.kind != "dummy":
        second.set("k", "v")
        assert second.get("k") == "v"
        assert first.get("k") is None  # its own make_key: another key
        assert first.get("mine:k", version=None) is None


def test_bad_settings_raise_every_time(make):
    if make.kind == "dummy":
        pytest.skip("DummyCache takes any OPTIONS, as Django's does")
    for _ in range(3):
        with pytest.raises(ImproperlyConfigured, match="NO_SUCH"):
            make({"OPTIONS": {"NO_SUCH": 1}})


def test_values_that_compare_equal_but_differ_in_type_are_checked_each(make):
    if make.kind == "dummy":
        pytest.skip("DummyCache takes no OPTIONS")
    assert make({"OPTIONS": {"COMPRESS_LEVEL": 1}}) is not None
    # True == 1 and hash(True) == hash(1): an option refused as a bool is still refused.
    with pytest.raises(ImproperlyConfigured, match="bool"):
        make({"OPTIONS": {"COMPRESS_LEVEL": True}})


def test_options_changed_in_place_are_read_again(make):
    params: dict[str, Any] = {"TIMEOUT": 10, "OPTIONS": {}}
    assert make(params).default_timeout == 10
    params["TIMEOUT"] = 20
    assert make(params).default_timeout == 20
    if make.kind != "dummy":
        params["OPTIONS"]["NO_SUCH"] = 1
        with pytest.raises(ImproperlyConfigured, match="NO_SUCH"):
            make(params)


def test_settings_of_other_types_are_checked_every_time(make):
    class Prefix(str):  # not a core type: no snapshot of these settings is kept
        pass

    class Timeout(int):
        pass

    params: dict[str, Any] = {"KEY_PREFIX": Prefix("p"), "TIMEOUT": Timeout(10)}
    assert make(params).key_prefix == "p"
    params["KEY_PREFIX"] = Prefix("q")
    params["TIMEOUT"] = Timeout(20)
    cache = make(params)
    assert (cache.key_prefix, cache.default_timeout) == ("q", 20)
    params["KEY_FUNCTION"] = lambda key, prefix, version: f"own:{key}"
    assert make(params).make_key("k") == "own:k"


def test_a_shared_memory_segment_follows_secret_key():
    location = shmutil.unique_location("secret")
    params = {"OPTIONS": {"SIZE": "1MB"}}
    made = []
    try:
        with override_settings(SECRET_KEY="one"):
            made.append(SharedMemoryCache(location, params))
        with override_settings(SECRET_KEY="two"):
            made.append(SharedMemoryCache(location, params))
        with override_settings(SECRET_KEY="one"):
            made.append(SharedMemoryCache(location, params))
        assert made[0].segment != made[1].segment
        assert made[0].segment == made[2].segment
    finally:
        for cache in made[:2]:
            cache.delete_segment()


def test_a_relative_file_cache_directory_follows_the_working_directory(monkeypatch):
    roots = [tempfile.mkdtemp(prefix="nativecache-cwd-") for _ in range(2)]
    caches = []
    for root in roots:
        monkeypatch.chdir(root)
        caches.append(FileBasedCache("cache-dir", {}))
        caches[-1].set("k", root)
    assert [c._dir for c in caches] == [os.path.join(r, "cache-dir") for r in roots]
    assert [c.get("k") for c in caches] == roots


def test_a_replaced_segment_is_attached_afresh_by_the_next_instance():
    location = shmutil.unique_location("fresh")
    first = shmutil.build(location, SIZE="1MB")
    first.set("k", "v")
    first.delete_segment()
    second = shmutil.build(location, SIZE="1MB")
    try:
        assert second._store is not first._store
        assert second.get("k") is None
        second.set("k", "new")
        assert shmutil.build(location, SIZE="1MB").get("k") == "new"
    finally:
        second.delete_segment()


class _HookFirst(SharedMemoryCache):
    """Sets its own make_key before SharedMemoryCache.__init__ runs, when told to."""

    own_keys = False

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        if self.own_keys:
            self.make_key = lambda key, version=None: f"own:{key}"
        super().__init__(location, params)


def test_a_key_hook_set_before_init_is_used_by_an_instance_of_known_settings():
    location = shmutil.unique_location("hook")
    params = {"OPTIONS": {"NAMESPACE": shmutil.NAMESPACE, "SIZE": "1MB"}}
    plain = _HookFirst(location, params)
    try:
        hooked = object.__new__(_HookFirst)
        hooked.own_keys = True
        hooked.__init__(location, params)
        hooked.set("k", "v")
        assert plain.get("k") is None  # stored under its own key
        assert hooked.get("k") == "v"
    finally:
        plain.delete_segment()


def test_a_key_hook_patched_on_the_class_is_used_by_an_instance_of_known_settings(make):
    make({})  # these settings are known from now on
    seen = []

    def validate_key(self, key):
        seen.append(key)

    cls = type(make({}))
    with mock.patch.object(cls, "validate_key", validate_key):
        cache = make({})
        cache.set("k", 1)
        cache.get("k")
    assert seen and all(key.endswith(":k") for key in seen)


def test_an_absolute_file_cache_directory_needs_no_working_directory(tmp_path, monkeypatch):
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()  # as a deploy removes the release directory a worker started in
    location = str(tmp_path / "cache")
    for _ in range(2):
        cache = FileBasedCache(location, {})
        cache.set("k", "v")
        assert cache.get("k") == "v"
