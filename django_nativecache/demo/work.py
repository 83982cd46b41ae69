"""The deliberate cost of computing a part of a page, and the log that counts it.

Each computation spends ``DEMO_COST_MS`` as ``DEMO_COST_KIND`` says, ``wait`` (the default:
a sleep, as for a query answered by another host) or ``cpu`` (a busy loop until the
thread has used that much CPU time, as for rendering), and appends one line
(``<pid> <what>``) to the file named by ``DEMO_WORK_LOG``. Lines are written with one ``write`` on an ``O_APPEND``
descriptor, so the log of several worker processes stays whole; its length is the number
of cache misses the site paid for, whichever process paid."""

from __future__ import annotations

import asyncio
import os
import time


COST_KINDS = ("wait", "cpu")


def cost_seconds() -> float:
    return float(os.environ.get("DEMO_COST_MS", "20")) / 1000.0


def cost_kind() -> str:
    kind = os.environ.get("DEMO_COST_KIND", "wait")
    if kind not in COST_KINDS:
        raise ValueError(f"DEMO_COST_KIND must be one of {', '.join(COST_KINDS)}, not {kind!r}")
    return kind


def _burn(seconds: float) -> None:
    """Keeps this thread on the CPU until it has used ``seconds`` of CPU time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


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
    if cost_kind() == "cpu":
        _burn(cost_seconds())
    else:
        time.sleep(cost_seconds())
    _record(what)
    return f"{what}, computed by pid {os.getpid()}"


async def acompute(what: str) -> str:
    if cost_kind() == "cpu":
        _burn(cost_seconds())  # on the event loop, as CPU work is
    else:
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
