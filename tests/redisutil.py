"""The Redis server the machine runs (127.0.0.1:6379), for the tests of Django's RedisCache
alongside ours: they are skipped, saying so, where none answers."""

from __future__ import annotations

import socket

import pytest


def redis_answers(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


needs_redis = pytest.mark.skipif(not redis_answers(), reason="no Redis server at 127.0.0.1:6379")
