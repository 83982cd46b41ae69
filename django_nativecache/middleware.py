"""Django's cache middleware with a cheaper hit: drop-in for ``django.middleware.cache``.

``UpdateCacheMiddleware``, ``FetchFromCacheMiddleware`` and ``CacheMiddleware`` here are
subclasses of Django's, configured by the same ``CACHE_MIDDLEWARE_*`` settings and
arguments, storing the same entries under the same keys (a site may run Django's and
these side by side on one cache). Only the request phase differs: the page's keys are
computed once per request instead of twice (:mod:`django_nativecache.pagekeys`), and the
``Age`` of a hit is derived from the cached headers through a memo of their parsed values.
The response phase (what is cached, for how long, under which ``Vary``) is Django's own.

Any cache backend works; with this package's backends every lookup is one native call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from django.middleware import cache as django_middleware
from django.utils.cache import get_max_age
from django.utils.http import parse_http_date_safe

from django_nativecache.pagekeys import PageKeys, matches_django

# Parsed header values of cached responses: pure functions of the header text, so a memo
# returns what Django's parsers would. Bounded: cleared when it reaches _MEMO_LIMIT.
_MEMO_LIMIT = 4096
_max_ages: dict[str, int | None] = {}
_expires: dict[str, int | None] = {}


def _memo(table: dict[str, int | None], text: str, parse: Callable[[], int | None]) -> int | None:
    try:
        return table[text]
    except KeyError:
        pass
    if len(table) >= _MEMO_LIMIT:
        table.clear()
    value = table[text] = parse()
    return value


def _max_age(response: HttpResponseBase) -> int | None:
    cache_control = response.headers.get("Cache-Control")
    if cache_control is None:
        return None
    return _memo(_max_ages, cache_control, lambda: get_max_age(response))


def _expires_at(value: str) -> int | None:
    return _memo(_expires, value, lambda: parse_http_date_safe(value))


def fetch_from_cache(
    middleware: django_middleware.FetchFromCacheMiddleware, request: HttpRequest
) -> HttpResponseBase | None:
    """``FetchFromCacheMiddleware.process_request`` of Django, for ``middleware``."""
    method = request.method
    if method != "GET" and method != "HEAD":
        request._cache_update_cache = False  # type: ignore[attr-defined]
        return None
    if not matches_django():
        return django_middleware.FetchFromCacheMiddleware.process_request(middleware, request)
    cache = middleware.cache
    keys = PageKeys(request, middleware.key_prefix)
    headerlist = cache.get(keys.header_key())
    response = None
    if headerlist is not None:
        response = cache.get(keys.page_key("GET", headerlist))
        if response is None and method == "HEAD":
            response = cache.get(keys.page_key("HEAD", headerlist))
    if response is None:
        request._cache_update_cache = True  # type: ignore[attr-defined]
        return None
    max_age = _max_age(response)
    if max_age is not None:
        # response["Expires"] as in Django: a cached page without one is an error.
        expires = _expires_at(response["Expires"])
        if expires is not None:
            response["Age"] = max(0, max_age - (expires - int(time.time())))
    request._cache_update_cache = False  # type: ignore[attr-defined]
    return response


class FetchFromCacheMiddleware(django_middleware.FetchFromCacheMiddleware):
    """Django's ``FetchFromCacheMiddleware``; the last entry of ``MIDDLEWARE``."""

    def process_request(self, request: HttpRequest) -> Any:
        return fetch_from_cache(self, request)


class UpdateCacheMiddleware(django_middleware.UpdateCacheMiddleware):
    """Django's ``UpdateCacheMiddleware``; the first entry of ``MIDDLEWARE``."""


class CacheMiddleware(django_middleware.CacheMiddleware):
    """Django's ``CacheMiddleware`` (both phases, as ``cache_page`` uses it)."""

    def process_request(self, request: HttpRequest) -> Any:
        return fetch_from_cache(self, request)
