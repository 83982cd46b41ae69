"""Measurement machinery shared by every benchmark group.

Subjects (a cache to measure) and operations (what to do with it) are measured interleaved:
every round visits every operation, and for each operation every subject in turn, with the
starting subject rotated from round to round. Noise from a shared machine then lands on all
subjects alike, and only ratios between subjects measured in the same run are reported.
"""

from __future__ import annotations

import gc
import importlib.metadata
import multiprocessing
import os
import queue
import statistics
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

perf_counter_ns = time.perf_counter_ns

# --------------------------------------------------------------------------------------------
# Django settings


_BASE_SETTINGS: dict[str, Any] = {
    "USE_TZ": True,
    "SECRET_KEY": "benchmarks-only",
    "INSTALLED_APPS": [],
    "DATABASES": {},
    "CACHES": {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
}


def configure_django(extra: dict[str, Any] | None = None) -> None:
    """Configure minimal Django settings once per process (also called in worker processes).

    Each subject's cache is built from its own CACHES entry (see ``Subject``); ``extra`` is for
    groups that need more, such as DATABASES for the database group.
    """
    from django.conf import settings

    if settings.configured:
        return
    merged = dict(_BASE_SETTINGS)
    for name, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(name), dict):
            merged[name] = {**merged[name], **value}
        else:
            merged[name] = value
    settings.configure(**merged)
    import django

    django.setup()


# --------------------------------------------------------------------------------------------
# Subjects


class SubjectUnavailable(Exception):
    """A subject cannot be measured in this run (backend missing, server down, ...)."""


class NotApplicable(Exception):
    """Raised by an operation's prepare for a subject that has no such operation (the dict
    floor has no settings to make instances from): shown as "n/a", not as an error."""


_NOT_APPLICABLE = "n/a"


def build_from_caches_entry(alias: str, entry: dict[str, Any]) -> Any:
    """Build a cache exactly as Django does for ``caches[alias]`` with CACHES = {alias: entry}.
    The cache keeps ``(alias, entry)`` as ``bench_caches_entry``, for operations that make
    more instances of it."""
    from django.core.cache import CacheHandler

    cache = CacheHandler({alias: dict(entry)})[alias]
    cache.bench_caches_entry = (alias, dict(entry))
    return cache


class DictFloor:
    """A plain dict behind the cache method names: no key making, no pickling, no expiry.

    It is the floor: no cache reached through Django's API can be faster than this.
    """

    def __init__(self) -> None:
        self._data: dict[Any, Any] = {}

    def get(self, key: Any, default: Any = None) -> Any:
        return self._data.get(key, default)

    def set(self, key: Any, value: Any, timeout: Any = None) -> None:
        self._data[key] = value

    def get_many(self, keys: Iterable[Any]) -> dict[Any, Any]:
        data = self._data
        return {k: data[k] for k in keys if k in data}

    def set_many(self, data: dict[Any, Any], timeout: Any = None) -> list[Any]:
        self._data.update(data)
        return []

    def incr(self, key: Any, delta: int = 1) -> int:
        value = self._data[key] + delta
        self._data[key] = value
        return value

    def delete(self, key: Any) -> bool:
        return self._data.pop(key, None) is not None

    def clear(self) -> None:
        self._data.clear()

    def close(self) -> None:
        pass


@dataclass
class Subject:
    """Something to measure: a Django CACHES entry, or a factory for an object with cache methods.

    ``name`` is the short column label; ``label`` says what it is in the report.
    ``cleanup`` runs after the group is done (e.g. to remove a shared memory segment).
    """

    name: str
    label: str
    caches: dict[str, Any] | None = None
    factory: Callable[[], Any] | None = None
    cleanup: Callable[[Any], None] | None = None
    shared: bool = False  # processes with the same CACHES entry share one store
    cache: Any = None
    skipped: str | None = None

    def build(self) -> Any:
        try:
            if self.caches is not None:
                self.cache = build_from_caches_entry(self.name, self.caches)
            elif self.factory is not None:
                self.cache = self.factory()
            else:
                raise SubjectUnavailable("no CACHES entry and no factory")
        except Exception as exc:  # any failure to import or construct skips the subject
            root = exc.__cause__ if isinstance(exc.__cause__, ImportError) else exc
            self.skipped = f"{type(root).__name__}: {root}".strip()
            self.cache = None
        return self.cache

    def close(self) -> None:
        if self.cache is None:
            return
        try:
            close = getattr(self.cache, "close", None)
            if close is not None:
                close()
        finally:
            if self.cleanup is not None:
                self.cleanup(self.cache)
            self.cache = None


def build_subjects(subjects: Sequence[Subject]) -> list[Subject]:
    """Build every subject; report and drop the ones that cannot be built."""
    live = []
    for subject in subjects:
        subject.build()
        if subject.skipped:
            print(f"  skipped {subject.name} ({subject.label}): {subject.skipped}", flush=True)
        else:
            live.append(subject)
    return live


# --------------------------------------------------------------------------------------------
# Timed loops. The same loop code runs for every subject, so its overhead is identical; the
# overhead of the bare iteration is measured with an empty loop over the same list and removed.


def loop_empty(items: list[Any]) -> int:
    t0 = perf_counter_ns()
    for _ in items:
        pass
    return perf_counter_ns() - t0


def loop_call1(fn: Callable[[Any], Any], items: list[Any]) -> int:
    t0 = perf_counter_ns()
    for x in items:
        fn(x)
    return perf_counter_ns() - t0


def loop_call2(fn: Callable[[Any, Any], Any], items: list[Any], arg: Any) -> int:
    t0 = perf_counter_ns()
    for x in items:
        fn(x, arg)
    return perf_counter_ns() - t0


def cycle(pool: Sequence[Any], n: int) -> list[Any]:
    """A list of n items taken round-robin from pool (the timed loops iterate over it)."""
    reps, rest = divmod(n, len(pool))
    return list(pool) * reps + list(pool[:rest])


@dataclass
class Prepared:
    """One ready measurement: ``run()`` returns ns for ``len(items)`` calls over ``items``."""

    run: Callable[[], int]
    items: list[Any]


@dataclass
class Operation:
    """A named operation. ``prepare(cache, n)`` fills the cache as needed, checks that the
    operation gives the right answer on this cache (raising AssertionError otherwise), and
    returns a ``Prepared`` of about n calls. ``per`` scales the call count for heavy calls
    (get_many of 100 keys runs n/100 times)."""

    name: str
    prepare: Callable[[Any, int], Prepared]
    per: int = 1


class _Baseline:
    """Best (lowest) empty-loop time seen per list length: noise only ever adds to it."""

    def __init__(self) -> None:
        self._best: dict[int, int] = {}

    def measure(self, items: list[Any]) -> None:
        best = self._best.get(len(items))
        t = timed(lambda: loop_empty(items))
        if best is None or t < best:
            self._best[len(items)] = t

    def get(self, n: int) -> int:
        return self._best.get(n, 0)


def timed(run: Callable[[], int]) -> int:
    gc.collect()
    gc.disable()
    try:
        return run()
    finally:
        gc.enable()


@dataclass
class LatencyResult:
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # op -> subject -> ns
    errors: dict[str, dict[str, str]] = field(default_factory=dict)  # op -> subject -> message

    def value(self, op: str, subject: str, stat: str) -> float | None:
        s = self.samples.get(op, {}).get(subject)
        if not s:
            return None
        return min(s) if stat == "min" else statistics.median(s)

    def spread(self, op: str, subject: str) -> float | None:
        """Interquartile range relative to the median, in percent (a noise indicator)."""
        s = self.samples.get(op, {}).get(subject)
        if not s or len(s) < 3:
            return None
        q = statistics.quantiles(s, n=4, method="inclusive")
        med = statistics.median(s)
        return 100.0 * (q[2] - q[0]) / med if med > 0 else None


def subject_view(result: LatencyResult, rename: Callable[[str], str | None]) -> LatencyResult:
    """The figures of the subjects ``rename`` keeps (it returns None for the others), under
    the names it gives them: e.g. one transport's or one database's subjects by backend."""

    def keep(by: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name, value in by.items():
            short = rename(name)
            if short is not None:
                out[short] = value
        return out

    return LatencyResult(
        samples={op: keep(by) for op, by in result.samples.items()},
        errors={op: keep(by) for op, by in result.errors.items()},
    )


def goal_cells(
    view: LatencyResult, op: str, peer: str, least: float, stat: str
) -> tuple[str, str]:
    """(measured peer/ours ratio, "yes"/"no"/"n/a") for the goal peer/ours >= least."""
    ours, other = view.value(op, "ours", stat), view.value(op, peer, stat)
    if ours is None or other is None or ours <= 0:
        return "n/a", "n/a"
    # Three digits, so that "met" always agrees with the figure shown.
    return f"{other / ours:.3f}", "yes" if other / ours >= least else "no"


def with_per_key(
    result: LatencyResult, operations: Sequence[Operation], batches: dict[str, int]
) -> list[Operation]:
    """Table rows: ``operations``, each batched one (name -> keys per call) followed by a
    row of its time per key, which is added to ``result``."""
    rows = []
    for op in operations:
        rows.append(op)
        batch = batches.get(op.name)
        if batch is None:
            continue
        per_key = f"{op.name}, per key"
        for name, samples in result.samples.get(op.name, {}).items():
            result.samples.setdefault(per_key, {})[name] = [v / batch for v in samples]
        for name, msg in result.errors.get(op.name, {}).items():
            result.errors.setdefault(per_key, {})[name] = msg
        rows.append(Operation(per_key, op.prepare, op.per))  # a table row, never timed
    return rows


def package_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def run_latency(
    subjects: Sequence[Subject],
    operations: Sequence[Operation],
    *,
    n: int,
    rounds: int,
    verbose: bool = True,
) -> LatencyResult:
    """Measure ns per call of each operation on each subject, interleaved as described above."""
    result = LatencyResult()
    baseline = _Baseline()
    total = rounds + 1  # round 0 warms up and is discarded
    for rnd in range(total):
        warmup = rnd == 0
        count_scale = 10 if warmup else 1
        k = rnd % len(subjects) if subjects else 0
        order = list(subjects[k:]) + list(subjects[:k])
        if verbose:
            print(f"  round {rnd}/{rounds}{' (warm-up)' if warmup else ''}", flush=True)
        for op in operations:
            calls = max(1, n // op.per // count_scale)
            for subject in order:
                if subject.name in result.errors.get(op.name, {}):
                    continue
                try:
                    prepared = op.prepare(subject.cache, calls)
                    baseline.measure(prepared.items)
                    elapsed = timed(prepared.run)
                except NotApplicable:
                    result.errors.setdefault(op.name, {})[subject.name] = _NOT_APPLICABLE
                    continue
                except Exception as exc:
                    msg = f"{type(exc).__name__}: {exc}".strip()
                    result.errors.setdefault(op.name, {})[subject.name] = msg
                    if verbose:
                        print(f"    {op.name} on {subject.name} failed: {msg}", flush=True)
                        if os.environ.get("BENCH_TRACEBACK"):
                            traceback.print_exc()
                    continue
                if warmup:
                    continue
                ns = max(0, elapsed - baseline.get(len(prepared.items))) / len(prepared.items)
                result.samples.setdefault(op.name, {}).setdefault(subject.name, []).append(ns)
    return result


# --------------------------------------------------------------------------------------------
# Multi-process throughput


@dataclass
class MixWorkload:
    """A get/set mix over a prefilled key pool; ``sets_per_100`` of every 100 ops are sets."""

    key_prefix: str
    pool: int
    value: Any
    sets_per_100: int = 10


def prefill(cache: Any, work: MixWorkload) -> None:
    for i in range(work.pool):
        cache.set(f"{work.key_prefix}{i}", work.value)


def _mix_worker(
    alias: str,
    entry: dict[str, Any],
    work: MixWorkload,
    duration: float,
    do_prefill: bool,
    barrier: Any,
    out: Any,
    index: int,
) -> None:
    try:
        configure_django()
        cache = build_from_caches_entry(alias, entry)
        if do_prefill:
            prefill(cache, work)
        first = f"{work.key_prefix}0"
        if cache.get(first) != work.value:
            raise AssertionError(f"{first!r} is not in this process's view of the cache")
        gets = 100 - work.sets_per_100
        keys = [f"{work.key_prefix}{i}" for i in range(work.pool)]
        # Blocks of (gets, sets) over rotating key windows: the same work in every process.
        blocks = []
        for b in range(0, work.pool, 100):
            window = cycle(keys[b:] + keys[:b], 100)
            blocks.append((window[:gets], window[gets:]))
        get = cache.get
        set_ = cache.set
        value = work.value
        ops = 0
        barrier.wait()
        gc.disable()
        t0 = perf_counter_ns()
        deadline = t0 + int(duration * 1e9)
        now = t0
        while now < deadline:
            for get_keys, set_keys in blocks:
                for k in get_keys:
                    get(k)
                for k in set_keys:
                    set_(k, value)
            ops += 100 * len(blocks)
            now = perf_counter_ns()
        gc.enable()
        out.put((index, ops, now - t0, None))
        cache.close()
    except BaseException as exc:  # report, never hang the parent
        try:
            barrier.abort()
        except Exception:
            pass
        out.put((index, 0, 1, f"{type(exc).__name__}: {exc}"))


def run_mix_once(
    alias: str,
    entry: dict[str, Any],
    work: MixWorkload,
    *,
    procs: int,
    duration: float,
    prefill_in_each: bool,
    start_method: str = "spawn",
) -> float:
    """Aggregate ops/s of ``procs`` processes running the mix at the same time."""
    ctx = multiprocessing.get_context(start_method)
    barrier = ctx.Barrier(procs)
    out = ctx.Queue()
    workers = [
        ctx.Process(
            target=_mix_worker,
            args=(alias, entry, work, duration, prefill_in_each, barrier, out, i),
            daemon=True,
        )
        for i in range(procs)
    ]
    for w in workers:
        w.start()
    results = []
    deadline = time.monotonic() + duration + 120
    try:
        while len(results) < procs:
            try:
                results.append(out.get(timeout=0.5))
                continue
            except queue.Empty:
                pass
            dead = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"a worker process exited with code {dead[0]}")
            if time.monotonic() > deadline:
                raise RuntimeError("worker processes did not report in time")
    finally:
        for w in workers:
            w.join(timeout=10)
            if w.is_alive():
                w.terminate()
                w.join()
    errors = [r[3] for r in results if r[3]]
    if errors:
        raise RuntimeError(errors[0])
    return sum(ops / (ns / 1e9) for _, ops, ns, _ in results)


# --------------------------------------------------------------------------------------------
# Tables


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A Markdown table padded so it also reads well on a terminal.

    ``align`` holds one letter per column, 'l' or 'r' (default: first left, others right).
    """
    cols = len(headers)
    align = align or ("l" + "r" * (cols - 1))
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def fmt(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            out.append(cell.ljust(widths[i]) if align[i] == "l" else cell.rjust(widths[i]))
        return "| " + " | ".join(out) + " |"

    sep = "|" + "|".join(
        "-" * (w + 1) + ":" if a == "r" else ":" + "-" * (w + 1) for w, a in zip(widths, align)
    ) + "|"
    return "\n".join([fmt(headers), sep, *(fmt(r) for r in rows)])


def fmt_ns(ns: float | None) -> str:
    if ns is None:
        return "n/a"
    if ns >= 100_000:
        return f"{ns / 1000:,.0f} µs"
    if ns >= 10_000:
        return f"{ns / 1000:.1f} µs"
    if ns >= 100:
        return f"{ns:,.0f}"
    return f"{ns:.1f}"


def fmt_ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b <= 0:
        return "n/a"
    r = a / b
    return f"{r:.2f}" if r < 10 else f"{r:.1f}"


def latency_table(
    result: LatencyResult,
    subjects: Sequence[Subject],
    operations: Sequence[Operation],
    *,
    stat: str,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> str:
    """ns per call for each subject, then time ratios a/b for ``pairs`` (default: every pair,
    earlier subject over later; groups with many peers pass (ours, peer) pairs only)."""
    names = [s.name for s in subjects]
    if pairs is None:
        pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    pairs = [(a, b) for a, b in pairs if a in names and b in names]
    headers = ["operation"] + [f"{n} ns" for n in names] + [f"{a}/{b}" for a, b in pairs]
    rows = []
    for op in operations:
        row = [op.name]
        for n in names:
            if n in result.errors.get(op.name, {}):
                missing = result.errors[op.name][n] == _NOT_APPLICABLE
                row.append("n/a" if missing else "error")
                continue
            v = result.value(op.name, n, stat)
            sp = result.spread(op.name, n)
            row.append(fmt_ns(v) + (f" ±{sp:.0f}%" if sp is not None else ""))
        for a, b in pairs:
            row.append(fmt_ratio(result.value(op.name, a, stat), result.value(op.name, b, stat)))
        rows.append(row)
    return md_table(headers, rows)


def describe_errors(result: LatencyResult) -> list[str]:
    lines = []
    for op, by_subject in result.errors.items():
        for subject, msg in by_subject.items():
            if msg == _NOT_APPLICABLE:
                continue
            lines.append(f"- `{op}` on `{subject}` failed: {msg}")
    return lines
