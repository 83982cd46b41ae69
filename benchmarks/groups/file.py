"""Group "file": FileBasedCache vs Django's FileBasedCache vs diskcache.DjangoCache.

All subjects run in one process, each on a fresh directory of its own inside one temporary
directory (so on the same filesystem), removed at the end. Two regimes, each measured in
interleaved rounds of its own and each with its own table and goals:

- below MAX_ENTRIES: MAX_ENTRIES 100,000 and about 1,000 entries present, so nothing is culled;
- above MAX_ENTRIES: Django's default MAX_ENTRIES of 300, the cache filled to exactly 300
  entries before each operation, so every write of a new key reaches the limit and culls.

diskcache has no MAX_ENTRIES (it culls by size, ``size_limit``): both of its subjects run on
its defaults and hold the same entries as the others.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from .. import harness, ops
from ..harness import (
    LatencyResult,
    Operation,
    Prepared,
    Subject,
    cycle,
    loop_call1,
    loop_call2,
    md_table,
)
from ..ops import OBJ_187, SHORT
from . import Context, group

OURS_BACKEND = "django_nativecache.backends.filebased.FileBasedCache"
DJANGO_BACKEND = "django.core.cache.backends.filebased.FileBasedCache"
DISKCACHE_BACKEND = "diskcache.DjangoCache"

# A read is an open and a read of a small file (µs); Django's write lists the whole directory
# first (about a millisecond with 1,000 entries), so few calls per measurement, and a quarter
# of them for the writes: set and delete (whose preparation is a set per key) run n/4 calls.
DEFAULT_N = 2_000
WRITE_PER = 4
POOL = 250  # distinct keys each operation cycles over
RESIDENT = ("key", "obj", "set", "fill")  # pools kept present below MAX_ENTRIES
MAX_ENTRIES = 100_000  # below MAX_ENTRIES: far above what is stored
FULL_ENTRIES = 300  # above MAX_ENTRIES: Django's default, and the entries present
TIMEOUT = 3600  # longer than the group runs: no entry expires while it is measured

REGIMES = {
    "below": f"Below MAX_ENTRIES ({MAX_ENTRIES:,}; {POOL * len(RESIDENT):,} entries present)",
    "full": f"Above MAX_ENTRIES ({FULL_ENTRIES}; the cache full)",
}
PEERS = ("django", "diskcache")  # compared with ours, in this order

# (regime, operation, peer, least peer/ours time ratio): ours must be at least this many
# times faster.
GOALS = [
    (regime, op, peer, least)
    for regime, set_least in (("below", 5.0), ("full", 20.0))
    for peer, get_least, write_least in (("django", 3.0, set_least), ("diskcache", 1.0, 1.0))
    for op, least in (
        ("get hit, short str", get_least),
        ("get hit, 187-byte pickle", get_least),
        ("set, short str", write_least),
    )
]


# --------------------------------------------------------------------------------------------
# Operations, as in the other groups: prepare() fills what it needs, checks the answer once,
# and hands back the timed loop from harness.


def _resident(cache: Any) -> None:
    """Below MAX_ENTRIES: the entries every operation finds present (POOL of each kind)."""
    ops.fill(cache, ops.keys("key", POOL), SHORT)
    ops.fill(cache, ops.keys("obj", POOL), OBJ_187)
    ops.fill(cache, ops.keys("set", POOL), SHORT)
    ops.fill(cache, ops.keys("fill", POOL), SHORT)


def _full(cache: Any, keys: list[str], value: Any) -> None:
    """Above MAX_ENTRIES: empty the cache, then write ``keys`` and filler up to exactly
    FULL_ENTRIES entries. Below the limit until the last write, so nothing is culled; the
    next write of a new key culls."""
    filler = ops.keys("fill", FULL_ENTRIES - len(keys))
    cache.clear()
    for k in keys:
        cache.set(k, value)
    for k in filler:
        cache.set(k, SHORT)
    got = cache.get_many([*keys, *filler])
    assert len(got) == FULL_ENTRIES, f"{len(got)} of the {FULL_ENTRIES} entries written are present"


def _get_hit(prefix: str, value: Any, full: bool) -> Any:
    def prepare(cache: Any, n: int) -> Prepared:
        keys = ops.keys(prefix, POOL)
        if full:
            _full(cache, keys, value)
        else:
            _resident(cache)
        got = cache.get(keys[1])
        assert got == value and type(got) is type(value), f"get returned {got!r}"
        items = cycle(keys, n)
        get = cache.get
        return Prepared(lambda: loop_call1(get, items), items)

    return prepare


def _get_miss(full: bool) -> Any:
    def prepare(cache: Any, n: int) -> Prepared:
        if full:
            _full(cache, [], SHORT)
        else:
            _resident(cache)
        keys = ops.keys("miss", POOL)
        got = cache.get(keys[1])
        assert got is None, f"get of a missing key returned {got!r}"
        items = cycle(keys, n)
        get = cache.get
        return Prepared(lambda: loop_call1(get, items), items)

    return prepare


def _set_short(cache: Any, n: int) -> Prepared:
    """Below MAX_ENTRIES: sets that rewrite present keys, so the entry count stays put."""
    _resident(cache)
    keys = ops.keys("set", POOL)
    cache.delete(keys[1])
    cache.set(keys[1], SHORT)
    got = cache.get(keys[1])
    assert got == SHORT, f"get after set returned {got!r}"
    items = cycle(keys, n)
    set_ = cache.set
    return Prepared(lambda: loop_call2(set_, items, SHORT), items)


def _set_new_full(cache: Any, n: int) -> Prepared:
    """Above MAX_ENTRIES: sets of keys never written, into a full cache. The first one culls
    (it is the answer check); the timed ones then refill the cache and cull again as it
    reaches the limit."""
    _full(cache, [], SHORT)
    keys = ops.keys("new", n + 1)
    cache.set(keys[0], SHORT)
    got = cache.get(keys[0])
    assert got == SHORT, f"get after set returned {got!r}"
    items = keys[1:]
    set_ = cache.set
    return Prepared(lambda: loop_call2(set_, items, SHORT), items)


def _delete(full: bool) -> Any:
    """Deletes of distinct keys, all present when the loop starts: each call removes one
    entry. Above MAX_ENTRIES they are among the FULL_ENTRIES entries, so at most
    FULL_ENTRIES - 1 calls."""

    def prepare(cache: Any, n: int) -> Prepared:
        count = min(n, FULL_ENTRIES - 1) if full else n
        keys = ops.keys("del", count + 1)
        if full:
            _full(cache, keys, SHORT)
        else:
            _resident(cache)
            for k in keys:
                cache.set(k, SHORT)
            got = cache.get_many(keys)
            assert len(got) == len(keys), f"{len(got)} of {len(keys)} keys to delete present"
        deleted = cache.delete(keys[0])
        assert deleted is True, f"delete of a present key returned {deleted!r}"
        got = cache.get(keys[0])
        assert got is None, f"get after delete returned {got!r}"
        items = keys[1:]
        delete = cache.delete
        return Prepared(lambda: loop_call1(delete, items), items)

    return prepare


DELETE = "delete (of a present key)"


def _operations(full: bool) -> list[Operation]:
    return [
        Operation("get hit, short str", _get_hit("key", SHORT, full)),
        Operation("get hit, 187-byte pickle", _get_hit("obj", OBJ_187, full)),
        Operation("get miss", _get_miss(full)),
        Operation("set, short str", _set_new_full if full else _set_short, per=WRITE_PER),
        Operation(DELETE, _delete(full), per=WRITE_PER),
    ]


OPERATIONS = _operations(full=False)
FULL_OPERATIONS = _operations(full=True)
PROBE = "bench:probe"


# --------------------------------------------------------------------------------------------
# Subjects


def _subjects(parent: str) -> list[tuple[Subject, str]]:
    """(subject, its directory) for each backend in each regime."""
    out = []
    for regime in REGIMES:
        full = regime == "full"
        for short, backend in (
            ("ours", OURS_BACKEND),
            ("django", DJANGO_BACKEND),
            ("diskcache", DISKCACHE_BACKEND),
        ):
            name = f"{short}{'-full' if full else ''}"
            directory = os.path.join(parent, name)
            entry: dict[str, Any] = {"BACKEND": backend, "LOCATION": directory, "TIMEOUT": TIMEOUT}
            if short == "diskcache":
                how = "no OPTIONS (its defaults)"
            else:
                entry["OPTIONS"] = {"MAX_ENTRIES": FULL_ENTRIES if full else MAX_ENTRIES}
                how = f"OPTIONS {entry['OPTIONS']}"
            label = f"`{backend}`, LOCATION `{directory}`, TIMEOUT {TIMEOUT}, {how}"
            out.append((Subject(name, label, caches=entry), directory))
    return out


def _files_under(directory: str) -> int:
    return sum(len(files) for _, _, files in os.walk(directory))


def _check_reach(subject: Subject, directory: str) -> None:
    """A set is read back, and writes into the subject's own directory."""
    cache = subject.cache
    try:
        cache.delete(PROBE)
        cache.set(PROBE, SHORT)
        got = cache.get(PROBE)
        if got != SHORT:
            raise AssertionError(f"get after set returned {got!r}")
        if _files_under(directory) == 0:
            raise AssertionError(f"the key set left no file in {directory}")
        cache.delete(PROBE)
    except Exception as exc:
        subject.skipped = f"{type(exc).__name__}: {exc}".strip()
        print(f"  skipped {subject.name} ({subject.label}): {subject.skipped}", flush=True)
        subject.close()


def _filesystem(path: str) -> str:
    """The type and device of the filesystem holding path, from /proc/self/mounts."""
    real = os.path.realpath(path)
    best = ("", "unknown", "unknown")
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 3:
                    continue
                device, mount, fstype = fields[0], fields[1], fields[2]
                inside = real == mount or real.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best[0]):
                    best = (mount, fstype, device)
    except OSError:
        pass
    mount, fstype, device = best
    return f"{fstype} ({device} on {mount or '?'})"


# --------------------------------------------------------------------------------------------
# Tables


def _view(result: LatencyResult, regime: str) -> LatencyResult:
    """The figures of one regime, under the backends' short names (ours, django, diskcache)."""
    full = regime == "full"
    return harness.subject_view(
        result,
        lambda name: name.removesuffix("-full") if name.endswith("-full") == full else None,
    )


def _goal_rows(views: dict[str, LatencyResult], stat: str) -> list[list[str]]:
    rows = []
    for regime, op, peer, least in GOALS:
        measured, met = harness.goal_cells(views[regime], op, peer, least, stat)
        title = "below MAX_ENTRIES" if regime == "below" else "above MAX_ENTRIES"
        rows.append([title, op, f"{peer}/ours ≥ {least:.2f}", measured, met])
    return rows


def _latency(ctx: Context, live: list[Subject], live_full: list[Subject]) -> list[str]:
    n_write = max(1, ctx.n // WRITE_PER)
    n_delete_full = min(n_write, FULL_ENTRIES - 1)
    print(
        f"latency below MAX_ENTRIES: {ctx.rounds} rounds of {ctx.n:,} calls "
        f"(set, delete: {n_write:,})",
        flush=True,
    )
    below = harness.run_latency(live, OPERATIONS, n=ctx.n, rounds=ctx.rounds)
    print(
        f"latency above MAX_ENTRIES: {ctx.rounds} rounds of {ctx.n:,} calls "
        f"(set: {n_write:,}, delete: {n_delete_full:,})",
        flush=True,
    )
    full = harness.run_latency(live_full, FULL_OPERATIONS, n=ctx.n, rounds=ctx.rounds)
    stat = "median" if ctx.stat == "median" else "best"
    lines = [
        "### Latency through the cache API",
        "",
        f"Time per call (ns, or µs where marked), {stat} of {ctx.rounds} interleaved rounds of "
        f"{ctx.n:,} calls (set and delete: {n_write:,} per round; delete above MAX_ENTRIES: "
        f"{n_delete_full:,}, the keys it can find among {FULL_ENTRIES} entries); ± is the "
        "interquartile range of the rounds. Each regime was measured in rounds of its own. "
        "peer/ours columns are time ratios: above 1.00, ours is faster (1.50: the peer takes 1.5 "
        "times as long).",
        "",
        f"Below MAX_ENTRIES, every operation starts with {POOL * len(RESIDENT):,} entries "
        f"present ({POOL} keys holding the short str, {POOL} holding the 187-byte object, the "
        f"{POOL} keys `set` rewrites, {POOL} more); `set` cycles over its {POOL} present keys, "
        "so the count stays put; `delete` first writes its keys (one per call, on top of the "
        f"{POOL * len(RESIDENT):,}) and each timed call removes one. Above MAX_ENTRIES, each "
        f"operation starts from a cleared cache filled with exactly {FULL_ENTRIES} entries (its "
        "own keys and filler): gets and deletes find their keys among them; `set` writes keys "
        "never written before, one per call, so every set of both FileBasedCaches finds the "
        f"count at or near the limit: Django's lists the directory on every set and, whenever "
        f"it holds {FULL_ENTRIES} files or more, deletes a random third of them (once every "
        f"{FULL_ENTRIES // 3} sets or so); ours keeps the count in a shared counter and, at the "
        "limit, rescans the directory and removes the oldest third.",
    ]
    views = {"below": _view(below, "below"), "full": _view(full, "full")}
    for regime, title in REGIMES.items():
        view = views[regime]
        pool = live if regime == "below" else live_full
        names = [s.name.removesuffix("-full") for s in pool]
        subjects = [Subject(name, "") for name in names]
        pairs = [(peer, "ours") for peer in PEERS if peer in names and "ours" in names]
        rows = OPERATIONS if regime == "below" else FULL_OPERATIONS
        lines += [
            "",
            f"#### {title}",
            "",
            harness.latency_table(view, subjects, rows, stat=ctx.stat, pairs=pairs),
        ]
    lines += [
        "",
        "### Goals",
        "",
        "Ours against each peer in the same regime (time ratio peer/ours).",
        "",
        md_table(
            ["regime", "operation", "goal", "measured", "met"],
            _goal_rows(views, ctx.stat),
            "lllrl",
        ),
    ]
    errors = harness.describe_errors(below) + [
        line.replace("` on `", "` (above MAX_ENTRIES) on `", 1)
        for line in harness.describe_errors(full)
    ]
    if errors:
        lines += ["", *errors]
    return lines


@group(
    "file",
    "FileBasedCache vs Django's FileBasedCache and diskcache.DjangoCache",
    n=DEFAULT_N,
)
def run(ctx: Context) -> str:
    return _run(ctx, None)


# The same measurement in /dev/shm. On a disk filesystem the create and rename every
# write pays (ours and Django's) are metadata updates of the journal, and on a small VM
# they dominate a set; on tmpfs they are cheap, so this run shows what the rest of the
# write path costs, apart from the filesystem.
TMPFS = "/dev/shm"


@group(
    "file-tmpfs",
    "the file group with every directory on tmpfs (/dev/shm)",
    n=DEFAULT_N,
)
def run_tmpfs(ctx: Context) -> str:
    if not os.path.isdir(TMPFS):
        return f"Not measured: {TMPFS} does not exist on this machine.\n"
    return _run(ctx, TMPFS)


def _run(ctx: Context, where: str | None) -> str:
    parent = tempfile.mkdtemp(prefix="nativecache-bench-file-", dir=where)
    ctx.stack.callback(shutil.rmtree, parent, ignore_errors=True)
    entries = _subjects(parent)
    harness.build_subjects([s for s, _ in entries])
    for subject, directory in entries:
        if subject.cache is not None:
            ctx.stack.callback(subject.close)  # runs before the directory goes
            _check_reach(subject, directory)
    live = [s for s, _ in entries if not s.skipped and not s.name.endswith("-full")]
    live_full = [s for s, _ in entries if not s.skipped and s.name.endswith("-full")]

    body = ["Subjects:", ""]
    for s, _ in entries:
        note = f" — skipped: {s.skipped}" if s.skipped else ""
        body.append(f"- `{s.name}`: {s.label}{note}")
    body += [
        "",
        f"Directories: one per subject, fresh, all in one temporary directory on "
        f"{_filesystem(parent)}, removed after the run; every file read is in the page cache. "
        "Both FileBasedCaches run with CULL_FREQUENCY 3 (the default) and write each entry to a "
        "temporary file renamed into place, without fsync. diskcache "
        f"{harness.package_version('diskcache')}: `DjangoCache` on its defaults, no OPTIONS "
        "changed: 8 shards "
        "(SQLite databases) of a FanoutCache, WAL journal with `synchronous=NORMAL` (no sync per "
        "write either), values this small stored in SQLite rows, eviction "
        "`least-recently-stored` (a get writes nothing), `size_limit` 1 GiB. It has no "
        "MAX_ENTRIES (it culls by size, and these entries stay far below the limit), so above "
        "MAX_ENTRIES it holds the same entries and culls nothing. Every subject has TIMEOUT "
        f"{TIMEOUT}, so nothing expires during the run. Each operation cycles over {POOL} keys "
        "(except set above MAX_ENTRIES and delete, which use each key once).",
        "",
    ]
    body += _latency(ctx, live, live_full)
    return "\n".join(body) + "\n"


