"""The demo site's settings with :class:`benchmarks.zero_cost.ZeroCostCache` as its cache."""

from django_nativecache.demo.settings import *  # noqa: F403

CACHES = {"default": {"BACKEND": "benchmarks.zero_cost.ZeroCostCache"}}
