"""Django's own cache middleware tests, run on this package's drop-in middleware.

``CacheMiddlewareTest``, ``CacheHEADTest``, ``CacheI18nTest`` (and its ``Prefixed``
variant), ``TestWithTemplateResponse`` and ``BaseCacheTests``'
``test_cache_write_unpicklable_object`` run unchanged with
``django_nativecache.middleware`` and ``django_nativecache.decorators.cache_page`` in
place of Django's (see ``suite.NativeMiddleware``), on the shared-memory backend and on
Django's own LocMemCache (what passes there is the middleware alone). No test is
skipped. ``tests/test_site.py`` runs the middleware on every other backend too.
"""

from __future__ import annotations

import os

from tests.conformance.suite import make_middleware_suite

# One store per pytest process, so parallel runs never meet in one segment.
_SHM = f"nativecache-conformance-mw-{os.getpid()}"

globals().update(make_middleware_suite(
    "ShmMiddleware", "django_nativecache.backends.shm.SharedMemoryCache", _SHM,
    module=__name__))
globals().update(make_middleware_suite(
    "LocMemMiddleware", "django.core.cache.backends.locmem.LocMemCache", _SHM,
    module=__name__))
