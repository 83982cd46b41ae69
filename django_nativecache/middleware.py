"""Django's cache middleware with a cheaper hit: drop-in for ``django.middleware.cache``.

``UpdateCacheMiddleware``, ``FetchFromCacheMiddleware`` and ``CacheMiddleware`` here are
subclasses of Django's, configured by the same ``CACHE_MIDDLEWARE_*`` settings and
arguments, storing the same entries under the same keys (a site may run Django's and
these side by side on one cache). Only the request phase differs: the page's keys are
computed once per request instead of twice (:mod:`django_nativecache.pagekeys`), and the
``Age`` of a hit is derived from the cached headers through a memo of their parsed values.
The response phase (what is cached, for how long, under which ``Vary``) is Django's own.

Any cache backend works; with this package's backends every lookup is one native call.
On a store whose entries carry stamps (SharedMemoryCache), a plain ``HttpResponse`` is
decoded once per process and each hit gets a copy of it, equal to what unpickling the
entry again would give, for as long as the entry's stamp says it is the same write.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any, NamedTuple

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.http.response import ResponseHeaders
from django.middleware import cache as django_middleware
from django.utils.cache import get_max_age
from django.utils.http import RFC850_DATE, parse_http_date_safe

from django_nativecache.backends.base import NativeCache
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
    try:
        return _expires[value]
    except KeyError:
        pass
    if RFC850_DATE.match(value):  # a two-digit year: its century depends on today's date
        return parse_http_date_safe(value)
    return _memo(_expires, value, lambda: parse_http_date_safe(value))


def _age(max_age: int | None, expires: int | None) -> int | None:
    """The ``Age`` Django's ``process_request`` gives a hit, or None for none."""
    if max_age is None or expires is None:
        return None
    return max(0, max_age - (expires - int(time.time())))


def _aged(response: HttpResponseBase) -> HttpResponseBase:
    max_age = _max_age(response)
    if max_age is not None:
        # response["Expires"] as in Django: a cached page without one is an error.
        age = _age(max_age, _expires_at(response["Expires"]))
        if age is not None:
            response["Age"] = age
    return response


# -- decoded once per process (stamped stores) ----------------------------------------

class _Decoded(NamedTuple):
    epoch: int
    cas: int
    response: HttpResponse  # never handed out: hits get copies
    max_age: int | None
    expires: int | None
    size: int


# What a plain HttpResponse's unpickled state holds, besides the parts copied per hit.
_STATE = frozenset({"headers", "_charset", "_resource_closers", "_handler_class", "cookies",
                    "closed", "_reason_phrase", "_container", "status_code"})
_SCALARS = (str, int, bool, type(None))
_DECODED_LIMIT = 1024  # responses per process
_DECODED_BYTES = 16 << 20  # content bytes per process
_decoded: dict[str, _Decoded] = {}
_decoded_bytes = [0]
_NATIVE_GET, _NATIVE_STAMPED = NativeCache.get, NativeCache.get_stamped


def _is_stampable(cache: Any) -> bool:
    """Whether ``cache.get`` and ``cache.get_stamped`` are this package's own, on the class
    and not replaced on the instance (a wrapper there, such as a debugging panel's or a
    test's mock, must see every lookup): checked on every request."""
    cls = type(cache)
    if cls.get is not _NATIVE_GET or getattr(cls, "get_stamped", None) is not _NATIVE_STAMPED:
        return False
    state = getattr(cache, "__dict__", {})
    return "get" not in state and "get_stamped" not in state


def _shareable(value: Any) -> bool:
    """Whether copies made by _copy() are what unpickling ``value``'s entry gives."""
    if type(value) is not HttpResponse:
        return False
    state = value.__dict__
    if not state.keys() <= _STATE or not {"headers", "cookies", "_container"} <= state.keys():
        return False
    headers, cookies, container = state["headers"], state["cookies"], state["_container"]
    return (
        type(headers) is ResponseHeaders and headers.__dict__.keys() == {"_store"}
        and all(type(k) is str and type(v) is tuple and len(v) == 2
                and type(v[0]) is str and type(v[1]) is str
                for k, v in headers._store.items())
        and type(cookies) is SimpleCookie and not cookies
        and state.get("_resource_closers", []) == []
        and type(container) is list and all(type(chunk) is bytes for chunk in container)
        and all(type(v) in _SCALARS for k, v in state.items()
                if k not in ("headers", "cookies", "_container", "_resource_closers"))
    )


def _remember(key: str, epoch: int, cas: int, response: HttpResponse) -> _Decoded | None:
    max_age = _max_age(response)
    expires = None
    if max_age is not None:
        if "Expires" not in response:
            return None  # Django's lookup of it raises: left to _aged()
        if RFC850_DATE.match(response["Expires"]):
            return None  # its century depends on today's date: parsed again on each hit
        expires = _expires_at(response["Expires"])
    size = sum(len(chunk) for chunk in response._container)  # type: ignore[attr-defined]
    if size > _DECODED_BYTES // 16:
        return None
    replaced = _decoded.pop(key, None)  # an older write of the same page
    if replaced is not None:
        _decoded_bytes[0] -= replaced.size
    if len(_decoded) >= _DECODED_LIMIT or _decoded_bytes[0] + size > _DECODED_BYTES:
        _decoded.clear()
        _decoded_bytes[0] = 0
    entry = _decoded[key] = _Decoded(epoch, cas, response, max_age, expires, size)
    _decoded_bytes[0] += size
    return entry


def _copy(entry: _Decoded) -> HttpResponse:
    """A response equal to the entry unpickled again, with Django's ``Age``."""
    proto = entry.response
    state = proto.__dict__.copy()
    store = proto.headers._store.copy()
    age = _age(entry.max_age, entry.expires)
    if age is not None:
        store["age"] = ("Age", str(age))  # what response["Age"] = age stores
    headers = ResponseHeaders.__new__(ResponseHeaders)
    headers._store = store
    state["headers"] = headers
    state["cookies"] = SimpleCookie()
    state["_resource_closers"] = []
    state["_container"] = list(state["_container"])
    response = HttpResponse.__new__(HttpResponse)
    response.__dict__ = state
    return response


def _cached_page(cache: Any, key: str) -> HttpResponseBase | None:
    """``cache.get(key)`` with the ``Age`` of a hit set, as Django's ``process_request``."""
    if not _is_stampable(cache):
        response = cache.get(key)
        return None if response is None else _aged(response)
    known = _decoded.get(key)
    if known is None:
        found = cache.get_stamped(key)
    else:
        found = cache.get_stamped(key, known.epoch, known.cas)
    if found is None:
        return None
    changed, value, epoch, cas = found
    if not changed and known is not None:
        return _copy(known)
    if value is None:
        return None
    if epoch and _shareable(value):
        entry = _remember(key, epoch, cas, value)
        if entry is not None:
            return _copy(entry)
    return _aged(value)


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
        response = _cached_page(cache, keys.page_key("GET", headerlist))
        if response is None and method == "HEAD":
            response = _cached_page(cache, keys.page_key("HEAD", headerlist))
    if response is None:
        request._cache_update_cache = True  # type: ignore[attr-defined]
        return None
    request._cache_update_cache = False  # type: ignore[attr-defined]
    return response


class FetchFromCacheMiddleware(django_middleware.FetchFromCacheMiddleware):
    """Django's ``FetchFromCacheMiddleware``; the last entry of ``MIDDLEWARE``."""

    def process_request(self, request: HttpRequest) -> Any:
        return fetch_from_cache(self, request)


class UpdateCacheMiddleware(django_middleware.UpdateCacheMiddleware):
    """Django's ``UpdateCacheMiddleware``; the first entry of ``MIDDLEWARE``."""


class CacheMiddleware(
    django_middleware.CacheMiddleware, UpdateCacheMiddleware, FetchFromCacheMiddleware
):
    """Django's ``CacheMiddleware`` (both phases, as ``cache_page`` uses it); like Django's,
    an instance of this module's two other classes too."""

    def process_request(self, request: HttpRequest) -> Any:
        return fetch_from_cache(self, request)
