"""Settings of the demo site, chosen by environment variables:

``DEMO_CACHE``           backend name (``django_nativecache.demo.caches.BACKENDS``); ``shm``
``DEMO_CACHE_LOCATION``  its LOCATION (segment name, server, directory, table)
``DEMO_CACHE_KEY_PREFIX`` its KEY_PREFIX; none
``DEMO_CACHE_MIDDLEWARE`` ``0`` leaves the per-site cache middleware out (the ceiling)
``DEMO_PAGE_CACHE``      whose cache middleware and ``cache_page`` the site uses: ``django``
                         (Django's, the default) or ``native`` (``django_nativecache``'s)
``DEMO_COST_MS``         the cost of computing a part of a page; 20
``DEMO_COST_KIND``       how it is spent: ``wait`` (a sleep, the default) or ``cpu`` (a busy
                         loop of that much CPU time)
``DEMO_WORK_LOG``        file counting computations (``django_nativecache.demo.work``)
``DEMO_DB``              the SQLite database (for ``db`` backends); a temp file
"""

from __future__ import annotations

import os
import tempfile

from django_nativecache.demo.caches import cache_setting

SECRET_KEY = os.environ.get("DEMO_SECRET_KEY", "django-nativecache-demo-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "django_nativecache.demo.urls"
WSGI_APPLICATION = "django_nativecache.demo.wsgi.application"
INSTALLED_APPS = ["django_nativecache", "django_nativecache.demo"]
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get(
            "DEMO_DB", os.path.join(tempfile.gettempdir(), "django-nativecache-demo.sqlite3")
        ),
    }
}
CACHES = {
    "default": cache_setting(
        os.environ.get("DEMO_CACHE", "shm"), os.environ.get("DEMO_CACHE_LOCATION") or None
    )
}
if os.environ.get("DEMO_CACHE_KEY_PREFIX"):
    CACHES["default"]["KEY_PREFIX"] = os.environ["DEMO_CACHE_KEY_PREFIX"]
DEMO_PAGE_CACHE = os.environ.get("DEMO_PAGE_CACHE", "django")
if DEMO_PAGE_CACHE not in ("django", "native"):
    raise ValueError(f"DEMO_PAGE_CACHE must be 'django' or 'native', not {DEMO_PAGE_CACHE!r}")

MIDDLEWARE = ["django_nativecache.demo.middleware.ServedByMiddleware"]
if os.environ.get("DEMO_CACHE_MIDDLEWARE", "1") != "0":
    MIDDLEWARE.append("django_nativecache.demo.middleware.SectionCacheMiddleware")
CACHE_MIDDLEWARE_SECONDS = 60
CACHE_MIDDLEWARE_KEY_PREFIX = "demo"
USE_TZ = True
