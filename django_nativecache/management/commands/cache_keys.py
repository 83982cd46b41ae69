"""``manage.py cache_keys [alias] [--pattern GLOB] [--raw]``: the live keys of a cache.

With Django's default key function the keys are shown as the code wrote them, with
their version (KEY_PREFIX and version stripped), and ``--pattern`` matches that key;
``--raw`` lists (and matches) the keys as stored. Backends that cannot list their keys
(memcached, dummy, Django's file and Redis caches, ...) are refused with an error.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from django.core.cache.backends.base import default_key_func
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_nativecache.management.introspect import (
    KEY_LISTING_BACKENDS,
    PROCESS_LOCAL_NOTE,
    backend_path,
    one_line,
    open_cache,
    process_local,
    resolve_aliases,
    stored_keys,
    unmade_segment,
)


class Command(BaseCommand):
    help = (
        "Lists the live keys of a cache (default: 'default'), as the code wrote them with "
        "their version, or as stored with --raw."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("alias", nargs="?", default="default",
                            help="A cache alias from CACHES (default: 'default').")
        parser.add_argument("--pattern", default="*", metavar="GLOB",
                            help="Only keys matching this glob (fnmatch, case-sensitive).")
        parser.add_argument("--raw", action="store_true",
                            help="Show the keys as stored: KEY_PREFIX and version included.")

    def handle(self, *args: Any, **options: Any) -> None:
        (alias,) = resolve_aliases([options["alias"]])
        if unmade_segment(alias) is not None:  # nothing stored; building it would create it
            if options["verbosity"] >= 1 and not options["raw"]:  # --raw: keys alone
                self.stdout.write("No keys (the cache's segment was never created).")
            return
        cache = open_cache(alias)
        try:
            stored = stored_keys(cache)
        except NotImplementedError:
            raise CommandError(
                f"Cache {alias!r} ({backend_path(alias)}) cannot list its keys; "
                f"cache_keys works on {KEY_LISTING_BACKENDS}."
            ) from None
        except Exception as exc:  # a missing table, a damaged segment
            raise CommandError(
                f"Cache {alias!r} ({backend_path(alias)}) could not list its keys: "
                f"{one_line(exc)}"
            ) from exc
        if process_local(cache):
            self.stderr.write(PROCESS_LOCAL_NOTE)
        pattern = options["pattern"]
        if options["raw"] or cache.key_func is not default_key_func:
            if not options["raw"]:
                self.stderr.write(
                    f"Cache {alias!r} has its own KEY_FUNCTION: keys are shown as stored."
                )
            for key in sorted(k for k in stored if fnmatchcase(k, pattern)):
                self.stdout.write(key)
            return

        prefix = f"{cache.key_prefix}:"
        rows: list[tuple[str, str]] = []
        foreign = 0
        for key in stored:
            version, sep, user_key = key.removeprefix(prefix).partition(":")
            if not key.startswith(prefix) or not sep:
                foreign += 1  # another KEY_PREFIX on the same LOCATION or table
            elif fnmatchcase(user_key, pattern):
                rows.append((user_key, version))
        rows.sort(key=lambda r: (r[0], int(r[1]) if r[1].lstrip("-").isdigit() else 0, r[1]))
        if rows:
            width = max(len("VERSION"), *(len(v) for _, v in rows))
            self.stdout.write(f"{'VERSION'.ljust(width)}  KEY")
            for user_key, version in rows:
                self.stdout.write(f"{version.ljust(width)}  {user_key}")
        elif options["verbosity"] >= 1:
            self.stdout.write("No keys." if pattern == "*" else f"No keys match {pattern!r}.")
        if foreign:
            self.stderr.write(
                f"{foreign} stored key{'s' if foreign > 1 else ''} not made with KEY_PREFIX "
                f"{cache.key_prefix!r} (another cache sharing this location?): see --raw."
            )
