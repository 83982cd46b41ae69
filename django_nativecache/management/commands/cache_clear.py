"""``manage.py cache_clear [alias ...] [--noinput]``: empties caches, after a confirmation.

As Django's ``flush``: asks for "yes" unless ``--noinput``; any other answer clears
nothing and exits with status 0. A cache that cannot be cleared is reported and the
others are still cleared; the exit status is then 1. A memcached cache (ours) with servers
that do not answer is reported so, naming them, with IGNORE_EXCEPTIONS too.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_nativecache.backends.memcached import MemcachedCache
from django_nativecache.management.introspect import (
    PROCESS_LOCAL_NOTE,
    backend_path,
    one_line,
    process_local,
    resolve_aliases,
    unmade_segment,
)


def _strict(alias: str, cache: BaseCache) -> BaseCache:
    """The cache, or for a memcached cache of ours that ignores errors a twin that does
    not: a flush that fails must say so."""
    if not isinstance(cache, MemcachedCache):
        return cache
    entry = settings.CACHES[alias]
    options = dict(entry.get("OPTIONS") or {})
    if not (options.get("IGNORE_EXCEPTIONS") or options.get("ignore_exc")):
        return cache
    options.update(IGNORE_EXCEPTIONS=False, ignore_exc=False)
    params = {k: v for k, v in entry.items() if k not in ("BACKEND", "LOCATION")}
    return type(cache)(entry.get("LOCATION", ""), {**params, "OPTIONS": options})


def _clear(alias: str, cache: BaseCache) -> str | None:
    """Clears the cache; what went wrong, or None. For memcached (ours) the servers that
    do not answer are named when others do (those were flushed)."""
    try:
        _strict(alias, cache).clear()
        return None
    except Exception as exc:
        error = one_line(exc)
    if isinstance(cache, MemcachedCache):
        try:
            servers = cache.stats()
        except Exception:
            servers = {}
        missed = {server: values["error"] for server, values in servers.items()
                  if "error" in values}
        if missed and len(missed) < len(servers):
            why = "; ".join(f"{server}: {' '.join(str(e).split())}" for server, e in missed.items())
            return (f"was not cleared on {len(missed)} of its {len(servers)} servers ({why}); "
                    "the others were flushed")
    return f"was not cleared: {error}"


class Command(BaseCommand):
    help = (
        "Removes every entry of the named caches (all configured caches when none is "
        "named), for every process and server that shares them."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("aliases", nargs="*", metavar="alias",
                            help="Cache aliases from CACHES (default: all).")
        parser.add_argument(
            "--noinput", "--no-input", action="store_false", dest="interactive",
            help="Clear without asking for confirmation.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        aliases = resolve_aliases(options["aliases"])
        if options["interactive"]:
            self.stdout.write(
                f"You have requested to clear the cache{'s' if len(aliases) > 1 else ''} "
                f"{', '.join(map(repr, aliases))}.\n"
                "Every entry will be removed, for every process and server that uses "
                f"{'them' if len(aliases) > 1 else 'it'}.\n"
                "Are you sure you want to do this?\n\n"
                "    Type 'yes' to continue, or 'no' to cancel: ",
                ending="",
            )
            self.stdout.flush()
            try:
                answer = input()
            except EOFError:  # no terminal and nothing piped in: no consent either
                answer = ""
            if answer != "yes":
                self.stdout.write("Cache clear cancelled; nothing was removed.")
                return
        failed = []
        for alias in aliases:
            if unmade_segment(alias) is not None:  # nothing to remove; nothing is created
                if options["verbosity"] >= 1:
                    self.stdout.write(f"Cleared cache {alias!r} ({backend_path(alias)}): its "
                                      "segment was never created, so it held nothing.")
                continue
            try:
                cache = caches[alias]
            except Exception as exc:
                failed.append(alias)
                self.stderr.write(
                    f"Cache {alias!r} ({backend_path(alias)}) was not cleared: {one_line(exc)}"
                )
                continue
            problem = _clear(alias, cache)
            if problem is not None:  # one broken cache must not keep the others full
                failed.append(alias)
                self.stderr.write(f"Cache {alias!r} ({backend_path(alias)}) {problem}")
                continue
            if options["verbosity"] >= 1:
                self.stdout.write(f"Cleared cache {alias!r} ({backend_path(alias)}).")
            if process_local(cache):
                self.stderr.write(PROCESS_LOCAL_NOTE)
        if failed:
            raise CommandError(
                f"{len(failed)} of {len(aliases)} caches could not be cleared: "
                f"{', '.join(map(repr, failed))}."
            )
