"""Helpers for tests that drive MemcachedCache directly."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

from django_nativecache.backends.memcached import MemcachedCache

_TOP_LEVEL = ("TIMEOUT", "KEY_PREFIX", "VERSION", "KEY_FUNCTION")


def build(location: str | list[str], **options: Any) -> MemcachedCache:
    """A MemcachedCache; TIMEOUT, KEY_PREFIX, VERSION and KEY_FUNCTION go to the top level."""
    params: dict[str, Any] = {"OPTIONS": dict(options)}
    for name in _TOP_LEVEL:
        if name in options:
            params[name] = params["OPTIONS"].pop(name)
    return MemcachedCache(location, params)


class DelayProxy:
    """A loopback TCP proxy to 127.0.0.1:port that holds every chunk `delay` seconds in
    each direction: a slow link to a memcached server."""

    def __init__(self, port: int, delay: float) -> None:
        self._target = port
        self._delay = delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.location = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self._target))
            self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                time.sleep(self._delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> DelayProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()
        for s in self._sockets:
            s.close()
