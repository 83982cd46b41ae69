"""Views of the test site. Each one counts its executions in RUNS, under its name and
under ``name:METHOD``, and says in its body which execution produced it, so a cached
copy is recognisable by its content as well as by the count."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from django.core.cache import caches
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django.utils.translation import get_language
from django.views.decorators.cache import cache_control, never_cache
from django.views.decorators.cache import cache_page as django_cache_page

from django_nativecache.decorators import cache_page as native_cache_page

# Threads (the identity test) and the async views may count at once.
_lock = threading.Lock()
RUNS: Counter[str] = Counter()
# Every cache object the low-level view used, kept alive so that `is` comparisons
# between requests cannot be fooled by a freed object's address being reused.
SEEN: list[Any] = []


def reset() -> None:
    with _lock:
        RUNS.clear()
        SEEN.clear()


def bump(name: str, method: str | None = None) -> int:
    with _lock:
        RUNS[name] += 1
        if method is not None:
            RUNS[f"{name}:{method}"] += 1
        return RUNS[name]


def _counted(request: HttpRequest, name: str) -> HttpResponse:
    return HttpResponse(f"{name} run {bump(name, request.method)}")


def page(request: HttpRequest, slug: str) -> HttpResponse:
    return _counted(request, f"page-{slug}")


def vary_cookie(request: HttpRequest) -> HttpResponse:
    response = _counted(request, "vary-cookie")
    patch_vary_headers(response, ["Cookie"])
    return response


def vary_language(request: HttpRequest) -> HttpResponse:
    response = _counted(request, "vary-language")
    patch_vary_headers(response, ["Accept-Language"])
    return response


def vary_star(request: HttpRequest) -> HttpResponse:
    response = _counted(request, "vary-star")
    patch_vary_headers(response, ["*"])
    return response


def localized(request: HttpRequest) -> HttpResponse:
    # The language LocaleMiddleware activated is in the body: a page served in the
    # wrong language shows it.
    return HttpResponse(f"{get_language()} run {bump('localized', request.method)}")


@cache_control(private=True)
def private(request: HttpRequest) -> HttpResponse:
    return _counted(request, "private")


@cache_control(no_cache=True)
def no_cache(request: HttpRequest) -> HttpResponse:
    return _counted(request, "no-cache")


@cache_control(no_store=True)
def no_store(request: HttpRequest) -> HttpResponse:
    return _counted(request, "no-store")


@cache_control(max_age=0)
def max_age_zero(request: HttpRequest) -> HttpResponse:
    return _counted(request, "max-age-0")


@cache_control(max_age=60)
def max_age_60(request: HttpRequest) -> HttpResponse:
    return _counted(request, "max-age-60")


@never_cache
def never(request: HttpRequest) -> HttpResponse:
    return _counted(request, "never")


def status(request: HttpRequest, code: int) -> HttpResponse:
    response = _counted(request, f"status-{code}")
    response.status_code = code
    return response


def redirect(request: HttpRequest) -> HttpResponse:
    bump("redirect", request.method)
    return HttpResponseRedirect("/page/target/")


def sets_cookie(request: HttpRequest) -> HttpResponse:
    response = _counted(request, "sets-cookie")
    response.set_cookie("flavour", "oat")
    return response


def sets_cookie_vary(request: HttpRequest) -> HttpResponse:
    response = _counted(request, "sets-cookie-vary")
    response.set_cookie("flavour", "oat")
    patch_vary_headers(response, ["Cookie"])
    return response


View = Callable[[HttpRequest], HttpResponse]


def cache_page_views(cache_page: Callable[..., Callable[[View], View]]) -> dict[str, View]:
    """The ``cache_page`` views, decorated by the given ``cache_page`` (Django's or ours),
    keyed by URL path."""

    @cache_page(60, key_prefix="pfx")
    def prefixed(request: HttpRequest) -> HttpResponse:
        return _counted(request, "prefixed")

    @cache_page(60, cache="other")
    def on_other(request: HttpRequest) -> HttpResponse:
        return _counted(request, "on-other")

    @cache_page(2)
    def short(request: HttpRequest) -> HttpResponse:
        return _counted(request, "short")

    return {"decorated/prefix/": prefixed, "decorated/other/": on_other,
            "decorated/short/": short}


DJANGO_CACHE_PAGE_VIEWS = cache_page_views(django_cache_page)
NATIVE_CACHE_PAGE_VIEWS = cache_page_views(native_cache_page)


# The page is per-visitor (private: neither the middleware nor a proxy keeps it) but
# its fragments are shared, so fragment caching is observed on its own.
@cache_control(private=True)
def fragments(request: HttpRequest) -> HttpResponse:
    context = {
        "who": request.GET.get("who", ""),
        "timeout": int(request.GET.get("timeout", "60")),
        # Callables: the template engine calls them only where a fragment is rendered.
        "frag_run": lambda: bump("frag"),
        "elsewhere_run": lambda: bump("elsewhere"),
    }
    return render(request, "site/fragments.html", context)


def lowlevel(request: HttpRequest) -> JsonResponse:
    cache = caches["default"]
    SEEN.append(cache)
    same = cache is caches["default"]
    value = cache.get("lowlevel")
    if value is None:
        value = bump("lowlevel")
        cache.set("lowlevel", value, 60)
    # What request_finished does after every request; the instance must keep working.
    cache.close()
    again = cache.get("lowlevel")
    return JsonResponse({"same": same, "value": value, "again": again})


async def async_lowlevel(request: HttpRequest) -> HttpResponse:
    cache = caches["default"]
    key = f"async-{request.GET['k']}"
    value = await cache.aget(key)
    if value is None:
        value = bump(key)
        await cache.aset(key, value, 60)
    return HttpResponse(f"{key} run {value}")


async def async_page(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"async-page run {bump('async-page', request.method)}")
