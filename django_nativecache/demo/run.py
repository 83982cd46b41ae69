"""``python -m django_nativecache demo``: the demo site under gunicorn, with load driven
at it from this process, then the hits and misses of all workers and ``cache_stats``.

Every page of the site costs ``DEMO_COST_MS`` to compute on a miss and every
computation is logged (``django_nativecache.demo.work``), so the count of computations
is the count of misses the site paid for, whichever worker paid. With the shared-memory
cache each part is computed about once for all workers; with Django's ``LocMemCache``
once per worker that happens to serve it.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

from django_nativecache.demo.caches import BACKENDS, DEFAULT_LOCATIONS
from django_nativecache.demo.work import read_log


class DemoError(RuntimeError):
    """A server of the demo (gunicorn, memcached) is missing or did not start."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def urls(pages: int) -> list[str]:
    """The paths the load visits: every door of the site, ``pages`` of each kind."""
    paths = []
    for n in range(pages):
        paths += [f"/site/{n}/", f"/page/{n}/", f"/lowlevel/{n}/", f"/async/{n}/"]
    paths += [f"/fragments/?lang={lang}" for lang in ("en", "fr", "de", "nl")]
    return paths


def parts_of(path: str) -> int:
    """Cached parts a page is made of: the fragments page has two, the others one."""
    return 2 if path.startswith("/fragments/") else 1


@dataclass
class Load:
    requests: int = 0
    parts: int = 0  # cached parts the answered requests asked for
    errors: int = 0
    seconds: float = 0.0
    by_worker: Counter[str] = field(default_factory=Counter)


def request(port: int, path: str, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def drive(port: int, paths: list[str], seconds: float, threads: int) -> Load:
    """Visits ``paths`` round and round from ``threads`` threads for ``seconds``; each
    thread starts at a different place in the list, as visitors do."""
    load = Load()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    stop = threading.Event()  # set on Ctrl-C: the visitors end with the main thread

    def visitor(offset: int) -> None:
        done, parts, errors, by_worker = 0, 0, 0, Counter[str]()
        i = offset
        while time.monotonic() < deadline and not stop.is_set():
            try:
                path = paths[i % len(paths)]
                status, headers, _ = request(port, path)
                if status == 200:
                    done += 1
                    parts += parts_of(path)
                    by_worker[headers.get("x-served-by", "?")] += 1
                else:
                    errors += 1
            except OSError:
                errors += 1
            i += 1
        with lock:
            load.requests += done
            load.parts += parts
            load.errors += errors
            load.by_worker.update(by_worker)

    began = time.perf_counter()
    workers = [
        threading.Thread(target=visitor, args=(n * len(paths) // threads,)) for n in range(threads)
    ]
    for t in workers:
        t.start()
    try:
        for t in workers:
            t.join()
    finally:
        stop.set()
    load.seconds = time.perf_counter() - began
    return load


@contextmanager
def memcached_server() -> Iterator[str]:
    binary = shutil.which("memcached")
    if binary is None:
        raise DemoError("memcached is not installed: install it or pass --location HOST:PORT")
    port = free_port()
    command = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "64"]
    if os.geteuid() == 0:
        command += ["-u", "root"]  # memcached refuses to run as root without being told
    proc = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise DemoError("memcached did not start") from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


def wait_for_workers(proc: subprocess.Popen[bytes], port: int, workers: int, name: str,
                     timeout: float = 30.0) -> None:
    """Returns once ``workers`` distinct processes have answered on ``port``.

    A server answers as soon as its first worker is up while the others are still
    importing Django; load sent before then would all land on that first worker."""
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    lock = threading.Lock()

    def probe() -> None:
        try:
            status, headers, _ = request(port, "/plain/0/", timeout=2)
        except OSError:
            return
        if status == 200:
            with lock:
                seen.add(headers.get("x-served-by", "?"))

    while len(seen) < workers:
        if proc.poll() is not None:
            raise DemoError(f"{name} exited with status {proc.returncode}")
        if time.monotonic() > deadline:
            raise DemoError(f"{name}: {len(seen)} of {workers} workers answered within "
                             f"{timeout:g} s")
        # Concurrent requests, so that a busy worker leaves the next one to another.
        probes = [threading.Thread(target=probe) for _ in range(2 * workers)]
        for t in probes:
            t.start()
        for t in probes:
            t.join()
        if len(seen) < workers:
            time.sleep(0.05)


@contextmanager
def _serve(name: str, args: list[str], env: dict[str, str], workers: int,
           port: int) -> Iterator[int]:
    """Runs ``python -m <name> <args>`` until the block ends, once its workers answer."""
    proc = subprocess.Popen([sys.executable, "-m", name, *args], env=env)
    try:
        wait_for_workers(proc, port, workers, name)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def gunicorn(env: dict[str, str], workers: int, app: str = "django_nativecache.demo.wsgi",
             extra: tuple[str, ...] = ()) -> AbstractContextManager[int]:
    """Serves ``app`` with ``workers`` gunicorn workers on a free port; yields the port."""
    port = free_port()
    return _serve("gunicorn", [app, "--workers", str(workers), "--bind", f"127.0.0.1:{port}",
                               "--log-level", "warning", *extra], env, workers, port)


def uvicorn(env: dict[str, str], workers: int,
            app: str = "django_nativecache.demo.asgi:application") -> AbstractContextManager[int]:
    """Serves ``app`` (ASGI) with ``workers`` uvicorn workers on a free port; yields the port."""
    port = free_port()
    return _serve("uvicorn", [app, "--host", "127.0.0.1", "--port", str(port), "--workers",
                              str(workers), "--log-level", "warning"], env, workers, port)


# --page-cache: whose cache middleware and cache_page serve the site's pages.
PAGE_CACHES = {
    "django": "Django's cache middleware and cache_page",
    "native": "django_nativecache's drop-in cache middleware and cache_page",
}


def site_env(backend: str, workdir: str, location: str | None, cost_ms: float,
             page_cache: str = "django", key_prefix: str | None = None,
             cost_kind: str = "wait") -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="django_nativecache.demo.settings",
        DEMO_CACHE=backend,
        DEMO_PAGE_CACHE=page_cache,
        DEMO_COST_MS=str(cost_ms),
        DEMO_COST_KIND=cost_kind,  # set, never inherited from the caller's environment
        DEMO_WORK_LOG=os.path.join(workdir, "work.log"),
        DEMO_DB=os.path.join(workdir, "db.sqlite3"),
    )
    if location:
        env["DEMO_CACHE_LOCATION"] = location
    if key_prefix:
        env["DEMO_CACHE_KEY_PREFIX"] = key_prefix
    return env


def manage(env: dict[str, str], *args: str) -> int:
    return subprocess.call([sys.executable, "-m", "django", *args], env=env)


def run(backend: str, workers: int, pages: int, seconds: float, location: str | None,
        cost_ms: float, page_cache: str = "django") -> int:
    kind = BACKENDS[backend][1]
    workdir = tempfile.mkdtemp(prefix="nativecache-demo-")
    # A Redis database outlives the run and may hold other keys: this run's have a
    # KEY_PREFIX of their own, so it starts empty and removes them at the end.
    prefix = f"nativecache-demo-{os.getpid()}" if kind == "redis" else None
    try:
        if kind == "server" and location is None:
            with memcached_server() as server:
                return _run(backend, workers, pages, seconds, server, cost_ms, workdir, page_cache,
                            prefix)
        if location is None:
            location = {
                "name": f"demo-{os.getpid()}",
                "directory": os.path.join(workdir, "cache"),
            }.get(kind)
        return _run(backend, workers, pages, seconds, location, cost_ms, workdir, page_cache,
                    prefix)
    finally:
        if kind == "name" and backend == "shm":
            _unlink_segment(location or "demo")
        if kind == "redis":
            _delete_redis_keys(location or DEFAULT_LOCATIONS[kind], f"{prefix}:*")
        shutil.rmtree(workdir, ignore_errors=True)


def _delete_redis_keys(location: str, pattern: str) -> None:
    try:
        import redis

        client = redis.Redis.from_url(location)
        for key in client.scan_iter(match=pattern, count=1000):
            client.delete(key)
    except Exception as exc:  # Redis gone meanwhile: the keys expire within the pages' 60 s
        print(f"demo: the run's Redis keys ({pattern}) were not removed: {exc}", file=sys.stderr)


def _unlink_segment(location: str) -> None:
    from django_nativecache.backends import shm
    from django_nativecache.demo import settings

    try:
        shm.unlink(shm.segment_name(location, settings.SECRET_KEY))
    except OSError:
        pass


def _run(backend: str, workers: int, pages: int, seconds: float, location: str | None,
         cost_ms: float, workdir: str, page_cache: str, key_prefix: str | None) -> int:
    env = site_env(backend, workdir, location, cost_ms, page_cache, key_prefix)
    if BACKENDS[backend][1] == "table" and manage(env, "createcachetable") != 0:
        return 1
    paths = urls(pages)
    print(f"demo site on {BACKENDS[backend][0]}"
          f"{f' ({location})' if location else ''}: gunicorn with {workers} workers, "
          f"{PAGE_CACHES[page_cache]}")
    print(f"{len(paths)} distinct paths (per-site section, cache_page, low-level API sync "
          f"and async, {{% cache %}} fragments), {cost_ms:g} ms per computed part; "
          f"load: {2 * workers} client threads for {seconds:g} s")
    with gunicorn(env, workers) as port:
        load = drive(port, paths, seconds, threads=2 * workers)
    log = read_log(env["DEMO_WORK_LOG"])
    parts = Counter(what for _, what in log)
    computed_by = Counter(pid for pid, _ in log)
    print()
    print(f"requests: {load.requests:,} in {load.seconds:.1f} s = "
          f"{load.requests / load.seconds:,.0f} requests/s ({load.errors} errors)")
    print("served by worker pid: "
          + ", ".join(f"{pid}: {n:,}" for pid, n in sorted(load.by_worker.items())))
    scale = ("the dummy cache keeps nothing: every request computes its parts"
             if backend == "dummy" else
             f"1.00: once for the whole site; up to {workers}.00: once per worker")
    print(f"computed (cache misses, all workers together): {len(log):,} for {len(parts):,} "
          f"distinct parts = {len(log) / max(len(parts), 1):.2f} per part ({scale})")
    print("computed by worker pid: "
          + ", ".join(f"{pid}: {n:,}" for pid, n in sorted(computed_by.items())))
    print(f"parts served from the cache (hits): {load.parts - len(log):,} of {load.parts:,} "
          f"asked for ({(load.parts - len(log)) / max(load.parts, 1):.1%})")
    print()
    print("manage.py cache_stats (counters of the cache itself, across every process that "
          "used it):", flush=True)
    if manage(env, "cache_stats") != 0:
        return 1
    return 0 if load.requests and not load.errors else 1
