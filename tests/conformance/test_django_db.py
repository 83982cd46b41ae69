"""Django's own database-cache tests on our DatabaseCache.

``DBCacheTests`` (all of ``BaseCacheTests`` plus the query-count, culling and
``createcachetable`` checks), ``DBCacheWithTimeZoneTests`` and
``CreateCacheTableForDBCacheTests`` run unchanged, re-pointed at
``django_nativecache.backends.db.DatabaseCache``, on the database of the settings in
use: SQLite under ``tests.settings``, PostgreSQL under ``tests.settings_pg``
(``tests/run.sh`` runs both).

Skipped tests are in ``SKIPS`` below, each with its reason.
"""

from __future__ import annotations

import unittest

from django.test import override_settings

from tests.conformance.suite import dj, repoint_caches

BACKEND = "django_nativecache.backends.db.DatabaseCache"

SKIPS: dict[str, str] = {}


def _ours(cls: type) -> dict[str, dict[str, object]]:
    original = cls._overridden_settings["CACHES"]
    return repoint_caches(original, BACKEND, lambda own: own, None)


def _repointed(name: str, cls: type) -> type:
    new = type(name, (cls,), {"__module__": __name__, "__qualname__": name})
    new = override_settings(CACHES=_ours(cls))(new)
    for test, reason in SKIPS.items():
        if hasattr(new, test):
            setattr(new, test, unittest.skip(reason)(getattr(new, test)))
    return new


DbDBCacheTests = _repointed("DbDBCacheTests", dj.DBCacheTests)


def test_runs_on_our_backend_and_the_configured_database() -> None:
    from django.conf import settings
    from django.core.cache import caches
    from django.db import connection

    with override_settings(CACHES=_ours(dj.DBCacheTests)):
        assert type(caches["default"]).__module__ == "django_nativecache.backends.db"
    expected = "postgresql" if "postgresql" in settings.DATABASES["default"]["ENGINE"] else "sqlite"
    assert connection.vendor == expected
DbDBCacheWithTimeZoneTests = _repointed("DbDBCacheWithTimeZoneTests", dj.DBCacheWithTimeZoneTests)
DbCreateCacheTableForDBCacheTests = _repointed(
    "DbCreateCacheTableForDBCacheTests", dj.CreateCacheTableForDBCacheTests
)
