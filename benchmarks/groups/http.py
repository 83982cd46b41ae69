"""Group "http": requests/s of the demo site under gunicorn, one subject per cache backend.

The site is ``django_nativecache.demo`` (its helpers in ``demo/run.py`` start gunicorn and
memcached), served by gunicorn with 4 sync workers on 127.0.0.1 and driven by ``wrk`` over
the 200 ``cache_page`` pages ``/page/<n>/``, each costing 5 ms when computed: waiting (a
sleep) in group "http", the worker's CPU time (a busy loop) in group "http-cpu". The ceiling
is the same site without its cache middleware, on ``/plain/<n>/``, a view that does no work.

A round starts a fresh gunicorn for every subject (every cache empty), then runs wrk once on
each subject from its first request on ("cold": it pays every miss), then short wrk runs
("warm": every page cached) visiting the subjects in turn a few times. Each round starts
from a different subject. Short warm runs interleaved across live servers put the noise of a
shared machine (the same loop here takes from 1× to 2× as long from one second to the next)
on every subject alike; the cold runs need a fresh server each, so there is one per round.
Every run is checked (wrk errors, the pages' content, how many times the work log says each
page was computed) before its figures count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..harness import md_table, package_version
from . import Context, group

WORKERS = 4
PAGES = 200
COST_MS = 5.0
# wrk: one thread (a few thousand requests/s is a small part of what one wrk thread sends;
# more threads would only take CPU from the server) and 2 connections per worker, so a
# worker that has answered finds the next connection already waiting in the backlog.
WRK_THREADS = 1
CONNECTIONS = 2 * WORKERS


@dataclass(frozen=True)
class Plan:
    cold_s: int  # the cold run, from a fresh server
    slice_s: int  # one warm run (wrk takes whole seconds)
    cycles: int  # warm runs per subject per round
    cost: str = "wait"  # what a miss costs (DEMO_COST_KIND): "wait" (a sleep) or "cpu"


FULL = Plan(cold_s=3, slice_s=1, cycles=3)
QUICK = Plan(cold_s=1, slice_s=1, cycles=1)
ROUNDS_FULL = 11  # about a minute each (quick: the runner's 3)
# The demo's cache_page timeout (views.TIMEOUT, checked at run time): pages computed in the
# cold run expire this long after it starts, so every warm run of a round must end before
# then (with a margin).
PAGE_TIMEOUT_S = 60
EXPIRY_MARGIN_S = 5

REDIS_DB = 14  # no test and no other group uses it (the memcached group and the demo use 15)
REDIS_KEYS = ":1:views.decorators.cache.*"  # what cache_page writes (no KEY_PREFIX)
SHARED_SLACK = PAGES // 20  # a few pages computed twice by two workers missing at once

WRK = shutil.which("wrk") or "/usr/bin/wrk"
LUA = Path(__file__).resolve().parent.parent / "http_pages.lua"
ROOT = LUA.parent.parent  # the repository: benchmarks.zero_cost_settings imports from it
PHASES = ("cold", "warm")
MEMCACHED_SUBJECTS = ("memcached", "django-pylibmc", "django-pymemcache")


@dataclass(frozen=True)
class HttpSubject:
    name: str  # the demo's backend name, or "ceiling"
    backend: str  # DEMO_CACHE
    label: str  # for the report
    sharing: str  # "shared" (one cache for all workers), "per-process" or "none"
    ours: bool = False
    page_cache: str = "django"  # DEMO_PAGE_CACHE: whose cache_page serves /page/<n>/
    settings: str | None = None  # DJANGO_SETTINGS_MODULE, when not the demo's own

    @property
    def prefix(self) -> str:
        return "/plain/" if self.sharing == "none" else "/page/"


def _subjects() -> list[HttpSubject]:
    from django_nativecache.demo.caches import BACKENDS

    def subject(name: str, sharing: str = "shared", ours: bool = False) -> HttpSubject:
        return HttpSubject(name, name, f"`{BACKENDS[name][0]}`", sharing, ours)

    return [
        subject("shm", ours=True),
        HttpSubject(
            "shm-our-mw", "shm", f"`{BACKENDS['shm'][0]}` under "
            "`django_nativecache.decorators.cache_page` (our drop-in for Django's)",
            "shared", True, "native",
        ),
        subject("memcached", ours=True),
        subject("file", ours=True),
        subject("django-locmem", "per-process"),
        subject("django-pylibmc"),
        subject("django-pymemcache"),
        subject("django-file"),
        subject("django-redis"),
        # The most cache_page can give: the demo's CACHES replaced by a cache that costs
        # nothing (the dummy backend only names the LOCATION: none).
        HttpSubject(
            "zero-cost", "dummy", "not a cache: `benchmarks.zero_cost.ZeroCostCache`, a dict "
            "in each worker handing back the stored response object itself (no copy, no "
            "serialization, no key checks, no expiry), under our cache_page: what a hit costs "
            "when the cache costs nothing", "per-process", page_cache="native",
            settings="benchmarks.zero_cost_settings",
        ),
        # DummyCache: the ceiling touches no cache, and so creates no segment or directory.
        HttpSubject(
            "ceiling", "dummy", "no cache middleware, `/plain/<n>/` (no work, no cache)", "none"
        ),
    ]


# (subject, peer, least subject/peer requests/s ratio)
GOALS = [
    (ours, peer, least)
    for ours in ("shm", "shm-our-mw")
    for peer, least in (("ceiling", 0.85), ("django-pylibmc", 1.3), ("django-locmem", 1.8))
]


# --------------------------------------------------------------------------------------------
# CPU placement


@dataclass(frozen=True)
class Placement:
    server: set[int] | None  # gunicorn and memcached (None: left to the scheduler)
    wrk: set[int] | None
    text: str


def _placement() -> Placement:
    """BENCH_HTTP_CPUS=none (default): nothing pinned, as on a small host where a proxy
    shares the CPUs with the site; split: wrk alone on the last CPU, the server side on
    the others, so that only the server's own work is measured."""
    mode = os.environ.get("BENCH_HTTP_CPUS", "none")
    cpus = sorted(os.sched_getaffinity(0))
    if mode not in ("none", "split"):
        raise ValueError(f"BENCH_HTTP_CPUS must be none or split, not {mode!r}")
    if mode == "none" or len(cpus) < 2:
        return Placement(None, None, f"nothing pinned: gunicorn, memcached and wrk share the "
                         f"{len(cpus)} CPUs as the scheduler decides (`BENCH_HTTP_CPUS=none`)")
    rest = set(cpus[:-1])
    return Placement(rest, {cpus[-1]}, f"wrk alone on CPU {cpus[-1]}, gunicorn and memcached "
                     f"on CPU(s) {', '.join(map(str, sorted(rest)))} (`BENCH_HTTP_CPUS=split`)")


@contextlib.contextmanager
def _affinity(cpus: set[int] | None) -> Iterator[None]:
    """Run the block with this process pinned to ``cpus``: processes it starts inherit it."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# --------------------------------------------------------------------------------------------
# wrk


@dataclass
class WrkRun:
    requests: int
    seconds: float
    errors: dict[str, int]
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


_RESULT = re.compile(r"^wrk-result (.*)$", re.MULTILINE)


def run_wrk(port: int, prefix: str, seconds: int, cpus: set[int] | None) -> WrkRun:
    cmd = [
        WRK, f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s",
        "-s", str(LUA), f"http://127.0.0.1:{port}", "--", prefix, str(PAGES),
    ]
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
    )
    found = _RESULT.search(proc.stdout)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    values = {k: int(v) for k, v in (item.split("=", 1) for item in found.group(1).split())}
    return WrkRun(
        requests=values["requests"],
        seconds=values["duration_us"] / 1e6,
        errors={k: values[k] for k in ("connect", "read", "write", "status", "timeout")},
        p99_ms=values["p99_us"] / 1000,
    )


# --------------------------------------------------------------------------------------------
# The servers the subjects share, and emptying them


def _redis_location() -> str:
    return f"redis://127.0.0.1:6379/{REDIS_DB}"


def _redis_clear() -> int:
    """Delete what cache_page wrote to our Redis database; the number of keys deleted."""
    return redis_delete(_redis_location(), REDIS_KEYS)


def redis_delete(location: str, pattern: str) -> int:
    """Delete the keys matching ``pattern`` (never a whole database); how many there were."""
    import redis

    client = redis.Redis.from_url(location)
    try:
        keys = list(client.scan_iter(match=pattern, count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        return len(keys)
    finally:
        client.close()


def memcached_flush(location: str) -> None:
    host, port = location.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"flush_all\r\n")
        reply = s.recv(64)
    if not reply.startswith(b"OK"):
        raise RuntimeError(f"memcached flush_all answered {reply!r}")


@dataclass
class Servers:
    memcached: str | None = None  # LOCATION of the memcached started for the run
    skipped: dict[str, str] = field(default_factory=dict)  # subject -> why

    def empty(self, live: list[HttpSubject]) -> None:
        """Before a round: its subjects start from empty caches. (Within a round the
        subjects on one server cannot meet: cache_page's key holds the URL with each
        gunicorn's own port.)"""
        names = {s.name for s in live}
        if self.memcached and names & set(MEMCACHED_SUBJECTS):
            memcached_flush(self.memcached)
        if "django-redis" in names:
            _redis_clear()


def _start_servers(ctx: Context, subjects: list[HttpSubject], where: Placement) -> Servers:
    from django_nativecache.demo.run import DemoError, memcached_server

    servers = Servers()
    names = {s.name for s in subjects}
    for name, module in (("django-pylibmc", "pylibmc"), ("django-pymemcache", "pymemcache")):
        if name in names:
            try:
                __import__(module)
            except ImportError as exc:
                servers.skipped[name] = f"ImportError: {exc}"
    if names & set(MEMCACHED_SUBJECTS):
        try:
            with _affinity(where.server):
                servers.memcached = ctx.stack.enter_context(memcached_server())
        except DemoError as exc:  # memcached is missing or did not start
            for name in MEMCACHED_SUBJECTS:
                servers.skipped.setdefault(name, str(exc))
    if "django-redis" in names:
        try:
            _redis_clear()
            ctx.stack.callback(_redis_clear)
        except Exception as exc:
            servers.skipped["django-redis"] = f"{type(exc).__name__}: {exc}"
    return servers


# --------------------------------------------------------------------------------------------
# One subject's site in a round


def _drop_segment(location: str) -> None:
    from django_nativecache.backends import shm
    from django_nativecache.demo import settings as demo_settings

    with contextlib.suppress(OSError):
        shm.unlink(shm.segment_name(location, demo_settings.SECRET_KEY))


def use_settings(env: dict[str, str], module: str) -> None:
    """The demo site under ``module``'s settings (one of ``benchmarks``) instead of its own."""
    env["DJANGO_SETTINGS_MODULE"] = module
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)


class Site:
    """A fresh gunicorn serving the demo on one subject's cache, stopped by ``stack``."""

    def __init__(self, subject: HttpSubject, servers: Servers, where: Placement, tag: str,
                 stack: contextlib.ExitStack, cost: str) -> None:
        from django_nativecache.demo.run import DemoError, gunicorn, site_env

        self.subject = subject
        workdir = tempfile.mkdtemp(prefix="nativecache-bench-http-")
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        location = self._location(servers, workdir, tag)
        if subject.backend == "shm" and location:
            stack.callback(_drop_segment, location)  # after gunicorn stops (stack is LIFO)
        env = site_env(subject.backend, workdir, location, COST_MS, subject.page_cache,
                       cost_kind=cost)
        if subject.sharing == "none":
            env["DEMO_CACHE_MIDDLEWARE"] = "0"
        if subject.settings:
            use_settings(env, subject.settings)
        self.log_path = env["DEMO_WORK_LOG"]
        try:
            with _affinity(where.server):
                self.port: int = stack.enter_context(gunicorn(env, WORKERS))
        except DemoError as exc:
            raise RuntimeError(f"{subject.name}: gunicorn did not serve: {exc}") from None
        # wait_for_workers asked for /plain/0/ only: no page may have been computed yet.
        if self.work():
            raise RuntimeError(f"{subject.name}: pages computed before the first request")
        self.cold_began = 0.0
        self.after_cold: list[tuple[int, str]] = []

    def _location(self, servers: Servers, workdir: str, tag: str) -> str | None:
        backend = self.subject.backend
        if backend == "shm":
            return f"bench-http-{os.getpid()}-{tag}"  # a new segment: starts empty
        if backend in ("file", "django-file"):
            return os.path.join(workdir, "cache")
        if backend in MEMCACHED_SUBJECTS:
            return servers.memcached
        if backend == "django-redis":
            return _redis_location()
        return None  # LocMemCache: empty in every new process; DummyCache: nothing

    def work(self) -> list[tuple[int, str]]:
        from django_nativecache.demo.run import read_log

        return read_log(self.log_path)

    def wrk(self, seconds: int, where: Placement, what: str) -> WrkRun:
        run = run_wrk(self.port, self.subject.prefix, seconds, where.wrk)
        bad = {k: v for k, v in run.errors.items() if v}
        if bad or run.requests == 0:
            raise RuntimeError(f"{self.subject.name}, {what}: {run.requests} requests, errors "
                               f"{bad} (status: answers other than 2xx/3xx)")
        return run

    def check_pages(self) -> None:
        """The first and last page answer 200 with their own content."""
        from django_nativecache.demo.run import request

        for n in (0, PAGES - 1):
            path = f"{self.subject.prefix}{n}/"
            status, _, body = request(self.port, path)
            expected = f"{'plain' if self.subject.sharing == 'none' else 'view'} page {n}"
            if status != 200 or expected.encode() not in body:
                raise RuntimeError(f"{self.subject.name}: GET {path} answered {status} "
                                   f"{body[:200]!r}, expected 200 with {expected!r}")

    def check_work(self) -> int:
        """Each page computed about once for the site (at most once per worker for a
        per-process cache), nothing computed once every page was, nothing at all for the
        ceiling; the number of computations."""
        name, log = self.subject.name, self.work()
        total, pages = len(log), Counter(what for _, what in log)
        if self.subject.sharing == "none":
            if total:
                raise RuntimeError(f"ceiling: {total} computations logged, expected none")
            return 0
        if len(pages) != PAGES:
            raise RuntimeError(f"{name}: {len(pages)} distinct pages computed, expected {PAGES}")
        most = WORKERS * PAGES if self.subject.sharing == "per-process" else PAGES + SHARED_SLACK
        if total > most:
            raise RuntimeError(f"{name}: {total} computations for {PAGES} pages (at most {most} "
                               "expected): the cache does not keep pages")
        cold_pages = {what for _, what in self.after_cold}
        if self.subject.sharing == "shared" and len(cold_pages) == PAGES \
                and total != len(self.after_cold):
            raise RuntimeError(f"{name}: {total - len(self.after_cold)} pages computed again "
                               "after the cold run, expected none")
        return total


# --------------------------------------------------------------------------------------------
# Figures


@dataclass
class Results:
    rates: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # phase -> subject
    p99: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # phase -> subject
    computed: dict[str, list[int]] = field(default_factory=dict)
    # Seconds of warm serving each cold run lost to its misses: cold length × (1 − cold/warm),
    # warm being the same round's warm runs of the subject (the closest in time).
    lost: dict[str, list[float]] = field(default_factory=dict)
    expired_skips: int = 0  # warm runs left out because the pages would have expired

    def add(self, phase: str, name: str, run: WrkRun) -> None:
        self.rates.setdefault(phase, {}).setdefault(name, []).append(run.rate)
        self.p99.setdefault(phase, {}).setdefault(name, []).append(run.p99_ms)

    def value(self, phase: str, name: str, stat: str) -> float | None:
        s = self.rates.get(phase, {}).get(name)
        if not s:
            return None
        # --stat min means "best of the rounds": for a rate that is the highest.
        return max(s) if stat == "min" else statistics.median(s)

    def quartiles(self, phase: str, name: str) -> tuple[float, float] | None:
        s = self.rates.get(phase, {}).get(name)
        if not s or len(s) < 3:
            return None
        q = statistics.quantiles(s, n=4, method="inclusive")
        return q[0], q[2]

    def spread(self, phase: str, name: str) -> float | None:
        """Interquartile range relative to the median, in percent, as in the other groups."""
        q = self.quartiles(phase, name)
        med = self.value(phase, name, "median")
        return None if q is None or not med else 100.0 * (q[1] - q[0]) / med

    def ratio(self, phase: str, a: str, b: str, stat: str) -> float | None:
        va, vb = self.value(phase, a, stat), self.value(phase, b, stat)
        return None if va is None or vb is None or vb <= 0 else va / vb


def _fmt(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.3f}"


def _rate_cell(res: Results, phase: str, name: str, stat: str) -> str:
    v = res.value(phase, name, stat)
    if v is None:
        return "n/a"
    sp = res.spread(phase, name)
    return f"{v:,.0f}" + (f" ±{sp:.0f}%" if sp is not None else "")


def _table(res: Results, subjects: list[HttpSubject], stat: str) -> str:
    rows = []
    for s in subjects:
        # What the misses cost, as seconds of warm serving lost in the cold run: a figure
        # that does not depend on the cold run's length, unlike its requests/s.
        lost_s = res.lost.get(s.name)
        lost = "n/a" if not lost_s else f"{statistics.median(lost_s):.2f}"
        computed = res.computed.get(s.name, [])
        p99 = res.p99.get("warm", {}).get(s.name)
        rows.append([
            f"`{s.name}`",
            _rate_cell(res, "cold", s.name, stat),
            _fmt(res.ratio("cold", s.name, "ceiling", stat)),
            _rate_cell(res, "warm", s.name, stat),
            _fmt(res.ratio("warm", s.name, "ceiling", stat)),
            "n/a" if not p99 else f"{statistics.median(p99):.1f}",
            lost,
            "n/a" if not computed else str(min(computed)) if min(computed) == max(computed)
            else f"{min(computed)}–{max(computed)}",
        ])
    headers = ["subject", "cold req/s", "cold ÷ ceiling", "warm req/s", "warm ÷ ceiling",
               "warm p99 ms", "misses cost s", "pages computed"]
    return md_table(headers, rows)


def _met(r: float | None, least: float) -> str:
    # Three digits, so that "met" always agrees with the figure shown.
    return "n/a" if r is None else "yes" if round(r, 3) >= least else "no"


def _goal_rows(res: Results, stat: str) -> list[list[str]]:
    rows = []
    for ours, peer, least in GOALS:
        row = [f"`{ours}` ≥ {least:g} × `{peer}`"]
        for phase in PHASES:
            r = res.ratio(phase, ours, peer, stat)
            row += [_fmt(r), _met(r, least)]
        rows.append(row)
    return rows


def _reach_rows(res: Results, stat: str) -> list[list[str]]:
    """Warm: how much of what cache_page can give each subject gets (÷ zero-cost), and
    what that is (zero-cost ÷ ceiling)."""
    rows = [["`zero-cost` ÷ `ceiling`", _fmt(res.ratio("warm", "zero-cost", "ceiling", stat))]]
    for name in ("shm", "shm-our-mw", "django-locmem", "django-pylibmc"):
        rows.append([f"`{name}` ÷ `zero-cost`",
                     _fmt(res.ratio("warm", name, "zero-cost", stat))])
    return rows


def _plot(path: Path, res: Results, subjects: list[HttpSubject], stat: str,
          title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [s.name for s in subjects if res.value("warm", s.name, stat) is not None]
    ours = {s.name for s in subjects if s.ours}
    fig, axes = plt.subplots(1, 2, figsize=(15, 6.5), sharey=True)
    for ax, phase in zip(axes, PHASES):
        values = [res.value(phase, n, stat) or 0.0 for n in names]
        err: list[list[float]] = [[], []]
        for n, v in zip(names, values):
            q = res.quartiles(phase, n)
            err[0].append(max(0.0, v - q[0]) if q else 0.0)
            err[1].append(max(0.0, q[1] - v) if q else 0.0)
        colors = ["#2b6cb0" if n in ours else "#999999" if n in ("ceiling", "zero-cost")
                  else "#dd8452" for n in names]
        bars = ax.bar(range(len(names)), values, color=colors, yerr=err, capsize=3,
                      ecolor="#333333")
        for bar, v in zip(bars, values):  # inside the bar, clear of the error bars
            ax.annotate(f"{v:,.0f}", (bar.get_x() + bar.get_width() / 2, v / 2), ha="center",
                        va="center", fontsize=8, color="white", rotation=90)
        ceiling = res.value(phase, "ceiling", stat)
        if ceiling:
            ax.axhline(ceiling, color="#444444", lw=1, label=f"ceiling: {ceiling:,.0f}")
        # Each goal drawn as the height our bars have to reach: least × the peer's figure.
        levels = []
        targets = dict.fromkeys((peer, least) for _, peer, least in GOALS)
        for (peer, least), color in zip(targets, ("#c53030", "#6b46c1", "#2f855a")):
            peer_v = res.value(phase, peer, stat)
            if peer_v is None:
                continue
            verdicts = []
            for mine in dict.fromkeys(o for o, p, _ in GOALS if p == peer):
                r = res.ratio(phase, mine, peer, stat)
                if r is not None:
                    met = "met" if _met(r, least) == "yes" else "NOT met"
                    verdicts.append(f"{mine} {r:.2f} {met}")
            levels.append(least * peer_v)
            ax.axhline(least * peer_v, color=color, lw=1.3, ls="--",
                       label=f"goal {least:g} × {peer}: " + ", ".join(verdicts))
        ax.legend(loc="upper left", fontsize=8, framealpha=0.95,
                  title="our shm bars must reach the dashed lines", title_fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=9)
        ax.set_title(("cold: first run on a fresh gunicorn (empty caches)" if phase == "cold"
                      else "warm: every page cached"), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.set_ylim(0, max([*values, *levels]) * 1.35)
    axes[0].set_ylabel(f"requests/s ({'best' if stat == 'min' else 'median'}; "
                       "error bars: interquartile range)")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# The group


def _cold_override(plan: Plan) -> Plan:
    """BENCH_HTTP_COLD_S=10 makes the cold run that long (whole seconds, as wrk takes)."""
    text = os.environ.get("BENCH_HTTP_COLD_S", "").strip()
    if not text:
        return plan
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"BENCH_HTTP_COLD_S must be a whole number of seconds, not {text!r}")
    return dataclasses.replace(plan, cold_s=int(text))


def _selected(subjects: list[HttpSubject]) -> list[HttpSubject]:
    """BENCH_HTTP_SUBJECTS=shm,ceiling,... measures only those (for quick looks)."""
    wanted = {n.strip() for n in os.environ.get("BENCH_HTTP_SUBJECTS", "").split(",") if n.strip()}
    if not wanted:
        return subjects
    unknown = wanted - {s.name for s in subjects}
    if unknown:
        raise ValueError(f"BENCH_HTTP_SUBJECTS: unknown {', '.join(sorted(unknown))}")
    return [s for s in subjects if s.name in wanted]


def _round(rnd: int, live: list[HttpSubject], servers: Servers, where: Placement, plan: Plan,
           res: Results) -> None:
    k = rnd % len(live)
    order = live[k:] + live[:k]
    servers.empty(order)
    with contextlib.ExitStack() as stack:
        sites = [Site(s, servers, where, f"{rnd}-{s.name}", stack, plan.cost) for s in order]
        for site in sites:
            site.cold_began = time.monotonic()
            res.add("cold", site.subject.name, site.wrk(plan.cold_s, where, "cold run"))
            site.after_cold = site.work()
        warm: dict[str, list[float]] = {}
        for cycle in range(plan.cycles):
            for site in sites:
                if time.monotonic() + plan.slice_s + EXPIRY_MARGIN_S \
                        > site.cold_began + PAGE_TIMEOUT_S:
                    res.expired_skips += 1
                    continue
                run = site.wrk(plan.slice_s, where, f"warm run {cycle + 1}")
                res.add("warm", site.subject.name, run)
                warm.setdefault(site.subject.name, []).append(run.rate)
        for site in sites:
            # The work log first: the round's first pages may have expired by now, and
            # check_pages would compute them again.
            computed = site.check_work()
            site.check_pages()
            name = site.subject.name
            res.computed.setdefault(name, []).append(computed)
            if warm.get(name):
                cold = res.rates["cold"][name][-1]
                res.lost.setdefault(name, []).append(
                    plan.cold_s * (1 - cold / statistics.median(warm[name])))
            print(f"    {name:18} cold {res.rates['cold'][name][-1]:7,.0f}  warm "
                  + " ".join(f"{r:7,.0f}" for r in warm.get(name, []))
                  + f" req/s  computed {computed}", flush=True)


def _versions() -> str:
    try:
        out = subprocess.run(["memcached", "-V"], capture_output=True, text=True, timeout=10)
        memcached = out.stdout.strip() or "memcached"
    except (OSError, subprocess.SubprocessError):
        memcached = "memcached (not found)"
    return (f"{memcached}, pylibmc {package_version('pylibmc')}, pymemcache "
            f"{package_version('pymemcache')}, redis-py {package_version('redis')}")


# A round gives one cold run per subject, and the runner's default of 7 leaves the median
# at the mercy of a few disturbed seconds.
@group(
    "http",
    "the demo site under gunicorn (4 workers) and wrk: requests/s per cache backend",
    rounds=ROUNDS_FULL,
)
def run(ctx: Context) -> str:
    return _run(ctx, "wait")


# The same site and load with each miss spent on the CPU (a busy loop of 5 ms of the
# worker's own CPU time) instead of waiting: the view's cost is rendering, or a database
# on the same host, and the CPUs the workers share are what a miss takes from the hits.
@group(
    "http-cpu",
    "the http group with each miss costing 5 ms of CPU instead of a 5 ms wait",
    rounds=ROUNDS_FULL,
)
def run_cpu(ctx: Context) -> str:
    return _run(ctx, "cpu")


COST_TEXT = {
    "wait": "costs {ms:g} ms when computed, waiting (a sleep: as for a query answered by "
            "another host, the worker's CPU is free meanwhile)",
    "cpu": "costs {ms:g} ms of the worker's own CPU time when computed (a busy loop: as for "
           "rendering, or a database on the same host; a miss takes the CPU from the hits, "
           "and takes longer than 5 ms while the CPUs are shared)",
}


def _run(ctx: Context, cost: str) -> str:
    if not os.access(WRK, os.X_OK):
        raise RuntimeError(f"wrk not found ({WRK}): apt-get install wrk")
    from django_nativecache.demo import views

    if views.TIMEOUT != PAGE_TIMEOUT_S:  # the warm runs are planned around it
        raise RuntimeError(f"the demo's cache_page timeout is now {views.TIMEOUT} s, "
                           f"PAGE_TIMEOUT_S here says {PAGE_TIMEOUT_S}")
    plan = dataclasses.replace(_cold_override(QUICK if ctx.quick else FULL), cost=cost)
    where = _placement()
    subjects = _selected(_subjects())
    servers = _start_servers(ctx, subjects, where)
    for name, why in servers.skipped.items():
        print(f"  skipped {name}: {why}", flush=True)
    live = [s for s in subjects if s.name not in servers.skipped]
    rounds = ctx.rounds
    print(f"  {len(live)} subjects, {rounds} rounds: per round and subject a fresh "
          f"gunicorn, a {plan.cold_s} s cold run, {plan.cycles} warm runs of {plan.slice_s} s; "
          f"{where.text}", flush=True)
    res = Results()
    for rnd in range(rounds):
        print(f"  round {rnd + 1}/{rounds}", flush=True)
        _round(rnd, live, servers, where, plan, res)

    stat = "best" if ctx.stat == "min" else "median"
    body = ["Subjects (the demo site's backends, `django_nativecache/demo/caches.py`):", ""]
    for s in subjects:
        why = servers.skipped.get(s.name)
        body.append(f"- `{s.name}`: {s.label}" + (f" — skipped: {why}" if why else ""))
    body += [
        "",
        f"The site: `django_nativecache.demo` under gunicorn {package_version('gunicorn')}, "
        f"{WORKERS} sync workers on 127.0.0.1; the view is under `cache_page({PAGE_TIMEOUT_S})` "
        f"and {COST_TEXT[cost].format(ms=COST_MS)}. `wrk` ({WRK_THREADS} thread, {CONNECTIONS} "
        f"connections) asks for the {PAGES} pages `/page/0/`..`/page/{PAGES - 1}/` in turn "
        "(`benchmarks/http_pages.lua`). Gunicorn's sync workers close the connection after each "
        "answer, so every request is a new TCP connection, as from a proxy that does not keep "
        "upstream connections alive. The ceiling is the same site without its cache "
        "middleware, on `/plain/<n>/`, a view that computes nothing and touches no cache.",
        "",
        f"A round starts a fresh gunicorn for every subject (a new shared-memory segment, an "
        "empty directory, memcached flushed, our Redis keys deleted, LocMemCache empty in "
        f"new processes), then runs wrk on each subject for {plan.cold_s} s from its very first "
        f"request (**cold**: it pays every miss, about {PAGES} × {COST_MS:g} ms of worker time "
        f"for a cache the workers share, up to {WORKERS}× that for LocMemCache, whose workers "
        f"each compute every page for themselves), then {plan.cycles} runs "
        f"of {plan.slice_s} s on each subject in turn (**warm**: every page cached; all "
        "within the pages' "
        f"{PAGE_TIMEOUT_S} s timeout). Cold requests/s depend on the cold run's length (the "
        "misses cost a fixed amount, spread over the run); `misses cost s` does not: it is the "
        f"seconds of warm serving the cold run lost, {plan.cold_s} × (1 − cold/warm) with the "
        "same round's warm runs, median over the rounds. The ceiling's figure is what fresh "
        "worker processes cost without any miss. A site pays the misses again whenever it "
        f"restarts or its pages expire (after {PAGE_TIMEOUT_S} s here). `warm p99 ms`: wrk's "
        f"99th percentile latency, median over the warm runs, at saturation ({CONNECTIONS} "
        f"connections on {WORKERS} workers).",
        "",
        f"{rounds} rounds, each starting from a different subject. Figures are the {stat} "
        "of the runs (one cold run per round, several warm ones); ± is their interquartile "
        "range relative to the median; ratios are between subjects of this run only. Every "
        "run is checked before it counts: no wrk errors (connect, read, write, timeout, answers "
        "other than 2xx/3xx), and at the end of each round the first and last page answer 200 "
        "with their own content and the work log shows every page computed about once for a "
        f"shared cache (at most {PAGES + SHARED_SLACK}, none after the cold run), at most once "
        "per worker for LocMemCache, never for the ceiling. `pages computed`: computations "
        "per round (range over the rounds).",
        "",
        f"Placement: {where.text}. On {len(os.sched_getaffinity(0))} CPUs the 4 workers are "
        "CPU-bound and wrk takes its share of the CPUs, the same per request for every subject "
        "(like a proxy on the same host): that narrows the gaps between subjects compared with "
        "the server measured alone (`BENCH_HTTP_CPUS=split`). "
        f"Servers: {_versions()}; one memcached started for the run and shared by the three "
        f"memcached subjects; Redis at 127.0.0.1:6379, db {REDIS_DB} (keys deleted after).",
        "",
        _table(res, live, ctx.stat),
        "",
        "Goals: requests/s of `shm` (our SharedMemoryCache under Django's own cache_page) "
        "and of `shm-our-mw` (under our drop-in cache_page) over their peer's (every peer "
        "runs under Django's), same run, cold and warm. Against "
        "LocMemCache only the cold run can show a difference by design (warm, both serve "
        "from memory inside the worker; cold, LocMemCache computes each page once per worker), "
        "and it shrinks as the cold run gets longer: cold ratios are a fact about the run's "
        "length as much as about the caches (`BENCH_HTTP_COLD_S` sets it).",
        "",
        md_table(["goal", "cold", "met", "warm", "met"], _goal_rows(res, ctx.stat), "lrrrr"),
    ]
    if res.value("warm", "zero-cost", ctx.stat) is not None:
        body += [
            "",
            "What `cache_page` can give at all, warm: `zero-cost` is the site under our "
            "cache_page on a cache that costs nothing, so `zero-cost` ÷ `ceiling` is the most "
            "any backend can reach against the ceiling (the rest is Django's cache_page: URL "
            "resolution, the keys from the absolute URI, language and time zone, the cached "
            "response's headers and `Age`), and a subject ÷ `zero-cost` is the share of it "
            "that subject gets. (Cold, `zero-cost` computes every page once per worker, as "
            "LocMemCache does.)",
            "",
            md_table(["warm", "ratio"], _reach_rows(res, ctx.stat), "lr"),
        ]
    if res.expired_skips:
        body += ["", f"{res.expired_skips} warm runs were left out: the pages would have "
                 "expired before their end (a slow round)."]
    png = None if ctx.out_dir is None else ctx.out_dir / (
        "http.png" if cost == "wait" else f"http-{cost}.png")
    if png is not None:
        _plot(png, res, live, ctx.stat,
              f"{'http' if cost == 'wait' else 'http-' + cost} group: demo site, gunicorn "
              f"{WORKERS} sync workers, {PAGES} cache_page pages "
              f"({COST_MS:g} ms {'of CPU' if cost == 'cpu' else 'waiting'} per miss), "
              f"wrk {CONNECTIONS} connections; cold {plan.cold_s} s, "
              f"warm {plan.cycles}×{plan.slice_s} s per round, {rounds} rounds")
        body += ["", f"![requests/s per subject]({png.name})"]
        print(f"  plot written to {png}", flush=True)
    return "\n".join(body) + "\n"
