"""The test settings with PostgreSQL (127.0.0.1:5432, database ``test``) as both
databases, for the database-cache tests: ``DJANGO_SETTINGS_MODULE=tests.settings_pg``.

pytest-django creates (and drops) the test databases ``test_test`` and ``test_other``.
"""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

_PG = {
    "ENGINE": "django.db.backends.postgresql",
    "NAME": os.environ.get("NATIVECACHE_PG_NAME", "test"),
    "USER": os.environ.get("NATIVECACHE_PG_USER", "postgres"),
    "HOST": os.environ.get("NATIVECACHE_PG_HOST", "127.0.0.1"),
    "PORT": os.environ.get("NATIVECACHE_PG_PORT", "5432"),
}

DATABASES = {
    "default": {**_PG, "TEST": {"NAME": "test_nativecache_default"}},
    "other": {**_PG, "TEST": {"NAME": "test_nativecache_other"}},
}
