"""Django's own cache tests, run on the shared-memory backend.

Django's ``BaseCacheTests``, ``CacheMiddlewareTest``, ``CacheUtils`` (and its
``Prefixed`` variant), ``CacheHEADTest``, ``CacheI18nTest`` (and its ``Prefixed``
variant), ``TestWithTemplateResponse``, ``CacheHandlerTest`` and the ``{% cache %}``
tag's ``CacheTagTests`` run unchanged on ``SharedMemoryCache``, together with this
project's equivalents of the checks Django binds to its own test backends
(``CacheClosingTests``, ``CustomCacheKeyValidationTests``) or to LocMem's internals
(``DefaultNonExpiringCacheKeyTests``, ``LocMemCacheTests``); see ``suite.py``.

Skipped tests: those in ``SKIPS`` below, each with its reason. A test may be skipped
only because it reads or patches another backend's private attributes.

``NATIVECACHE_CONFORMANCE_BACKEND`` (a dotted class path) runs the same classes on
another backend, e.g. Django's ``LocMemCache``, to check the suite itself.
"""

from __future__ import annotations

import os

from tests.conformance.suite import make_suite

BACKEND = os.environ.get(
    "NATIVECACHE_CONFORMANCE_BACKEND",
    "django_nativecache.backends.shm.SharedMemoryCache",
)
# One store per pytest process, so parallel runs never meet in one segment.
LOCATION = f"nativecache-conformance-{os.getpid()}"
OPTIONS: dict[str, object] = {}

# {class name without prefix: {test name: reason}}
SKIPS: dict[str, dict[str, str]] = {}

globals().update(make_suite("Shm", BACKEND, LOCATION, OPTIONS, module=__name__, skips=SKIPS))
