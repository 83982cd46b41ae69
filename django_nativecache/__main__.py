"""python -m django_nativecache demo [--backend NAME] [--workers N] [--seconds S] ..."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def _at_least(low: float, kind: Callable[[str], float] = int) -> Callable[[str], float]:
    """An argparse type: a number of ``kind`` no smaller than ``low``."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value >= low:
            raise argparse.ArgumentTypeError(f"must be at least {low:g}, got {text}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    from django_nativecache.demo.caches import BACKENDS

    parser = argparse.ArgumentParser(prog="python -m django_nativecache")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="the demo site under gunicorn, with load, hits and misses"
    )
    demo.add_argument(
        "--backend",
        choices=list(BACKENDS),
        default="shm",
        help="shm (default): ours, shared by all workers; django-locmem: Django's, one "
        "per worker; memcached backends start a memcached unless --location is given",
    )
    demo.add_argument("--location", help="the cache's LOCATION (server, directory, ...)")
    demo.add_argument("--workers", type=_at_least(1), default=4)
    demo.add_argument("--pages", type=_at_least(1), default=50, help="pages of each kind")
    demo.add_argument("--seconds", type=_at_least(0.1, float), default=5.0,
                      help="how long the load runs")
    demo.add_argument("--cost-ms", type=_at_least(0, float), default=20.0,
                      help="cost of a miss")
    demo.add_argument(
        "--page-cache",
        choices=["django", "native"],
        default="django",
        help="whose cache middleware and cache_page serve the pages: django (default) or "
        "native (django_nativecache.middleware and .decorators, same keys, cheaper hits)",
    )
    args = parser.parse_args(argv)
    from django_nativecache.demo import run

    try:
        return run.run(args.backend, args.workers, args.pages, args.seconds, args.location,
                       args.cost_ms, args.page_cache)
    except run.DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the servers and files are gone by now
        print("demo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
