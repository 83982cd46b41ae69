"""Middleware of the demo site."""

from __future__ import annotations

import os
from typing import Any, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.middleware import cache as django_middleware

from django_nativecache import middleware as native_middleware

# settings.DEMO_PAGE_CACHE: whose per-site cache middleware serves the section.
CacheMiddleware = (
    native_middleware.CacheMiddleware
    if getattr(settings, "DEMO_PAGE_CACHE", "django") == "native"
    else django_middleware.CacheMiddleware
)


class ServedByMiddleware:
    """Adds ``X-Served-By: <pid>`` to every response, after any cache middleware has
    stored it, so a cached page still tells which worker process served it. Sync and
    async: under ASGI it keeps a request on the event loop."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)  # decided once, not per request
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self._async:
            return self._acall(request)
        response = self.get_response(request)
        response["X-Served-By"] = str(os.getpid())
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        response = await self.get_response(request)
        response["X-Served-By"] = str(os.getpid())
        return response


class SectionCacheMiddleware(CacheMiddleware):  # type: ignore[valid-type,misc]
    """The per-site cache middleware (``CacheMiddleware``, which is
    ``UpdateCacheMiddleware`` and ``FetchFromCacheMiddleware`` in one, configured by the
    ``CACHE_MIDDLEWARE_*`` settings), applied to the pages under ``SECTION``, so that the
    site's other doors into the cache (``cache_page``, ``{% cache %}``, the low-level API)
    can be seen on their own."""

    SECTION = "/site/"

    def process_request(self, request: HttpRequest) -> Any:
        if not request.path.startswith(self.SECTION):
            return None
        return super().process_request(request)

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if not request.path.startswith(self.SECTION):
            return response
        return super().process_response(request, response)
