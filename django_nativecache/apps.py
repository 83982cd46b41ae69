"""The Django app: put "django_nativecache" in INSTALLED_APPS for the cache_stats,
cache_clear and cache_keys commands and the system checks of the caches."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class NativeCacheConfig(AppConfig):
    name = "django_nativecache"
    label = "django_nativecache"
    verbose_name = "Native cache"

    def ready(self) -> None:
        from django_nativecache.checks import check_caches, guard_django_cache_checks

        checks.register(check_caches, checks.Tags.caches)
        guard_django_cache_checks()
