"""MemcachedCache: Django's memcached backend on a native libmemcached client.

``PyLibMCCache`` and ``PyMemcacheCache`` are the same class under the names Django's own
backends use, so settings written for either work with only the module path changed.
Values are stored with the flags pylibmc and pymemcache use (0 bytes, 1 pickle, 2/4
integer, 8 zlib, 16 text): a site can switch against the same servers and keep its
cache, or run both during a rolling deploy.

Django's memcached rules hold: a timeout over 30 days is sent as an absolute time,
``0`` or a negative timeout keeps nothing, a value the server refuses deletes the old
one, keys memcached cannot take raise ``InvalidCacheKey``. The instances with the same
settings share one native client and its pool of connection sets: each call takes a set
for its duration, so connections are kept across requests (``close()`` keeps them) and
under ASGI, where Django makes an instance per request, never used by two threads at
once, and a child process after ``fork()`` opens its own.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from django.core.cache.backends.base import (
    DEFAULT_TIMEOUT,
    InvalidCacheKey,
    memcache_key_warnings,
)
from django.core.exceptions import ImproperlyConfigured

from django_nativecache import _native
from django_nativecache.backends.base import NativeCache, ThreadAsyncMixin
from django_nativecache.options import in_range, parse_seconds, parse_size, validate_options

logger = logging.getLogger("django_nativecache")

DEFAULT_PORT = 11211
# Fail fast: a dead server costs one connect attempt, then is skipped for retry_timeout.
DEFAULT_CONNECT_TIMEOUT = 1.0
DEFAULT_IO_TIMEOUT = 1.0
DEFAULT_RETRY_TIMEOUT = 2
# Connection sets unused this long are closed at the next call: a burst's extra ones go.
DEFAULT_POOL_IDLE_TIMEOUT = 60
_THIRTY_DAYS = 60 * 60 * 24 * 30


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected True or False, got {value!r}")
    return value


def _only(*accepted: Any, why: str) -> Any:
    def check(value: Any) -> Any:
        if value not in accepted or isinstance(value, bool) != isinstance(accepted[0], bool):
            raise ValueError(f"cannot be {value!r}: {why}")
        return value

    return check


def _unsupported(why: str) -> Any:
    def check(value: Any) -> Any:
        raise ValueError(f"is not supported: {why}")

    return check


def _behaviors(value: Any) -> dict[str, int | str]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"must be a dict of pylibmc behaviour names, got {value!r}")
    out: dict[str, int | str] = {}
    for name, setting in value.items():
        if name == "pickle_protocol":
            if setting not in (-1, pickle.HIGHEST_PROTOCOL):
                raise ValueError(
                    "['pickle_protocol'] cannot be changed: values are pickled with the "
                    "highest protocol, which every reader understands"
                )
            continue
        if isinstance(setting, bool):
            setting = int(setting)
        if not isinstance(setting, (int, str)):
            raise ValueError(f"[{name!r}] must be an integer or a name, got {setting!r}")
        out[name] = setting
    return out


_SCHEMA = {
    # Ours (uppercase, as in the other native backends and django-redis).
    "IGNORE_EXCEPTIONS": (_bool, False),
    "LOG_IGNORED_EXCEPTIONS": (_bool, True),
    "COMPRESS_MIN_LENGTH": (in_range(0, 1 << 40, parse_size), 0),
    "COMPRESS_LEVEL": (in_range(1, 9), 6),
    # What PyLibMCCache users write.
    "binary": (_bool, False),
    "behaviors": (_behaviors, {}),
    "username": (_unsupported("SASL authentication is not built in"), None),
    "password": (_unsupported("SASL authentication is not built in"), None),
    # What PyMemcacheCache users write (times in seconds).
    "connect_timeout": (parse_seconds, DEFAULT_CONNECT_TIMEOUT),
    "timeout": (parse_seconds, DEFAULT_IO_TIMEOUT),
    "no_delay": (_bool, True),
    "ignore_exc": (_bool, False),
    "retry_timeout": (parse_seconds, DEFAULT_RETRY_TIMEOUT),
    "dead_timeout": (parse_seconds, None),
    "retry_attempts": (in_range(1, 1000), None),
    "socket_keepalive": (_bool, False),
    # Connections are always pooled: these bound the connection sets kept between calls.
    "use_pooling": (_bool, False),
    "max_pool_size": (in_range(1, 1 << 20), None),
    "pool_idle_timeout": (in_range(0, 1 << 31), DEFAULT_POOL_IDLE_TIMEOUT),
    "allow_unicode_keys": (_only(True, why="keys are sent as UTF-8"), True),
    "default_noreply": (_only(False, why="every call needs the server's reply"), False),
    "encoding": (_only("utf8", "utf-8", "ascii", why="keys are sent as UTF-8"), "utf8"),
    "serde": (_unsupported("values use the shared pylibmc/pymemcache format"), None),
    "serializer": (_unsupported("values use the shared pylibmc/pymemcache format"), None),
    "deserializer": (_unsupported("values use the shared pylibmc/pymemcache format"), None),
    "key_prefix": (_unsupported("use the cache's KEY_PREFIX setting"), None),
    "tls_context": (_unsupported("TLS is not built in"), None),
}

_IPV6 = re.compile(r"^\[(?P<host>[0-9A-Fa-f:.]+)\](?::(?P<port>\d+))?$")


def parse_server(spec: str) -> tuple[str, int, bool, int]:
    """(host, port, is_unix_socket, weight) for one LOCATION entry.

    Accepts ``host``, ``host:port``, ``[::1]``, ``[::1]:port``, ``unix:/path`` and
    ``/path``.
    """
    spec = spec.strip()
    if not spec:
        raise ValueError("empty server address")
    if spec.startswith("unix:"):
        path = spec[len("unix:"):]
        if not path:
            raise ValueError(f"{spec!r} names no socket path")
        return path, 0, True, 1
    if spec.startswith("/"):
        return spec, 0, True, 1
    match = _IPV6.match(spec)
    if match:
        port = int(match.group("port") or DEFAULT_PORT)
        host = match.group("host")
    elif spec.count(":") == 1:
        host, _, port_text = spec.partition(":")
        if not port_text.isdigit():
            raise ValueError(f"{spec!r} has no valid port")
        port = int(port_text)
    elif ":" in spec:
        raise ValueError(f"{spec!r}: write an IPv6 address in brackets, e.g. [::1]:11211")
    else:
        host, port = spec, DEFAULT_PORT
    if not host or not 0 < port < 65536:
        raise ValueError(f"{spec!r} is not a valid server address")
    return host, port, False, 1


def _server_text(entry: Any, name: str) -> str:
    """A LOCATION entry as text: a str, or a (host, port) pair as pymemcache takes them."""
    if isinstance(entry, str):
        return entry
    if (isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str)
            and isinstance(entry[1], int) and not isinstance(entry[1], bool)):
        host, port = entry
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    raise ImproperlyConfigured(
        f"{name}: LOCATION entries must be str or (host, port), got {entry!r}")


def _raise_for_memcached(self: Any, key: str) -> None:
    # Django's memcached backends raise where the others only warn.
    for warning in memcache_key_warnings(key):
        raise InvalidCacheKey(warning)


def _log_ignored(exc: BaseException) -> None:
    logger.warning("memcached error ignored (IGNORE_EXCEPTIONS): %s", exc)


# The native clients by the arguments they were opened with. Django makes a cache
# instance per thread and, under ASGI, one per request task: the instances with the same
# settings share a client, and its connections outlive the request. A client is kept
# while an instance holds it, and the latest few also after the last one has gone.
_CLIENTS_KEPT = 16
_clients: weakref.WeakValueDictionary[tuple[Any, ...], Any] = weakref.WeakValueDictionary()
_recent: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_clients_lock = threading.Lock()


def _new_lock_in_child() -> None:
    # A thread that held the lock when another forked does not exist in the child.
    global _clients_lock
    _clients_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


def _client(*args: Any) -> Any:
    evicted = None  # closes its connections when it goes, after the lock is released
    with _clients_lock:
        client = _clients.get(args)
        if client is None:
            client = _native.open_memcached(*args)  # connects on its first call, not here
            _clients[args] = client
        _recent[args] = client
        _recent.move_to_end(args)
        if len(_recent) > _CLIENTS_KEPT:
            evicted = _recent.popitem(last=False)
    del evicted
    return client


class MemcachedCache(ThreadAsyncMixin, NativeCache):
    validate_key = _raise_for_memcached
    _native_validate_key = _raise_for_memcached
    _enforce_max_entries = False  # the server evicts by its own memory limit
    _incr_keeps_expiry = False
    _decr_stops_at_zero = True

    def __init__(self, server: str | list[str] | tuple[str, ...], params: dict[str, Any]) -> None:
        self._settle(server, params)
        try:
            self._store = _client(*self._client_args)
        except ImproperlyConfigured as exc:
            raise ImproperlyConfigured(f"{type(self).__name__} {server!r}: OPTIONS {exc}") from None

    def _configure(self, server: Any, params: dict[str, Any]) -> None:
        name = f"{type(self).__name__} {server!r}"
        options = validate_options(name, params.get("OPTIONS") or {}, _SCHEMA)
        super()._configure(server, params)
        if isinstance(server, str):
            self._servers = re.split("[;,]", server)
        else:
            self._servers = [_server_text(entry, name) for entry in server]
        specs = []
        for entry in self._servers:
            if not entry.strip():
                continue
            try:
                specs.append(parse_server(entry))
            except ValueError as exc:
                raise ImproperlyConfigured(f"{name}: LOCATION {exc}") from None
        if not specs:
            raise ImproperlyConfigured(f"{name}: LOCATION names no memcached server")
        self._options = options
        ignore = options["IGNORE_EXCEPTIONS"] or options["ignore_exc"]
        max_idle = options["max_pool_size"]
        self._client_args = (
            tuple(specs),
            options["binary"],
            tuple(self._behaviors(options).items()),
            options["COMPRESS_MIN_LENGTH"],
            options["COMPRESS_LEVEL"],
            ignore,
            _log_ignored if options["LOG_IGNORED_EXCEPTIONS"] else None,
            -1 if max_idle is None else max_idle,
            options["pool_idle_timeout"],
        )

    @staticmethod
    def _behaviors(options: dict[str, Any]) -> dict[str, int | str]:
        """pylibmc behaviours from the pymemcache-style options, then the explicit ones."""
        derived: dict[str, int | str] = {
            "connect_timeout": max(1, round(options["connect_timeout"] * 1000)),
            "_poll_timeout": max(1, round(options["timeout"] * 1000)),
            "tcp_nodelay": int(options["no_delay"]),
            "retry_timeout": max(1, round(options["retry_timeout"])),
        }
        if options["socket_keepalive"]:
            derived["tcp_keepalive"] = 1
        if options["dead_timeout"] is not None:
            derived["dead_timeout"] = max(1, round(options["dead_timeout"]))
        if options["retry_attempts"] is not None:
            derived["failure_limit"] = options["retry_attempts"]
        return {**derived, **options["behaviors"]}

    @property
    def client_servers(self) -> list[str]:
        return list(self._servers)

    # -- Django's API beyond the shared one -----------------------------------------

    def close(self, **kwargs: Any) -> None:
        # Connections are kept across requests; libmemcached reconnects as needed.
        pass

    def get_backend_timeout(self, timeout: Any = DEFAULT_TIMEOUT) -> int:
        """The expiry memcached is sent for a timeout, as Django's memcached backends
        report it: 0 for never, -1 for not kept, relative seconds up to 30 days, else an
        absolute Unix time. (The native store applies the same rules itself.)"""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return 0
        if int(timeout) == 0:
            timeout = -1
        if timeout > _THIRTY_DAYS:
            timeout += int(time.time())
        return int(timeout)

    def ttl(self, key: Any, version: int | None = None) -> float | None:
        raise NotImplementedError("memcached cannot report a key's remaining time")

    # -- memcached's own commands -----------------------------------------------------

    def flush_all(self) -> None:
        """Empties every server (the same as clear())."""
        self.clear()

    def stats(self, group: str | None = None) -> dict[str, dict[str, Any]]:
        """Per server: what its ``stats`` command reports (numbers as int).

        A server that did not answer maps to ``{"error": message}``.
        """
        result: dict[str, dict[str, Any]] = {}
        for server, values, error in self._store.server_stats(group):
            if error is not None:
                result[server] = {"error": error}
                continue
            result[server] = {name: _number(value) for name, value in values.items()}
        return result

    def server_for(self, key: Any, version: int | None = None) -> str:
        """The server that holds key: ``host:port`` or a socket path."""
        return self._store.server_for(*self._key_args(key, version))

    def behavior(self, name: str) -> int:
        """The client's value for one of pylibmc's behaviour names."""
        return self._store.behavior(name)

    def disconnect_all(self) -> None:
        """Closes every connection of the instances with these settings now (those in
        use when their call ends); the next call reconnects."""
        self._store.disconnect()


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


PyLibMCCache = MemcachedCache
PyMemcacheCache = MemcachedCache
