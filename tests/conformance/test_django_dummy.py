"""Django's own ``DummyCacheTests`` and ``AsyncDummyCacheTests`` on our DummyCache.

Both run unchanged, re-pointed at ``django_nativecache.backends.dummy.DummyCache``
(the middleware and template classes other backends run would all expect caching,
which the dummy backend never does). No test is skipped.
"""

from __future__ import annotations

from django.test import override_settings

from tests.conformance.suite import dj

from cache import tests_async as dj_async  # noqa: E402  (Django's tests/cache/tests_async.py)

BACKEND = "django_nativecache.backends.dummy.DummyCache"
CACHES = {"default": {"BACKEND": BACKEND}}


@override_settings(CACHES=CACHES)
class DummyDummyCacheTests(dj.DummyCacheTests):
    """DummyCacheTests on our DummyCache."""


@override_settings(CACHES=CACHES)
class DummyAsyncDummyCacheTests(dj_async.AsyncDummyCacheTests):
    """AsyncDummyCacheTests on our DummyCache."""
