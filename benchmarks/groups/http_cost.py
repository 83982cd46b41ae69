"""Group "http-cost": instructions per request of the demo site, counted by callgrind.

The http group's requests/s move with the machine's noise (the same loop takes from 1× to 2× as
long from one second to the next); instructions hardly move (repeated runs agree within
about 2%). This group serves the demo site's
pages inside one process through Django's ``WSGIHandler`` (``benchmarks/http_cost_driver.py``,
the application gunicorn calls, without gunicorn and without the network) under
``valgrind --tool=callgrind``, twice per subject with a different number of requests, and
reports the difference in instructions per request: what the Python side of one request
costs.

Only subjects whose cost is in this process: callgrind counts user-space instructions of the
process it runs, so a backend whose work is in the kernel or in a server (files, memcached,
Redis) would look cheaper than it is. Every page is cached before counting starts (warm).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..harness import md_table, package_version
from . import Context, group
from .http import ROOT, _drop_segment, use_settings

VALGRIND = shutil.which("valgrind") or "/usr/bin/valgrind"
PAGES = 20
WARMUP = 200  # requests before counting: every page cached, the interpreter warm
COUNTS_FULL = (200, 1200)  # requests after the warm-up, in the two runs per subject
COUNTS_QUICK = (0, 100)


@dataclass(frozen=True)
class CostSubject:
    name: str
    backend: str  # DEMO_CACHE
    page_cache: str  # DEMO_PAGE_CACHE
    label: str
    settings: str | None = None  # DJANGO_SETTINGS_MODULE, when not the demo's own
    prefix: str = "/page/"


SUBJECTS = [
    CostSubject("ceiling", "dummy", "django", "no cache middleware, `/plain/<n>/` (no work, "
                "no cache)", prefix="/plain/"),
    CostSubject("zero-cost", "dummy", "native", "`benchmarks.zero_cost.ZeroCostCache` (not a "
                "cache: hands back the stored object) under our cache_page",
                "benchmarks.zero_cost_settings"),
    CostSubject("shm-our-mw", "shm", "native", "SharedMemoryCache under our cache_page"),
    CostSubject("shm", "shm", "django", "SharedMemoryCache under Django's cache_page"),
    CostSubject("django-locmem", "django-locmem", "django",
                "Django's LocMemCache under Django's cache_page"),
]


def _segment(subject: CostSubject, requests: int) -> str | None:
    """A segment of its own for each run: the two runs of a subject go on at once, and
    misses one run left to the other would make their warm-ups differ."""
    if subject.backend != "shm":
        return None
    return f"bench-cost-{os.getpid()}-{subject.name}-{requests}"


def _env(subject: CostSubject, workdir: str, location: str | None) -> dict[str, str]:
    from django_nativecache.demo.run import site_env

    env = site_env(subject.backend, workdir, location, 0, subject.page_cache)
    env["PYTHONHASHSEED"] = "0"
    if subject.prefix == "/plain/":
        env["DEMO_CACHE_MIDDLEWARE"] = "0"
    if subject.settings:
        use_settings(env, subject.settings)
    return env


def _instructions(subject: CostSubject, requests: int) -> int:
    """Instructions callgrind counts for the driver serving ``requests`` warm requests."""
    workdir = tempfile.mkdtemp(prefix="nativecache-bench-cost-")
    location = _segment(subject, requests)
    try:
        proc = subprocess.run(
            [VALGRIND, "--tool=callgrind", "--callgrind-out-file=/dev/null",
             sys.executable, "-m", "benchmarks.http_cost_driver", subject.prefix, str(PAGES),
             str(WARMUP), str(requests)],
            env=_env(subject, workdir, location), cwd=ROOT, capture_output=True, text=True, timeout=1800,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if location:
            _drop_segment(location)
    for line in proc.stderr.splitlines():
        if "Collected :" in line:
            if proc.returncode != 0:
                break
            return int(line.rsplit(":", 1)[1].strip())
    raise RuntimeError(f"{subject.name}: the driver failed ({proc.returncode}): "
                       f"{proc.stderr[-2000:]}")


def _per_request(subject: CostSubject, counts: tuple[int, int]) -> float:
    low, high = counts
    with ThreadPoolExecutor(2) as pool:  # instructions do not depend on what else runs
        a, b = pool.map(lambda n: _instructions(subject, n), (low, high))
    return (b - a) / (high - low)


def _valgrind_version() -> str:
    try:
        out = subprocess.run([VALGRIND, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "valgrind"


@group(
    "http-cost",
    "instructions per request of the demo site's WSGI handler, counted by callgrind",
    rounds=1,
)
def run(ctx: Context) -> str:
    if not os.access(VALGRIND, os.X_OK):
        raise RuntimeError(f"valgrind not found ({VALGRIND}): apt-get install valgrind")
    counts = COUNTS_QUICK if ctx.quick else COUNTS_FULL
    cost: dict[str, float] = {}
    for subject in SUBJECTS:
        cost[subject.name] = _per_request(subject, counts)
        print(f"    {subject.name:14} {cost[subject.name]:>10,.0f} instructions/request",
              flush=True)
    ceiling, zero = cost["ceiling"], cost["zero-cost"]
    rows = [
        [f"`{s.name}`", s.label, f"{cost[s.name]:,.0f}", f"{cost[s.name] / ceiling:.3f}",
         f"{cost[s.name] - ceiling:+,.0f}", f"{cost[s.name] - zero:+,.0f}"]
        for s in SUBJECTS
    ]
    body = [
        f"The demo site (`django_nativecache.demo`, Django {package_version('django')}) served "
        "in one process through Django's `WSGIHandler`, as gunicorn calls it, without gunicorn "
        f"and the network: {PAGES} pages `/page/<n>/` asked for in turn, {WARMUP} requests to "
        "warm up (each page computed and cached on its first request, at no cost per miss), "
        f"then {counts[0]} and, in a second run, {counts[1]} more "
        f"requests under `{_valgrind_version()} --tool=callgrind`, and the difference in "
        f"instructions over the {counts[1] - counts[0]} extra requests is one request's cost. "
        "Repeated runs agree within about 2% (PYTHONHASHSEED=0; what still varies: "
        "timestamps, process ids in names), where requests/s on this shared machine move by "
        "tens of percent; user space of this process only, which is why only backends whose work is in the process "
        "are here. `zero-cost` is a cache that costs nothing: what is left over the ceiling "
        "is Django's cache_page (URL resolution, the keys from the absolute URI, the language "
        "and time zone, the cached response's headers and `Age`, closing the cache at the end "
        "of the request); over `zero-cost` is what the cache costs (for SharedMemoryCache under our "
        "cache_page: two native gets, the page's answered from its stamp and copied from the "
        "response decoded once per process; under Django's: unpickling the response on every "
        "hit as well).",
        "",
        md_table(["subject", "what", "instructions/request", "÷ ceiling", "over ceiling",
                  "over zero-cost"], rows, "llrrrr"),
    ]
    return "\n".join(body) + "\n"
