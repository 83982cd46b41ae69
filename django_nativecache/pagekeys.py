"""The page cache's keys, as ``django.utils.cache`` makes them, computed once per request.

Django's ``FetchFromCacheMiddleware`` builds the absolute URI, hashes it and asks for the
active language and time zone twice per request (once for the header-list key, once for
the page key). :class:`PageKeys` does each once and spells the keys exactly as the
installed Django does, so pages stored by Django's middleware are found by ours and the
other way round. The spelling is checked against Django's own functions on first use
(:func:`matches_django`); where a Django release spells them differently, the
middleware uses Django's functions instead.

The URL's hash is memoised (:func:`url_hash`): ``build_absolute_uri()`` of a request whose
class keeps ``HttpRequest``'s own URI methods is a function of its scheme, raw host, path
and query string, and of ``DEBUG`` and ``ALLOWED_HOSTS``, which decide whether the host is
accepted. The memo is keyed by all six, read on every request (settings may change with
no signal: Django's test runner assigns them, a site may edit ``ALLOWED_HOSTS`` in place),
so it answers what Django would. An entry is made only after Django's
``build_absolute_uri()`` has answered for that key, so a host that ``ALLOWED_HOSTS``
refuses is refused (``DisallowedHost``) on every request, as by Django; a hit leaves the
request as that call would (``_current_scheme_host`` set).
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import md5
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils import cache as django_cache
from django.utils.timezone import get_current_timezone_name
from django.utils.translation import get_language

HEADER_KEY = "views.decorators.cache.cache_header.%s.%s"
PAGE_KEY = "views.decorators.cache.cache_page.%s.%s.%s.%s"
# What Django hashes for a Vary header the request does not carry (RFC 9111 §4.1): an
# absent field must not share a key with an empty one. Releases before the change hashed
# nothing; matches_django() finds out which this Django is.
ABSENT_MARKERS = (b"-,", b"")

_MISSING = object()
_verdict: dict[str, Any] = {}

# What build_absolute_uri() depends on: a request whose class has HttpRequest's own
# (checked on every request: a test may patch one at any time) and that sets none on
# itself is plain.
_URI_ATTRIBUTES = ("build_absolute_uri", "_current_scheme_host", "get_host", "_get_raw_host",
                   "get_port", "get_full_path", "_get_full_path", "scheme")
(_BUILD, _SCHEME_HOST, _GET_HOST, _RAW_HOST, _PORT, _FULL_PATH, _FULL_PATH_OF,
 _SCHEME) = (getattr(HttpRequest, name) for name in _URI_ATTRIBUTES)
_URI_NAMES = frozenset(_URI_ATTRIBUTES)
_MEMO_LIMIT = 4096
_MEMO_URL_LIMIT = 512  # characters of host, path and query string: 4096 URLs hold ~2 MiB
_url_hashes: dict[tuple[Any, ...], str] = {}


def _md5_hex(text: str) -> str:
    return md5(text.encode("ascii"), usedforsecurity=False).hexdigest()


def _is_plain(cls: type[HttpRequest]) -> bool:
    return (
        cls.build_absolute_uri is _BUILD
        and cls._current_scheme_host is _SCHEME_HOST
        and cls.get_host is _GET_HOST
        and cls._get_raw_host is _RAW_HOST
        and cls.get_port is _PORT
        and cls.get_full_path is _FULL_PATH
        and cls._get_full_path is _FULL_PATH_OF
        and cls.scheme is _SCHEME
    )


def url_hash(request: HttpRequest) -> str:
    """The md5 hex digest of ``request.build_absolute_uri()``, as Django's keys hash it."""
    state = request.__dict__
    # Already computed, or a URI method set on this very request: Django's own answer.
    if not _URI_NAMES.isdisjoint(state) or not _is_plain(type(request)):
        return _md5_hex(request.build_absolute_uri())
    scheme, host = request.scheme, request._get_raw_host()
    key = (scheme, host, request.path, request.META.get("QUERY_STRING", ""), settings.DEBUG,
           tuple(settings.ALLOWED_HOSTS))
    digest = _url_hashes.get(key)
    if digest is not None:
        # What build_absolute_uri() caches: get_host() returns the raw host it accepts.
        state["_current_scheme_host"] = f"{scheme}://{host}"
        return digest
    digest = _md5_hex(request.build_absolute_uri())  # checks the host, as Django does
    if len(host) + len(request.path) + len(key[3]) > _MEMO_URL_LIMIT:
        return digest  # the client picks a URL's length: long ones are not kept
    if len(_url_hashes) >= _MEMO_LIMIT:
        _url_hashes.clear()
    _url_hashes[key] = digest
    return digest


def i18n_suffix(request: HttpRequest) -> str:
    """``django.utils.cache._i18n_cache_key_suffix(request, "")``."""
    suffix = ""
    if settings.USE_I18N:
        language = getattr(request, "LANGUAGE_CODE", _MISSING)
        if language is _MISSING:
            language = get_language()
        suffix = f".{language}"
    if settings.USE_TZ:
        suffix += f".{get_current_timezone_name()}"
    return suffix


class PageKeys:
    """The keys of one request's page: the header list's and, given it, the page's."""

    __slots__ = ("request", "key_prefix", "url_hash", "suffix")

    def __init__(self, request: HttpRequest, key_prefix: str | None) -> None:
        if key_prefix is None:
            key_prefix = settings.CACHE_MIDDLEWARE_KEY_PREFIX
        self.request = request
        self.key_prefix = key_prefix
        self.url_hash = url_hash(request)
        self.suffix = i18n_suffix(request)

    def header_key(self) -> str:
        return HEADER_KEY % (self.key_prefix, self.url_hash) + self.suffix

    def page_key(self, method: str, headerlist: Sequence[str]) -> str:
        absent = _verdict["absent"]
        ctx = md5(usedforsecurity=False)
        meta = self.request.META
        for header in headerlist:
            value = meta.get(header)
            if value is None:
                ctx.update(absent)
            else:
                ctx.update(value.encode())
        return (
            PAGE_KEY % (self.key_prefix, method, self.url_hash, ctx.hexdigest()) + self.suffix
        )


class _ProbeRequest(HttpRequest):
    def build_absolute_uri(self, location: str | None = None) -> str:
        return "http://probe.invalid/p/a?th=1"


def _probe() -> bytes | None:
    request = _ProbeRequest()
    request.META = {"HTTP_ACCEPT": "text/html", "HTTP_COOKIE": ""}
    request.LANGUAGE_CODE = "probe"  # type: ignore[attr-defined]
    headers = ["HTTP_ACCEPT", "HTTP_COOKIE", "HTTP_X_ABSENT"]
    want_header = django_cache._generate_cache_header_key("pre.fix", request)
    want_page = django_cache._generate_cache_key(request, "GET", headers, "pre.fix")
    for absent in ABSENT_MARKERS:
        _verdict["absent"] = absent
        keys = PageKeys(request, "pre.fix")
        if keys.header_key() == want_header and keys.page_key("GET", headers) == want_page:
            return absent
    return None


def matches_django() -> bool:
    """Whether :class:`PageKeys` spells keys as this Django does (checked once)."""
    ok = _verdict.get("ok")
    if ok is None:
        try:
            absent = _probe()
        except Exception:  # a Django whose private helpers changed shape
            absent = None
        if absent is not None:
            _verdict["absent"] = absent
        ok = _verdict["ok"] = absent is not None
    return bool(ok)
