"""The drop-in cache middleware (``django_nativecache.middleware``) against Django's own.

Django's middleware tests run on ours in tests/conformance/test_django_middleware.py and
the site tests (tests/test_site.py, ``-native-mw``) run it on every backend. These check
what they cannot: that the keys are spelled as this Django spells them, request by
request; that pages stored by either middleware are served by the other; that a hit's
``Age`` is Django's to the second; that a Django which spells keys differently gets its
own functions; and that the header memo stays bounded.
"""

from __future__ import annotations

import asyncio
import threading
import time
import types
import zoneinfo
from collections.abc import Iterator
from unittest import mock
from typing import Any

import asgiref
import pytest
from asgiref.sync import sync_to_async
from django.core.cache import caches
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse
from django.middleware import cache as django_middleware
from django.test import RequestFactory, override_settings
from django.utils import cache as django_cache
from django.utils import timezone, translation
from django.utils.cache import patch_vary_headers
from django.utils.http import parse_http_date_safe
from django.utils.translation import trans_real

from django_nativecache import middleware as native_middleware
from django_nativecache import pagekeys
from django_nativecache.pagekeys import PageKeys, matches_django

CACHES = {
    "default": {
        "BACKEND": "django_nativecache.backends.shm.SharedMemoryCache",
        "LOCATION": "middleware-tests",
        "OPTIONS": {"SIZE": "2MB"},
    }
}


@pytest.fixture(autouse=True)
def page_cache() -> Iterator[Any]:
    with override_settings(CACHES=CACHES, CACHE_MIDDLEWARE_KEY_PREFIX="",
                           CACHE_MIDDLEWARE_SECONDS=60, ALLOWED_HOSTS=["testserver"]), \
            translation.override("en"):
        cache = caches["default"]
        cache.clear()
        yield cache
        cache.delete_segment()


@pytest.fixture
def fresh_verdict(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """matches_django() decides again in the test, and again after it."""
    monkeypatch.setattr(pagekeys, "_verdict", {})
    yield
    pagekeys._verdict.clear()


def test_keys_are_spelled_as_this_django_spells_them() -> None:
    assert matches_django()
    factory = RequestFactory()
    header_lists = [[], ["HTTP_COOKIE"], ["HTTP_ACCEPT", "HTTP_COOKIE", "HTTP_X_ABSENT"],
                    ["HTTP_AUTHORIZATION"]]
    requests = [
        factory.get("/a/"),
        factory.get("/a/", {"q": "é ü", "n": "1"}),
        factory.get("/päth/with space/", HTTP_COOKIE="", HTTP_ACCEPT="text/html"),
        factory.head("/a/", HTTP_COOKIE="x=1", HTTP_AUTHORIZATION="Basic Zm9v"),
        factory.get("/a/", secure=True, HTTP_COOKIE="x=ü"),
    ]
    localized = factory.get("/a/")
    localized.LANGUAGE_CODE = "de"  # type: ignore[attr-defined]
    requests.append(localized)
    for i18n in (True, False):
        for tz in (True, False):
            with override_settings(USE_I18N=i18n, USE_TZ=tz, TIME_ZONE="Europe/Berlin"):
                for request in requests:
                    for prefix in (None, "", "site.a"):
                        keys = PageKeys(request, prefix)
                        want = django_cache._generate_cache_header_key(
                            "" if prefix is None else prefix, request)
                        assert keys.header_key() == want
                        for headers in header_lists:
                            for method in ("GET", "HEAD"):
                                assert keys.page_key(method, headers) == (
                                    django_cache._generate_cache_key(
                                        request, method, headers,
                                        "" if prefix is None else prefix))


def _start_of_a_second() -> None:
    """So that a page stored and served within milliseconds is 0 s old in whole seconds."""
    time.sleep(1 - time.time() % 1 + 0.01)


def _view(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(f"page for {request.COOKIES.get('who', 'nobody')}")
    patch_vary_headers(response, ["Cookie"])
    return response


def _serve(middleware_module: Any, request: HttpRequest) -> tuple[HttpResponse, bool]:
    """One request through a middleware pair; (response, whether the view ran)."""
    ran = []

    def view(req: HttpRequest) -> HttpResponse:
        ran.append(1)
        return _view(req)

    fetch = middleware_module.FetchFromCacheMiddleware(view)
    update = middleware_module.UpdateCacheMiddleware(fetch)
    return update(request), bool(ran)


def _get(path: str, cookie: str | None) -> HttpRequest:
    """A GET with that Cookie header, or none (RequestFactory always sends one)."""
    request = RequestFactory().get(path)
    if cookie is None:
        del request.META["HTTP_COOKIE"]
    else:
        request.META["HTTP_COOKIE"] = cookie
    return request


@pytest.mark.parametrize("writer,reader", [
    (django_middleware, native_middleware), (native_middleware, django_middleware),
])
def test_a_page_stored_by_either_middleware_is_served_by_the_other(
    writer: Any, reader: Any
) -> None:
    # An absent Cookie and an empty one are distinct entries, as in Django.
    for cookie in (None, "who=ann", ""):
        _start_of_a_second()
        stored, ran = _serve(writer, _get("/page/", cookie))
        assert ran and not stored.has_header("Age"), cookie
        served, ran = _serve(reader, _get("/page/", cookie))
        assert not ran, cookie
        assert served.content == stored.content
        assert served["Age"] == "0"
    assert _serve(reader, _get("/page/", "who=bob"))[1]


def test_age_of_a_hit_is_djangos() -> None:
    factory = RequestFactory()
    _serve(django_middleware, factory.get("/aged/"))
    time.sleep(1.1)
    _start_of_a_second()  # ours and Django's read the clock within the same second
    for _ in range(2):  # the second from the memo
        ours = native_middleware.FetchFromCacheMiddleware(_view).process_request(
            factory.get("/aged/"))
        theirs = django_middleware.FetchFromCacheMiddleware(_view).process_request(
            factory.get("/aged/"))
        assert ours is not None and theirs is not None
        assert ours["Age"] == theirs["Age"]
        assert int(ours["Age"]) >= 1


def test_right_after_storing_age_is_zero() -> None:
    _start_of_a_second()
    _serve(native_middleware, RequestFactory().get("/now/"))
    response, ran = _serve(native_middleware, RequestFactory().get("/now/"))
    assert not ran and response["Age"] == "0"


def test_what_django_does_not_look_up_ours_does_not_either() -> None:
    factory = RequestFactory()
    _serve(native_middleware, factory.get("/form/"))
    post = factory.post("/form/")
    assert native_middleware.FetchFromCacheMiddleware(_view).process_request(post) is None
    assert post._cache_update_cache is False  # type: ignore[attr-defined]
    for mod in (django_middleware, native_middleware):
        with pytest.raises(DisallowedHost):
            mod.FetchFromCacheMiddleware(_view).process_request(
                factory.get("/form/", HTTP_HOST="evil.example"))


@pytest.mark.usefixtures("fresh_verdict")
def test_a_django_that_spells_keys_otherwise_gets_its_own_functions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pagekeys, "ABSENT_MARKERS", (b"not-what-django-hashes",))
    assert not matches_django()
    # Without the Vary header the page names: where the spelling differed.
    stored, _ = _serve(django_middleware, _get("/other/", None))
    served, ran = _serve(native_middleware, _get("/other/", None))
    assert not ran and served.content == stored.content
    assert _serve(native_middleware, _get("/other/", "who=cy"))[1]
    assert not _serve(native_middleware, _get("/other/", "who=cy"))[1]


def test_header_memo_is_bounded_and_right(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native_middleware, "_MEMO_LIMIT", 4)
    monkeypatch.setattr(native_middleware, "_expires", {})
    monkeypatch.setattr(native_middleware, "_max_ages", {})
    for timeout in range(10, 30):
        response = HttpResponse("x")
        django_cache.patch_response_headers(response, timeout)
        assert native_middleware._max_age(response) == timeout
        expires = response["Expires"]
        assert native_middleware._expires_at(expires) == parse_http_date_safe(expires)
        assert len(native_middleware._expires) <= 4 and len(native_middleware._max_ages) <= 4
    assert native_middleware._max_age(HttpResponse("no header")) is None


def test_expires_with_a_two_digit_year_is_parsed_as_django_parses_it_today(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # RFC 850 dates: Django puts a two-digit year within 50 years of today, so the same
    # text means another time in another year. It is never kept in the memo.
    monkeypatch.setattr(native_middleware, "_expires", {})
    text = "Sunday, 06-Nov-94 08:49:37 GMT"
    for _ in range(2):
        assert native_middleware._expires_at(text) == parse_http_date_safe(text)
    modern = "Sun, 06 Nov 1994 08:49:37 GMT"
    assert native_middleware._expires_at(modern) == parse_http_date_safe(modern)
    assert list(native_middleware._expires) == [modern]
    # Nor is a response that carries one decoded once for all hits.
    response = HttpResponse("old-style")
    response["Cache-Control"] = "max-age=60"
    response["Expires"] = text
    assert native_middleware._remember("rfc850-page", 1, 1, response) is None


def test_cache_middleware_is_both_of_the_others_as_in_django() -> None:
    assert issubclass(django_middleware.CacheMiddleware, django_middleware.UpdateCacheMiddleware)
    combined = native_middleware.CacheMiddleware(_view)
    assert isinstance(combined, native_middleware.UpdateCacheMiddleware)
    assert isinstance(combined, native_middleware.FetchFromCacheMiddleware)
    assert isinstance(combined, django_middleware.CacheMiddleware)
    assert type(combined).process_request is native_middleware.CacheMiddleware.process_request


def test_url_memo_answers_what_build_absolute_uri_does() -> None:
    factory = RequestFactory()
    makers = [
        lambda: factory.get("/m/"), lambda: factory.get("/m/", secure=True),
        lambda: factory.get("/m/", {"q": "é"}),
        lambda: factory.get("/m/", HTTP_HOST="testserver:8080"),
        lambda: factory.get("/päth/x y/"),
    ]
    with override_settings(ALLOWED_HOSTS=["testserver"]):
        for _ in range(2):  # the second from the memo
            for make in makers:
                want = pagekeys._md5_hex(make().build_absolute_uri())  # Django's own
                assert pagekeys.url_hash(make()) == want
    with override_settings(ALLOWED_HOSTS=["testserver"], USE_X_FORWARDED_HOST=True):
        forwarded = factory.get("/m/", HTTP_X_FORWARDED_HOST="testserver:81")
        assert pagekeys.url_hash(forwarded) == pagekeys._md5_hex("http://testserver:81/m/")


def test_url_memo_keeps_refusing_hosts_and_follows_settings() -> None:
    factory = RequestFactory()
    with override_settings(ALLOWED_HOSTS=["good.example"]):
        pagekeys.url_hash(factory.get("/h/", HTTP_HOST="good.example"))
        for _ in range(2):
            with pytest.raises(DisallowedHost):
                pagekeys.url_hash(factory.get("/h/", HTTP_HOST="evil.example"))
    # The memo knew good.example; a setting that refuses it now is obeyed.
    with override_settings(ALLOWED_HOSTS=["other.example"]):
        with pytest.raises(DisallowedHost):
            pagekeys.url_hash(factory.get("/h/", HTTP_HOST="good.example"))


def test_url_memo_follows_settings_changed_without_a_signal() -> None:
    """Django's test runner assigns settings and a site may edit ALLOWED_HOSTS in place:
    no setting_changed is sent, and the host check must still be Django's."""
    from django.conf import settings

    factory = RequestFactory()
    with override_settings(ALLOWED_HOSTS=["good.example"], DEBUG=False):
        pagekeys.url_hash(factory.get("/s/", HTTP_HOST="good.example"))  # memoised
        settings.ALLOWED_HOSTS = ["new.example"]
        with pytest.raises(DisallowedHost):
            factory.get("/s/", HTTP_HOST="good.example").build_absolute_uri()  # Django
        with pytest.raises(DisallowedHost):
            pagekeys.url_hash(factory.get("/s/", HTTP_HOST="good.example"))
        settings.ALLOWED_HOSTS.append("good.example")
        pagekeys.url_hash(factory.get("/s/", HTTP_HOST="good.example"))
        settings.ALLOWED_HOSTS.remove("good.example")
        with pytest.raises(DisallowedHost):
            pagekeys.url_hash(factory.get("/s/", HTTP_HOST="good.example"))
    with override_settings(ALLOWED_HOSTS=[], DEBUG=True):
        pagekeys.url_hash(factory.get("/s/", HTTP_HOST="localhost"))  # DEBUG's defaults
        settings.DEBUG = False
        with pytest.raises(DisallowedHost):
            pagekeys.url_hash(factory.get("/s/", HTTP_HOST="localhost"))


def test_url_memo_leaves_the_request_as_django_does() -> None:
    factory = RequestFactory()
    pagekeys.url_hash(factory.get("/r/"))
    ours, django = factory.get("/r/"), factory.get("/r/")
    pagekeys.url_hash(ours)  # from the memo
    django.build_absolute_uri()
    assert ours.__dict__["_current_scheme_host"] == django.__dict__["_current_scheme_host"]
    # A view that now changes the Host header gets the URI Django would give it.
    ours.META["HTTP_HOST"] = django.META["HTTP_HOST"] = "elsewhere.example"
    assert ours.build_absolute_uri() == django.build_absolute_uri() == "http://testserver/r/"


def test_url_memo_obeys_uri_methods_patched_on_the_class_or_set_on_the_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    factory = RequestFactory()
    pagekeys.url_hash(factory.get("/p/"))
    pagekeys.url_hash(factory.get("/p/"))  # the class is known and the URL memoised
    monkeypatch.setattr(HttpRequest, "get_host", lambda self: "patched.example")
    assert pagekeys.url_hash(factory.get("/p/")) == pagekeys._md5_hex("http://patched.example/p/")
    monkeypatch.undo()
    # Set on one request only, as a middleware or a test may do.
    request = factory.get("/p/")
    request.get_host = lambda: "instance.example"  # type: ignore[method-assign]
    assert pagekeys.url_hash(request) == pagekeys._md5_hex("http://instance.example/p/")
    refused = factory.get("/p/")

    def refuse() -> str:
        raise DisallowedHost("no")

    refused.get_host = refuse  # type: ignore[method-assign]
    with pytest.raises(DisallowedHost):
        pagekeys.url_hash(refused)


def test_url_memo_is_bounded_and_skips_requests_that_change_the_uri(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pagekeys, "_MEMO_LIMIT", 3)
    factory = RequestFactory()
    for n in range(10):
        pagekeys.url_hash(factory.get(f"/b/{n}/"))
        assert len(pagekeys._url_hashes) <= 3
    # A long URL (its length is the client's choice) is hashed, not kept.
    pagekeys._url_hashes.clear()
    long_query = {"q": "x" * 600}
    assert pagekeys.url_hash(factory.get("/b/", long_query)) == pagekeys._md5_hex(
        factory.get("/b/", long_query).build_absolute_uri())
    assert pagekeys._url_hashes == {}

    class Proxied(type(factory.get("/"))):  # type: ignore[misc]
        def get_host(self) -> str:
            return "proxy.example"

    request = factory.get("/b/0/")
    request.__class__ = Proxied
    assert pagekeys.url_hash(request) == pagekeys._md5_hex("http://proxy.example/b/0/")


def _hit(path: str, cookie: str | None = "who=ann") -> Any:
    """The page at path from our FetchFromCacheMiddleware, or None on a miss."""
    return native_middleware.FetchFromCacheMiddleware(_view).process_request(
        _get(path, cookie))


def test_each_hit_is_a_response_of_its_own() -> None:
    _start_of_a_second()
    stored, _ = _serve(native_middleware, _get("/own/", "who=ann"))
    first = _hit("/own/")
    assert first is not None and first.content == stored.content  # the memo's entry
    first["X-Mutated"] = "1"
    first.set_cookie("c", "1")
    first.write(b" and more")
    first._resource_closers.append(lambda: None)  # type: ignore[attr-defined]
    second = _hit("/own/")
    assert second is not None and second is not first
    assert second.content == stored.content and not second.has_header("X-Mutated")
    assert not second.cookies and second._resource_closers == []  # type: ignore[attr-defined]
    assert second["Age"] == "0" and second["Vary"] == "Cookie"
    # What unpickling the entry gives, attribute for attribute.
    theirs = django_middleware.FetchFromCacheMiddleware(_view).process_request(
        _get("/own/", "who=ann"))
    assert theirs is not None
    assert dict(second.items()) == dict(theirs.items())
    assert second.__dict__.keys() == theirs.__dict__.keys()
    for name in ("_charset", "_reason_phrase", "status_code", "_container", "closed"):
        assert getattr(second, name) == getattr(theirs, name), name


def test_a_page_written_again_is_served_anew(page_cache: Any) -> None:
    _serve(native_middleware, _get("/again/", "who=ann"))
    assert _hit("/again/") is not None
    page_key = django_cache.get_cache_key(_get("/again/", "who=ann"), "", cache=page_cache)
    assert page_key in native_middleware._decoded
    for round_ in range(3):
        response = HttpResponse(f"version {round_}")
        django_cache.patch_response_headers(response, 60)
        page_cache.set(page_key, response)
        hit = _hit("/again/")
        assert hit is not None and hit.content == f"version {round_}".encode()
    # The memo counts each page's bytes once, however often it was written again.
    held = sum(entry.size for entry in native_middleware._decoded.values())
    assert native_middleware._decoded_bytes[0] == held
    page_cache.delete(page_key)
    assert _hit("/again/") is None
    # The same name, a new segment: what the new one holds, not what the memo kept.
    page_cache.delete_segment()
    assert _hit("/again/") is None


class CustomResponse(HttpResponse):
    """A subclass: its instances are never copied, whatever they hold."""


def test_responses_a_copy_could_not_reproduce_are_decoded_each_time(
    page_cache: Any,
) -> None:
    for n, response in enumerate([CustomResponse("sub"), HttpResponse("cookie")]):
        if n == 1:
            response.set_cookie("flavour", "plain")
        django_cache.patch_response_headers(response, 60)
        request = _get(f"/odd/{n}/", "who=ann")
        django_cache.learn_cache_key(request, response, 60, "", cache=page_cache)
        page_key = django_cache.get_cache_key(request, "", cache=page_cache)
        page_cache.set(page_key, response)
        for _ in range(2):
            hit = _hit(f"/odd/{n}/")
            assert hit is not None and type(hit) is type(response)
            assert hit.content == response.content
        assert page_key not in native_middleware._decoded
    assert hit.cookies["flavour"].value == "plain"


def test_decoded_responses_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native_middleware, "_DECODED_LIMIT", 3)
    monkeypatch.setattr(native_middleware, "_decoded", {})
    for n in range(8):
        _serve(native_middleware, _get(f"/bound/{n}/", None))
        assert _hit(f"/bound/{n}/", None) is not None
        assert len(native_middleware._decoded) <= 3


def test_stamps_from_the_store(page_cache: Any) -> None:
    assert page_cache.get_stamped("nothing") is None
    page_cache.set("k", [1, 2])
    changed, value, epoch, cas = page_cache.get_stamped("k")
    assert changed and value == [1, 2] and epoch != 0 and cas != 0
    assert page_cache.get_stamped("k", epoch, cas) == (False, None, epoch, cas)
    page_cache.set("k", [3])
    changed, value, _, cas2 = page_cache.get_stamped("k", epoch, cas)
    assert changed and value == [3] and cas2 != cas


def test_a_get_wrapped_on_the_instance_or_patched_on_the_class_sees_every_lookup(
    page_cache: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As a debugging panel or a test's mock wraps ``cache.get``: Django's middleware asks
    it for the header list and the page, so ours must too, memo or not."""
    _serve(native_middleware, _get("/wrapped/", "who=ann"))
    assert _hit("/wrapped/") is not None  # decoded once: the memo holds the page
    seen: list[str] = []
    unwrapped = page_cache.get

    def traced(key: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(key)
        return unwrapped(key, *args, **kwargs)

    page_cache.get = traced
    try:
        hit = _hit("/wrapped/")
    finally:
        del page_cache.get
    assert hit is not None and hit["Age"] == "0"
    assert [k.split(".")[3] for k in seen] == ["cache_header", "cache_page"]

    seen.clear()
    cls = type(page_cache)
    monkeypatch.setattr(cls, "get", lambda self, key, *a, **kw: traced(key, *a, **kw))
    assert _hit("/wrapped/") is not None
    assert [k.split(".")[3] for k in seen] == ["cache_header", "cache_page"]


# -- the active language and time zone, read from asgiref's storage -----------------------

def _django_suffix(request: HttpRequest) -> str:
    return django_cache._i18n_cache_key_suffix(request, "")  # type: ignore[attr-defined]


def _suffixes(request: HttpRequest) -> tuple[str, str]:
    return pagekeys.i18n_suffix(request), _django_suffix(request)


@pytest.fixture
def zones() -> Iterator[None]:
    with override_settings(USE_I18N=True, USE_TZ=True, TIME_ZONE="UTC", LANGUAGE_CODE="en-us"):
        yield
    translation.deactivate()
    timezone.deactivate()


@pytest.mark.usefixtures("zones")
def test_language_and_time_zone_are_read_without_the_local_yet_as_django_reads_them() -> None:
    assert pagekeys._locals() is not None  # this asgiref's layout is known: read directly
    request = RequestFactory().get("/lang/")
    seen = set()
    with override_settings(USE_TZ=True, TIME_ZONE="Europe/Berlin", LANGUAGE_CODE="en-us"):
        for language in (None, "de", "es", "all off"):
            if language is None:
                translation.deactivate()
            elif language == "all off":
                translation.deactivate_all()  # Django's key then says ".None"
            else:
                translation.activate(language)
            for zone in (None, "Asia/Tokyo", timezone.get_fixed_timezone(90)):
                if zone is None:
                    timezone.deactivate()
                else:
                    timezone.activate(zone)
                ours, django = _suffixes(request)
                assert ours == django, (language, zone)
                seen.add(ours)
        timezone.deactivate()
    assert {".en-us.Europe/Berlin", ".de.Asia/Tokyo", ".None.+0130"} <= seen
    assert len(seen) == 12


@pytest.mark.usefixtures("zones")
def test_each_thread_and_each_task_reads_its_own_language() -> None:
    request = RequestFactory().get("/lang/")
    translation.activate("de")
    found: dict[str, tuple[str, str]] = {}

    def in_thread() -> None:  # a new thread starts with nothing active
        found["fresh"] = _suffixes(request)
        translation.activate("es")
        found["own"] = _suffixes(request)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert found["fresh"] == (".en-us.UTC",) * 2
    assert found["own"] == (".es.UTC",) * 2
    assert _suffixes(request) == (".de.UTC",) * 2

    async def task(language: str) -> tuple[tuple[str, str], tuple[str, str]]:
        with translation.override(language), timezone.override("Asia/Tokyo"):
            await asyncio.sleep(0)  # the other task runs in between
            inline = _suffixes(request)
            # sync_to_async runs it in a thread with this task's context, as Django does
            hopped = await sync_to_async(_suffixes)(request)
            return inline, hopped

    async def both() -> list[Any]:
        return list(await asyncio.gather(task("fr"), task("nl")))

    (fr, fr_hop), (nl, nl_hop) = asyncio.run(both())
    for ours, django in (fr, fr_hop, nl, nl_hop):
        assert ours == django
    if tuple(int(part) for part in asgiref.__version__.split(".")[:2]) >= (3, 9):
        # asgiref 3.8 let one task's activation reach the other's, for Django too
        assert fr == fr_hop == (".fr.Asia/Tokyo",) * 2
        assert nl == nl_hop == (".nl.Asia/Tokyo",) * 2
        assert _suffixes(request) == (".de.UTC",) * 2


@pytest.mark.usefixtures("zones")
def test_a_translation_local_replaced_by_django_is_followed() -> None:
    """Django's test signals (LANGUAGE_CODE changed) and its autoreloader put a new Local in
    place of the translation's; what it holds from then on is what counts."""
    request = RequestFactory().get("/lang/")
    assert pagekeys._locals() is not None
    before = trans_real._active
    with override_settings(LANGUAGE_CODE="pt-br"):
        assert trans_real._active is not before
        assert _suffixes(request)[0] == _suffixes(request)[1] == ".pt-br.UTC"
        translation.activate("it")
        assert _suffixes(request) == (".it.UTC",) * 2


@pytest.mark.usefixtures("zones", "fresh_verdict")
def test_a_local_of_another_shape_gets_djangos_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    request = RequestFactory().get("/lang/")
    other = types.SimpleNamespace(value=trans_real.translation("de"))
    monkeypatch.setattr(trans_real, "_active", other)
    assert pagekeys._locals() is None
    assert _suffixes(request) == (".de.UTC",) * 2
    other.value = trans_real.translation("es")
    assert _suffixes(request) == (".es.UTC",) * 2


@pytest.mark.usefixtures("zones", "fresh_verdict")
def test_the_probe_leaves_the_callers_language_and_time_zone_alone() -> None:
    request = RequestFactory().get("/lang/")
    translation.activate("de")
    timezone.activate("Asia/Tokyo")
    try:
        assert pagekeys._locals() is not None  # probed now, in this context
        assert translation.get_language() == "de"
        assert timezone.get_current_timezone_name() == "Asia/Tokyo"
        assert _suffixes(request) == (".de.Asia/Tokyo",) * 2
    finally:
        timezone.deactivate()
    found: list[Any] = []
    thread = threading.Thread(target=lambda: found.append(
        (getattr(trans_real._active, "value", None), getattr(timezone._active, "value", None))))
    thread.start()
    thread.join()
    assert found == [(None, None)]


@pytest.mark.usefixtures("zones")
def test_a_get_language_django_bound_to_trans_null_is_followed() -> None:
    """``translation._trans`` binds ``get_language`` to trans_null or trans_real on first
    use, by USE_I18N then, and keeps it when USE_I18N changes: Django's keys then say
    LANGUAGE_CODE, whatever trans_real has active."""
    request = RequestFactory().get("/lang/")
    bound = dict(translation._trans.__dict__)  # type: ignore[attr-defined]
    translation._trans.__dict__.clear()  # type: ignore[attr-defined]
    try:
        with override_settings(USE_I18N=False):
            translation.get_language()  # binds trans_null's
        trans_real.activate("de")
        assert _suffixes(request) == (".en-us.UTC",) * 2
    finally:
        translation._trans.__dict__.clear()  # type: ignore[attr-defined]
        translation._trans.__dict__.update(bound)  # type: ignore[attr-defined]
    assert _suffixes(request) == (".de.UTC",) * 2


@pytest.mark.usefixtures("zones")
def test_a_get_current_timezone_patched_in_django_is_followed() -> None:
    request = RequestFactory().get("/lang/")
    assert pagekeys._locals() is not None  # probed before the patch: the fast path is on
    with mock.patch("django.utils.timezone.get_current_timezone",
                    return_value=zoneinfo.ZoneInfo("Asia/Tokyo")):
        assert _suffixes(request) == (".en-us.Asia/Tokyo",) * 2
    assert _suffixes(request) == (".en-us.UTC",) * 2
