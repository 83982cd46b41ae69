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

The active language and time zone are read from the ContextVar inside Django's asgiref
``Local`` objects rather than through them (:func:`i18n_suffix`): the same values, without
the Local's lock and the AttributeError it raises and catches when nothing is active. A
probe, run once per Local in an empty context, checks the layout and compares the answers
with Django's ``get_language`` and ``get_current_timezone_name`` in each state it can set;
a Local it does not know, or answers that differ, leave Django's functions in use.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Sequence
from hashlib import md5
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils import cache as django_cache
from django.utils import timezone as django_timezone
from django.utils import translation as django_translation
from django.utils.functional import empty
from django.utils.timezone import get_current_timezone_name
from django.utils.translation import get_language, trans_real

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


def current_settings() -> Any:
    """What ``settings`` reads from (``override_settings`` and assignments reach it), for
    reading several settings: each ``settings.NAME`` costs ~0.2 µs in LazySettings, an
    attribute of this ~0.02. Equal to ``settings.NAME`` but for MEDIA_URL, STATIC_URL and
    SECRET_KEY, which LazySettings adjusts or checks."""
    wrapped = settings._wrapped
    if wrapped is empty:
        settings._setup()
        wrapped = settings._wrapped
    return wrapped


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
    conf = current_settings()
    key = (scheme, host, request.path, request.META.get("QUERY_STRING", ""), conf.DEBUG,
           tuple(conf.ALLOWED_HOSTS))
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


# -- the active language and time zone ------------------------------------------------
# Django keeps both in asgiref Locals. Reading one through the Local takes its RLock and,
# when nothing is active (the time zone, usually), raises and catches an AttributeError
# whose message formats the Local's repr: about 2 µs each, a tenth of a cached hit. Every
# asgiref Django 5.2 runs on keeps a Local's values in one ContextVar (its ``_storage._data``):
# a dict up to 3.11; a ``_Storage(thread_id, data)`` from 3.12, whose data is hidden from
# other threads a context reaches. A reader reads that ContextVar directly. It is used only
# once a probe, in a context of its own, has seen it and the functions built on it answer
# as Django's do in every state the probe can set; otherwise Django's functions are used.

def _dict_reader(var: contextvars.ContextVar[Any]) -> Callable[[], Any]:
    nothing: dict[str, Any] = {}  # what the Local reads in a context it never wrote to

    def read() -> Any:
        return var.get(nothing).get("value", _MISSING)

    return read


def _storage_reader(var: contextvars.ContextVar[Any], storage: type) -> Callable[[], Any]:
    get_ident = threading.get_ident

    def read() -> Any:
        found = var.get(None)
        if type(found) is not storage or found.thread_id != get_ident():
            return _MISSING
        return found.data.get("value", _MISSING)

    return read


def _reader(local: Any) -> Callable[[], Any] | None:
    """``getattr(local, "value", _MISSING)`` without the Local's lock, for the layouts above;
    None for any other. Called in a context of its own, where ``local`` holds nothing yet."""
    try:
        var = object.__getattribute__(object.__getattribute__(local, "_storage"), "_data")
    except AttributeError:
        return None
    if type(var) is not contextvars.ContextVar:
        return None
    marker = object()
    setattr(local, "value", marker)
    try:
        found = var.get(None)
        if type(found) is dict:
            read = _dict_reader(var)
        elif type(getattr(found, "data", None)) is dict and hasattr(found, "thread_id"):
            read = _storage_reader(var, type(found))
        else:
            return None
        return read if read() is marker else None
    finally:
        delattr(local, "value")


class _NoLanguage:
    """An active translation without ``to_language`` (Django falls back to LANGUAGE_CODE)."""


class _ProbeLanguage:
    def to_language(self) -> str:
        return "probe-language"


def _language_of(read: Callable[[], Any]) -> Callable[[Any], str | None]:
    def language(conf: Any) -> str | None:  # trans_real.get_language, given the settings
        active = read()
        if active is not _MISSING and active is not None:
            try:
                return active.to_language()  # type: ignore[no-any-return]
            except AttributeError:
                pass
        return conf.LANGUAGE_CODE  # type: ignore[no-any-return]

    return language


def _timezone_name_of(read: Callable[[], Any]) -> Callable[[], str]:
    def timezone_name() -> str:  # timezone.get_current_timezone_name
        default = django_timezone.get_default_timezone()  # first, as Django's getattr() does
        active = read()
        return django_timezone._get_timezone_name(  # type: ignore[no-any-return]
            default if active is _MISSING else active)

    return timezone_name


_Locals = tuple[Callable[[Any], str | None], Callable[[], str]]


def _fast_locals(lang_local: Any, tz_local: Any) -> _Locals | None:
    """The language and time zone functions reading these Locals directly, checked against
    Django's in each state; None where they may differ. Runs in a context of its own."""
    lang_read, tz_read = _reader(lang_local), _reader(tz_local)
    if lang_read is None or tz_read is None:
        return None
    language, timezone_name = _language_of(lang_read), _timezone_name_of(tz_read)
    probe_zone = django_timezone.get_fixed_timezone(-(7 * 60 + 13))

    def agrees() -> bool:
        return (language(current_settings()) == trans_real.get_language()
                and timezone_name() == get_current_timezone_name())

    checks = [agrees()]
    for active in (_ProbeLanguage(), _NoLanguage(), None):
        lang_local.value = active
        checks.append(agrees())
    trans_real.deactivate_all()  # to_language() gives None
    checks.append(agrees() and language(current_settings()) is None)
    trans_real.deactivate()
    django_timezone.activate(probe_zone)
    checks.append(agrees() and timezone_name() == probe_zone.tzname(None))
    django_timezone.deactivate()
    checks.append(agrees())
    return (language, timezone_name) if all(checks) else None


def _locals_verdict() -> tuple[Any, Any, _Locals | None]:
    """The Locals Django reads now (its test signals and autoreloader replace the
    translation's) and the functions that read them, or None for Django's own."""
    lang_local, tz_local = trans_real._active, django_timezone._active
    try:
        # In a new, empty context: nothing the probe activates reaches the caller's.
        found = contextvars.Context().run(_fast_locals, lang_local, tz_local)
    except Exception:  # an asgiref or Django of another shape
        found = None
    return lang_local, tz_local, found


def _locals() -> _Locals | None:
    verdict = _verdict.get("locals")
    if (verdict is None or verdict[0] is not trans_real._active
            or verdict[1] is not django_timezone._active):
        verdict = _verdict["locals"] = _locals_verdict()
    return verdict[2]  # type: ignore[no-any-return]


_GET_CURRENT_TIMEZONE = django_timezone.get_current_timezone


def _asks_trans_real() -> bool:
    """Whether Django's ``get_language()`` calls trans_real's now: it calls the function
    ``translation._trans`` bound on first use, kept when USE_I18N changes later."""
    return django_translation._trans.__dict__.get("get_language") is trans_real.get_language


def i18n_suffix(request: HttpRequest) -> str:
    """``django.utils.cache._i18n_cache_key_suffix(request, "")``."""
    suffix = ""
    conf = current_settings()
    if conf.USE_I18N:
        language = getattr(request, "LANGUAGE_CODE", _MISSING)
        if language is _MISSING:
            found = _locals()
            if found is None or not _asks_trans_real():
                language = get_language()
            else:
                language = found[0](conf)
        suffix = f".{language}"
    if conf.USE_TZ:
        found = _locals()
        # Django's get_current_timezone_name() looks get_current_timezone up each time
        if found is None or django_timezone.get_current_timezone is not _GET_CURRENT_TIMEZONE:
            suffix += f".{get_current_timezone_name()}"
        else:
            suffix += f".{found[1]()}"
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
