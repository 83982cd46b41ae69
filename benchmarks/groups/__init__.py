"""The registry of benchmark groups.

A group is a function ``fn(ctx: Context) -> str`` registered here with ``@group(...)``. It builds
its subjects (peers measured side by side), measures them with ``benchmarks.harness`` and
returns the Markdown body of its RESULTS.md section; the runner adds the machine description
and writes the file. Servers a group needs (memcached, redis, gunicorn) are started inside the
group and stopped through ``ctx.stack`` so they go away even when the group fails. A group whose
calls are slow (a network round trip each) names its own default calls per measurement with
``n=``; ``-n`` on the command line still overrides it.

Registered groups:

- ``shm``: SharedMemoryCache vs LocMemCache vs a plain dict;
- ``memcached``: ours vs PyLibMCCache, PyMemcacheCache and RedisCache (127.0.0.1:6379), over TCP
  and a unix socket, against memcached servers started by the group;
- ``db``: ours vs Django's DatabaseCache on SQLite (a file in a temporary directory) and on
  PostgreSQL (127.0.0.1:5432, database ``test``); its DATABASES and DATABASE_ROUTERS go in
  ``settings=`` of the registration;
- ``file``: ours vs Django's FileBasedCache vs diskcache.DjangoCache, each in a fresh directory
  inside one temporary directory, below and above MAX_ENTRIES;
- ``file-tmpfs``: the same with every directory on tmpfs (/dev/shm);
- ``http``: the demo site under gunicorn (4 workers) on each backend behind ``cache_page``,
  driven by ``wrk`` on 127.0.0.1, against the same site with no cache and no work;
- ``http-cpu``: the http group with each miss costing 5 ms of CPU instead of a 5 ms wait;
- ``http-cost``: the same site's requests served in one process under callgrind, in
  instructions per request (no noise), for the backends whose work is in the process;
- ``asgi``: the demo's async view under uvicorn (2 workers) on each backend, driven by
  ``wrk`` on keep-alive connections, against the same async view with no cache.

Planned groups, each in its own module here, registered the same way: none at present.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Context:
    """What a group gets from the runner."""

    quick: bool
    rounds: int  # interleaved rounds of latency measurements
    n: int  # calls per latency measurement (before an operation's own scaling)
    stat: str  # "median" or "min" of the per-round ns per call
    duration: float  # seconds per multi-process throughput run
    out_dir: Path | None = None  # where the results file is written (None: not written)
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


@dataclass
class Group:
    name: str
    summary: str
    run: Callable[[Context], str]
    settings: dict[str, Any] = field(default_factory=dict)  # extra Django settings it needs
    n: int | None = None  # default calls per latency measurement (None: the runner's)
    rounds: int | None = None  # default rounds of a full run (None: the runner's)


GROUPS: dict[str, Group] = {}

PLANNED: dict[str, str] = {
    "memcached": "ours vs PyLibMCCache, PyMemcacheCache, RedisCache; TCP and unix socket",
    "file": "ours vs FileBasedCache vs diskcache.DjangoCache",
    "db": "ours vs DatabaseCache on sqlite and PostgreSQL",
    "http": "a Django site under gunicorn with a load generator",
}


def group(
    name: str,
    summary: str,
    settings: dict[str, Any] | None = None,
    n: int | None = None,
    rounds: int | None = None,
) -> Callable[[Callable[[Context], str]], Callable[[Context], str]]:
    def register(fn: Callable[[Context], str]) -> Callable[[Context], str]:
        GROUPS[name] = Group(name, summary, fn, dict(settings or {}), n, rounds)
        PLANNED.pop(name, None)
        return fn

    return register


def load_all() -> dict[str, Group]:
    """Import every group module so its registration runs."""
    from . import shm  # noqa: F401
    from . import memcached  # noqa: F401
    from . import db  # noqa: F401
    from . import file  # noqa: F401
    from . import http  # noqa: F401
    from . import http_cost  # noqa: F401
    from . import asgi  # noqa: F401

    return GROUPS
