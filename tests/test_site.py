"""Every door into the cache, through Django's test client, on every backend.

The site (tests/site/) has views that count their own executions, so each test says
exactly how many times a view ran: once for a page then served from the cache, again
for every request on DummyCache, which keeps nothing. Django's own LocMemCache runs as
a reference parameter: what passes there is Django's behaviour, and every one of our
backends must do the same.

Doors: the per-site middleware (Vary, i18n, Cache-Control, non-200s, cookies, HEAD,
POST), ``cache_page`` with ``key_prefix`` and ``cache``, ``{% cache %}`` fragments with
``vary_on`` and ``using``, expiry, the low-level API in a view (with ``close()``), the
cache handler per thread, request_finished after each request, and async views through
``AsyncClient``.

The ``-native-mw`` parameters run the same tests through this package's drop-in cache
middleware and ``cache_page`` (``django_nativecache.middleware``/``.decorators``) instead of
Django's: the same views run as often, and the pages sit under the keys Django's
``get_cache_key`` computes.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core import management
from django.core.cache import caches
from django.core.cache.utils import make_template_fragment_key
from django.core.signals import request_finished
from django.db import connection
from django.http import HttpResponse
from django.test import AsyncClient, Client, RequestFactory, override_settings
from django.utils import translation
from django.utils.cache import get_cache_key
from django.utils.http import parse_http_date

from tests.mcserver import MemcachedServer
from tests.site import TEMPLATE_DIR, views

# Ours, then Django's LocMemCache as the reference. The database cache runs on the
# test database, transactional: the identity test reads it from a second thread, which
# sees committed rows only (a marker, not a fixture requested on the fly: pytest-django
# decides transaction or not from the markers and the test's own fixture names).
BACKENDS = [
    "shm", "locmem", "memcached", "file",
    pytest.param("db", marks=pytest.mark.django_db(transaction=True)),
    "dummy", "django-locmem",
    # (backend, whose middleware): ours on every kind of store, and on Django's LocMem.
    *(pytest.param((kind, "native"), id=f"{kind}-native-mw", marks=marks)
      for kind, marks in [("shm", ()), ("memcached", ()), ("file", ()), ("dummy", ()),
                          ("django-locmem", ()),
                          ("db", pytest.mark.django_db(transaction=True))]),
]
NATIVE_URLCONF = "tests.site.urls_native"
ALIASES = ("default", "other")
SITE_MIDDLEWARE = [
    "django.middleware.cache.UpdateCacheMiddleware",
    "django.middleware.cache.FetchFromCacheMiddleware",
]
I18N_MIDDLEWARE = [
    "django.middleware.cache.UpdateCacheMiddleware",
    # Between the two, as Django's documentation says: the language it sets on the
    # request is part of the key FetchFromCacheMiddleware looks up.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.cache.FetchFromCacheMiddleware",
]
SECONDS = 30  # CACHE_MIDDLEWARE_SECONDS unless a test says otherwise
SITE_SETTINGS: dict[str, Any] = {
    "ROOT_URLCONF": "tests.site.urls",
    "MIDDLEWARE": [],
    "TEMPLATES": [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "DIRS": [TEMPLATE_DIR],
            "APP_DIRS": False,
        }
    ],
    "CACHE_MIDDLEWARE_SECONDS": SECONDS,
    "CACHE_MIDDLEWARE_KEY_PREFIX": "",
    "CACHE_MIDDLEWARE_ALIAS": "default",
    "USE_I18N": True,
    "LANGUAGE_CODE": "en",
    "LANGUAGES": [("en", "English"), ("de", "German")],
}


@pytest.fixture(scope="module")
def memcached_other() -> Iterator[MemcachedServer]:
    """A second server, so that the "other" alias is a cache of its own, as it is on
    every other backend (a shared server would make "landed in other" unobservable)."""
    server = MemcachedServer().start()
    yield server
    server.cleanup()


@dataclass
class Site:
    kind: str
    servers: dict[str, MemcachedServer] = field(default_factory=dict)
    native_middleware: bool = False

    @property
    def keeps(self) -> bool:
        """False for DummyCache, where every request must reach the view."""
        return self.kind != "dummy"

    def expect(self, cached: int, uncached: int) -> int:
        """The number of view runs a test expects: ``cached`` on a backend that keeps
        values, ``uncached`` on DummyCache."""
        return cached if self.keeps else uncached

    @contextmanager
    def middleware(self, stack: list[str] = SITE_MIDDLEWARE, **extra: Any) -> Iterator[None]:
        if self.native_middleware:
            stack = [m.replace("django.middleware.cache.", "django_nativecache.middleware.")
                     for m in stack]
        # A Client loads the middleware on its first request: make clients inside.
        with override_settings(MIDDLEWARE=stack, **extra):
            yield


def _cache_setting(
    kind: str, alias: str, request: pytest.FixtureRequest, tmp: Path
) -> dict[str, Any]:
    unique = f"site-{alias}-{uuid.uuid4().hex[:12]}"
    if kind in ("shm", "locmem"):
        backend = "shm.SharedMemoryCache" if kind == "shm" else "locmem.LocMemCache"
        return {
            "BACKEND": f"django_nativecache.backends.{backend}",
            "LOCATION": unique,
            "OPTIONS": {"SIZE": "2MB"},  # a fresh segment per alias and test: keep it small
        }
    if kind == "memcached":
        fixture = "memcached_module" if alias == "default" else "memcached_other"
        server = request.getfixturevalue(fixture)
        server.flush()
        return {
            "BACKEND": "django_nativecache.backends.memcached.MemcachedCache",
            "LOCATION": server.location,
        }
    if kind == "file":
        return {
            "BACKEND": "django_nativecache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp / alias),
        }
    if kind == "db":
        return {
            "BACKEND": "django_nativecache.backends.db.DatabaseCache",
            "LOCATION": f"site_cache_{alias}",
        }
    if kind == "dummy":
        return {"BACKEND": "django_nativecache.backends.dummy.DummyCache"}
    assert kind == "django-locmem"
    return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": unique}


@pytest.fixture(params=BACKENDS)
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    kind, whose = request.param if isinstance(request.param, tuple) else (request.param, "")
    native = whose == "native"
    setting = {alias: _cache_setting(kind, alias, request, tmp_path) for alias in ALIASES}
    servers: dict[str, MemcachedServer] = {}
    if kind == "memcached":
        servers = {
            "default": request.getfixturevalue("memcached_module"),
            "other": request.getfixturevalue("memcached_other"),
        }
    # The key suffix is the active language: pin it, and restore whatever a test's
    # LocaleMiddleware activated in this thread.
    urlconf = NATIVE_URLCONF if native else SITE_SETTINGS["ROOT_URLCONF"]
    with override_settings(CACHES=setting, **{**SITE_SETTINGS, "ROOT_URLCONF": urlconf}), \
            translation.override("en"):
        if kind == "db":
            management.call_command("createcachetable", verbosity=0)
        views.reset()
        try:
            yield Site(kind, servers, native)
        finally:
            for alias in ALIASES:
                cache = caches[alias]
                if hasattr(cache, "delete_segment"):
                    cache.delete_segment()
                elif kind == "db":
                    table = connection.ops.quote_name(cache._table)
                    with connection.cursor() as cursor:
                        cursor.execute(f"DROP TABLE IF EXISTS {table}")
                else:
                    cache.clear()


def runs(name: str) -> int:
    return views.RUNS[name]


def page_key(
    path: str, method: str = "GET", alias: str = "default", key_prefix: str | None = None,
    **meta: Any,
) -> str | None:
    """The key Django's middleware would look up for a request (None: nothing learnt)."""
    request = RequestFactory().get(path, **meta)
    return get_cache_key(request, key_prefix, method, cache=caches[alias])


def stored(
    path: str, method: str = "GET", alias: str = "default", key_prefix: str | None = None,
    **meta: Any,
) -> bool:
    key = page_key(path, method, alias, key_prefix, **meta)
    return key is not None and caches[alias].has_key(key)


def is_hit(response: HttpResponse) -> bool:
    # FetchFromCacheMiddleware adds Age to what it serves from the cache, and only then.
    return response.has_header("Age")


# --- the per-site middleware -------------------------------------------------------


def test_page_computed_once_then_served_from_cache(site: Site) -> None:
    with site.middleware():
        client = Client()
        first = client.get("/page/a/")
        second = client.get("/page/a/")
        other = client.get("/page/b/")
    assert first.status_code == second.status_code == other.status_code == 200
    # Django's headers, on what was computed and on what was served.
    assert first["Cache-Control"] == f"max-age={SECONDS}"
    assert abs(parse_http_date(first["Expires"]) - (time.time() + SECONDS)) <= 2
    assert not is_hit(first)
    assert runs("page-a") == site.expect(1, 2)
    assert runs("page-b") == 1 and other.content == b"page-b run 1"
    assert is_hit(second) is site.keeps
    if site.keeps:
        assert second.content == b"page-a run 1"
        assert second["Expires"] == first["Expires"]
        assert second["Cache-Control"] == f"max-age={SECONDS}"
        assert 0 <= int(second["Age"]) <= 2
    else:
        assert second.content == b"page-a run 2"
    # Under the key Django computes, in the middleware's alias and nowhere else.
    assert stored("/page/a/") is site.keeps
    assert page_key("/page/a/", alias="other") is None
    if not site.keeps:
        assert page_key("/page/a/") is None  # not even the header list was kept


def test_middleware_alias_and_key_prefix_settings(site: Site) -> None:
    with site.middleware(CACHE_MIDDLEWARE_ALIAS="other", CACHE_MIDDLEWARE_KEY_PREFIX="site"):
        client = Client()
        first, second = client.get("/page/m/"), client.get("/page/m/")
        assert stored("/page/m/", alias="other") is site.keeps  # prefix from the setting
    assert runs("page-m") == site.expect(1, 2)
    assert not is_hit(first) and is_hit(second) is site.keeps
    assert page_key("/page/m/", alias="other", key_prefix="") is None
    assert page_key("/page/m/", alias="default", key_prefix="site") is None


def test_vary_cookie_gives_separate_entries(site: Site) -> None:
    with site.middleware():
        client = Client()
        bodies = [client.get("/vary-cookie/").content]  # no Cookie header at all
        for flavour in ["oat", "oat", "rye", "oat", "rye"]:
            client.cookies["flavour"] = flavour
            bodies.append(client.get("/vary-cookie/").content)
    if site.keeps:
        expected = [1, 2, 2, 3, 2, 3]
    else:
        expected = [1, 2, 3, 4, 5, 6]
    assert bodies == [b"vary-cookie run %d" % n for n in expected]
    assert runs("vary-cookie") == site.expect(3, 6)
    assert stored("/vary-cookie/", HTTP_COOKIE="flavour=rye") is site.keeps
    assert not stored("/vary-cookie/", HTTP_COOKIE="flavour=spelt")


def test_vary_accept_language_without_i18n_gives_separate_entries(site: Site) -> None:
    with site.middleware(USE_I18N=False):
        client = Client()
        bodies = [client.get("/vary-language/", HTTP_ACCEPT_LANGUAGE=lang).content
                  for lang in ["en", "de", "en", "de"]]
        assert stored("/vary-language/", HTTP_ACCEPT_LANGUAGE="de") is site.keeps
        assert not stored("/vary-language/", HTTP_ACCEPT_LANGUAGE="fr")
    expected = [1, 2, 1, 2] if site.keeps else [1, 2, 3, 4]
    assert bodies == [b"vary-language run %d" % n for n in expected]


def test_vary_accept_language_with_i18n_keys_on_the_active_language(site: Site) -> None:
    # Django (#18191): with USE_I18N the key carries the active language, so the raw
    # Accept-Language is left out of it; without LocaleMiddleware the active language
    # stays "en" whatever the header says, and every header shares one entry.
    with site.middleware(USE_I18N=True):
        client = Client()
        bodies = [client.get("/vary-language/", HTTP_ACCEPT_LANGUAGE=lang).content
                  for lang in ["en", "de", "fr"]]
    expected = [1, 1, 1] if site.keeps else [1, 2, 3]
    assert bodies == [b"vary-language run %d" % n for n in expected]
    key = page_key("/vary-language/", HTTP_ACCEPT_LANGUAGE="de")
    if site.keeps:
        assert key is not None and key.endswith(".en") and caches["default"].has_key(key)
    else:
        assert key is None


def test_i18n_language_is_part_of_the_key(site: Site) -> None:
    with site.middleware(I18N_MIDDLEWARE):
        client = Client()
        headers = [{"HTTP_ACCEPT_LANGUAGE": "de"}, {"HTTP_ACCEPT_LANGUAGE": "de"},
                   {"HTTP_ACCEPT_LANGUAGE": "de-AT,de;q=0.9"}, {"HTTP_ACCEPT_LANGUAGE": "en"},
                   {}, {"HTTP_ACCEPT_LANGUAGE": "en"}]
        got = [client.get("/localized/", **meta) for meta in headers]
    # "de-AT" resolves to German: the same entry even though the header differs;
    # no header at all is LANGUAGE_CODE, English.
    expected_runs = [1, 1, 1, 2, 2, 2] if site.keeps else [1, 2, 3, 4, 5, 6]
    expected_lang = ["de", "de", "de", "en", "en", "en"]
    assert [r.content for r in got] == [
        f"{lang} run {n}".encode() for lang, n in zip(expected_lang, expected_runs)]
    assert [r["Content-Language"] for r in got] == expected_lang
    assert [is_hit(r) for r in got] == (
        [False, True, True, False, True, True] if site.keeps else [False] * 6)
    for lang in ("de", "en"):
        request = RequestFactory().get("/localized/")
        request.LANGUAGE_CODE = lang  # what LocaleMiddleware sets, and the key reads
        key = get_cache_key(request, cache=caches["default"])
        if site.keeps:
            assert key is not None and key.endswith(f".{lang}")
            assert caches["default"].has_key(key)
        else:
            assert key is None


@pytest.mark.parametrize(
    "path",
    ["/private/", "/no-cache/", "/no-store/", "/never/", "/max-age-0/", "/vary-star/",
     "/status/404/", "/status/500/", "/redirect/", "/sets-cookie-vary/"],
)
def test_responses_django_does_not_cache(site: Site, path: str) -> None:
    name = path.strip("/").replace("/", "-")
    with site.middleware():
        client = Client(raise_request_exception=False)
        responses = [client.get(path) for _ in range(3)]
    assert runs(name) == 3
    assert not any(is_hit(r) for r in responses)
    # Nothing learnt for the URL either: the next request goes straight to the view.
    assert page_key(path) is None


def test_cookie_set_without_vary_cookie_is_cached_with_it(site: Site) -> None:
    # Django keeps such a response (only Vary: Cookie together with a cookie stops it),
    # and serves its Set-Cookie with it.
    with site.middleware():
        client = Client()
        first = client.get("/sets-cookie/")
        del client.cookies["flavour"]  # the second request sends no cookie of its own
        second = client.get("/sets-cookie/")
    assert runs("sets-cookie") == site.expect(1, 2)
    assert is_hit(second) is site.keeps
    assert first.cookies["flavour"].value == second.cookies["flavour"].value == "oat"


def test_max_age_of_the_response_is_the_timeout(site: Site) -> None:
    with site.middleware():
        client = Client()
        first = client.get("/max-age-60/")
        second = client.get("/max-age-60/")
    assert first["Cache-Control"] == "max-age=60"
    assert abs(parse_http_date(first["Expires"]) - (time.time() + 60)) <= 2
    assert runs("max-age-60") == site.expect(1, 2)
    assert is_hit(second) is site.keeps


def test_post_neither_served_from_nor_stored_in_the_cache(site: Site) -> None:
    with site.middleware():
        client = Client()
        bodies = [client.get("/page/p/").content, client.post("/page/p/").content,
                  client.get("/page/p/").content]
    assert runs("page-p:POST") == 1
    assert bodies[1] == b"page-p run 2"
    # The GET after the POST is the first GET's entry (not the POST's response).
    assert bodies[2] == (b"page-p run 1" if site.keeps else b"page-p run 3")


# --- HEAD, as django/middleware/cache.py does it ------------------------------------


def test_head_is_served_from_what_get_stored(site: Site) -> None:
    with site.middleware():
        client = Client()
        client.get("/page/h/")
        head = client.head("/page/h/")
    assert head.status_code == 200 and head.content == b""
    assert runs("page-h:GET") == 1
    assert runs("page-h:HEAD") == site.expect(0, 1)
    assert is_hit(head) is site.keeps


def test_head_populates_its_own_entry_which_get_does_not_read(site: Site) -> None:
    with site.middleware():
        client = Client()
        client.head("/page/hh/")
        second_head = client.head("/page/hh/")
        # The URL's header list is shared by methods; the page is stored under HEAD.
        assert stored("/page/hh/", "HEAD") is site.keeps
        assert not stored("/page/hh/", "GET")
        get = client.get("/page/hh/")  # GET only looks under GET: the view runs
        assert stored("/page/hh/", "GET") is site.keeps
        third_head = client.head("/page/hh/")
    assert runs("page-hh:HEAD") == site.expect(1, 3)
    assert runs("page-hh:GET") == 1
    assert is_hit(second_head) is site.keeps and is_hit(third_head) is site.keeps
    assert not is_hit(get)
    assert get.content == (b"page-hh run 2" if site.keeps else b"page-hh run 3")


# --- cache_page --------------------------------------------------------------------


def test_cache_page_key_prefix(site: Site) -> None:
    client = Client()
    first, second = client.get("/decorated/prefix/"), client.get("/decorated/prefix/")
    assert runs("prefixed") == site.expect(1, 2)
    assert second.content == (b"prefixed run 1" if site.keeps else b"prefixed run 2")
    assert first["Cache-Control"] == "max-age=60"
    assert stored("/decorated/prefix/", key_prefix="pfx") is site.keeps
    # Nothing under the empty prefix, nor in the other alias.
    assert page_key("/decorated/prefix/", key_prefix="") is None
    assert page_key("/decorated/prefix/", alias="other", key_prefix="pfx") is None


def test_cache_page_cache_argument_uses_that_alias(site: Site) -> None:
    client = Client()
    client.get("/decorated/other/")
    client.get("/decorated/other/")
    assert runs("on-other") == site.expect(1, 2)
    assert stored("/decorated/other/", alias="other", key_prefix="") is site.keeps
    assert page_key("/decorated/other/", alias="default", key_prefix="") is None
    # Emptying "default" changes nothing; emptying "other" makes the view run again.
    caches["default"].clear()
    client.get("/decorated/other/")
    assert runs("on-other") == site.expect(1, 3)
    caches["other"].clear()
    client.get("/decorated/other/")
    assert runs("on-other") == site.expect(2, 4)


# --- {% cache %} fragments ---------------------------------------------------------


def test_fragments_vary_on_and_using(site: Site) -> None:
    client = Client()
    bodies = [client.get("/fragments/", {"who": who}).content.decode()
              for who in ["ann", "ann", "bob", "ann", "bob"]]
    assert runs("frag") == site.expect(2, 5)
    assert runs("elsewhere") == site.expect(2, 5)
    if site.keeps:
        assert "[frag ann run 1]" in bodies[3] and "[elsewhere ann run 1]" in bodies[3]
        assert "[frag bob run 2]" in bodies[4]
    # Each fragment under Django's key, in the cache its tag names.
    frag = make_template_fragment_key("frag", ["ann"])
    elsewhere = make_template_fragment_key("elsewhere", ["ann"])
    default, other = caches["default"], caches["other"]
    assert default.get(frag) == ("frag ann run 1" if site.keeps else None)
    assert other.get(elsewhere) == ("elsewhere ann run 1" if site.keeps else None)
    assert not other.has_key(frag) and not default.has_key(elsewhere)
    assert not default.has_key(make_template_fragment_key("frag", ["cyd"]))


# --- expiry ------------------------------------------------------------------------


def test_expiry_of_pages_cache_page_and_fragments(site: Site) -> None:
    if site.kind == "memcached":
        # memcached counts whole seconds: start at one's beginning for the full margin.
        site.servers["default"].wait_for_tick()
    elif site.kind == "db":
        # Django's database cache stores expiry in whole seconds, rounded down: start at
        # the beginning of one so that a 2 s row lives close to 2 s, not barely 1.
        time.sleep(1 - time.time() % 1 + 0.01)
    short = {"who": "eve", "timeout": 2}

    def visit() -> None:
        with site.middleware(CACHE_MIDDLEWARE_SECONDS=2):
            response = Client().get("/page/e/")
            assert response["Cache-Control"] == "max-age=2"
        # Without the middleware, so that only the decorator and the tag cache.
        client = Client()
        assert client.get("/decorated/short/")["Cache-Control"] == "max-age=2"
        client.get("/fragments/", short)

    visit()
    visit()
    assert (runs("page-e"), runs("short"), runs("frag")) == (site.expect(1, 2),) * 3
    # Past 2 s on every clock: memcached's whole seconds, the database's rounded ones.
    time.sleep(2.6 if site.keeps else 0)  # DummyCache has nothing to expire
    visit()
    assert (runs("page-e"), runs("short"), runs("frag")) == (site.expect(2, 3),) * 3


# --- the handler: one instance per thread, close() after every request --------------


def test_one_cache_instance_per_thread(site: Site) -> None:
    main = caches["default"]
    assert caches["default"] is main and caches["other"] is caches["other"]
    assert caches["other"] is not main
    client = Client()
    answers = [client.get("/lowlevel/").json(), client.get("/lowlevel/").json()]
    from_thread: list[Any] = []
    failed: list[BaseException] = []

    def in_thread() -> None:
        try:
            mine = caches["default"]
            from_thread.append((mine, mine is caches["default"]))
            from_thread.append(Client().get("/lowlevel/").json())
        except BaseException as exc:  # re-raised in the test's thread, where pytest sees it
            failed.append(exc)

    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join()
    if failed:
        raise failed[0]
    (theirs, theirs_stable), thread_answer = from_thread
    assert theirs_stable and theirs is not main
    # The view saw this thread's instance on both requests, the other thread's there.
    assert views.SEEN[0] is views.SEEN[1] is main
    assert views.SEEN[2] is theirs
    assert all(a["same"] for a in [*answers, thread_answer])
    # One store behind the instances: the other thread reads what this one computed;
    # and close() inside the view did not stop the instance from answering.
    expected = [1, 1, 1] if site.keeps else [1, 2, 3]
    assert [a["value"] for a in [*answers, thread_answer]] == expected
    assert [a["again"] for a in [*answers, thread_answer]] == (
        expected if site.keeps else [None] * 3)


def test_close_after_each_request_keeps_hitting(site: Site) -> None:
    finished: list[object] = []

    def count(sender: object, **kwargs: object) -> None:
        finished.append(sender)

    with site.middleware():
        client = Client()
        client.get("/page/warm/")  # opens whatever connections the backend keeps
        before = {a: s.stats()["total_connections"] for a, s in site.servers.items()}
        request_finished.connect(count)
        try:
            hits = [is_hit(client.get("/page/warm/")) for _ in range(50)]
        finally:
            request_finished.disconnect(count)
        after = {a: s.stats()["total_connections"] for a, s in site.servers.items()}
    # request_finished ran (and with it caches.close_all()) after every request...
    assert len(finished) == 50
    # ...and the cache answered every one of them.
    assert hits == [site.keeps] * 50
    assert runs("page-warm") == site.expect(1, 51)
    # No reconnection: the only new connection to each server is stats()'s own.
    for alias in site.servers:
        assert int(after[alias]) - int(before[alias]) == 1, alias


# --- async -------------------------------------------------------------------------


def test_async_view_on_aget_aset(site: Site) -> None:
    client = AsyncClient()
    get = async_to_sync(client.get)
    bodies = [get("/async/", {"k": k}).content for k in ["a", "a", "b", "a"]]
    if site.keeps:
        expected = [("a", 1), ("a", 1), ("b", 1), ("a", 1)]
    else:
        expected = [("a", 1), ("a", 2), ("b", 1), ("a", 3)]
    assert bodies == [f"async-{k} run {n}".encode() for k, n in expected]
    # What the async view stored is what the synchronous API reads.
    assert caches["default"].get("async-a") == (1 if site.keeps else None)
    assert caches["other"].get("async-a") is None


def test_async_view_under_the_site_middleware(site: Site) -> None:
    with site.middleware():
        get = async_to_sync(AsyncClient().get)
        responses = [get("/async-page/") for _ in range(3)]
    assert runs("async-page") == site.expect(1, 3)
    assert [is_hit(r) for r in responses] == [False, site.keeps, site.keeps]
    assert stored("/async-page/") is site.keeps
