"""URLconf of the test site (ROOT_URLCONF for tests/test_site.py)."""

from __future__ import annotations

from django.urls import path

from tests.site import views

urlpatterns = [
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
    path("decorated/prefix/", views.prefixed),
    path("decorated/other/", views.on_other),
    path("decorated/short/", views.short),
    path("fragments/", views.fragments),
    path("lowlevel/", views.lowlevel),
    path("async/", views.async_lowlevel),
    path("async-page/", views.async_page),
]
