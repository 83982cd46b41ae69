"""Group "memcached": MemcachedCache vs Django's PyLibMCCache and PyMemcacheCache, with Django's
RedisCache as a reference.

All subjects run in one process against the same servers: a memcached on a free loopback TCP
port and a second one on a unix socket, both started here, and the Redis at 127.0.0.1:6379
(db 15, TCP only). One interleaved latency run covers both transports; each transport gets its
own table and its own goals.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

from tests.mcserver import MEMCACHED, MemcachedServer

from .. import harness, ops
from ..harness import (
    LatencyResult,
    Operation,
    Subject,
    fmt_ratio,
    md_table,
)
from ..ops import SHORT
from . import Context, group

OURS_BACKEND = "django_nativecache.backends.memcached.MemcachedCache"
PYLIBMC_BACKEND = "django.core.cache.backends.memcached.PyLibMCCache"
PYMEMCACHE_BACKEND = "django.core.cache.backends.memcached.PyMemcacheCache"
REDIS_BACKEND = "django.core.cache.backends.redis.RedisCache"
REDIS_LOCATION = "redis://127.0.0.1:6379/15"

MEMCACHED_MB = 64

# Every call is a round trip to a server (tens of µs), so far fewer calls per measurement than
# the in-process groups; a 100-key call counts as BATCH_PER calls.
DEFAULT_N = 3_000
BATCH = 100  # keys per get_many / set_many call
BATCH_PER = 20

TRANSPORTS = {"tcp": "TCP", "unix": "unix socket"}
PEERS = ("pylibmc", "pymemcache", "redis")  # compared with ours, in this order

# (operation, peer, least peer/ours time ratio): ours must be at least this many times faster.
GOALS = [
    ("get hit, short str", "pylibmc", 1.1),
    ("get hit, short str", "pymemcache", 1.5),
    ("set, short str", "pylibmc", 1.1),
    ("set, short str", "pymemcache", 1.5),
    ("get_many, 100 keys, per key", "pylibmc", 1.2),
]


# --------------------------------------------------------------------------------------------
# The memcached servers


def _place(ctx: Context) -> tuple[int | None, str]:
    """Pin this process per BENCH_MEMCACHED_CPUS; (the CPU for the servers, how, for the text).

    Unpinned, a round trip over loopback costs about three times as much when the scheduler puts
    client and server on different CPUs (the idle one has to be woken) as when they share one,
    and it switches between the two from round to round.
    """
    mode = os.environ.get("BENCH_MEMCACHED_CPUS", "same")
    cpus = sorted(os.sched_getaffinity(0))
    if mode not in ("same", "split", "none"):
        raise ValueError(f"BENCH_MEMCACHED_CPUS must be same, split or none, not {mode!r}")
    if mode == "none" or (mode == "split" and len(cpus) < 2):
        return None, "placement left to the scheduler (`BENCH_MEMCACHED_CPUS=none`)"
    server_cpu = cpus[0]
    client_cpu = cpus[0] if mode == "same" else cpus[1]
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {client_cpu})
    ctx.stack.callback(os.sched_setaffinity, 0, previous)
    where = "the same CPU" if mode == "same" else "two different CPUs"
    return server_cpu, (
        f"both memcached servers on CPU {server_cpu} and the benchmark process on CPU "
        f"{client_cpu}, {where} (`BENCH_MEMCACHED_CPUS={mode}`; `same` is the default, `split` "
        "and `none` are the others); Redis is not pinned"
    )


def _memcached_version() -> str:
    try:
        out = subprocess.run([MEMCACHED, "-V"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "memcached (version unknown)"
    except (OSError, subprocess.SubprocessError):
        return "memcached (version unknown)"


# --------------------------------------------------------------------------------------------
# Operations, as in the shm group: prepare() fills what it needs, checks the answer once, and
# hands back the timed loop from harness.


GET_MANY = f"get_many, {BATCH} keys"
SET_MANY = f"set_many, {BATCH} keys"
OPERATIONS = [
    Operation("get hit, short str", ops.get_hit("key", SHORT)),
    Operation("set, short str", ops.set_short),
    Operation(GET_MANY, ops.get_many(BATCH), per=BATCH_PER),
    Operation(SET_MANY, ops.set_many(BATCH), per=BATCH_PER),
    Operation("incr", ops.incr),
    # Django's memcached and Redis backends connect anew for each new instance: fewer calls,
    # so the closed connections' TIME_WAIT ports stay well under the ephemeral range.
    Operation(ops.FRESH_GET, ops.fresh_instance_get("key", SHORT), per=10),
]
WRITTEN = [*ops.keys("key"), *ops.keys("set"), *ops.keys("many"), *ops.keys("setmany"),
           *ops.keys("ctr")]
PROBE = "bench:probe"


# --------------------------------------------------------------------------------------------
# Subjects


def _entry(backend: str, location: str, prefix: str) -> dict[str, Any]:
    # Default OPTIONS for every backend; KEY_PREFIX keeps the subjects' keys apart on a server.
    return {"BACKEND": backend, "LOCATION": location, "KEY_PREFIX": prefix}


def _delete_written(cache: Any) -> None:
    """Leave nothing behind in the shared Redis database."""
    try:
        for i in range(0, len(WRITTEN), 500):
            cache.delete_many(WRITTEN[i : i + 500])
        cache.delete(PROBE)
    except Exception as exc:
        print(f"  could not delete the keys written to Redis: {type(exc).__name__}: {exc}")


def _subjects(servers: dict[str, MemcachedServer]) -> list[tuple[Subject, MemcachedServer | None]]:
    """(subject, the memcached it must reach) for each transport; Redis over TCP only."""
    out: list[tuple[Subject, MemcachedServer | None]] = []
    backends = (
        ("ours", OURS_BACKEND),
        ("pylibmc", PYLIBMC_BACKEND),
        ("pymemcache", PYMEMCACHE_BACKEND),
    )
    for transport, server in servers.items():
        for short, backend in backends:
            prefix = f"bench{len(out)}"  # the same length for every subject
            out.append(
                (
                    Subject(
                        f"{short}@{transport}",
                        f"`{backend}`, LOCATION `{server.location}`",
                        caches=_entry(backend, server.location, prefix),
                    ),
                    server,
                )
            )
        if transport == "tcp":
            prefix = f"bench{len(out)}"
            out.append(
                (
                    Subject(
                        "redis@tcp",
                        f"`{REDIS_BACKEND}`, LOCATION `{REDIS_LOCATION}`, KEY_PREFIX `{prefix}` "
                        "(reference)",
                        caches=_entry(REDIS_BACKEND, REDIS_LOCATION, prefix),
                        cleanup=_delete_written,
                    ),
                    None,
                )
            )
    return out


def _check_reach(subject: Subject, server: MemcachedServer | None) -> None:
    """A set is read back, and lands on the server the subject is meant to use."""
    cache = subject.cache
    try:
        cache.delete(PROBE)
        cache.set(PROBE, SHORT)
        got = cache.get(PROBE)
        if got != SHORT:
            raise AssertionError(f"get after set returned {got!r}")
        if server is not None and server.raw_get(cache.make_key(PROBE)) is None:
            raise AssertionError(f"the key set did not reach {server.location}")
        cache.delete(PROBE)
    except Exception as exc:
        subject.skipped = f"{type(exc).__name__}: {exc}".strip()
        print(f"  skipped {subject.name} ({subject.label}): {subject.skipped}", flush=True)
        subject.close()


# --------------------------------------------------------------------------------------------
# Tables


def _goal_rows(view: LatencyResult, transport: str, stat: str) -> list[list[str]]:
    rows = []
    for op, peer, least in GOALS:
        measured, met = harness.goal_cells(view, op, peer, least, stat)
        rows.append([TRANSPORTS[transport], op, f"{peer}/ours ≥ {least:.2f}", measured, met])
    return rows


def _latency(ctx: Context, live: list[Subject]) -> list[str]:
    n_batch = max(1, ctx.n // BATCH_PER)
    print(
        f"latency: {ctx.rounds} rounds of {ctx.n:,} calls ({BATCH}-key calls: {n_batch:,})",
        flush=True,
    )
    result = harness.run_latency(live, OPERATIONS, n=ctx.n, rounds=ctx.rounds)
    rows = harness.with_per_key(result, OPERATIONS, {GET_MANY: BATCH, SET_MANY: BATCH})
    stat = "median" if ctx.stat == "median" else "best"
    lines = [
        "### Latency through the cache API",
        "",
        f"Time per call, {stat} of {ctx.rounds} interleaved rounds of {ctx.n:,} calls "
        f"({BATCH}-key calls: {n_batch:,} per round); ± is the interquartile range of the rounds. "
        "Both transports were measured in the same rounds. The `per key` rows are the "
        f"{BATCH}-key call divided by {BATCH}. peer/ours columns are time ratios: above 1.00, "
        "ours is faster (1.50: the peer takes 1.5 times as long). "
        f"`{ops.FRESH_GET}` ({max(1, ctx.n // 10):,} calls per round): each call makes an "
        "instance from the subject's CACHES entry with Django's CacheHandler and gets a key, "
        "as each request task does under ASGI, where `caches[alias]` is per task and never "
        "closed. Django's memcached and Redis backends open a connection for each instance "
        "(it is closed when the instance goes); ours share one client, and its connections, "
        "among the instances of the same settings.",
    ]
    goal_rows: list[list[str]] = []
    for transport, title in TRANSPORTS.items():
        suffix = f"@{transport}"
        view = harness.subject_view(
            result, lambda name: name.removesuffix(suffix) if name.endswith(suffix) else None
        )
        subjects = [Subject(s.name[: -len(suffix)], "") for s in live if s.name.endswith(suffix)]
        names = [s.name for s in subjects]
        pairs = [(peer, "ours") for peer in PEERS if peer in names and "ours" in names]
        lines += [
            "",
            f"#### {title}",
            "",
            harness.latency_table(view, subjects, rows, stat=ctx.stat, pairs=pairs),
        ]
        goal_rows += _goal_rows(view, transport, ctx.stat)
    lines += [
        "",
        "### Goals",
        "",
        "Ours against each peer on the same server and transport (time ratio peer/ours).",
        "",
        md_table(["transport", "operation", "goal", "measured", "met"], goal_rows, "lllrl"),
    ]
    mine = []
    for op in OPERATIONS:
        unix, tcp = (result.value(op.name, f"ours@{t}", ctx.stat) for t in ("unix", "tcp"))
        mine.append(f"{op.name} {fmt_ratio(unix, tcp)}")
    lines += [
        "",
        "Ours over the unix socket vs over TCP (time ratio unix/TCP, below 1.00 the socket is "
        f"faster): {'; '.join(mine)}.",
    ]
    errors = harness.describe_errors(result)
    if errors:
        lines += ["", *errors]
    return lines


@group(
    "memcached",
    "MemcachedCache vs PyLibMCCache, PyMemcacheCache, RedisCache; TCP and unix socket",
    n=DEFAULT_N,
)
def run(ctx: Context) -> str:
    server_cpu, placement = _place(ctx)
    servers = {
        "tcp": MemcachedServer(cpu=server_cpu, memory_mb=MEMCACHED_MB),
        "unix": MemcachedServer(unix=True, cpu=server_cpu, memory_mb=MEMCACHED_MB),
    }
    for server in servers.values():
        ctx.stack.callback(server.cleanup)
        server.start()
        print(f"  memcached at {server.location}", flush=True)

    pairs = _subjects(servers)
    subjects = [s for s, _ in pairs]
    harness.build_subjects(subjects)
    for s, server in pairs:
        if s.cache is not None:
            ctx.stack.callback(s.close)
            _check_reach(s, server)
    live = [s for s in subjects if not s.skipped]

    body = ["Subjects:", ""]
    for s in subjects:
        note = f" — skipped: {s.skipped}" if s.skipped else ""
        body.append(f"- `{s.name}`: {s.label}{note}")
    body += [
        "",
        f"Servers: {_memcached_version()} started for this run, `-t 1 -c 1024 -m {MEMCACHED_MB}`, one on "
        "127.0.0.1 (TCP, `-U 0`) and one on a unix socket; Redis "
        f"{_redis_version()} at 127.0.0.1:6379, db 15. Every subject uses its backend's default "
        "OPTIONS and a KEY_PREFIX of its own: no compression anywhere, text protocol on the "
        "memcached clients. Ours: libmemcached with TCP_NODELAY on and ketama hashing (one "
        f"server, so hashing plays no part). PyLibMCCache: pylibmc {harness.package_version('pylibmc')} with "
        "libmemcached's default behaviours (TCP_NODELAY off). PyMemcacheCache: pymemcache "
        f"{harness.package_version('pymemcache')} HashClient as Django builds it (pickle serde, no pooling, "
        f"no_delay off). RedisCache: redis-py {harness.package_version('redis')}, pickled values.",
        "",
        f"Placement: {placement}. Unpinned, a loopback round trip costs about three times as "
        "much when client and server run on different CPUs as on one, and the scheduler "
        "switches between the two from round to round.",
        "",
    ]
    body += _latency(ctx, live)
    return "\n".join(body) + "\n"


def _redis_version() -> str:
    try:
        import redis

        client = redis.Redis.from_url(REDIS_LOCATION)
        try:
            return str(client.info("server")["redis_version"])
        finally:
            client.close()
    except Exception as exc:
        return f"(version unknown: {type(exc).__name__})"
