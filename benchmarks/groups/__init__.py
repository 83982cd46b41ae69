"""The registry of benchmark groups.

A group is a function ``fn(ctx: Context) -> str`` registered here with ``@group(...)``. It builds
its subjects (peers measured side by side), measures them with ``benchmarks.harness`` and
returns the Markdown body of its RESULTS.md section; the runner adds the machine description
and writes the file. Servers a group needs (memcached, redis, gunicorn) are started inside the
group and stopped through ``ctx.stack`` so they go away even when the group fails.

Planned groups, each in its own module here, registered the same way:

- ``memcached``: ours vs PyLibMCCache, PyMemcacheCache and RedisCache (127.0.0.1:6379), over TCP
  and a unix socket, against a memcached started by the group on a free port;
- ``file``: ours vs Django's FileBasedCache vs diskcache.DjangoCache, in a temporary directory;
- ``db``: ours vs DatabaseCache on sqlite and on PostgreSQL (127.0.0.1:5432, database ``test``);
  its DATABASES go in ``settings=`` of the registration;
- ``http``: a small Django site under gunicorn with each cache behind ``cache_page`` and
  sessions, driven by a bounded load generator on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Context:
    """What a group gets from the runner."""

    quick: bool
    rounds: int  # interleaved rounds of latency measurements
    n: int  # calls per latency measurement (before an operation's own scaling)
    stat: str  # "median" or "min" of the per-round ns per call
    duration: float  # seconds per multi-process throughput run
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


@dataclass
class Group:
    name: str
    summary: str
    run: Callable[[Context], str]
    settings: dict[str, Any] = field(default_factory=dict)  # extra Django settings it needs


GROUPS: dict[str, Group] = {}

PLANNED: dict[str, str] = {
    "memcached": "ours vs PyLibMCCache, PyMemcacheCache, RedisCache; TCP and unix socket",
    "file": "ours vs FileBasedCache vs diskcache.DjangoCache",
    "db": "ours vs DatabaseCache on sqlite and PostgreSQL",
    "http": "a Django site under gunicorn with a load generator",
}


def group(
    name: str, summary: str, settings: dict[str, Any] | None = None
) -> Callable[[Callable[[Context], str]], Callable[[Context], str]]:
    def register(fn: Callable[[Context], str]) -> Callable[[Context], str]:
        GROUPS[name] = Group(name, summary, fn, dict(settings or {}))
        PLANNED.pop(name, None)
        return fn

    return register


def load_all() -> dict[str, Group]:
    """Import every group module so its registration runs."""
    from . import shm  # noqa: F401

    return GROUPS
