"""Group "asgi": requests/s of the demo's async view under uvicorn, one subject per cache.

The view is ``/async/<n>/`` of ``django_nativecache.demo``: it awaits ``cache.aget`` and,
on a miss, awaits 5 ms of work and ``cache.aset``. The site runs under uvicorn with 2
workers on 127.0.0.1 without its per-site cache middleware, so a request stays on the event
loop except where the cache itself hops to a thread, and ``wrk`` drives it over 200 pages
on keep-alive connections. The ceiling is ``/async-plain/<n>/``, the same async view with
no cache and no work.

Under ASGI Django makes a cache instance for every request and never closes it; a client
per instance connects anew for every request. Each memcached subject has a memcached of
its own, so the connections its warm runs opened are counted by its server.

A round starts a fresh uvicorn for every subject, primes it with one wrk run (every page
computed; not counted), then runs short warm runs visiting the subjects in turn, starting
from a different subject each round. Every run is checked (wrk errors, the pages' content,
the work log) before its figures count.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import statistics
import tempfile
from collections import Counter
from dataclasses import dataclass, field

from ..harness import md_table, package_version
from . import Context, group
from .http import WRK, WrkRun, memcached_flush, redis_delete, run_wrk

WORKERS = 2
PAGES = 200
COST_MS = 5.0
# Keep-alive connections: uvicorn keeps them open, so 8 per worker keeps each event loop busy.
CONNECTIONS = 8 * WORKERS
PRIME_S = 2
SLICE_S = 1
CYCLES = 3
PAGE_TIMEOUT_S = 60  # views.TIMEOUT: the warm runs of a round end well before
REDIS_LOCATION = "redis://127.0.0.1:6379/13"  # no test and no other group uses db 13
REDIS_KEYS = ":1:async:*"  # what the view writes (no KEY_PREFIX)
SHARED_SLACK = PAGES // 10  # pages computed twice by two requests missing at once
MEMCACHED_SUBJECTS = ("memcached", "django-pylibmc", "django-pymemcache")


@dataclass(frozen=True)
class AsgiSubject:
    name: str  # the demo's backend name, or "ceiling"
    backend: str  # DEMO_CACHE
    ours: bool = False

    @property
    def prefix(self) -> str:
        return "/async-plain/" if self.name == "ceiling" else "/async/"


SUBJECTS = [
    AsgiSubject("memcached", "memcached", ours=True),
    AsgiSubject("django-pylibmc", "django-pylibmc"),
    AsgiSubject("django-pymemcache", "django-pymemcache"),
    AsgiSubject("django-redis", "django-redis"),
    AsgiSubject("shm", "shm", ours=True),
    AsgiSubject("django-locmem", "django-locmem"),
    AsgiSubject("ceiling", "dummy"),
]
# (ours, peer): the ratios reported, ours ÷ peer requests/s.
PAIRS = [
    ("memcached", "django-pylibmc"),
    ("memcached", "django-pymemcache"),
    ("memcached", "django-redis"),
    ("shm", "django-locmem"),
    ("shm", "memcached"),
]


def memcached_stat(location: str, name: str) -> int:
    host, port = location.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"stats\r\n")
        reply = b""
        while not reply.endswith(b"END\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    for line in reply.decode().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == name:
            return int(parts[2])
    raise RuntimeError(f"memcached at {location} reported no {name}")


@dataclass
class Results:
    rates: dict[str, list[float]] = field(default_factory=dict)
    p99: dict[str, list[float]] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    connections: Counter[str] = field(default_factory=Counter)  # opened in the warm runs
    computed: dict[str, list[int]] = field(default_factory=dict)

    def median(self, name: str) -> float | None:
        rates = self.rates.get(name)
        return statistics.median(rates) if rates else None

    def spread(self, name: str) -> str:
        rates = self.rates.get(name, [])
        med = self.median(name)
        if len(rates) < 3 or not med:
            return ""
        q = statistics.quantiles(rates, n=4, method="inclusive")
        return f" ±{100.0 * (q[2] - q[0]) / med:.0f}%"

    def ratio(self, a: str, b: str) -> str:
        va, vb = self.median(a), self.median(b)
        return "n/a" if va is None or not vb else f"{va / vb:.3f}"


class Site:
    """A fresh uvicorn serving the demo on one subject's cache, stopped by ``stack``."""

    def __init__(self, subject: AsgiSubject, location: str | None, tag: str,
                 stack: contextlib.ExitStack) -> None:
        from django_nativecache.demo.run import DemoError, site_env, uvicorn

        self.subject = subject
        self.location = location
        workdir = tempfile.mkdtemp(prefix="nativecache-bench-asgi-")
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        if subject.backend == "shm":
            location = f"bench-asgi-{os.getpid()}-{tag}"  # a new segment: starts empty
            stack.callback(_drop_segment, location)  # after uvicorn stops (LIFO)
        env = site_env(subject.backend, workdir, location, COST_MS)
        env["DEMO_CACHE_MIDDLEWARE"] = "0"
        self.log_path = env["DEMO_WORK_LOG"]
        try:
            self.port: int = stack.enter_context(uvicorn(env, WORKERS))
        except DemoError as exc:
            raise RuntimeError(f"{subject.name}: uvicorn did not serve: {exc}") from None

    def wrk(self, seconds: int, what: str) -> WrkRun:
        run = run_wrk(self.port, self.subject.prefix, seconds, None)
        bad = {k: v for k, v in run.errors.items() if v}
        if bad or run.requests == 0:
            raise RuntimeError(f"{self.subject.name}, {what}: {run.requests} requests, "
                               f"errors {bad}")
        return run

    def computed(self) -> list[tuple[int, str]]:
        from django_nativecache.demo.run import read_log

        return read_log(self.log_path)

    def check(self, after_prime: int) -> int:
        """Pages answer with their content; each computed about once for a shared cache
        (at most once per worker for LocMemCache), none after priming, none for the
        ceiling. The number of computations."""
        from django_nativecache.demo.run import request

        name, log = self.subject.name, self.computed()
        for n in (0, PAGES - 1):
            status, _, body = request(self.port, f"{self.subject.prefix}{n}/")
            expected = f"{'plain' if name == 'ceiling' else 'async'} page {n}"
            if status != 200 or expected.encode() not in body:
                raise RuntimeError(f"{name}: page {n} answered {status} {body[:200]!r}")
        if name == "ceiling":
            if log:
                raise RuntimeError(f"ceiling: {len(log)} computations, expected none")
            return 0
        pages = Counter(what for _, what in log)
        most = WORKERS * PAGES if name == "django-locmem" else PAGES + SHARED_SLACK
        if len(pages) != PAGES or len(log) > most:
            raise RuntimeError(f"{name}: {len(log)} computations of {len(pages)} pages "
                               f"(expected {PAGES} pages, at most {most})")
        if len(log) != after_prime and name != "django-locmem":
            raise RuntimeError(f"{name}: {len(log) - after_prime} pages computed again "
                               "after priming, expected none")
        return len(log)


def _drop_segment(location: str) -> None:
    from django_nativecache.backends import shm
    from django_nativecache.demo import settings as demo_settings

    with contextlib.suppress(OSError):
        shm.unlink(shm.segment_name(location, demo_settings.SECRET_KEY))


def _round(rnd: int, live: list[AsgiSubject], locations: dict[str, str], res: Results) -> None:
    k = rnd % len(live)
    order = live[k:] + live[:k]
    for name in MEMCACHED_SUBJECTS:
        if name in locations:
            memcached_flush(locations[name])
    redis_delete(REDIS_LOCATION, REDIS_KEYS)
    with contextlib.ExitStack() as stack:
        sites = [Site(s, locations.get(s.name), f"{rnd}-{s.name}", stack) for s in order]
        primed = {}
        for site in sites:
            site.wrk(PRIME_S, "priming run")
            primed[site.subject.name] = len(site.computed())
        opened_before = {s.subject.name: memcached_stat(s.location, "total_connections")
                         for s in sites if s.subject.name in MEMCACHED_SUBJECTS}
        warm: dict[str, list[float]] = {}
        for cycle in range(CYCLES):
            for site in sites:
                run = site.wrk(SLICE_S, f"warm run {cycle + 1}")
                name = site.subject.name
                res.rates.setdefault(name, []).append(run.rate)
                res.p99.setdefault(name, []).append(run.p99_ms)
                res.requests[name] += run.requests
                warm.setdefault(name, []).append(run.rate)
        for name, before in opened_before.items():
            # Less one: the stats connection of this count itself.
            res.connections[name] += memcached_stat(locations[name], "total_connections") \
                - before - 1
        for site in sites:
            name = site.subject.name
            computed = site.check(primed[name])
            res.computed.setdefault(name, []).append(computed)
            print(f"    {name:18} warm " + " ".join(f"{r:7,.0f}" for r in warm[name])
                  + f" req/s  computed {computed}", flush=True)


def _table(res: Results, live: list[AsgiSubject]) -> str:
    rows = []
    for s in live:
        med = res.median(s.name)
        p99 = res.p99.get(s.name)
        computed = res.computed.get(s.name, [])
        conns = "n/a"
        if s.name in MEMCACHED_SUBJECTS and res.requests[s.name]:
            conns = f"{res.connections[s.name] / res.requests[s.name]:.3f}"
        rows.append([
            f"`{s.name}`",
            "n/a" if med is None else f"{med:,.0f}{res.spread(s.name)}",
            res.ratio(s.name, "ceiling"),
            "n/a" if not p99 else f"{statistics.median(p99):.1f}",
            conns,
            "n/a" if not computed else f"{min(computed)}–{max(computed)}"
            if min(computed) != max(computed) else str(computed[0]),
        ])
    return md_table(["subject", "warm req/s", "÷ ceiling", "p99 ms",
                     "connections per request", "pages computed"], rows)


@group(
    "asgi",
    "the demo's async view under uvicorn (2 workers) and wrk: requests/s per cache backend",
)
def run(ctx: Context) -> str:
    if not os.access(WRK, os.X_OK):
        raise RuntimeError(f"wrk not found ({WRK}): apt-get install wrk")
    from django_nativecache.demo import views
    from django_nativecache.demo.run import DemoError, memcached_server

    if views.TIMEOUT < PAGE_TIMEOUT_S:
        raise RuntimeError(f"the demo's timeout is {views.TIMEOUT} s: pages would expire "
                           "within a round")
    skipped: dict[str, str] = {}
    for name, module in (("django-pylibmc", "pylibmc"), ("django-pymemcache", "pymemcache")):
        try:
            __import__(module)
        except ImportError as exc:
            skipped[name] = f"ImportError: {exc}"
    locations: dict[str, str] = {}
    for name in MEMCACHED_SUBJECTS:
        if name in skipped:
            continue
        try:
            locations[name] = ctx.stack.enter_context(memcached_server())
        except DemoError as exc:
            skipped[name] = str(exc)
    locations["django-redis"] = REDIS_LOCATION
    try:
        redis_delete(REDIS_LOCATION, REDIS_KEYS)
        ctx.stack.callback(redis_delete, REDIS_LOCATION, REDIS_KEYS)
    except Exception as exc:
        skipped["django-redis"] = f"{type(exc).__name__}: {exc}"
    live = [s for s in SUBJECTS if s.name not in skipped]
    for name, why in skipped.items():
        print(f"  skipped {name}: {why}", flush=True)
    rounds = 2 if ctx.quick else ctx.rounds
    print(f"  {len(live)} subjects, {rounds} rounds: per round and subject a fresh uvicorn, "
          f"a {PRIME_S} s priming run, {CYCLES} warm runs of {SLICE_S} s", flush=True)
    res = Results()
    for rnd in range(rounds):
        print(f"  round {rnd + 1}/{rounds}", flush=True)
        _round(rnd, live, locations, res)

    body = ["Subjects (the demo site's backends, `django_nativecache/demo/caches.py`):", ""]
    for s in SUBJECTS:
        why = skipped.get(s.name)
        label = ("no cache and no work: `/async-plain/<n>/`" if s.name == "ceiling"
                 else f"`{s.backend}`" + (" (ours)" if s.ours else ""))
        body.append(f"- `{s.name}`: {label}" + (f" — skipped: {why}" if why else ""))
    body += [
        "",
        f"The site: `django_nativecache.demo` under uvicorn {package_version('uvicorn')}, "
        f"{WORKERS} workers on 127.0.0.1, without its per-site cache middleware. The view "
        f"`/async/<n>/` awaits `cache.aget` and, on a miss, {COST_MS:g} ms of work and "
        f"`cache.aset`. `wrk` (1 thread, {CONNECTIONS} keep-alive connections) asks for the "
        f"{PAGES} pages in turn. Each round starts a fresh uvicorn for every subject (a new "
        "segment, each memcached subject's own memcached flushed, our Redis keys deleted), "
        f"primes it with a {PRIME_S} s run that computes every page (not counted), then runs "
        f"{CYCLES} warm runs of {SLICE_S} s on each subject in turn. Figures: the median of "
        "the warm runs, ± the interquartile range relative to it; ratios are between "
        f"subjects of this run only. {rounds} rounds.",
        "",
        "Under ASGI Django makes a cache instance for every request and never closes it. "
        "`connections per request`: the connections the subject's memcached counted during "
        "its warm runs, per request served. Our MemcachedCache shares one client among the "
        "instances with the same settings; Django's memcached backends open a client per "
        "instance. Every memcached and Redis call hops to a thread (`sync_to_async`), ours "
        "included; the shared-memory cache's async calls run on the event loop. Django's "
        "ASGI handler itself starts a thread for every request (the request's own "
        "thread-sensitive context runs its sync signal handlers), which costs every "
        "subject the same and narrows the ratios.",
        "",
        f"Servers: memcached for each memcached subject, started for the run; Redis at "
        f"{REDIS_LOCATION} (its keys deleted after); pylibmc {package_version('pylibmc')}, "
        f"pymemcache {package_version('pymemcache')}, redis-py {package_version('redis')}.",
        "",
        _table(res, live),
        "",
        md_table(["ratio (warm requests/s)", "value"],
                 [[f"`{a}` ÷ `{b}`", res.ratio(a, b)] for a, b in PAIRS], "lr"),
    ]
    return "\n".join(body) + "\n"
