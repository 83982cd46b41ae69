"""Helpers for tests that fork."""

from __future__ import annotations

import os
import signal
import time


def wait_exit(pid: int, seconds: float) -> int | None:
    """The child's wait status, or None (and the child killed) if it ran past seconds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None
