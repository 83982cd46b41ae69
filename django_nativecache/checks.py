"""System checks of the caches on django_nativecache's backends (tag ``caches``).

Every cache whose BACKEND is one of ours, or a subclass, is opened as the site opens it:

``django_nativecache.E001``  its settings are refused: the backend's ImproperlyConfigured
                             (OPTIONS, LOCATION), or a BACKEND of ours that does not import
``django_nativecache.E002``  its shared-memory segment cannot be created or attached (SIZE
                             larger than /dev/shm can hold, owned by another user, damaged
                             with ON_MISMATCH="fail")
``django_nativecache.E003``  its directory (file cache) cannot be created or is not writable
``django_nativecache.E004``  it cannot be opened for another reason
``django_nativecache.W001``  one of its memcached servers does not answer
``django_nativecache.W002``  its shared-memory segment exists with another SIZE than
                             OPTIONS give (the size is fixed when a segment is created)

Checks run before most management commands, so they are quick: memcached servers are
asked in parallel with a short timeout, and nothing is left behind (no segment, no
directory) for a cache that did not exist yet.

Django's own checks caches.W003 (a file cache's LOCATION is relative) and caches.W002
(``--deploy``: it is, is inside or holds MEDIA_ROOT, STATIC_ROOT or STATICFILES_DIRS) open
every configured cache, so they would create shared-memory segments, stop the check run
with a traceback at a cache that cannot be opened, and know only Django's FileBasedCache.
``guard_django_cache_checks`` (run by the app's ``ready()``) puts ours in their place: the
same warnings under the same ids, for Django's FileBasedCache and ours, without opening any
cache of ours but file caches (which touch no file); anyone else's cache is opened as
Django's checks open it, and one that cannot be is E004.
"""

from __future__ import annotations

import os
import pathlib
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.filebased import FileBasedCache as DjangoFileBasedCache
from django.core.checks import CheckMessage, Error, Warning
from django.core.checks import caches as django_cache_checks
from django.core.checks.registry import registry
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from django_nativecache.backends import shm
from django_nativecache.backends.base import NativeCache
from django_nativecache.backends.db import DatabaseCache
from django_nativecache.backends.filebased import FileBasedCache
from django_nativecache.backends.memcached import MemcachedCache, parse_server
from django_nativecache.exceptions import CacheError, StorageFull
from django_nativecache.options import parse_size

SHM_DIR = "/dev/shm"
#: Seconds a memcached server gets to accept a connection, and again to answer.
PROBE_TIMEOUT = 0.5

# What alignment may take off SIZE: a few bytes per shard (at most 1024 shards).
_SIZE_SLACK = 64 << 10
_SHM_HINT = "Lower OPTIONS['SIZE'], or give /dev/shm more room (mount -o remount,size=...)."


def check_caches(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    for alias, entry in settings.CACHES.items():
        if not isinstance(entry, Mapping):
            continue  # Django's cache handler refuses it when the cache is first used
        backend = str(entry.get("BACKEND", ""))
        try:
            cls = _our_class(backend)
        except ImportError as exc:
            messages.append(_error(1, alias, backend, f"BACKEND cannot be imported: {exc}"))
            continue
        if cls is None:
            continue  # anyone else's: Django and the backend speak for it
        location = entry.get("LOCATION", "")
        params = {k: v for k, v in entry.items() if k not in ("BACKEND", "LOCATION")}
        try:
            messages += _check_cache(alias, backend, cls, location, params)
        except Exception as exc:  # a check must report, never crash the command it precedes
            messages.append(_error(4, alias, backend, f"cannot be checked: {_text(exc)}"))
    return messages


def _our_class(backend: str) -> type | None:
    """The BACKEND class when it is one of ours or a subclass, else None; ImportError for
    a path into this package that does not import."""
    try:
        cls = import_string(backend)
    except ImportError:
        if backend.startswith("django_nativecache."):
            raise
        return None
    ours = isinstance(cls, type) and issubclass(cls, (NativeCache, DatabaseCache))
    return cls if ours else None


def guard_django_cache_checks() -> None:
    """Puts :func:`check_file_caches_absolute` and :func:`check_file_caches_not_exposed` in
    place of Django's caches.W003 and caches.W002 checks (see the module's docstring).
    Idempotent."""
    replaced = (
        (django_cache_checks.check_file_based_cache_is_absolute, check_file_caches_absolute),
        (django_cache_checks.check_cache_location_not_exposed, check_file_caches_not_exposed),
    )
    for theirs, ours in replaced:
        for registered in (registry.registered_checks, registry.deployment_checks):
            if theirs in registered:
                registered.discard(theirs)
                ours.tags = theirs.tags  # type: ignore[attr-defined]
                registered.add(ours)


_FILE_CLASSES = (DjangoFileBasedCache, FileBasedCache)


def _file_caches(report: bool) -> tuple[list[CheckMessage], list[tuple[str, Any, str]]]:
    """(E004 for anyone else's caches that cannot be opened when ``report``, and (alias,
    LOCATION, directory) of every file cache). A cache of ours is opened only if it is a file
    cache (which touches no file): a shared-memory segment is never created by a check of
    Django's, and ``check_caches`` reports those of ours that cannot be opened."""
    messages: list[CheckMessage] = []
    found: list[tuple[str, Any, str]] = []
    for alias, entry in settings.CACHES.items():
        if not isinstance(entry, Mapping):
            continue  # Django's cache handler refuses it when the cache is first used
        backend = str(entry.get("BACKEND", ""))
        location = entry.get("LOCATION", "")
        try:
            cls = _our_class(backend)
        except ImportError:
            continue
        try:
            if cls is None:
                cache = caches[alias]  # as Django's checks open it
            elif issubclass(cls, _FILE_CLASSES):
                params = {k: v for k, v in entry.items() if k not in ("BACKEND", "LOCATION")}
                cache = cls(location, params)
            else:
                continue
        except Exception as exc:
            if report and cls is None:
                messages.append(_error(4, alias, backend, f"cannot be opened: {_text(exc)}"))
            continue
        if isinstance(cache, _FILE_CLASSES) and isinstance(location, (str, os.PathLike)):
            found.append((alias, location, os.fsdecode(cache._dir)))
    return messages, found


def check_file_caches_absolute(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Django's caches.W003 (a file cache's LOCATION is relative), for its FileBasedCache and
    ours, and E004 for anyone else's cache that cannot be opened."""
    messages, found = _file_caches(report=True)
    for alias, location, _ in found:
        if not pathlib.Path(location).is_absolute():
            messages.append(Warning(
                f"Your '{alias}' cache LOCATION path is relative. Use an absolute path "
                "instead.", id="caches.W003"))
    return messages


def check_file_caches_not_exposed(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Django's caches.W002 (``--deploy``: a file cache's directory is, is inside or holds
    MEDIA_ROOT, STATIC_ROOT or one of STATICFILES_DIRS), for its FileBasedCache and ours."""
    messages: list[CheckMessage] = []
    _, found = _file_caches(report=False)  # the other check reports what cannot be opened
    for name in ("MEDIA_ROOT", "STATIC_ROOT", "STATICFILES_DIRS"):
        setting = getattr(settings, name, None)
        if not setting:
            continue
        if name == "STATICFILES_DIRS":
            paths = {pathlib.Path(d[1] if isinstance(d, (list, tuple)) else d).resolve()
                     for d in setting}
        else:
            paths = {pathlib.Path(setting).resolve()}
        for alias, _, directory in found:
            cache_path = pathlib.Path(directory).resolve()
            if cache_path in paths:
                relation = "matches"
            elif any(path in cache_path.parents for path in paths):
                relation = "is inside"
            elif any(cache_path in path.parents for path in paths):
                relation = "contains"
            else:
                continue
            messages.append(Warning(
                f"Your '{alias}' cache configuration might expose your cache or lead to "
                f"corruption of your data because its LOCATION {relation} {name}.",
                id="caches.W002"))
    return messages


def _error(n: int, alias: str, backend: str, msg: str, hint: str | None = None) -> Error:
    return Error(f"CACHES[{alias!r}] ({backend}): {msg}", hint=hint,
                 id=f"django_nativecache.E{n:03d}")


def _text(exc: BaseException) -> str:
    if isinstance(exc, CacheError) and isinstance(exc, OSError) and exc.errno and exc.strerror:
        return exc.strerror  # our stores' text, which names the OS error (no "[Errno n]")
    return str(exc) or type(exc).__name__


def _check_cache(alias: str, backend: str, cls: type, location: Any,
                 params: dict[str, Any]) -> list[CheckMessage]:
    if issubclass(cls, shm.SharedMemoryCache):
        return _check_shm(alias, backend, cls, location, params)
    try:
        cache = cls(location, params)
    except ImproperlyConfigured as exc:
        return [_error(1, alias, backend, str(exc))]
    except Exception as exc:
        return [_error(4, alias, backend, f"cannot be opened: {_text(exc)}")]
    if isinstance(cache, FileBasedCache):
        return _check_directory(alias, backend, cache._dir)
    if isinstance(cache, MemcachedCache):
        return _check_servers(alias, backend, cache.client_servers)
    return []


# -- shared memory ----------------------------------------------------------------------


def _check_shm(alias: str, backend: str, cls: type, location: Any,
               params: dict[str, Any]) -> list[CheckMessage]:
    options = params.get("OPTIONS") or {}
    if isinstance(options, Mapping):
        namespace = options.get("NAMESPACE")  # the backend takes str() of it
        name = shm.segment_name(location, None if namespace is None else str(namespace))
        if not shm.segment_exists(name):
            return _probe_shm(alias, backend, cls, location, params, options, name)
    # The segment exists (or OPTIONS is refused before anything is attached): attaching
    # is what every process of the site does first, so the check may too.
    try:
        cache = cls(location, params)
    except ImproperlyConfigured as exc:
        return [_error(1, alias, backend, str(exc))]
    except Exception as exc:
        return [_error(2, alias, backend, _text(exc), _SHM_HINT)]
    return _check_segment_size(alias, backend, cache, options)


def _check_segment_size(alias: str, backend: str, cache: Any,
                        options: Mapping[str, Any]) -> list[CheckMessage]:
    """W002 when the segment was made with another SIZE than OPTIONS give now: a segment
    keeps the size it was created with (alignment takes at most a few bytes per shard)."""
    wanted = parse_size(options.get("SIZE", shm.DEFAULT_SIZE))
    layout = cache._store._layout()
    actual, shards = int(layout["total_size"]), int(layout["n_shards"])
    if wanted - _SIZE_SLACK <= actual <= wanted:
        return []
    return [Warning(
        f"CACHES[{alias!r}] ({backend}): its shared-memory segment {cache.segment} was "
        f"created with {actual} bytes ({shards} shard{'s' if shards != 1 else ''}); "
        f"OPTIONS['SIZE'] now asks for {wanted}, which applies only to a segment created anew",
        hint="Call delete_segment() on the cache (or reboot) once no process uses it, and the "
             "next process creates it with the new SIZE.",
        id="django_nativecache.W002",
    )]


def _probe_shm(alias: str, backend: str, cls: type, location: Any, params: dict[str, Any],
               options: Mapping[str, Any], name: str) -> list[CheckMessage]:
    # A segment the check created would stay in /dev/shm until reboot, holding its SIZE of
    # memory (creating a segment reserves all of it), for a cache this host may never use;
    # and removing it again could pull it from under a worker that attached meanwhile. So
    # the check creates a segment of the same settings under a name of its own (another
    # NAMESPACE) and removes that one: the same sizing, the same errors, and the real name
    # is never touched.
    namespace = f"django_nativecache check {os.getpid()} {secrets.token_hex(8)}"
    probe = shm.segment_name(location, namespace)
    try:
        cls(location, {**params, "OPTIONS": {**options, "NAMESPACE": namespace}})
    except ImproperlyConfigured as exc:
        return [_error(1, alias, backend, str(exc))]
    except StorageFull as exc:
        vfs = os.statvfs(SHM_DIR)
        free = vfs.f_bavail * vfs.f_frsize
        message = f"{_text(exc).replace(probe, name)} ({SHM_DIR} has {free} bytes free)"
        return [_error(2, alias, backend, message, _SHM_HINT)]
    except Exception as exc:  # named as the segment the site would create
        return [_error(2, alias, backend, _text(exc).replace(probe, name), _SHM_HINT)]
    finally:
        with suppress(Exception):
            shm.unlink(probe)
    return []


# -- files ------------------------------------------------------------------------------


def _check_directory(alias: str, backend: str, directory: str) -> list[CheckMessage]:
    # The cache makes its directory on its first write: the nearest part of the path that
    # exists must be a directory this process can create entries in.
    existing = directory
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    hint = "Point LOCATION at a directory this user can write, or fix its permissions."
    if not os.path.isdir(existing):
        return [_error(3, alias, backend,
                       f"the directory {directory} cannot be created: {existing} is not a "
                       "directory", hint)]
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".nativecache-check-", dir=existing))
    except OSError as exc:
        what = ("is not writable" if existing == directory
                else f"cannot be created in {existing}")
        return [_error(3, alias, backend,
                       f"the directory {directory} {what}: {exc.strerror or exc}", hint)]
    counters = os.path.join(directory, ".nativecache")
    if os.path.lexists(counters) and not os.access(counters, os.R_OK | os.W_OK):
        return [_error(3, alias, backend,
                       f"{counters} (its counters and locks) is not readable and writable "
                       "by this user", hint)]
    return []


# -- memcached --------------------------------------------------------------------------


def _check_servers(alias: str, backend: str, servers: list[str]) -> list[CheckMessage]:
    specs = {s.strip(): parse_server(s) for s in servers if isinstance(s, str) and s.strip()}
    errors: dict[str, str | None] = {}

    def probe(spec: str) -> None:
        errors[spec] = _ask_version(specs[spec])

    # Daemon threads, joined against one deadline: a name lookup that hangs (it has no
    # timeout) is left behind rather than waited for.
    threads = [threading.Thread(target=probe, args=(s,), daemon=True) for s in specs]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 2 * PROBE_TIMEOUT + 0.5
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    messages: list[CheckMessage] = []
    for spec in specs:
        error = errors.get(spec, f"no answer within {2 * PROBE_TIMEOUT + 0.5:g} s")
        if error is not None:
            messages.append(Warning(
                f"CACHES[{alias!r}] ({backend}): memcached server {spec} does not answer: "
                f"{error}",
                hint="Start it, or fix LOCATION. Until it answers, the keys it holds raise "
                     "CacheUnavailable (or miss, with IGNORE_EXCEPTIONS).",
                id="django_nativecache.W001",
            ))
    return messages


def _ask_version(address: tuple[str, int, bool, int]) -> str | None:
    """Why the memcached server at address does not answer ``version``; None if it does."""
    host, port, unix, _ = address
    try:
        sock = _connect(host, port, unix)
    except TimeoutError:
        return f"no connection within {PROBE_TIMEOUT:g} s"
    except OSError as exc:
        return exc.strerror or _text(exc)
    deadline = time.monotonic() + PROBE_TIMEOUT
    reply = b""
    with sock:
        try:
            sock.sendall(b"version\r\n")
            while not reply.endswith(b"\r\n") and len(reply) < 1024:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                chunk = sock.recv(1024)
                if not chunk:
                    return "it closed the connection without a reply"
                reply += chunk
        except TimeoutError:
            return f"no reply within {PROBE_TIMEOUT:g} s"
        except OSError as exc:
            return exc.strerror or _text(exc)
    if not reply.startswith(b"VERSION "):
        return f"it replied {reply[:60]!r}, which is not memcached's answer"
    return None


def _connect(host: str, port: int, unix: bool) -> socket.socket:
    if not unix:
        return socket.create_connection((host, port), timeout=PROBE_TIMEOUT)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(PROBE_TIMEOUT)
        sock.connect(host)
    except BaseException:
        sock.close()
        raise
    return sock
