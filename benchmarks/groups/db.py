"""Group "db": DatabaseCache vs Django's DatabaseCache, on SQLite and on PostgreSQL.

Both backends run in one process against the same three databases: a SQLite file in a
temporary directory with Django's default SQLite settings (rollback journal, synchronous
FULL), another in WAL mode with synchronous NORMAL (how SQLite sites usually run, set with
Django's ``init_command``), and the PostgreSQL at 127.0.0.1:5432 (database ``test``). Every subject has a cache table of its own, made with ``createcachetable`` and dropped
at the end; a small router sends each table to its database by name. One interleaved latency
run covers both databases; each database gets its own table and its own goals. The write at
MAX_ENTRIES is measured on separate subjects (MAX_ENTRIES=300, tables of their own) in a second
interleaved run.
"""

from __future__ import annotations

import os
import secrets
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
    fmt_ratio,
    loop_call2,
    md_table,
)
from ..ops import OBJ_187, POOL, SHORT
from . import Context, group

OURS_BACKEND = "django_nativecache.backends.db.DatabaseCache"
DJANGO_BACKEND = "django.core.cache.backends.db.DatabaseCache"

DATABASES = {  # alias -> title
    "sqlite": "SQLite",
    "sqlitewal": "SQLite, WAL",
    "pg": "PostgreSQL",
}
WAL = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
PG = {"NAME": "test", "USER": "postgres", "HOST": "127.0.0.1", "PORT": "5432"}

# The SQLite file: its directory is made when the group runs and removed at the end. The path
# is fixed here because Django's settings are made before any group runs.
_RUN_TAG = f"{os.getpid()}_{secrets.token_hex(3)}"
SQLITE_DIR = os.path.join(tempfile.gettempdir(), f"nativecache-bench-db-{_RUN_TAG}")
SQLITE_PATH = os.path.join(SQLITE_DIR, "cache.sqlite3")
SQLITE_WAL_PATH = os.path.join(SQLITE_DIR, "cache-wal.sqlite3")

# Every call is a database statement or a transaction (tens of µs for a read, about a
# millisecond for a write that commits to disk), so few calls per measurement: 1,000 keeps the
# whole group to about two minutes. A 20-key call counts as BATCH_PER calls.
DEFAULT_N = 1_000
BATCH = 20  # keys per set_many call
BATCH_PER = BATCH  # Django's set_many is one set per key
WORKING_SET = 4 * POOL  # rows the operations write: get hit (two), set, set_many
MAX_ENTRIES = 100_000  # above the working set: nothing is culled
FULL_ENTRIES = 300  # the MAX_ENTRIES of the "set at MAX_ENTRIES" subjects
TIMEOUT = 3600  # longer than the group runs: no entry expires while it is measured

PEERS = ("django",)  # compared with ours

# (operation, peer, least peer/ours time ratio): ours must be at least this many times faster.
GOALS = [
    ("get hit, short str", "django", 1.3),
    ("set, short str", "django", 1.3),
]


# --------------------------------------------------------------------------------------------
# Databases and routing


def _alias_of_table(table: str) -> str | None:
    for alias in DATABASES:
        if table.startswith(f"bench_{alias}_"):
            return alias
    return None


class CacheTableRouter:
    """Sends a cache table to the database its name starts with: ``bench_sqlite_*`` to
    ``sqlite``, ``bench_pg_*`` to ``pg``. DatabaseCache asks the routers with a model whose
    ``_meta.app_label`` is ``django_cache`` and whose ``_meta.db_table`` is the table."""

    @staticmethod
    def _database(model: Any) -> str | None:
        meta = getattr(model, "_meta", None)
        if meta is None or getattr(meta, "app_label", None) != "django_cache":
            return None
        return _alias_of_table(getattr(meta, "db_table", ""))

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return self._database(model)

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return self._database(model)

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        model = hints.get("model")
        if app_label == "django_cache" and model is not None:
            target = self._database(model)
            if target is not None:
                return db == target
        return None


SETTINGS: dict[str, Any] = {
    "DATABASES": {
        "default": {},  # Django requires one; nothing uses it
        "sqlite": {"ENGINE": "django.db.backends.sqlite3", "NAME": SQLITE_PATH},
        "sqlitewal": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": SQLITE_WAL_PATH,
            "OPTIONS": {"init_command": WAL},
        },
        "pg": {"ENGINE": "django.db.backends.postgresql", **PG},
    },
    "DATABASE_ROUTERS": [f"{__name__}.CacheTableRouter"],
}


def _quoted(alias: str, table: str) -> str:
    from django.db import connections

    return connections[alias].ops.quote_name(table)


def _create_table(alias: str, table: str) -> None:
    from django.core.management import call_command
    from django.db import connections

    call_command("createcachetable", table, database=alias, verbosity=0)
    if table not in connections[alias].introspection.table_names():
        raise RuntimeError(f"createcachetable did not create {table} on {alias}")


def _drop_table(alias: str, table: str) -> None:
    from django.db import connections

    try:
        with connections[alias].cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {_quoted(alias, table)}")
    except Exception as exc:
        print(f"  could not drop {table} on {alias}: {type(exc).__name__}: {exc}")


def _close_connections() -> None:
    from django.db import connections

    for alias in DATABASES:
        try:
            connections[alias].close()
        except Exception as exc:
            print(f"  could not close {alias}: {type(exc).__name__}: {exc}")


def _reach(alias: str) -> str | None:
    """None when the database answers, else why not."""
    from django.db import connections

    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".strip()


def _describe_databases() -> str:
    from django.db import connections

    parts = []
    for alias, how in (("sqlite", "Django's default settings"), ("sqlitewal", f"`{WAL}`")):
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT sqlite_version()")
                version = cursor.fetchone()[0]
                cursor.execute("PRAGMA journal_mode")
                journal = cursor.fetchone()[0]
                cursor.execute("PRAGMA synchronous")
                sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
                    cursor.fetchone()[0], "?"
                )
            parts.append(
                f"`{alias}`: SQLite {version}, a file in a temporary directory on the local "
                f"disk, {how} (journal_mode {journal}, synchronous {sync}, autocommit)"
            )
        except Exception as exc:
            parts.append(f"`{alias}`: SQLite (not described: {type(exc).__name__})")
    try:
        with connections["pg"].cursor() as cursor:
            cursor.execute("SHOW server_version")
            version = cursor.fetchone()[0]
            cursor.execute("SHOW synchronous_commit")
            sync = cursor.fetchone()[0]
        parts.append(
            f"`pg`: PostgreSQL {version} at {PG['HOST']}:{PG['PORT']}, database `{PG['NAME']}`, over "
            f"TCP with psycopg {harness.package_version('psycopg')} "
            f"(synchronous_commit {sync}, autocommit)"
        )
    except Exception as exc:
        parts.append(f"PostgreSQL (not described: {type(exc).__name__})")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------
# Operations, as in the other groups: prepare() fills what it needs, checks the answer once,
# and hands back the timed loop from harness.


def _set_full(cache: Any, n: int) -> Prepared:
    """Sets of keys already stored, in a table holding exactly MAX_ENTRIES rows: every write
    asks the row count (the check before a cull), none deletes a row."""
    keys = ops.keys("full", FULL_ENTRIES)
    ops.fill(cache, keys, SHORT)
    cache.set(keys[1], SHORT)
    got = cache.get_many(keys)
    assert len(got) == FULL_ENTRIES and all(v == SHORT for v in got.values()), (
        f"get_many of the {FULL_ENTRIES} keys at MAX_ENTRIES returned {len(got)}"
    )
    items = cycle(keys, n)
    set_ = cache.set
    return Prepared(lambda: loop_call2(set_, items, SHORT), items)


SET_MANY = f"set_many, {BATCH} keys"
OPERATIONS = [
    Operation("get hit, short str", ops.get_hit("key", SHORT)),
    Operation("get hit, 187-byte pickle", ops.get_hit("obj", OBJ_187)),
    Operation("get miss", ops.get_miss),
    Operation("set, short str", ops.set_short),
    Operation(SET_MANY, ops.set_many(BATCH), per=BATCH_PER),
]
FULL_OPERATIONS = [Operation(f"set at MAX_ENTRIES={FULL_ENTRIES}", _set_full)]
PROBE = "bench:probe"


# --------------------------------------------------------------------------------------------
# Subjects


def _subjects() -> list[tuple[Subject, str, str, bool]]:
    """(subject, database alias, table, at MAX_ENTRIES) for each backend on each database."""
    out = []
    for full in (False, True):
        for alias in DATABASES:
            for short, backend in (("ours", OURS_BACKEND), ("django", DJANGO_BACKEND)):
                kind = "full" if full else "main"
                table = f"bench_{alias}_{short}_{kind}_{_RUN_TAG}"
                max_entries = FULL_ENTRIES if full else MAX_ENTRIES
                options = {"MAX_ENTRIES": max_entries}
                name = f"{short}{'-full' if full else ''}@{alias}"
                subject = Subject(
                    name,
                    f"`{backend}`, table `{table}` on `{alias}`, TIMEOUT {TIMEOUT}, "
                    f"OPTIONS {options}",
                    caches={
                        "BACKEND": backend,
                        "LOCATION": table,
                        "TIMEOUT": TIMEOUT,
                        "OPTIONS": options,
                    },
                )
                out.append((subject, alias, table, full))
    return out


def _check_reach(subject: Subject, alias: str, table: str) -> None:
    """A set is read back, and its row is in the subject's own table on its database."""
    from django.db import connections

    cache = subject.cache
    try:
        cache.delete(PROBE)
        cache.set(PROBE, SHORT)
        got = cache.get(PROBE)
        if got != SHORT:
            raise AssertionError(f"get after set returned {got!r}")
        with connections[alias].cursor() as cursor:
            cursor.execute(
                f"SELECT COUNT(*) FROM {_quoted(alias, table)} WHERE cache_key = %s",
                [cache.make_key(PROBE)],
            )
            rows = cursor.fetchone()[0]
        if rows != 1:
            raise AssertionError(f"the key set is not in {table} on {alias}")
        cache.delete(PROBE)
    except Exception as exc:
        subject.skipped = f"{type(exc).__name__}: {exc}".strip()
        print(f"  skipped {subject.name} ({subject.label}): {subject.skipped}", flush=True)
        subject.close()


# --------------------------------------------------------------------------------------------
# Tables


def _view(result: LatencyResult, alias: str) -> LatencyResult:
    """The figures of one database under the backends' short names (ours, django); the
    MAX_ENTRIES subjects' figures join their backend's column."""
    suffix = f"@{alias}"
    return harness.subject_view(
        result,
        lambda name: name.removesuffix(suffix).removesuffix("-full")
        if name.endswith(suffix)
        else None,
    )


def _goal_rows(view: LatencyResult, alias: str, stat: str) -> list[list[str]]:
    rows = []
    for op, peer, least in GOALS:
        measured, met = harness.goal_cells(view, op, peer, least, stat)
        rows.append([DATABASES[alias], op, f"{peer}/ours ≥ {least:.2f}", measured, met])
    return rows


def _latency(ctx: Context, live: list[Subject], live_full: list[Subject]) -> list[str]:
    n_batch = max(1, ctx.n // BATCH_PER)
    print(
        f"latency: {ctx.rounds} rounds of {ctx.n:,} calls ({BATCH}-key calls: {n_batch:,})",
        flush=True,
    )
    result = harness.run_latency(live, OPERATIONS, n=ctx.n, rounds=ctx.rounds)
    print(
        f"latency at MAX_ENTRIES={FULL_ENTRIES}: {ctx.rounds} rounds of {ctx.n:,} calls",
        flush=True,
    )
    full = harness.run_latency(live_full, FULL_OPERATIONS, n=ctx.n, rounds=ctx.rounds)
    result.samples.update(full.samples)
    result.errors.update(full.errors)
    rows = harness.with_per_key(result, OPERATIONS, {SET_MANY: BATCH}) + FULL_OPERATIONS
    stat = "median" if ctx.stat == "median" else "best"
    lines = [
        "### Latency through the cache API",
        "",
        f"Time per call (ns, or µs where marked), {stat} of {ctx.rounds} interleaved rounds of "
        f"{ctx.n:,} calls ({BATCH}-key calls: {n_batch:,} per round); ± is the interquartile "
        "range of the rounds. Both databases were measured in the same rounds. The `per key` "
        f"row is the {BATCH}-key call divided by {BATCH}. The last row comes from the "
        f"MAX_ENTRIES={FULL_ENTRIES} subjects, measured in interleaved rounds of their own: "
        f"their table holds exactly {FULL_ENTRIES} rows and the sets rewrite those keys, so "
        "every write asks the row count and none culls. peer/ours columns are time ratios: "
        "above 1.00, ours is faster (1.50: the peer takes 1.5 times as long).",
    ]
    goal_rows: list[list[str]] = []
    for alias, title in DATABASES.items():
        view = _view(result, alias)
        names = []
        for s in [*live, *live_full]:
            if s.name.endswith(f"@{alias}"):
                short = s.name[: -len(alias) - 1].removesuffix("-full")
                if short not in names:
                    names.append(short)
        subjects = [Subject(name, "") for name in names]
        pairs = [(peer, "ours") for peer in PEERS if peer in names and "ours" in names]
        lines += [
            "",
            f"#### {title}",
            "",
            harness.latency_table(view, subjects, rows, stat=ctx.stat, pairs=pairs),
        ]
        goal_rows += _goal_rows(view, alias, ctx.stat)
    lines += [
        "",
        "### Goals",
        "",
        "Ours against Django's DatabaseCache on the same database (time ratio django/ours).",
        "",
        md_table(["database", "operation", "goal", "measured", "met"], goal_rows, "lllrl"),
    ]
    mine = []
    for op in [*OPERATIONS, *FULL_OPERATIONS]:
        name = "ours-full" if op in FULL_OPERATIONS else "ours"
        pg, lite = (result.value(op.name, f"{name}@{a}", ctx.stat) for a in ("pg", "sqlite"))
        mine.append(f"{op.name} {fmt_ratio(pg, lite)}")
    lines += [
        "",
        "Ours on PostgreSQL vs on SQLite (time ratio PostgreSQL/SQLite, above 1.00 SQLite is "
        f"faster): {'; '.join(mine)}.",
    ]
    errors = harness.describe_errors(result)
    if errors:
        lines += ["", *errors]
    return lines


@group(
    "db",
    "DatabaseCache vs Django's DatabaseCache on SQLite and PostgreSQL",
    settings=SETTINGS,
    n=DEFAULT_N,
)
def run(ctx: Context) -> str:
    os.makedirs(SQLITE_DIR)
    ctx.stack.callback(shutil.rmtree, SQLITE_DIR, ignore_errors=True)
    ctx.stack.callback(_close_connections)  # runs before the directory goes

    unreachable = {alias: _reach(alias) for alias in DATABASES}
    entries = _subjects()
    for subject, alias, table, _ in entries:
        reason = unreachable[alias]
        if reason is None:
            try:
                _create_table(alias, table)
            except Exception as exc:
                reason = f"createcachetable failed: {type(exc).__name__}: {exc}".strip()
            else:
                ctx.stack.callback(_drop_table, alias, table)
        if reason is not None:
            subject.skipped = reason
            print(f"  skipped {subject.name} ({subject.label}): {reason}", flush=True)
    harness.build_subjects([s for s, *_ in entries if not s.skipped])
    for subject, alias, table, _ in entries:
        if subject.cache is not None:
            ctx.stack.callback(subject.close)
            _check_reach(subject, alias, table)
    live = [s for s, _, _, full in entries if not full and not s.skipped]
    live_full = [s for s, _, _, full in entries if full and not s.skipped]

    body = ["Subjects:", ""]
    for s, *_ in entries:
        note = f" — skipped: {s.skipped}" if s.skipped else ""
        body.append(f"- `{s.name}`: {s.label}{note}")
    body += [
        "",
        f"Databases: {_describe_databases()}. Each subject has its own table, made with "
        "`createcachetable` for this run and dropped after it; a router sends `bench_<alias>_*` "
        "tables to the database `<alias>`. Both backends use one connection "
        f"per database, held open for the whole run. MAX_ENTRIES {MAX_ENTRIES:,} is above the "
        f"working set ({WORKING_SET:,} rows), so nothing is culled; each "
        f"operation cycles over {POOL:,} keys (`set_many`: {POOL // BATCH} batches of {BATCH}).",
        "",
    ]
    body += _latency(ctx, live, live_full)
    return "\n".join(body) + "\n"


