"""``manage.py cache_stats [alias ...]``: items, bytes, hits, misses and evictions of caches.

One row per cache, one per server of a memcached cache. A backend that cannot tell a
figure shows ``-``; a cache or server that fails shows its error in its row, the others
are still shown, and the exit status is 1 (so a monitoring script notices).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_nativecache.management.introspect import (
    StatsRow,
    backend_path,
    describe_location,
    one_line,
    resolve_aliases,
    stats_rows,
    unmade_segment,
)

_HEADER = ("CACHE", "BACKEND", "LOCATION", "ITEMS", "BYTES", "HITS", "MISSES", "HIT RATIO",
           "EVICTIONS")
_FIGURES = 3  # columns before the figures


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    size, unit = float(value), 0
    while size >= 1024 and unit < len(units) - 1:
        size /= 1024
        unit += 1
    return f"{value} B" if unit == 0 else f"{size:.1f} {units[unit]}"


def _cells(row: StatsRow) -> list[str]:
    head = [row.alias, row.backend, row.location]
    if row.error is not None:
        return [*head, f"error: {row.error}"]
    ratio = row.hit_ratio
    return [*head, _count(row.items), _bytes(row.bytes), _count(row.hits), _count(row.misses),
            "-" if ratio is None else f"{ratio:.1%}", _count(row.evictions)]


def format_table(rows: list[StatsRow]) -> str:
    lines = [list(_HEADER), *(_cells(r) for r in rows)]
    full = [line for line in lines if len(line) == len(_HEADER)]
    # An error row's message spans the figures' columns, so it sets none of their widths.
    widths = [max(len(line[i]) for line in (lines if i < _FIGURES else full))
              for i in range(len(_HEADER))]

    def render(line: list[str]) -> str:
        if len(line) < len(_HEADER):
            cells = [c.ljust(w) for c, w in zip(line[:_FIGURES], widths)] + line[_FIGURES:]
        else:
            cells = [c.ljust(w) if i < _FIGURES else c.rjust(w)
                     for i, (c, w) in enumerate(zip(line, widths))]
        return "  ".join(cells).rstrip()

    return "\n".join(render(line) for line in lines)


class Command(BaseCommand):
    help = (
        "Shows the items, bytes, hits, misses, hit ratio and evictions of the named caches "
        "(all configured caches when none is named); one row per server for memcached."
    )
    # Like createcachetable: it must run, and report, when a cache's settings are broken.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("aliases", nargs="*", metavar="alias",
                            help="Cache aliases from CACHES (default: all).")

    def handle(self, *args: Any, **options: Any) -> None:
        rows: list[StatsRow] = []
        for alias in resolve_aliases(options["aliases"]):
            backend = backend_path(alias)
            location = settings.CACHES[alias].get("LOCATION", "")
            if unmade_segment(alias) is not None:
                rows.append(StatsRow(alias, backend, f"{location} (not created yet)", items=0,
                                     bytes=0, hits=0, misses=0, evictions=0))
                continue
            try:
                rows.extend(stats_rows(alias, backend, location, caches[alias]))
            except Exception as exc:  # any backend, ours or not: report it, never crash
                rows.append(
                    StatsRow(alias, backend, describe_location(location), error=one_line(exc))
                )
        self.stdout.write(format_table(rows))
        failed = sum(row.error is not None for row in rows)
        if failed:
            what = "cache or server" if failed == 1 else "caches or servers"
            raise CommandError(f"{failed} {what} could not be read (the table says why)",
                               returncode=1)
