"""Views of the demo site: one per door into Django's cache framework."""

from __future__ import annotations

import asyncio

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators import cache as django_decorators

from django_nativecache import decorators as native_decorators
from django_nativecache.demo.work import acompute, compute

# settings.DEMO_PAGE_CACHE: whose cache_page serves /page/<n>/.
cache_page = (
    native_decorators.cache_page
    if getattr(settings, "DEMO_PAGE_CACHE", "django") == "native"
    else django_decorators.cache_page
)

TIMEOUT = 60


def _page(title: str, body: str) -> HttpResponse:
    return HttpResponse(f"<!doctype html><title>{title}</title><p>{body}</p>\n")


def site_page(request: HttpRequest, n: int) -> HttpResponse:
    """Cached by the per-site middleware (SectionCacheMiddleware), not by the view."""
    return _page(f"site {n}", compute(f"site page {n}"))


@cache_page(TIMEOUT)
def view_page(request: HttpRequest, n: int) -> HttpResponse:
    return _page(f"page {n}", compute(f"view page {n}"))


def fragments(request: HttpRequest) -> HttpResponse:
    """Two ``{% cache %}`` fragments: one for everyone, one per ``?lang=``."""
    lang = request.GET.get("lang", "en")[:8]
    return render(
        request,
        "demo/fragments.html",
        {
            "lang": lang,
            "header": lambda: compute("fragment header"),
            "greeting": lambda: compute(f"fragment greeting {lang}"),
        },
    )


def lowlevel(request: HttpRequest, n: int) -> HttpResponse:
    value = cache.get_or_set(f"lowlevel:{n}", lambda: compute(f"lowlevel {n}"), TIMEOUT)
    return _page(f"lowlevel {n}", value)


async def async_page(request: HttpRequest, n: int) -> HttpResponse:
    """``aget``/``aset``; ``X-Cache-Yielded`` tells whether awaiting ``aget`` gave the
    event loop a turn (1: the call hopped to a thread; 0: it ran inline)."""
    key = f"async:{n}"
    turns: list[int] = []
    asyncio.get_running_loop().call_soon(turns.append, 1)
    value = await cache.aget(key)
    yielded = bool(turns)
    if value is None:
        value = await acompute(f"async page {n}")
        await cache.aset(key, value, TIMEOUT)
    response = _page(f"async {n}", value)
    response["X-Cache-Yielded"] = "1" if yielded else "0"
    return response


def plain(request: HttpRequest, n: int) -> HttpResponse:
    """No cache and no work: the ceiling a cached page can approach."""
    return _page(f"plain {n}", f"plain page {n}")


async def async_plain(request: HttpRequest, n: int) -> HttpResponse:
    """``plain`` as an async view: the ceiling of ``async_page``."""
    return _page(f"plain {n}", f"plain page {n}")
