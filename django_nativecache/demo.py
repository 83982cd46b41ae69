"""A few worker processes, like a site's gunicorn workers, render the same pages through
one cache. With SharedMemoryCache each page is computed once for all of them; with
Django's LocMemCache each worker computes it again."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from typing import Any

BACKENDS = {
    "shm": "django_nativecache.backends.shm.SharedMemoryCache",
    "django-locmem": "django.core.cache.backends.locmem.LocMemCache",
}
RENDER_COST = 0.02  # seconds a page takes on a miss


def _setup(backend: str) -> None:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            SECRET_KEY="django-nativecache-demo",
            CACHES={
                "default": {
                    "BACKEND": BACKENDS[backend],
                    "LOCATION": f"demo-{os.getppid() if mp.parent_process() else os.getpid()}",
                    "OPTIONS": {"MAX_ENTRIES": 10_000},
                }
            },
        )
        django.setup()


def _worker(
    backend: str, worker: int, workers: int, pages: int, start: Any, results: Any
) -> None:
    _setup(backend)
    from django.core.cache import cache

    start.wait()
    rendered = 0
    began = time.perf_counter()
    offset = worker * pages // workers  # visitors do not arrive in lockstep
    for round_ in range(3):
        for step in range(pages):
            page = (offset + step) % pages

            def render(page: int = page) -> str:
                nonlocal rendered
                rendered += 1
                time.sleep(RENDER_COST)
                return f"<html>page {page}, rendered by worker {worker} (pid {os.getpid()})</html>"

            cache.get_or_set(f"page:{page}", render, timeout=60)
            if not cache.add("visits", 1):
                cache.incr("visits")
    elapsed = time.perf_counter() - began
    sample = cache.get("page:0")
    results.put((worker, os.getpid(), rendered, 3 * pages, elapsed, sample))


def run(workers: int, pages: int, backend: str) -> int:
    _setup(backend)
    from django.core.cache import cache

    cache.clear()
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(workers)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(backend, i, workers, pages, start, results))
        for i in range(workers)
    ]
    print(f"{workers} worker processes, {pages} pages x 3 rounds each, backend: {BACKENDS[backend]}")
    for p in procs:
        p.start()
    rows = sorted(results.get(timeout=300) for _ in procs)
    for p in procs:
        p.join()
    total_rendered = 0
    for worker, pid, rendered, requests, elapsed, sample in rows:
        total_rendered += rendered
        print(
            f"  worker {worker} (pid {pid}): {requests} requests, rendered {rendered} pages itself, "
            f"{requests / elapsed:,.0f} requests/s; page 0 reads {sample!r}"
        )
    print(f"pages rendered in total: {total_rendered} for {pages} distinct pages")
    if backend == "shm":
        print(f"visits counted by all workers together: {cache.get('visits')}")
        stats = cache.stats()
        print("stats(): " + ", ".join(f"{k}={v:,}" for k, v in stats.items()))
        cache.delete_segment()
    else:
        print("(each worker has its own cache: nothing is shared, so there are no shared stats)")
    return 0
