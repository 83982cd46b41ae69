"""Django's own cache tests, run on the memcached backend.

Django's ``BaseMemcachedTests`` (everything in ``BaseCacheTests`` plus the memcached
checks: keys that raise ``InvalidCacheKey``, far-future and never-expiring timeouts,
delete on a failed set) and the other classes ``make_suite`` runs (middleware,
``cache_page``, ``{% cache %}``, ...) run unchanged on ``MemcachedCache``, against real
memcached servers started for this process (``tests/mcserver.py``): the text
protocol over TCP, and the binary protocol over a unix socket.

Django's own ``test_cull`` and ``test_zero_cull`` skip themselves: memcached has no
``cull`` aliases (``memcached_excluded_caches``), the server evicts by memory. Other
skips are in ``SKIPS`` below, each with its reason and the test of ours that checks
the same thing.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from tests import mcserver
from tests.conformance.suite import dj, make_suite

BACKEND = "django_nativecache.backends.memcached.MemcachedCache"

_MOCKS_CLIENT = (
    "patches the client library's class (cache._class), which this backend does not "
    "have; {}"
)
_WIRE_KEYS = (
    "a validate_key override cannot make memcached accept keys with spaces: the store "
    "refuses them before they reach the wire (tests/test_memcached_keys.py)"
)
SKIPS: dict[str, dict[str, str]] = {
    "BaseMemcachedTests": {
        "test_close": _MOCKS_CLIENT.format(
            "connections are kept across requests as with PyLibMCCache "
            "(tests/test_memcached_semantics.py::test_close_keeps_connections)"
        ),
        "test_set_many_returns_failing_keys": _MOCKS_CLIENT.format(
            "a real refused value is listed instead "
            "(tests/test_memcached_semantics.py::test_set_many_returns_refused_keys)"
        ),
    },
    "CustomCacheKeyValidationTests": {
        "test_custom_key_validation": _WIRE_KEYS,
        "test_subclass_validation_refuses": _WIRE_KEYS,
    },
}


# Django's tests that sleep against a timeout they expect to be still running:
# test_view_decorator sleeps 2 s against cache_page(3). memcached keeps time in whole
# seconds, so such a test starts just after the server's clock ticks
# (MemcachedServer.wait_for_tick) rather than at a random point of a server second,
# where up to one of those 3 s could already be gone. The same test sets pages with a
# 1 s timeout on "other" and reads them back at once: "other"'s clock must not tick in
# between, so it ticks half a second away from main's (_servers).
_SLEEPS_WITHIN_A_TIMEOUT = ("test_view_decorator",)


def _servers(main: str, other: str, unix: bool = False) -> tuple[mcserver.MemcachedServer,
                                                                  mcserver.MemcachedServer]:
    """The two servers of a suite, "other" started half a second after a tick of "main".
    A memcached server moves its clock on once a second from its own start, so "other"
    then ticks half a second after each tick of "main"."""
    first = mcserver.shared(main, unix=unix)
    first.wait_for_tick()
    time.sleep(0.5)
    return first, mcserver.shared(other, unix=unix)


def _start_on_a_fresh_second(cls: type, server: mcserver.MemcachedServer) -> None:
    for name in _SLEEPS_WITHIN_A_TIMEOUT:
        test = getattr(cls, name, None)
        if test is None or getattr(test, "__unittest_skip__", False):
            continue

        @functools.wraps(test)
        def run(self: Any, _test: Any = test) -> None:
            server.wait_for_tick()
            _test(self)

        setattr(cls, name, run)


def _suite(prefix: str, main: mcserver.MemcachedServer, other: mcserver.MemcachedServer,
           options: dict[str, object]) -> dict[str, type]:
    def location(own: str | None) -> str:
        # Aliases Django gives a LOCATION of their own ("other") get a server of their own.
        return main.location if not own else other.location

    base_params = {"BACKEND": BACKEND, "LOCATION": main.location}
    if options:
        base_params["OPTIONS"] = dict(options)
    suite = make_suite(
        prefix,
        BACKEND,
        location,
        options,
        module=__name__,
        exclude=dj.memcached_excluded_caches,
        base_tests=dj.BaseMemcachedTests,
        base_attrs={"base_params": base_params, "incr_decr_type_error": TypeError},
        skips=SKIPS,
    )
    for cls in suite.values():
        _start_on_a_fresh_second(cls, main)
    return suite


globals().update(_suite("Memcached", *_servers("main", "other"), {}))
globals().update(
    _suite("MemcachedBinaryUnix", *_servers("unix-main", "unix-other", unix=True),
           {"binary": True})
)
