"""The system checks of django_nativecache (django_nativecache/checks.py): each fires with
its id on a real fault (bad settings, a segment /dev/shm cannot hold or that belongs to
someone else, a directory that cannot be written, memcached servers dead or stopped) and
stays silent on a good configuration; ``manage.py check`` reports them (and does not
crash on a cache that cannot be opened) in a real subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.checks import Tags, run_checks
from django.core.checks import caches as django_cache_checks
from django.core.exceptions import ImproperlyConfigured

from django_nativecache.backends import shm
from django_nativecache.checks import SHM_DIR, check_caches
from tests.mcserver import free_port
from tests.shmutil import NAMESPACE, unique_location

ROOT = Path(__file__).resolve().parent.parent
OURS = "django_nativecache.backends"
SHM = f"{OURS}.shm.SharedMemoryCache"
LOCMEM = f"{OURS}.locmem.LocMemCache"
FILE = f"{OURS}.filebased.FileBasedCache"
MEMCACHED = f"{OURS}.memcached.MemcachedCache"
DB = f"{OURS}.db.DatabaseCache"
DUMMY = f"{OURS}.dummy.DummyCache"
GiB = 1 << 30


class ExplodingCache(BaseCache):
    """Someone else's backend that refuses its settings when it is built."""

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        raise ImproperlyConfigured("exploding cache refuses to be built")


class UnreadableCache(BaseCache):
    """Someone else's backend whose directory cannot be read: an OSError with a path."""

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        raise PermissionError(13, "Permission denied", "/var/cache/site")


@pytest.fixture
def segments() -> Iterator[list[str]]:
    """LOCATIONs of shared-memory caches (NAMESPACE tests.shmutil.NAMESPACE), removed
    afterwards: Django's own checks open every cache, so the segments may exist."""
    locations: list[str] = []
    yield locations
    for location in locations:
        shm.unlink(shm.segment_name(location, NAMESPACE))


def shm_entry(segments: list[str], **options: Any) -> dict[str, Any]:
    location = unique_location("chk")
    segments.append(location)
    return {"BACKEND": SHM, "LOCATION": location,
            "OPTIONS": {"NAMESPACE": NAMESPACE, "SIZE": "1MB", **options}}


def segment_path(entry: dict[str, Any]) -> Path:
    return Path(SHM_DIR) / shm.segment_name(entry["LOCATION"], entry["OPTIONS"]["NAMESPACE"])


def shm_files() -> set[str]:
    return {name for name in os.listdir(SHM_DIR) if name.startswith("dnc-")}


def ours(settings: Any, caches: dict[str, Any]) -> list[Any]:
    """Every check tagged caches (Django's included) on these CACHES; ours only."""
    settings.CACHES = caches
    messages = run_checks(tags=[Tags.caches])
    return [m for m in messages if m.id.startswith("django_nativecache.")]


def ids(messages: list[Any]) -> list[str]:
    return [m.id for m in messages]


@contextlib.contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """path (a directory or file) made unwritable even for root: chattr +i, or chmod."""
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("running as root and chattr +i is not available here")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        mode = path.stat().st_mode
        path.chmod(0o500 if path.is_dir() else 0o400)
        try:
            yield
        finally:
            path.chmod(mode)


def manage(cache_settings: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NATIVECACHE_TEST_CACHES": json.dumps(cache_settings)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return subprocess.run(
        [sys.executable, "-m", "django", *args, "--settings", "tests.settings_commands"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


# -- a good configuration ---------------------------------------------------------------


def test_good_configuration_is_silent_and_leaves_nothing_behind(
    settings, segments, tmp_path, memcached_server, transactional_db
):
    entry = shm_entry(segments)
    settings.CACHES = {
        "default": entry,
        "locmem": {**shm_entry(segments), "BACKEND": LOCMEM},
        "files": {"BACKEND": FILE, "LOCATION": str(tmp_path / "not" / "yet" / "made")},
        "mc": {"BACKEND": MEMCACHED, "LOCATION": [memcached_server.location]},
        "db": {"BACKEND": DB, "LOCATION": "no_table_needed"},
        "dummy": {"BACKEND": DUMMY},
        "django": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    before = shm_files()
    assert check_caches() == []
    # No segment (the probe is removed, the real one never made) and no directory.
    assert not segment_path(entry).exists()
    assert shm_files() - before == set()
    assert list(tmp_path.iterdir()) == []
    # The whole run, Django's cache checks (ours in their place) and --deploy included.
    messages = run_checks(include_deployment_checks=True)
    assert [m for m in messages if m.id.startswith(("django_nativecache.", "caches."))] == []
    assert not segment_path(entry).exists()
    assert shm_files() - before == set()
    assert list(tmp_path.iterdir()) == []


def test_an_existing_segment_is_attached_not_probed(settings, segments):
    entry = shm_entry(segments)
    shm.SharedMemoryCache(entry["LOCATION"], {"OPTIONS": entry["OPTIONS"]}).set("k", "v")
    settings.CACHES = {"default": entry}
    assert check_caches() == []
    assert segment_path(entry).exists()
    assert shm.SharedMemoryCache(entry["LOCATION"], {"OPTIONS": entry["OPTIONS"]}).get("k") == "v"


# -- E001: settings refused ----------------------------------------------------------------


def test_a_segment_made_with_another_size_is_W002(settings, segments):
    entry = shm_entry(segments, SIZE="1MB")
    shm.SharedMemoryCache(entry["LOCATION"], {"OPTIONS": entry["OPTIONS"]}).set("k", "v")
    settings.CACHES = {"default": entry}
    assert check_caches() == []
    settings.CACHES = {"default": {**entry, "OPTIONS": {**entry["OPTIONS"], "SIZE": "2MB"}}}
    messages = check_caches()
    assert ids(messages) == ["django_nativecache.W002"]
    assert messages[0].msg == (
        f"CACHES['default'] ({SHM}): its shared-memory segment {segment_path(entry).name} was "
        f"created with 1048576 bytes (1 shard); OPTIONS['SIZE'] now asks for 2097152, which "
        "applies only to a segment created anew")
    settings.CACHES = {"default": {**entry, "OPTIONS": {**entry["OPTIONS"], "SIZE": 3 << 20}}}
    shm.unlink(shm.segment_name(entry["LOCATION"], NAMESPACE))
    shm.SharedMemoryCache(entry["LOCATION"], {"OPTIONS": settings.CACHES["default"]["OPTIONS"]})
    assert check_caches() == []  # 3 shards: a few bytes of alignment off SIZE are no change


@pytest.mark.parametrize(
    "kind, entry, text",
    [
        ("shm", {"OPTIONS": {"NO_SUCH_OPTION": 1}}, "unknown OPTIONS 'NO_SUCH_OPTION'"),
        ("shm", {"OPTIONS": {"SIZE": "lots"}}, "SIZE"),
        ("shm", {"OPTIONS": {"SIZE": "1MB", "SHARDS": 1000}}, "too small for 1000 shards"),
        ("shm", {"OPTIONS": {"ON_MISMATCH": "ignore"}}, "ON_MISMATCH"),
        ("file", {"OPTIONS": {"MAX_ENTRIES": "many"}}, "MAX_ENTRIES"),
        ("file", {"LOCATION": "<a file>"}, "exists and is not a directory"),
        ("mc", {"LOCATION": "localhost:port"}, "has no valid port"),
        ("mc", {"LOCATION": ""}, "names no memcached server"),
        ("mc", {"OPTIONS": {"username": "u"}}, "SASL"),
        ("db", {"OPTIONS": {"CULL_FREQUENCY": -1}}, "CULL_FREQUENCY"),
        ("dummy", {"BACKEND": f"{OURS}.nope.Cache"}, "cannot be imported"),
    ],
)
def test_refused_settings_are_E001(settings, segments, tmp_path, kind, entry, text):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    base = {
        "shm": shm_entry(segments),
        "file": {"BACKEND": FILE, "LOCATION": str(tmp_path / "cache")},
        "mc": {"BACKEND": MEMCACHED, "LOCATION": f"127.0.0.1:{free_port()}"},
        "db": {"BACKEND": DB, "LOCATION": "t"},
        "dummy": {"BACKEND": DUMMY},
    }[kind]
    bad = {**base, **entry}
    if bad.get("LOCATION") == "<a file>":
        bad["LOCATION"] = str(a_file)
    if kind == "shm":
        bad["OPTIONS"] = {"NAMESPACE": NAMESPACE, **bad["OPTIONS"]}
    settings.CACHES = {"default": {"BACKEND": DUMMY}, "bad": bad}
    messages = check_caches()
    assert ids(messages) == ["django_nativecache.E001"]
    assert messages[0].msg.startswith(f"CACHES['bad'] ({bad['BACKEND']}): ")
    assert text in messages[0].msg
    # Django's own cache checks open every cache too; they must not crash the run nor
    # report our cache a second time.
    assert ids(ours(settings, settings.CACHES)) == ["django_nativecache.E001"]


# -- E002: the segment -----------------------------------------------------------------------


def test_a_size_dev_shm_cannot_hold_is_E002_and_leaves_nothing(settings, segments):
    vfs = os.statvfs(SHM_DIR)
    size = vfs.f_blocks * vfs.f_frsize + GiB
    if size > 1 << 40:
        pytest.skip("/dev/shm is larger than the largest SIZE")
    entry = shm_entry(segments, SIZE=size, SHARDS=-(-size // GiB))
    name = segment_path(entry).name
    settings.CACHES = {"default": entry}
    before = shm_files()
    started = time.monotonic()
    messages = check_caches()
    assert time.monotonic() - started < 5
    assert ids(messages) == ["django_nativecache.E002"]
    msg = messages[0].msg
    assert "No space left on device" in msg and f"/dev/shm/{name}" in msg, msg
    assert "bytes free" in msg
    assert "SIZE" in messages[0].hint
    assert shm_files() - before == set()


def test_a_segment_of_another_user_is_E002(settings, segments):
    if os.geteuid() != 0:
        pytest.skip("needs root to hand a segment to another user")
    entry = shm_entry(segments)
    cache = shm.SharedMemoryCache(entry["LOCATION"], {"OPTIONS": entry["OPTIONS"]})
    path = segment_path(entry)
    shm.detach(cache.segment)  # so that the check attaches afresh, as a new process would
    os.chown(path, 65534, 65534)
    try:
        settings.CACHES = {"default": entry}
        messages = check_caches()
    finally:
        os.chown(path, 0, 0)
    assert ids(messages) == ["django_nativecache.E002"]
    assert "owned by uid 65534" in messages[0].msg


def test_a_damaged_segment_with_on_mismatch_fail_is_E002(settings, segments):
    entry = shm_entry(segments, ON_MISMATCH="fail")
    cache = shm.SharedMemoryCache(entry["LOCATION"], {"OPTIONS": entry["OPTIONS"]})
    shm.detach(cache.segment)
    with open(segment_path(entry), "r+b") as f:
        f.write(b"not a segment header")
    settings.CACHES = {"default": entry}
    messages = check_caches()
    assert ids(messages) == ["django_nativecache.E002"]
    assert "wrong magic" in messages[0].msg
    # With the default ON_MISMATCH the segment is recreated, as by any process of the site.
    recreate = {**entry["OPTIONS"], "ON_MISMATCH": "recreate"}
    settings.CACHES = {"default": {**entry, "OPTIONS": recreate}}
    shm.detach(cache.segment)
    assert check_caches() == []


# -- E003: the directory ---------------------------------------------------------------------


def test_a_directory_under_a_file_is_E003(settings, tmp_path):
    (tmp_path / "file").write_text("x")
    settings.CACHES = {"default": {"BACKEND": FILE, "LOCATION": str(tmp_path / "file" / "cache")}}
    messages = check_caches()
    assert ids(messages) == ["django_nativecache.E003"]
    assert messages[0].msg.endswith(
        f"the directory {tmp_path}/file/cache cannot be created: {tmp_path}/file is not a "
        "directory")


def test_an_unwritable_directory_is_E003(settings, tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    settings.CACHES = {
        "default": {"BACKEND": FILE, "LOCATION": str(existing)},
        "below": {"BACKEND": FILE, "LOCATION": str(existing / "a" / "b")},
    }
    assert check_caches() == []
    with unwritable(existing):
        messages = check_caches()
    assert ids(messages) == ["django_nativecache.E003"] * 2
    assert f"the directory {existing} is not writable: " in messages[0].msg
    assert f"the directory {existing}/a/b cannot be created in {existing}: " in messages[1].msg
    assert os.listdir(existing) == []


def test_unwritable_counters_are_E003(settings, tmp_path):
    entry = {"BACKEND": FILE, "LOCATION": str(tmp_path)}
    settings.CACHES = {"default": entry}
    caches["default"].set("k", "v")  # makes .nativecache
    counters = tmp_path / ".nativecache"
    assert counters.exists()
    with unwritable(counters):
        messages = check_caches()
    assert ids(messages) == ["django_nativecache.E003"]
    assert f"{counters} (its counters and locks) is not readable and writable" in messages[0].msg


# -- W001: memcached servers -------------------------------------------------------------------


def test_servers_that_do_not_answer_are_W001_quickly(settings, memcached_factory):
    live = memcached_factory()
    paused = memcached_factory()
    paused.pause()  # accepts connections (the kernel does), never replies
    dead = f"127.0.0.1:{free_port()}"
    missing = f"unix:/nonexistent-{os.getpid()}/memcached.sock"
    unix = memcached_factory(unix=True)
    settings.CACHES = {"default": {"BACKEND": MEMCACHED, "LOCATION": [
        live.location, paused.location, dead, missing, unix.location]}}
    started = time.monotonic()
    messages = check_caches()
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, elapsed
    assert ids(messages) == ["django_nativecache.W001"] * 3
    by_server = {m.msg.split("memcached server ")[1].split(" does not answer")[0]: m.msg
                 for m in messages}
    assert set(by_server) == {paused.location, dead, missing}
    assert by_server[paused.location].endswith("no reply within 0.5 s")
    assert by_server[dead].endswith("Connection refused")
    assert by_server[missing].endswith("No such file or directory")
    assert all("CACHES['default']" in m for m in by_server.values())


def test_something_else_on_the_port_is_W001(settings):
    with socket.socket() as listener:  # answers every connection with a line of HTTP
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(64)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n")

        threading.Thread(target=serve, daemon=True).start()
        settings.CACHES = {"default": {"BACKEND": MEMCACHED, "LOCATION": f"127.0.0.1:{port}"}}
        messages = check_caches()
    assert ids(messages) == ["django_nativecache.W001"]
    reply = "it replied b'HTTP/1.1 400 Bad Request\\r\\n', which is not memcached's answer"
    assert messages[0].msg.endswith(reply)


# -- anyone else's caches ------------------------------------------------------------------------


def test_other_backends_are_left_to_django_but_never_crash_the_run(settings):
    settings.CACHES = {
        "default": {"BACKEND": DUMMY},
        "exploding": {"BACKEND": "tests.test_checks.ExplodingCache"},
        "missing": {"BACKEND": "no.such.module.Cache"},
        "unreadable": {"BACKEND": "tests.test_checks.UnreadableCache"},
    }
    assert check_caches() == []
    messages = ours(settings, settings.CACHES)
    assert ids(messages) == ["django_nativecache.E004"] * 3
    assert messages[0].msg == ("CACHES['exploding'] (tests.test_checks.ExplodingCache): cannot "
                               "be opened: exploding cache refuses to be built")
    assert messages[1].msg.startswith("CACHES['missing'] (no.such.module.Cache): cannot be opened")
    # Another backend's OSError keeps all it says, its path too.
    assert messages[2].msg.endswith("cannot be opened: [Errno 13] Permission denied: "
                                    "'/var/cache/site'")


# -- Django's file cache warnings (caches.W002, caches.W003) ------------------------------------


DJANGO_FILE = "django.core.cache.backends.filebased.FileBasedCache"


def file_warnings(messages: list[Any]) -> list[tuple[str, str]]:
    return sorted((m.id, m.msg) for m in messages if m.id in ("caches.W002", "caches.W003"))


def test_django_file_cache_warnings_are_djangos_own(settings, tmp_path, monkeypatch,
                                                   tmp_path_factory):
    """On Django's FileBasedCache, the checks in place of Django's warn word for word as
    Django's do."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))  # Django's makes its relative directory
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.STATICFILES_DIRS = [("static", str(tmp_path / "media" / "static"))]
    settings.CACHES = {
        "default": {"BACKEND": DJANGO_FILE, "LOCATION": "relative/cache"},
        "inside": {"BACKEND": DJANGO_FILE, "LOCATION": str(tmp_path / "media" / "cache")},
        "holds": {"BACKEND": DJANGO_FILE, "LOCATION": str(tmp_path)},
        "same": {"BACKEND": DJANGO_FILE, "LOCATION": str(tmp_path / "media")},
        "apart": {"BACKEND": DJANGO_FILE, "LOCATION": str(tmp_path / "elsewhere")},
    }
    theirs = (django_cache_checks.check_file_based_cache_is_absolute(None)
              + django_cache_checks.check_cache_location_not_exposed(None))
    # W003 once; W002 for inside, and for holds and same against both settings
    assert len(file_warnings(theirs)) == 6
    assert file_warnings(run_checks(include_deployment_checks=True)) == file_warnings(theirs)


def test_our_file_cache_gets_djangos_warnings_whatever_else_is_broken(
    settings, tmp_path, monkeypatch, tmp_path_factory
):
    cwd = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(cwd)
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.CACHES = {
        "default": {"BACKEND": FILE, "LOCATION": "relative/cache"},
        "exposed": {"BACKEND": FILE, "LOCATION": str(tmp_path / "media" / "cache")},
        "django": {"BACKEND": DJANGO_FILE, "LOCATION": "also/relative"},
        "bad": {"BACKEND": SHM, "LOCATION": unique_location("chk"), "OPTIONS": {"SIZE": "lots"}},
        "exploding": {"BACKEND": "tests.test_checks.ExplodingCache"},
    }
    messages = run_checks(include_deployment_checks=True)
    assert file_warnings(messages) == [
        ("caches.W002", "Your 'exposed' cache configuration might expose your cache or lead "
                        "to corruption of your data because its LOCATION is inside MEDIA_ROOT."),
        ("caches.W003", "Your 'default' cache LOCATION path is relative. Use an absolute path "
                        "instead."),
        ("caches.W003", "Your 'django' cache LOCATION path is relative. Use an absolute path "
                        "instead."),
    ]
    broken = sorted(m.id for m in messages if m.id.startswith("django_nativecache."))
    assert broken == ["django_nativecache.E001", "django_nativecache.E004"]
    assert list(tmp_path.iterdir()) == []  # no directory made
    assert [p.name for p in cwd.iterdir()] == ["also"]  # Django's makes its own, as it does


def test_settings_django_would_trip_over_never_crash_the_checks(settings):
    settings.CACHES = {
        "default": {"BACKEND": DUMMY},
        "bytes": {"BACKEND": DJANGO_FILE, "LOCATION": b"/tmp/bytes-location"},
        "not a dict": "django.core.cache.backends.dummy.DummyCache",
    }
    messages = run_checks(include_deployment_checks=True)
    assert [m for m in messages if m.id.startswith(("django_nativecache.", "caches."))] == []


# -- manage.py check -----------------------------------------------------------------------------


def test_manage_py_check_in_a_subprocess(segments, tmp_path, memcached_server):
    good = {"default": shm_entry(segments),
            "files": {"BACKEND": FILE, "LOCATION": str(tmp_path / "cache")},
            "mc": {"BACKEND": MEMCACHED, "LOCATION": memcached_server.location}}
    done = manage(good, "check")
    assert done.returncode == 0, done.stderr
    assert "System check identified no issues" in done.stdout

    dead = f"127.0.0.1:{free_port()}"
    warned = manage({**good, "mc": {"BACKEND": MEMCACHED, "LOCATION": dead}}, "check")
    assert warned.returncode == 0, warned.stderr
    assert f"(django_nativecache.W001) CACHES['mc'] ({MEMCACHED}): memcached server {dead} " \
           "does not answer: Connection refused" in warned.stderr

    broken = {**good, "bad": {**shm_entry(segments), "OPTIONS": {"SIZE": "lots"}}}
    for args in (("check",), ("check", "--deploy")):
        failed = manage(broken, *args)
        assert failed.returncode == 1
        assert "SystemCheckError" in failed.stderr
        assert f"(django_nativecache.E001) CACHES['bad'] ({SHM}): " in failed.stderr
        assert "Traceback" not in failed.stderr
