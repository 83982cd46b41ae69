"""The management commands cache_stats, cache_clear and cache_keys: their output and exit
status on every kind of backend (ours and Django's), through call_command and through a
real ``python -m django`` subprocess, including the error paths."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.core.management.base import CommandError

from django_nativecache.backends import shm
from tests.mcserver import free_port
from tests.redisutil import needs_redis
from tests.shmutil import NAMESPACE, unique_location

ROOT = Path(__file__).resolve().parent.parent
OURS = "django_nativecache.backends"
SHM = f"{OURS}.shm.SharedMemoryCache"
FILE = f"{OURS}.filebased.FileBasedCache"
MEMCACHED = f"{OURS}.memcached.MemcachedCache"
DB = f"{OURS}.db.DatabaseCache"
DUMMY = f"{OURS}.dummy.DummyCache"
DJANGO_LOCMEM = "django.core.cache.backends.locmem.LocMemCache"
DJANGO_DUMMY = "django.core.cache.backends.dummy.DummyCache"
DJANGO_FILE = "django.core.cache.backends.filebased.FileBasedCache"
DJANGO_DB = "django.core.cache.backends.db.DatabaseCache"
DJANGO_REDIS = "django.core.cache.backends.redis.RedisCache"
DJANGO_PYMEMCACHE = "django.core.cache.backends.memcached.PyMemcacheCache"
DJANGO_PYLIBMC = "django.core.cache.backends.memcached.PyLibMCCache"


# -- helpers ------------------------------------------------------------------------


def run(name: str, *args: str, stdin: str | None = None, **options: Any) -> tuple[str, str]:
    """call_command with its output captured; (stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)  # what input() reads, as a terminal would give it
    try:
        call_command(name, *args, stdout=out, stderr=err, **options)
    finally:
        sys.stdin = saved
    return out.getvalue(), err.getvalue()


def run_failing(name: str, *args: str) -> tuple[str, CommandError]:
    """call_command that must fail: (its stdout, the CommandError)."""
    out = io.StringIO()
    with pytest.raises(CommandError) as failure:
        call_command(name, *args, stdout=out, stderr=io.StringIO())
    return out.getvalue(), failure.value


def manage(cache_settings: dict[str, Any], *args: str, stdin: str = "",
           db: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m django <args>`` in a process of its own, on tests.settings_commands."""
    env = {**os.environ, "NATIVECACHE_TEST_CACHES": json.dumps(cache_settings)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    if db is not None:
        env["NATIVECACHE_TEST_DB"] = str(db)
    return subprocess.run(
        [sys.executable, "-m", "django", *args, "--settings", "tests.settings_commands"],
        cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=120,
    )


_FIGURES = re.compile(
    r"(?P<items>\S+)\s+(?P<bytes>-|\d+ B|[\d.]+ [KMGT]iB)\s+(?P<hits>\S+)\s+"
    r"(?P<misses>\S+)\s+(?P<ratio>\S+)\s+(?P<evictions>\S+)$"
)


def stats_row(output: str, alias: str, where: str = "") -> dict[str, str]:
    """The figures of the row of alias (whose line contains where), or {"error": ...}."""
    header, *lines = output.splitlines()
    assert header.split()[:3] == ["CACHE", "BACKEND", "LOCATION"], output
    matching = [line for line in lines if line.split()[0] == alias and where in line]
    assert len(matching) == 1, f"one row for {alias} {where} expected in:\n{output}"
    line = matching[0]
    if "error: " in line:
        return {"error": line.split("error: ", 1)[1]}
    match = _FIGURES.search(line)
    assert match, line
    return match.groupdict()


@pytest.fixture
def shm_entry() -> Iterator[dict[str, Any]]:
    """A CACHES entry for a fresh shared-memory cache, whose segment goes afterwards."""
    location = unique_location("cmd")
    yield {"BACKEND": SHM, "LOCATION": location,
           "OPTIONS": {"NAMESPACE": NAMESPACE, "SIZE": "1MB", "MAX_ENTRIES": 10_000}}
    shm.unlink(shm.segment_name(location, NAMESPACE))


@pytest.fixture
def db_table(transactional_db, settings) -> Iterator[str]:
    """A cache table made by Django's createcachetable (for ours and Django's classes)."""
    from django.db import connection

    table = "nativecache_cmd_tests"
    settings.CACHES = {"default": {"BACKEND": DB, "LOCATION": table}}
    call_command("createcachetable", verbosity=0)
    yield table
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {connection.ops.quote_name(table)}")


# -- cache_stats --------------------------------------------------------------------


def test_stats_of_shared_memory_and_file_caches(settings, shm_entry, tmp_path):
    settings.CACHES = {
        "default": shm_entry,
        "files": {"BACKEND": FILE, "LOCATION": str(tmp_path / "files")},
    }
    cache = caches["default"]
    cache.set_many({"a": 1, "b": "two", "c": b"3"})
    assert cache.get("a") == 1 and cache.get("b") == "two" and cache.get("c") == b"3"
    assert cache.get("missing") is None
    caches["files"].set("f", "x" * 3000)
    assert caches["files"].get("f") == "x" * 3000

    out, _ = run("cache_stats")
    row = stats_row(out, "default", shm_entry["LOCATION"])
    assert (row["items"], row["hits"], row["misses"], row["ratio"], row["evictions"]) == (
        "3", "3", "1", "75.0%", "0")
    assert row["bytes"].endswith("B") and row["bytes"] != "0 B"
    files = stats_row(out, "files", str(tmp_path / "files"))
    assert (files["items"], files["hits"], files["misses"], files["ratio"]) == (
        "1", "1", "0", "100.0%")
    assert files["bytes"] == "3.0 KiB"  # the entry file: 48-byte header, key, value

    # Named aliases only, in the order given.
    out, _ = run("cache_stats", "files")
    assert [line.split()[0] for line in out.splitlines()] == ["CACHE", "files"]


def test_stats_of_memcached_one_row_per_server_and_a_dead_one(settings, memcached_server):
    dead = f"127.0.0.1:{free_port()}"
    settings.CACHES = {"default": {"BACKEND": MEMCACHED,
                                   "LOCATION": [memcached_server.location, dead]}}
    cache = caches["default"]
    key = next(f"k{i}" for i in range(1000) if cache.server_for(f"k{i}") != dead)
    cache.set(key, "v")
    assert cache.get(key) == "v"

    started = time.monotonic()
    out, failure = run_failing("cache_stats")
    assert time.monotonic() - started < 10
    assert str(failure) == "1 cache or server could not be read (the table says why)"
    live = stats_row(out, "default", memcached_server.address)
    assert live["items"] == "1" and live["hits"] == "1" and live["evictions"] == "0"
    assert stats_row(out, "default", dead)["error"]


def test_stats_of_djangos_backends_and_our_dummy(settings, tmp_path, memcached_server):
    settings.CACHES = {
        "default": {"BACKEND": DJANGO_LOCMEM, "LOCATION": "cmd-stats"},
        "dummy": {"BACKEND": DJANGO_DUMMY},
        "ourdummy": {"BACKEND": DUMMY},
        "djfile": {"BACKEND": DJANGO_FILE, "LOCATION": str(tmp_path / "dj")},
        "pymemcache": {"BACKEND": DJANGO_PYMEMCACHE, "LOCATION": memcached_server.location},
        "pylibmc": {"BACKEND": DJANGO_PYLIBMC, "LOCATION": memcached_server.location},
        # Nothing listens there: the row shows what can be known without it.
        "redis": {"BACKEND": DJANGO_REDIS, "LOCATION": f"redis://127.0.0.1:{free_port()}/0"},
    }
    caches["default"].set_many({"x": 1, "y": 2})
    caches["dummy"].set("x", 1)
    caches["djfile"].set("x", 1)
    caches["pymemcache"].set("x", 1)
    try:
        out, failure = run_failing("cache_stats")  # the Redis server does not answer
    finally:
        caches["default"].clear()
    assert failure.returncode == 1
    locmem = stats_row(out, "default", "cmd-stats (this process)")
    assert locmem["items"] == "2" and locmem["bytes"] != "0 B"
    assert (locmem["hits"], locmem["misses"], locmem["ratio"]) == ("-", "-", "-")
    for alias in ("dummy", "ourdummy"):
        assert stats_row(out, alias) == {"items": "0", "bytes": "0 B", "hits": "-",
                                         "misses": "-", "ratio": "-", "evictions": "-"}
    assert stats_row(out, "djfile")["items"] == "1"
    for alias in ("pymemcache", "pylibmc"):
        assert stats_row(out, alias)["items"] == "1"
    assert "Connection refused" in stats_row(out, "redis")["error"]



@needs_redis
def test_stats_of_djangos_redis_cache(settings):
    settings.CACHES = {"default": {"BACKEND": DJANGO_REDIS, "LOCATION": "redis://127.0.0.1:6379/13",
                                   "KEY_PREFIX": f"cmd-stats-{os.getpid()}"}}
    cache = caches["default"]
    before = stats_row(run("cache_stats")[0], "default")
    cache.set_many({"x": 1, "y": 2})
    cache.get("x")
    try:
        after = stats_row(run("cache_stats")[0], "default")
    finally:
        cache.delete_many(["x", "y"])
    assert int(after["items"]) == int(before["items"]) + 2  # the keys of its database
    assert int(after["hits"]) >= int(before["hits"]) + 1  # the server's
    assert after["bytes"] != "0 B" and after["misses"] != "-" and after["evictions"] != "-"


def test_stats_of_database_caches(settings, db_table):
    settings.CACHES = {"default": {"BACKEND": DB, "LOCATION": db_table},
                       "django": {"BACKEND": DJANGO_DB, "LOCATION": db_table}}
    caches["default"].set_many({"a": 1, "b": 2})
    caches["django"].set("c", 3)
    caches["django"].set("old", 4, timeout=1)
    time.sleep(1.1)  # the table keeps whole seconds
    out, _ = run("cache_stats")
    for alias in ("default", "django"):
        row = stats_row(out, alias, db_table)
        assert row["items"] == "3", out  # the expired row is not counted
        assert row["hits"] == "-"


def test_stats_report_a_broken_cache_and_show_the_others(settings, shm_entry):
    settings.CACHES = {
        "default": shm_entry,
        "broken": {"BACKEND": SHM, "LOCATION": "x", "OPTIONS": {"NO_SUCH_OPTION": 1}},
        "nomodule": {"BACKEND": "no.such.module.Cache"},
    }
    out, failure = run_failing("cache_stats")
    assert str(failure) == "2 caches or servers could not be read (the table says why)"
    assert stats_row(out, "default")["items"] == "0"
    assert "NO_SUCH_OPTION" in stats_row(out, "broken")["error"]
    assert "no.such" in stats_row(out, "nomodule")["error"]


def test_stats_unknown_alias(settings, shm_entry):
    settings.CACHES = {"default": shm_entry}
    with pytest.raises(CommandError, match=r"Unknown cache alias 'nope'; CACHES has 'default'"):
        run("cache_stats", "default", "nope")


def test_stats_in_a_subprocess(shm_entry, memcached_server):
    dead = f"127.0.0.1:{free_port()}"
    config = {"default": shm_entry,
              "mc": {"BACKEND": MEMCACHED, "LOCATION": [memcached_server.location, dead]}}
    from django_nativecache.backends.shm import SharedMemoryCache

    # The segment is shared: what this process wrote is what the command counts.
    ours = SharedMemoryCache(shm_entry["LOCATION"], {"OPTIONS": shm_entry["OPTIONS"]})
    ours.set("shared", 1)
    done = manage(config, "cache_stats")
    assert done.returncode == 1, done.stderr  # the dead server's row is an error
    assert "1 cache or server could not be read" in done.stderr
    assert stats_row(done.stdout, "default")["items"] == "1"
    assert stats_row(done.stdout, "mc", memcached_server.address)["items"] == "0"
    assert "error" in stats_row(done.stdout, "mc", dead)
    assert manage({"default": shm_entry}, "cache_stats").returncode == 0

    done = manage(config, "cache_stats", "nope")
    assert done.returncode == 1
    assert "Unknown cache alias 'nope'" in done.stderr


# -- cache_clear --------------------------------------------------------------------


def test_clear_without_input(settings, shm_entry, tmp_path):
    settings.CACHES = {"default": shm_entry,
                       "files": {"BACKEND": FILE, "LOCATION": str(tmp_path / "f")},
                       "kept": {"BACKEND": DJANGO_LOCMEM, "LOCATION": "cmd-kept"}}
    for alias in settings.CACHES:
        caches[alias].set("k", "v")
    try:
        out, _ = run("cache_clear", "default", "files", interactive=False)
        assert out.splitlines() == [
            f"Cleared cache 'default' ({SHM}).",
            f"Cleared cache 'files' ({FILE}).",
        ]
        assert caches["default"].get("k") is None and caches["files"].get("k") is None
        assert caches["kept"].get("k") == "v"
        run("cache_clear", interactive=False)  # no alias: every cache
        assert caches["kept"].get("k") is None
    finally:
        caches["kept"].clear()


def test_clear_asks_first(settings, shm_entry):
    settings.CACHES = {"default": shm_entry}
    cache = caches["default"]
    cache.set("k", "v")
    for answer in ("no\n", "\n", "YES\n", "y\n"):
        out, _ = run("cache_clear", stdin=answer)
        assert "Type 'yes' to continue" in out
        assert out.endswith("Cache clear cancelled; nothing was removed.\n")
        assert cache.get("k") == "v"
    out, _ = run("cache_clear", stdin="yes\n")
    assert out.endswith(f"Cleared cache 'default' ({SHM}).\n")
    assert cache.get("k") is None


def test_clear_reports_a_cache_it_could_not_clear(settings, shm_entry):
    dead = f"127.0.0.1:{free_port()}"
    settings.CACHES = {"default": shm_entry, "mc": {"BACKEND": MEMCACHED, "LOCATION": dead}}
    caches["default"].set("k", "v")
    with pytest.raises(CommandError, match=r"1 of 2 caches could not be cleared: 'mc'"):
        run("cache_clear", interactive=False)
    assert caches["default"].get("k") is None  # the others are cleared all the same


@pytest.mark.parametrize("ignore", [False, True], ids=["raising", "IGNORE_EXCEPTIONS"])
def test_clear_names_the_memcached_servers_it_could_not_clear(settings, memcached_server,
                                                              ignore):
    dead = f"127.0.0.1:{free_port()}"
    settings.CACHES = {"mc": {"BACKEND": MEMCACHED, "LOCATION": [memcached_server.location, dead],
                              "OPTIONS": {"IGNORE_EXCEPTIONS": ignore}}}
    cache = caches["mc"]
    kept = []
    for i in range(40):  # the keys that land on the live server
        with contextlib.suppress(Exception):
            cache.set(f"k{i}", i)
        with contextlib.suppress(Exception):
            if cache.get(f"k{i}") == i:
                kept.append(f"k{i}")
    assert kept
    err = io.StringIO()
    with pytest.raises(CommandError, match=r"1 of 1 caches could not be cleared: 'mc'"):
        call_command("cache_clear", interactive=False, stdout=io.StringIO(), stderr=err)
    assert f"Cache 'mc' ({MEMCACHED}) was not cleared on 1 of its 2 servers ({dead}: " \
        in err.getvalue()
    assert err.getvalue().rstrip().endswith("the others were flushed")
    assert [key for key in kept if cache.get(key) is not None] == []


@pytest.mark.parametrize("ignore", [False, True], ids=["raising", "IGNORE_EXCEPTIONS"])
def test_clear_reports_a_memcached_server_that_refuses_to_flush(settings, memcached_factory,
                                                                ignore):
    refusing = memcached_factory(extra=("-F",))  # flush_all disabled
    settings.CACHES = {"mc": {"BACKEND": MEMCACHED, "LOCATION": refusing.location,
                              "OPTIONS": {"IGNORE_EXCEPTIONS": ignore}}}
    caches["mc"].set("k", "v")
    err = io.StringIO()
    with pytest.raises(CommandError, match=r"1 of 1 caches could not be cleared: 'mc'"):
        call_command("cache_clear", interactive=False, stdout=io.StringIO(), stderr=err)
    assert f"Cache 'mc' ({MEMCACHED}) was not cleared: " in err.getvalue()
    assert caches["mc"].get("k") == "v"


def test_clear_of_a_memcached_cache_whose_servers_are_all_dead(settings):
    dead = f"127.0.0.1:{free_port()}"
    settings.CACHES = {"mc": {"BACKEND": MEMCACHED, "LOCATION": [dead],
                              "OPTIONS": {"IGNORE_EXCEPTIONS": True}}}
    err = io.StringIO()
    with pytest.raises(CommandError, match=r"1 of 1 caches could not be cleared: 'mc'"):
        call_command("cache_clear", interactive=False, stdout=io.StringIO(), stderr=err)
    assert f"Cache 'mc' ({MEMCACHED}) was not cleared: " in err.getvalue()
    assert "others" not in err.getvalue()


def test_clear_in_a_subprocess(shm_entry):
    from django_nativecache.backends.shm import SharedMemoryCache

    config = {"default": shm_entry}
    ours = SharedMemoryCache(shm_entry["LOCATION"], {"OPTIONS": shm_entry["OPTIONS"]})
    ours.set("k", "v")

    declined = manage(config, "cache_clear", stdin="no\n")
    assert declined.returncode == 0, declined.stderr
    assert "Cache clear cancelled" in declined.stdout
    assert ours.get("k") == "v"

    accepted = manage(config, "cache_clear", stdin="yes\n")
    assert accepted.returncode == 0, accepted.stderr
    assert f"Cleared cache 'default' ({SHM})." in accepted.stdout
    assert ours.get("k") is None

    ours.set("k", "v")
    for flag in ("--noinput", "--no-input"):
        quiet = manage(config, "cache_clear", "default", flag)
        assert quiet.returncode == 0, quiet.stderr
        assert "Type 'yes'" not in quiet.stdout
        assert ours.get("k") is None
        ours.set("k", "v")

    unknown = manage(config, "cache_clear", "nope", "--noinput")
    assert unknown.returncode == 1
    assert "Unknown cache alias 'nope'" in unknown.stderr
    assert ours.get("k") == "v"


def test_commands_do_not_create_a_segment_no_process_has_made(shm_entry):
    config = {"default": shm_entry}
    segment = Path("/dev/shm", shm.segment_name(shm_entry["LOCATION"], NAMESPACE))

    stats = manage(config, "cache_stats")
    assert stats.returncode == 0, stats.stderr
    row = stats_row(stats.stdout, "default", "(not created yet)")
    assert row["items"] == "0" and row["hits"] == "0" and row["evictions"] == "0"
    cleared = manage(config, "cache_clear", "--noinput")
    assert cleared.returncode == 0, cleared.stderr
    assert "its segment was never created, so it held nothing" in cleared.stdout
    keys = manage(config, "cache_keys")
    assert keys.returncode == 0, keys.stderr
    assert keys.stdout.strip() == "No keys (the cache's segment was never created)."
    raw = manage(config, "cache_keys", "--raw")  # keys alone, one per line: none
    assert raw.returncode == 0 and raw.stdout == "", raw.stdout
    assert not segment.exists()

    # Bad OPTIONS are still reported as such, not as an empty cache.
    broken = {"default": {**shm_entry, "OPTIONS": {**shm_entry["OPTIONS"], "SIZE": "tiny"}}}
    done = manage(broken, "cache_stats")
    assert done.returncode == 1 and "SIZE" in stats_row(done.stdout, "default")["error"]

    # Once a process has made it, the commands use it.
    from django_nativecache.backends.shm import SharedMemoryCache

    SharedMemoryCache(shm_entry["LOCATION"], {"OPTIONS": shm_entry["OPTIONS"]}).set("k", 1)
    assert segment.exists()
    assert stats_row(manage(config, "cache_stats").stdout, "default")["items"] == "1"


# -- cache_keys ---------------------------------------------------------------------


def test_keys_of_shared_memory(settings, shm_entry):
    settings.CACHES = {"default": shm_entry,
                       "prefixed": {**shm_entry, "KEY_PREFIX": "other"}}
    cache = caches["default"]
    cache.set("b", 1)
    cache.set("a", 1)
    cache.set("a", 2, version=2)
    cache.set("views.decorators.cache.page", 1)
    cache.set("soon-gone", 1, timeout=0.05)
    caches["prefixed"].set("theirs", 1)
    time.sleep(0.1)

    out, err = run("cache_keys")
    assert out.splitlines() == [
        "VERSION  KEY",
        "1        a",
        "2        a",
        "1        b",
        "1        views.decorators.cache.page",
    ]
    # The key of the cache with another KEY_PREFIX on the same segment is not ours.
    assert "1 stored key not made with KEY_PREFIX ''" in err

    out, _ = run("cache_keys", "default", "--pattern", "views.*")
    assert out.splitlines() == ["VERSION  KEY", "1        views.decorators.cache.page"]
    out, _ = run("cache_keys", "--pattern", "nothing*")
    assert out == "No keys match 'nothing*'.\n"
    out, _ = run("cache_keys", "--raw")
    assert out.splitlines() == [":1:a", ":1:b", ":1:views.decorators.cache.page", ":2:a",
                                "other:1:theirs"]
    out, _ = run("cache_keys", "--raw", "--pattern", "other:*")
    assert out.splitlines() == ["other:1:theirs"]
    out, err = run("cache_keys", "prefixed")
    assert out.splitlines() == ["VERSION  KEY", "1        theirs"]
    assert "4 stored keys not made with KEY_PREFIX 'other'" in err


def test_keys_of_files_and_a_custom_key_function(settings, tmp_path):
    settings.CACHES = {
        "default": {"BACKEND": FILE, "LOCATION": str(tmp_path / "f")},
        "custom": {"BACKEND": FILE, "LOCATION": str(tmp_path / "g"),
                   "KEY_FUNCTION": "tests.test_commands.reversed_key"},
    }
    assert run("cache_keys")[0] == "No keys.\n"  # no directory yet
    caches["default"].set("one", 1)
    caches["default"].set("two", 2, version=7)
    caches["default"].set("expired", 1, timeout=0.05)
    time.sleep(0.1)
    out, _ = run("cache_keys")
    assert out.splitlines() == ["VERSION  KEY", "1        one", "7        two"]

    caches["custom"].set("abc", 1)
    out, err = run("cache_keys", "custom")
    assert out.splitlines() == ["cba"]
    assert "has its own KEY_FUNCTION: keys are shown as stored" in err


def reversed_key(key: str, key_prefix: str, version: int) -> str:
    return key[::-1]


def test_keys_of_database_caches(settings, db_table):
    settings.CACHES = {"default": {"BACKEND": DB, "LOCATION": db_table},
                       "django": {"BACKEND": DJANGO_DB, "LOCATION": db_table, "KEY_PREFIX": "dj"}}
    caches["default"].set("ours", 1)
    caches["django"].set("theirs", 1)
    caches["django"].set("old", 1, timeout=1)
    time.sleep(1.1)
    out, err = run("cache_keys")
    assert out.splitlines() == ["VERSION  KEY", "1        ours"]
    assert "1 stored key not made" in err
    out, _ = run("cache_keys", "django")
    assert out.splitlines() == ["VERSION  KEY", "1        theirs"]


def test_keys_of_a_database_cache_without_its_table(settings, transactional_db):
    settings.CACHES = {"default": {"BACKEND": DB, "LOCATION": "nativecache_no_such_table"}}
    with pytest.raises(CommandError, match=rf"Cache 'default' \({DB}\) could not list its "
                                           r"keys: .*nativecache_no_such_table"):
        run("cache_keys")


def test_keys_of_djangos_locmem(settings):
    settings.CACHES = {"default": {"BACKEND": DJANGO_LOCMEM, "LOCATION": "cmd-keys"}}
    cache = caches["default"]
    try:
        cache.set("k", 1)
        cache.set("forever", 1, timeout=None)
        cache.set("gone", 1, timeout=0.05)
        time.sleep(0.1)
        out, err = run("cache_keys")
        assert out.splitlines() == ["VERSION  KEY", "1        forever", "1        k"]
        # What another process (manage.py) sees of it is its own copy: it says so.
        assert "Django's LocMemCache keeps a private copy in each process" in err
    finally:
        cache.clear()


@pytest.mark.parametrize("backend", [MEMCACHED, DUMMY, DJANGO_DUMMY, DJANGO_FILE, DJANGO_REDIS])
def test_keys_refused_where_the_backend_cannot_list(settings, tmp_path, backend):
    location = {MEMCACHED: "127.0.0.1:11211", DJANGO_FILE: str(tmp_path),
                DJANGO_REDIS: "redis://127.0.0.1:6379/0"}.get(backend, "")
    settings.CACHES = {"default": {"BACKEND": DUMMY},
                       "them": {"BACKEND": backend, "LOCATION": location}}
    with pytest.raises(CommandError) as info:
        run("cache_keys", "them")
    message = str(info.value)
    assert message.startswith(f"Cache 'them' ({backend}) cannot list its keys;")
    assert "SharedMemoryCache" in message


def test_native_stores_without_a_key_listing_say_so(memcached_server):
    """The stores below the commands: memcached and dummy answer keys() with
    NotImplementedError (the core's kUnsupported), not with a configuration error."""
    from django_nativecache import _native
    from tests import mcutil

    for store in (_native.open_dummy(), mcutil.build(memcached_server.location)._store):
        with pytest.raises(NotImplementedError, match="this store cannot list its keys"):
            store.keys()


def test_keys_unknown_alias_and_a_cache_that_cannot_be_opened(settings):
    settings.CACHES = {"default": {"BACKEND": SHM, "OPTIONS": {"SIZE": "1 TB"}}}
    with pytest.raises(CommandError, match="Unknown cache alias 'nope'"):
        run("cache_keys", "nope")
    with pytest.raises(CommandError, match=r"Cache 'default' \(.*\) cannot be opened: .*"):
        run("cache_keys")


def test_keys_in_a_subprocess(shm_entry, tmp_path):
    from django_nativecache.backends.shm import SharedMemoryCache

    ours = SharedMemoryCache(shm_entry["LOCATION"], {"OPTIONS": shm_entry["OPTIONS"]})
    ours.set("from-the-test-process", 1)
    config = {"default": shm_entry, "mc": {"BACKEND": MEMCACHED, "LOCATION": "127.0.0.1:1"}}
    done = manage(config, "cache_keys")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["VERSION  KEY", "1        from-the-test-process"]

    refused = manage(config, "cache_keys", "mc")
    assert refused.returncode == 1
    assert f"Cache 'mc' ({MEMCACHED}) cannot list its keys" in refused.stderr

    # A database cache, written by one process and listed by another.
    db = tmp_path / "db.sqlite3"
    config = {"default": {"BACKEND": DB, "LOCATION": "cmd_sub"}}
    for step in (("createcachetable",),
                 ("shell", "-c", "from django.core.cache import cache; cache.set('row', 1)")):
        done = manage(config, *step, db=db)
        assert done.returncode == 0, done.stderr
    done = manage(config, "cache_keys", db=db)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["VERSION  KEY", "1        row"]
