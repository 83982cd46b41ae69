"""URLconf of the test site (ROOT_URLCONF for tests/test_site.py), its ``cache_page``
views decorated by Django's ``cache_page`` (``tests.site.urls_native``: by ours)."""

from __future__ import annotations

from django.urls import URLPattern, path

from tests.site import views


def patterns(cache_page_views: dict[str, views.View]) -> list[URLPattern]:
    return [*COMMON, *(path(route, view) for route, view in cache_page_views.items())]


COMMON = [
    path("page/<slug:slug>/", views.page),
    path("vary-cookie/", views.vary_cookie),
    path("vary-language/", views.vary_language),
    path("vary-star/", views.vary_star),
    path("localized/", views.localized),
    path("private/", views.private),
    path("no-cache/", views.no_cache),
    path("no-store/", views.no_store),
    path("max-age-0/", views.max_age_zero),
    path("max-age-60/", views.max_age_60),
    path("never/", views.never),
    path("status/<int:code>/", views.status),
    path("redirect/", views.redirect),
    path("sets-cookie/", views.sets_cookie),
    path("sets-cookie-vary/", views.sets_cookie_vary),
    path("fragments/", views.fragments),
    path("lowlevel/", views.lowlevel),
    path("async/", views.async_lowlevel),
    path("async-page/", views.async_page),
]

urlpatterns = patterns(views.DJANGO_CACHE_PAGE_VIEWS)
