"""The test site with its ``cache_page`` views under ``django_nativecache.decorators``."""

from __future__ import annotations

from tests.site import views
from tests.site.urls import patterns

urlpatterns = patterns(views.NATIVE_CACHE_PAGE_VIEWS)
