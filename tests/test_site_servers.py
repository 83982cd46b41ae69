"""The demo site (django_nativecache/demo/) under real servers: gunicorn with 4 worker
processes, and uvicorn (ASGI) for the async view.

Every computed part of a page is logged by the process that computed it
(django_nativecache.demo.work), so a test counts the misses the whole site paid for,
whichever worker paid.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from django_nativecache.demo import run as demo
from django_nativecache.demo.work import read_log
from tests.redisutil import needs_redis

WORKERS = 4
PAGES = 24
VISITS = 8  # each page, so that every page meets several workers


@pytest.fixture
def site(tmp_path: Path) -> Iterator[object]:
    """Builds the environment of a demo site on one backend; removes its segment."""
    segments: list[str] = []

    def env(backend: str, location: str | None = None) -> dict[str, str]:
        if backend == "shm" and location is None:
            location = f"site-test-{os.getpid()}-{len(segments)}"
            segments.append(location)
        e = demo.site_env(backend, str(tmp_path), location, cost_ms=2)
        # The test process must find the checkout's package before any installed one.
        e["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), e.get("PYTHONPATH")]))
        return e

    yield env
    for location in segments:
        demo._unlink_segment(location)


def visit_all(port: int, paths: list[str], visits: int, clients: int) -> list[tuple[str, str]]:
    """Requests every path ``visits`` times from ``clients`` threads at once; a path is
    only ever requested by one thread, so no two requests for one page overlap (two
    overlapping misses would both compute, on any cache). (path, worker pid) per reply."""
    served: list[tuple[str, str]] = []
    lock = threading.Lock()
    failures: list[str] = []

    def client(mine: list[str]) -> None:
        for _ in range(visits):
            for path in mine:
                status, headers, body = demo.request(port, path)
                with lock:
                    if status != 200:
                        failures.append(f"{path}: {status}")
                    served.append((path, headers["x-served-by"]))

    threads = [threading.Thread(target=client, args=(paths[i::clients],)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    return served


def serve_pages(env: dict[str, str]) -> tuple[Counter[str], Counter[int], set[str]]:
    """Serves PAGES cache_page pages VISITS times each through gunicorn; returns the
    computations per part, per computing pid, and the pids that served."""
    paths = [f"/page/{n}/" for n in range(PAGES)]
    with demo.gunicorn(env, WORKERS) as port:
        served = visit_all(port, paths, VISITS, clients=WORKERS)
    log = read_log(env["DEMO_WORK_LOG"])
    assert len(served) == PAGES * VISITS
    return Counter(what for _, what in log), Counter(pid for pid, _ in log), {p for _, p in served}


def test_gunicorn_shared_memory_computes_each_page_once_for_all_workers(site) -> None:
    computed, computed_by, served_by = serve_pages(site("shm"))
    # Every worker served pages, and each page was computed exactly once in all.
    assert len(served_by) == WORKERS
    assert computed == Counter({f"view page {n}": 1 for n in range(PAGES)})
    # ... by whichever worker met it first: not all by one of them.
    assert len(computed_by) > 1


def test_gunicorn_locmem_computes_pages_once_per_worker(site) -> None:
    """The same load on Django's LocMemCache: each worker has a cache of its own, so a
    page is computed again by every worker that serves it, up to WORKERS times."""
    computed, _, served_by = serve_pages(site("django-locmem"))
    assert len(served_by) == WORKERS
    assert set(computed) == {f"view page {n}" for n in range(PAGES)}
    assert max(computed.values()) <= WORKERS
    total = sum(computed.values())
    # With 8 visits of each page spread over 4 workers, far more than one computation
    # per page: the difference the shared cache makes.
    assert total >= 2 * PAGES, computed


def test_gunicorn_serves_every_door_of_the_site_from_one_shared_cache(site) -> None:
    paths = (
        [f"/site/{n}/" for n in range(6)]
        + [f"/lowlevel/{n}/" for n in range(6)]
        + [f"/fragments/?lang={lang}" for lang in ("en", "fr", "de")]
        + [f"/async/{n}/" for n in range(6)]
    )
    env = site("shm")
    with demo.gunicorn(env, WORKERS) as port:
        # The header fragment is on every fragments page: fill it before the pages are
        # requested at once, as two overlapping misses would both compute it.
        assert demo.request(port, "/fragments/?lang=en")[0] == 200
        visit_all(port, paths, visits=6, clients=3)
        # The fragments page varies on ?lang= in one fragment only.
        _, _, body = demo.request(port, "/fragments/?lang=fr")
    computed = Counter(what for _, what in read_log(env["DEMO_WORK_LOG"]))
    expected = (
        [f"site page {n}" for n in range(6)]
        + [f"lowlevel {n}" for n in range(6)]
        + [f"async page {n}" for n in range(6)]
        + ["fragment header"]
        + [f"fragment greeting {lang}" for lang in ("en", "fr", "de")]
    )
    assert computed == Counter({what: 1 for what in expected})
    assert b"fragment greeting fr" in body and b'lang="fr"' in body


# --- uvicorn (ASGI) ------------------------------------------------------------------


def uvicorn(env: dict[str, str]) -> AbstractContextManager[int]:
    return demo.uvicorn(env, 2)


def serve_async(env: dict[str, str]) -> tuple[Counter[str], Counter[str]]:
    """Serves /async/<n>/ 4 times each under uvicorn; (computations per part, the
    X-Cache-Yielded values seen)."""
    yielded: Counter[str] = Counter()
    with uvicorn(env) as port:
        for _ in range(4):
            for n in range(10):
                status, headers, body = demo.request(port, f"/async/{n}/")
                assert status == 200
                assert f"async page {n}, computed by pid".encode() in body
                yielded[headers["x-cache-yielded"]] += 1
    computed = Counter(what for _, what in read_log(env["DEMO_WORK_LOG"]))
    return computed, yielded


def test_uvicorn_async_views_on_shared_memory_run_without_a_thread_hop(site) -> None:
    """aget on the shared-memory cache never gives the event loop a turn: the view
    schedules a callback before awaiting it and finds it not yet run (X-Cache-Yielded:
    0). Django's own backends hop to a thread for every async call (next test)."""
    computed, yielded = serve_async(site("shm"))
    assert computed == Counter({f"async page {n}": 1 for n in range(10)})
    assert yielded == Counter({"0": 40})


def test_uvicorn_async_views_on_a_thread_hopping_cache_show_the_hop(site) -> None:
    computed, yielded = serve_async(site("django-locmem"))
    assert set(computed) == {f"async page {n}" for n in range(10)}
    assert yielded == Counter({"1": 40})


def test_uvicorn_async_requests_on_memcached_reuse_connections(site, memcached_server) -> None:
    # Django makes a cache instance per request task under ASGI and never closes it; the
    # instances with the same settings share one client, so requests do not connect anew.
    with uvicorn(site("memcached", memcached_server.location)) as port:
        for n in range(10):  # each worker opens its connections
            assert demo.request(port, f"/async/{n}/")[0] == 200
        before = int(memcached_server.stats()["total_connections"])
        for _ in range(4):
            for n in range(10):
                assert demo.request(port, f"/async/{n}/")[0] == 200
        opened = int(memcached_server.stats()["total_connections"]) - before
    assert opened <= 4, opened  # the probe, and slack; without sharing, at least 40


# --- the demo command ----------------------------------------------------------------


@pytest.mark.parametrize("page_cache", ["django", "native"])
def test_demo_command_runs_and_reports_hits_and_misses(page_cache: str) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "django_nativecache", "demo", "--workers", "2", "--pages", "5",
         "--seconds", "1.5", "--cost-ms", "5", "--page-cache", page_cache],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "gunicorn with 2 workers" in out
    assert demo.PAGE_CACHES[page_cache] in out
    assert "requests/s (0 errors)" in out
    # 5 pages of each of 4 kinds, plus the fragments page's header and its 4 greetings.
    computed = re.search(r"computed \(cache misses, all workers together\): (\d+) for (\d+) "
                         r"distinct parts", out)
    assert computed is not None, out
    misses, parts = int(computed[1]), int(computed[2])
    assert parts == 25
    assert parts <= misses <= 2 * parts  # a worker computes a part at most once
    hits = re.search(r"parts served from the cache \(hits\): ([\d,]+) of ([\d,]+)", out)
    assert hits is not None and int(hits[1].replace(",", "")) > 0, out
    # cache_stats ran against the same segment and saw those misses.
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("CACHE "))
    table = dict(zip(re.split(r"\s{2,}", lines[header]), re.split(r"\s{2,}", lines[header + 1])))
    assert table["BACKEND"] == "django_nativecache.backends.shm.SharedMemoryCache"
    assert int(table["MISSES"]) >= misses and int(table["HITS"]) > 0


_WIRING = """
from django_nativecache import decorators, middleware
from django_nativecache.demo import middleware as demo_middleware, views
print(views.cache_page is decorators.cache_page,
      issubclass(demo_middleware.SectionCacheMiddleware, middleware.CacheMiddleware))
"""


@pytest.mark.parametrize("page_cache, ours", [("django", "False False"), ("native", "True True")])
def test_demo_page_cache_setting_picks_whose_middleware_and_cache_page(
        tmp_path: Path, page_cache: str, ours: str) -> None:
    env = demo.site_env("shm", str(tmp_path), f"wiring-{os.getpid()}", 1, page_cache)
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()" + _WIRING],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ours.split()


def test_demo_page_cache_setting_refuses_an_unknown_value(tmp_path: Path) -> None:
    env = demo.site_env("shm", str(tmp_path), None, 1, "fast")
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DEMO_PAGE_CACHE must be 'django' or 'native', not 'fast'" in result.stderr


def _demo(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    return subprocess.Popen([sys.executable, "-m", "django_nativecache", "demo", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.parametrize("args, error", [
    (("--workers", "0"), "argument --workers: must be at least 1, got 0"),
    (("--pages", "none"), "argument --pages: 'none' is not a number"),
    (("--seconds", "0"), "argument --seconds: must be at least 0.1, got 0"),
    (("--cost-ms", "-5"), "argument --cost-ms: must be at least 0, got -5"),
    (("--backend", "nope"), "argument --backend: invalid choice: 'nope'"),
])
def test_demo_refuses_bad_arguments_before_starting_anything(args: tuple[str, ...],
                                                             error: str) -> None:
    proc = _demo(*args)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert error in err and out == ""


def test_demo_interrupted_stops_at_once_and_cleans_up() -> None:
    from django_nativecache.backends import shm
    from django_nativecache.demo import settings as demo_settings

    proc = _demo("--workers", "2", "--seconds", "60", "--cost-ms", "1")
    segment = Path("/dev/shm") / shm.segment_name(f"demo-{proc.pid}", demo_settings.SECRET_KEY)
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while "distinct paths" not in proc.stdout.readline():  # the load is about to start
        assert time.monotonic() < deadline and proc.poll() is None
    time.sleep(2)
    assert segment.exists()
    proc.send_signal(signal.SIGINT)
    interrupted = time.monotonic()
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - interrupted < 10  # not the 60 s the load would have run
    assert proc.returncode == 130
    assert "demo: interrupted" in err and "Traceback" not in err
    assert not segment.exists()



@needs_redis
def test_demo_on_redis_starts_empty_and_leaves_no_keys() -> None:
    import redis

    client = redis.Redis.from_url(demo.DEFAULT_LOCATIONS["redis"])
    for _ in range(2):  # the second run computes every part again: nothing was left
        proc = _demo("--backend", "django-redis", "--workers", "2", "--pages", "5",
                     "--seconds", "1.5", "--cost-ms", "5")
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, out + err
        computed = re.search(r"computed \(cache misses, all workers together\): (\d+) for "
                             r"(\d+) distinct parts", out)
        assert computed is not None, out
        assert int(computed[2]) == 25 and int(computed[1]) >= 25  # every part computed
        assert list(client.scan_iter(match=f"nativecache-demo-{proc.pid}:*")) == []
