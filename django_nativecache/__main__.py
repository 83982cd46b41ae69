"""python -m django_nativecache demo [--workers N] [--pages N] [--backend django-locmem]"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m django_nativecache")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="worker processes sharing one cache")
    demo.add_argument("--workers", type=int, default=4)
    demo.add_argument("--pages", type=int, default=20)
    demo.add_argument(
        "--backend",
        choices=["shm", "django-locmem"],
        default="shm",
        help="shm: ours, shared by all workers; django-locmem: Django's, one per worker",
    )
    args = parser.parse_args(argv)
    from django_nativecache import demo as demo_module

    return demo_module.run(args.workers, args.pages, args.backend)


if __name__ == "__main__":
    sys.exit(main())
