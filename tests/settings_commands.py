"""Django settings for the cache commands and checks run in a subprocess
(``python -m django <command> --settings tests.settings_commands``), by
tests/test_commands.py and tests/test_checks.py.

``NATIVECACHE_TEST_CACHES`` holds CACHES as JSON, ``NATIVECACHE_TEST_DB`` the SQLite file
of the database caches. Apart from that the settings are the suite's own (same
SECRET_KEY), without Django's test apps, which a subprocess does not need.
"""

from __future__ import annotations

import json
import os

SECRET_KEY = "django-nativecache-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django_nativecache"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("NATIVECACHE_TEST_DB", ":memory:"),
    }
}
CACHES = json.loads(os.environ.get("NATIVECACHE_TEST_CACHES") or "null") or {
    "default": {"BACKEND": "django_nativecache.backends.dummy.DummyCache"}
}
USE_TZ = False
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
