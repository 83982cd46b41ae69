"""Group "shm": SharedMemoryCache vs Django's LocMemCache vs a plain dict.

Three parts: per-call latency of the common calls through Django's cache API, aggregate
throughput of one vs two processes on a get/set mix, and memory overhead per stored entry.
"""

from __future__ import annotations

import os
import secrets
import statistics
import tracemalloc
from typing import Any

from .. import harness, ops
from ..harness import (
    DictFloor,
    MixWorkload,
    Operation,
    Subject,
    fmt_ratio,
    md_table,
)
from ..ops import OBJ_187, POOL, SHORT
from ..report import nproc
from . import Context, group

SHM_BACKEND = "django_nativecache.backends.shm.SharedMemoryCache"
LOCMEM_BACKEND = "django.core.cache.backends.locmem.LocMemCache"
SHM_OPTIONS = {"MAX_ENTRIES": 100_000, "SIZE": "256MB"}  # large enough that nothing is culled
LOCMEM_OPTIONS = {"MAX_ENTRIES": 100_000}

OPERATIONS = [
    Operation("get hit, short str", ops.get_hit("key", SHORT)),
    Operation("get hit, 187-byte pickle", ops.get_hit("obj", OBJ_187)),
    Operation("get miss", ops.get_miss),
    Operation("set, short str", ops.set_short),
    Operation("get_many, 100 keys", ops.get_many(100), per=100),
    Operation("incr", ops.incr),
    Operation(ops.FRESH_GET, ops.fresh_instance_get("key", SHORT)),
]


# --------------------------------------------------------------------------------------------
# Subjects


def _shm_entry(location: str) -> dict[str, Any]:
    return {"BACKEND": SHM_BACKEND, "LOCATION": location, "OPTIONS": dict(SHM_OPTIONS)}


def _locmem_entry(location: str) -> dict[str, Any]:
    return {"BACKEND": LOCMEM_BACKEND, "LOCATION": location, "OPTIONS": dict(LOCMEM_OPTIONS)}


def _unique(name: str) -> str:
    return f"nativecache-bench-{name}-{os.getpid()}-{secrets.token_hex(4)}"


def _drop_segment(cache: Any) -> None:
    """Remove the shared memory segment a run created, when the backend offers a way."""
    for name in ("delete_segment", "unlink", "destroy"):
        fn = getattr(cache, name, None)
        if callable(fn):
            try:
                fn()
            except Exception as exc:
                print(f"  could not remove the segment: {type(exc).__name__}: {exc}")
            return


def _subjects() -> list[Subject]:
    return [
        Subject(
            "shm",
            f"`{SHM_BACKEND}`, OPTIONS {SHM_OPTIONS}",
            caches=_shm_entry(_unique("shm")),
            cleanup=_drop_segment,
            shared=True,
        ),
        Subject(
            "locmem",
            f"`{LOCMEM_BACKEND}`, OPTIONS {LOCMEM_OPTIONS}",
            caches=_locmem_entry(_unique("locmem")),
        ),
        Subject(
            "dict",
            "a plain dict behind get/set/get_many/incr: pre-made keys, no pickling (the floor)",
            factory=DictFloor,
        ),
    ]


# --------------------------------------------------------------------------------------------
# Parts


def _latency(ctx: Context, subjects: list[Subject]) -> list[str]:
    print(f"latency: {ctx.rounds} rounds of {ctx.n:,} calls", flush=True)
    result = harness.run_latency(subjects, OPERATIONS, n=ctx.n, rounds=ctx.rounds)
    stat = "median" if ctx.stat == "median" else "best"
    lines = [
        "### Latency through the cache API",
        "",
        f"ns per call, {stat} of {ctx.rounds} interleaved rounds of {ctx.n:,} calls "
        f"(get_many: {ctx.n // 100:,} calls of 100 keys); ± is the interquartile range of the "
        "rounds. a/b columns are time ratios: below 1.00, a is faster than b. "
        f"`{ops.FRESH_GET}`: each call makes an instance from the subject's CACHES entry "
        "with Django's CacheHandler and gets a key, as each request task does under ASGI, "
        "where `caches[alias]` is per task (the dict floor has no settings: n/a).",
        "",
        harness.latency_table(result, subjects, OPERATIONS, stat=ctx.stat),
    ]
    errors = harness.describe_errors(result)
    if errors:
        lines += ["", *errors]
    return lines


def _throughput(ctx: Context, subjects: list[Subject]) -> list[str]:
    work = MixWorkload(key_prefix="bench:mix:", pool=POOL, value=OBJ_187, sets_per_100=10)
    rounds = 1 if ctx.quick else 3
    measured = [s for s in subjects if s.caches is not None]
    print(
        f"throughput: {rounds} rounds of 1 and 2 processes, {ctx.duration:g} s each", flush=True
    )
    runs: dict[tuple[str, int], list[float]] = {}
    errors: dict[str, str] = {}
    for s in measured:
        if s.shared:  # the workers attach to this store: fill it once, here
            harness.prefill(s.cache, work)
    for rnd in range(rounds):
        for i, s in enumerate(measured):
            procs_order = (1, 2) if (rnd + i) % 2 == 0 else (2, 1)
            for procs in procs_order:
                if s.name in errors:
                    continue
                try:
                    ops = harness.run_mix_once(
                        s.name,
                        s.caches or {},
                        work,
                        procs=procs,
                        duration=ctx.duration,
                        prefill_in_each=not s.shared,
                    )
                except Exception as exc:
                    errors[s.name] = f"{type(exc).__name__}: {exc}"
                    print(f"  throughput on {s.name} failed: {errors[s.name]}", flush=True)
                    continue
                runs.setdefault((s.name, procs), []).append(ops)
                print(f"  {s.name} {procs}P: {ops:,.0f} ops/s", flush=True)

    def ops_s(name: str, procs: int) -> float | None:
        v = runs.get((name, procs))
        return statistics.median(v) if v else None

    rows = []
    for s in measured:
        one, two = ops_s(s.name, 1), ops_s(s.name, 2)
        rows.append(
            [
                s.name,
                f"{one:,.0f}" if one else "n/a",
                f"{two:,.0f}" if two else "n/a",
                fmt_ratio(two, one),
            ]
        )
    lines = [
        "### Throughput of 1 vs 2 processes",
        "",
        f"Aggregate gets and sets per second, 90% `get` / 10% `set` of the 187-byte object "
        f"over {POOL} keys, {ctx.duration:g} s per run, median of {rounds} run(s). The `shm` "
        "processes share one segment; each `locmem` process has its own cache (reference only). "
        f"The machine has {nproc()} CPUs.",
        "",
        md_table(["subject", "1 process ops/s", "2 processes ops/s", "2P/1P"], rows),
    ]
    names = [s.name for s in measured]
    if "shm" in names and "locmem" in names:
        lines += [
            "",
            f"shm/locmem throughput: {fmt_ratio(ops_s('shm', 1), ops_s('locmem', 1))} with 1 "
            f"process, {fmt_ratio(ops_s('shm', 2), ops_s('locmem', 2))} with 2 "
            "(above 1.00, shm does more work per second).",
        ]
    for name, msg in errors.items():
        lines += ["", f"- `{name}` failed: {msg}"]
    return lines


def _shm_memory(n: int) -> tuple[str, str]:
    """(overhead per entry, explanation) for SharedMemoryCache, read from its stats()."""
    sub = Subject("shm-memory", "", caches=_shm_entry(_unique("mem")), cleanup=_drop_segment)
    cache = sub.build()
    if cache is None:
        return "n/a", f"backend unavailable: {sub.skipped}"
    try:
        stats = getattr(cache, "stats", None)
        if not callable(stats):
            return "n/a", "the backend has no stats()"
        before = stats()
        missing = [k for k in ("items", "bytes") if k not in before]
        if missing:
            return "n/a", f"stats() lacks {', '.join(missing)} (has: {', '.join(sorted(before))})"
        value = b"v" * 100
        payload = 0
        for i in range(n):
            key = f"m:{i:06d}"
            cache.set(key, value, None)
            payload += len(cache.make_key(key).encode()) + len(value)
        after = stats()
        items = after["items"] - before["items"]
        used = after["bytes"] - before["bytes"]
        if items != n:
            return "n/a", f"stats() counts {items} new items after {n} sets"
        return f"{(used - payload) / items:.1f}", (
            f"stats(): {used:,} bytes for {items:,} items, payload {payload:,} bytes"
        )
    except Exception as exc:
        return "n/a", f"{type(exc).__name__}: {exc}"
    finally:
        sub.close()


def _locmem_memory(n: int) -> tuple[str, str]:
    """Python heap growth of LocMemCache for the same entries (tracemalloc), for reference."""
    cache = harness.build_from_caches_entry("locmem-memory", _locmem_entry(_unique("mem")))
    value = b"v" * 100
    keys = [f"m:{i:06d}" for i in range(n)]
    payload = sum(len(cache.make_key(k).encode()) + len(value) for k in keys)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for k in keys:
            cache.set(k, value, None)
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    cache.clear()
    return f"{(used - payload) / n:.1f}", f"Python heap growth {used:,} bytes, payload {payload:,}"


def _memory(ctx: Context) -> list[str]:
    n = 5_000 if ctx.quick else 50_000
    print(f"memory: {n:,} entries", flush=True)
    shm_v, shm_note = _shm_memory(n)
    loc_v, loc_note = _locmem_memory(n)
    rows = [
        ["shm", shm_v, shm_note],
        ["locmem (Python heap, reference)", loc_v, loc_note],
    ]
    return [
        "### Memory overhead per entry",
        "",
        f"{n:,} entries, keys like `m:000123` (made key `:1:m:000123`, 11 bytes), 100-byte "
        "`bytes` values, no expiry. Overhead = (bytes used − Σ(made key + value)) / entries: "
        "whatever the store counts beyond key and value (record header, the codec's header, "
        "alignment) is overhead. For `shm`, bytes used is the growth of `stats()[\"bytes\"]`.",
        "",
        md_table(["subject", "bytes/entry", "how"], rows, align="lrl"),
    ]


@group("shm", "SharedMemoryCache vs LocMemCache vs a dict")
def run(ctx: Context) -> str:
    subjects = _subjects()
    live = harness.build_subjects(subjects)
    for s in live:
        ctx.stack.callback(s.close)
    body = ["Subjects:", ""]
    for s in subjects:
        note = f" — skipped: {s.skipped}" if s.skipped else ""
        body.append(f"- `{s.name}`: {s.label}{note}")
    body.append("")
    body += _latency(ctx, live)
    body.append("")
    body += _throughput(ctx, live)
    body.append("")
    body += _memory(ctx)
    return "\n".join(body) + "\n"
