"""``cache_page`` on :class:`django_nativecache.middleware.CacheMiddleware`: a drop-in for
``django.views.decorators.cache.cache_page`` with the same arguments and keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.utils.decorators import decorator_from_middleware_with_args

from django_nativecache.middleware import CacheMiddleware


def cache_page(
    timeout: float | None, *, cache: str | None = None, key_prefix: str | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Cache the view's responses for ``timeout`` seconds, as Django's ``cache_page``."""
    return decorator_from_middleware_with_args(CacheMiddleware)(
        page_timeout=timeout, cache_alias=cache, key_prefix=key_prefix
    )
