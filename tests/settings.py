"""Django settings for the whole test suite (pytest-django: ``tests.settings``).

Django's own cache tests (``tests/conformance``) need little more than this: two
SQLite databases, the ``cache`` test app, i18n on and time zones off. They are
fetched for the installed Django version when these settings are first loaded,
which under pytest-django happens before Django is set up, so ``cache`` can be an
installed app.
"""

from __future__ import annotations

import os

from tests.conformance import djangotests

# Unique per pytest process: parallel and repeated runs never share a segment left
# behind by another run.
RUN_ID = f"{os.getpid()}"
CACHE_LOCATION = f"nativecache-tests-{RUN_ID}"

DJANGO_TESTS_DIR = djangotests.ensure()

SECRET_KEY = "django-nativecache-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]

DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    "other": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
}

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_nativecache",
]
if DJANGO_TESTS_DIR is not None:
    # Django's tests/cache package: its models back the Poll-based tests.
    INSTALLED_APPS.append("cache")

MIDDLEWARE: list[str] = []
ROOT_URLCONF = "tests.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {},
    }
]

CACHES = {
    "default": {
        # NATIVECACHE_CONFORMANCE_BACKEND swaps the backend under test, to check
        # tests/conformance itself against one of Django's backends.
        "BACKEND": os.environ.get(
            "NATIVECACHE_CONFORMANCE_BACKEND",
            "django_nativecache.backends.shm.SharedMemoryCache",
        ),
        "LOCATION": CACHE_LOCATION,
    }
}

USE_TZ = False
USE_I18N = True
LANGUAGE_CODE = "en"

DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
