"""The deliberate cost of computing a part of a page, and the log that counts it.

Each computation sleeps ``DEMO_COST_MS`` and appends one line (``<pid> <what>``) to the
file named by ``DEMO_WORK_LOG``. Lines are written with one ``write`` on an ``O_APPEND``
descriptor, so the log of several worker processes stays whole; its length is the number
of cache misses the site paid for, whichever process paid."""

from __future__ import annotations

import asyncio
import os
import time


def cost_seconds() -> float:
    return float(os.environ.get("DEMO_COST_MS", "20")) / 1000.0


def _record(what: str) -> None:
    path = os.environ.get("DEMO_WORK_LOG")
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{os.getpid()} {what}\n".encode())
    finally:
        os.close(fd)


def compute(what: str) -> str:
    """Pays the cost of ``what`` and returns its text."""
    time.sleep(cost_seconds())
    _record(what)
    return f"{what}, computed by pid {os.getpid()}"


async def acompute(what: str) -> str:
    await asyncio.sleep(cost_seconds())
    _record(what)
    return f"{what}, computed by pid {os.getpid()}"


def read_log(path: str) -> list[tuple[int, str]]:
    """(pid, what) of every computation in the log at ``path``."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return []
    rows = []
    for line in lines:
        pid, _, what = line.partition(" ")
        rows.append((int(pid), what))
    return rows
