"""Build Django's cache test classes re-pointed at one backend.

``make_suite()`` subclasses the backend-neutral classes of Django's ``tests/cache``
(and the ``{% cache %}`` tag tests) under a class-level ``override_settings`` whose
``CACHES`` name the backend under test, and adds this project's equivalents of the
few Django checks that are bound to Django's own test backends. A test module per
backend calls it and exposes the classes::

    globals().update(make_suite("Shm", BACKEND, LOCATION, module=__name__))

How each Django class gets its ``CACHES`` is kept: a class that declares its own
aliases (``CacheMiddlewareTest``'s ``default`` and ``other``, the ``Prefixed*``
variants' ``KEY_PREFIX``) keeps them with ``BACKEND`` replaced, ``BaseCacheTests``
gets ``caches_setting_for_tests()`` (every alias on one store), and a class with
none gets a single ``default``. Method-level overrides inside Django's classes still
win for their method; none of the classes used here overrides ``CACHES`` that way.

Importing this module skips the importing test module when Django's tests could not
be fetched (see ``djangotests.py``).
"""

from __future__ import annotations

import copy
import time
import unittest
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest
from django.apps import apps
from django.core import signals
from django.core.cache import DEFAULT_CACHE_ALIAS, CacheKeyWarning, cache, caches
from django.test import SimpleTestCase, TestCase, override_settings

from django_nativecache import decorators as native_decorators
from django_nativecache import middleware as native_middleware
from django_nativecache.backends.memcached import MemcachedCache
from tests.conformance import djangotests, hooks

if djangotests.ensure() is None or not apps.is_installed("cache"):
    pytest.skip(
        "Django's tests/cache could not be fetched for this Django version "
        "(see tests/conformance/djangotests.py)",
        allow_module_level=True,
    )

from cache import tests as dj  # noqa: E402  (Django's tests/cache/tests.py)
from template_tests.syntax_tests import test_cache as dj_template  # noqa: E402

Location = str | Callable[[str | None], str]

# Django classes run as they are, on the backend under test.
DJANGO_CLASSES: tuple[type, ...] = (
    dj.CacheMiddlewareTest,
    dj.CacheUtils,
    dj.PrefixedCacheUtils,
    dj.CacheHEADTest,
    dj.CacheI18nTest,
    dj.PrefixedCacheI18nTest,
    dj.TestWithTemplateResponse,
    dj.CacheHandlerTest,
    dj_template.CacheTagTests,
)


def _location_for(location: Location, own: str | None) -> str:
    """Our LOCATION for an alias whose Django original had ``own`` (None: shared)."""
    if callable(location):
        return location(own)
    return location if not own else f"{location}-{own}"


def cache_params(
    backend: str,
    location: Location,
    options: Mapping[str, Any] | None = None,
    original: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One ``CACHES`` entry: ``original``'s keys with our backend and store.

    ``options`` are the backend's own; the original's OPTIONS (e.g. MAX_ENTRIES)
    win over them.
    """
    params = copy.deepcopy(dict(original or {}))
    own_location = params.pop("LOCATION", None)
    params["BACKEND"] = backend
    params["LOCATION"] = _location_for(location, own_location)
    params.update(extra)
    merged = {**(options or {}), **params.get("OPTIONS", {})}
    if merged:
        params["OPTIONS"] = merged
    return params


def repoint_caches(
    original: Mapping[str, Mapping[str, Any]] | None,
    backend: str,
    location: Location,
    options: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """``original`` CACHES with every alias on our backend (just ``default`` if None)."""
    original = original or {DEFAULT_CACHE_ALIAS: {}}
    return {
        alias: cache_params(backend, location, options, params)
        for alias, params in original.items()
    }


def _apply_skips(cls: type, skips: Mapping[str, str]) -> None:
    for test_name, reason in skips.items():
        if not callable(getattr(cls, test_name, None)):
            raise ValueError(f"{cls.__name__} has no test {test_name!r} to skip")
        setattr(cls, test_name, unittest.skip(reason)(getattr(cls, test_name)))


# --- Our equivalents of Django checks bound to Django's own test backends --------


class ClosingChecks:
    """Django's ``CacheClosingTests``: ``close()`` runs when a request finishes, and
    the same instance keeps serving the next request."""

    closing_caches: dict[str, Any]

    def tearDown(self) -> None:
        cache.clear()

    def test_close(self) -> None:
        cache.set("closing", "value")
        self.assertEqual(cache.close_calls, 0)
        signals.request_finished.send(self.__class__)
        self.assertEqual(cache.close_calls, 1)
        self.assertEqual(cache.get("closing"), "value")
        cache.set("closing", "again")
        signals.request_finished.send(self.__class__)
        self.assertEqual(cache.close_calls, 2)
        self.assertEqual(cache.get("closing"), "again")

    def test_close_only_initialized(self) -> None:
        with self.settings(CACHES=self.closing_caches):
            self.assertEqual(caches.all(initialized_only=True), [])
            signals.request_finished.send(self.__class__)
            self.assertEqual(caches.all(initialized_only=True), [])


class KeyValidationChecks:
    """Django's ``CustomCacheKeyValidationTests``: a subclass's ``validate_key``
    replaces the backend's for every operation, in both directions."""

    # (operation, arguments) with KEY standing for the key under test.
    KEY = object()
    OPERATIONS: tuple[tuple[str, tuple[Any, ...]], ...] = (
        ("add", (KEY, 1)),
        ("get", (KEY,)),
        ("set", (KEY, 1)),
        ("touch", (KEY,)),
        ("incr", (KEY,)),
        ("decr", (KEY,)),
        ("has_key", (KEY,)),
        ("delete", (KEY,)),
        ("get_many", ([KEY, "b"],)),
        ("set_many", ({KEY: 1, "b": 2},)),
        ("delete_many", ([KEY, "b"],)),
    )

    def tearDown(self) -> None:
        cache.clear()

    def _args(self, args: tuple[Any, ...], key: str) -> list[Any]:
        def sub(value: Any) -> Any:
            if value is self.KEY:
                return key
            if isinstance(value, list):
                return [sub(v) for v in value]
            if isinstance(value, dict):
                return {sub(k): v for k, v in value.items()}
            return value

        return [sub(a) for a in args]

    def test_custom_key_validation(self) -> None:
        # Longer than 250 characters, with spaces: the default validation warns.
        key = "some key with spaces" * 15
        with warnings.catch_warnings():
            warnings.simplefilter("error", CacheKeyWarning)
            cache.set(key, "a value")
            self.assertEqual(cache.get(key), "a value")
            cache.delete(key)
            for operation, args in self.OPERATIONS:
                with self.subTest(operation=operation):
                    if operation in ("incr", "decr"):
                        cache.set(key, 5)
                    getattr(cache, operation)(*self._args(args, key))

    def test_subclass_validation_refuses(self) -> None:
        strict = caches["strict"]
        for operation, args in self.OPERATIONS:
            with self.subTest(operation=operation):
                with self.assertRaises(hooks.RejectedKey):
                    getattr(strict, operation)(*self._args(args, "forbidden-key"))
        # Keys the override accepts still work, and the backend's own check still
        # runs under it (super().validate_key).
        strict.set("allowed", 1)
        self.assertEqual(strict.get("allowed"), 1)
        with self.assertWarns(CacheKeyWarning):
            strict.set("allowed but spaced", 1)

    def test_instance_validation_override(self) -> None:
        def refuse(key: str) -> None:
            raise hooks.RejectedKey(key)

        strict = caches["strict"]
        strict.validate_key = refuse
        try:
            for operation, args in self.OPERATIONS:
                with self.subTest(operation=operation):
                    with self.assertRaises(hooks.RejectedKey):
                        getattr(strict, operation)(*self._args(args, "plain"))
        finally:
            del strict.validate_key


class DefaultTimeoutChecks:
    """Django's ``DefaultNonExpiringCacheKeyTests`` on our backend: the settings'
    ``TIMEOUT`` (unset, ``None``, a string) is the default for every write."""

    params: Callable[..., dict[str, Any]]

    def tearDown(self) -> None:
        cache.clear()

    def test_unset_timeout_is_300(self) -> None:
        self.assertEqual(caches[DEFAULT_CACHE_ALIAS].default_timeout, 300)

    def test_timeout_none_never_expires(self) -> None:
        with self.settings(CACHES={DEFAULT_CACHE_ALIAS: self.params(TIMEOUT=None)}):
            default = caches[DEFAULT_CACHE_ALIAS]
            self.assertIsNone(default.default_timeout)
            # As Django's backends report it: memcached's "never" is 0 on the wire.
            never = 0 if isinstance(default, MemcachedCache) else None
            self.assertEqual(default.get_backend_timeout(), never)
            default.set("forever", "value")
            self.assertEqual(default.get("forever"), "value")

    def test_settings_timeout_applies_to_writes(self) -> None:
        with self.settings(CACHES={DEFAULT_CACHE_ALIAS: self.params(TIMEOUT="1")}):
            default = caches[DEFAULT_CACHE_ALIAS]
            default.set("short-set", "value")
            self.assertIs(default.add("short-add", "value"), True)
            self.assertEqual(default.set_many({"short-many": "value"}), [])
            default.set("kept", "value", timeout=None)
            for key in ("short-set", "short-add", "short-many", "kept"):
                self.assertEqual(default.get(key), "value")
            time.sleep(2)
            for key in ("short-set", "short-add", "short-many"):
                with self.subTest(key=key):
                    self.assertIsNone(default.get(key))
            self.assertEqual(default.get("kept"), "value")


class StoreChecks:
    """Behaviour Django's ``LocMemCacheTests`` checks through LocMem's internals,
    checked here through the public API."""

    def tearDown(self) -> None:
        cache.clear()

    def test_multiple_locations_isolated(self) -> None:
        cache.set("value", 42)
        self.assertEqual(caches[DEFAULT_CACHE_ALIAS].get("value"), 42)
        self.assertIsNone(caches["other"].get("value"))

    def test_incr_decr_keep_expiry(self) -> None:
        cache.set("counter", 1, timeout=1)
        self.assertEqual(cache.incr("counter"), 2)
        self.assertEqual(cache.decr("counter"), 1)
        time.sleep(2)
        self.assertIsNone(cache.get("counter"))


# --- The factory ------------------------------------------------------------------


def make_suite(
    prefix: str,
    backend: str,
    location: Location,
    options: Mapping[str, Any] | None = None,
    *,
    module: str,
    exclude: Iterable[str] = (),
    base_tests: type | None = None,
    base_attrs: Mapping[str, Any] | None = None,
    skips: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, type]:
    """Test classes for ``backend``, keyed by class name (``<prefix><Django name>``).

    ``location`` is the store every shared alias uses; a Django alias with its own
    LOCATION gets ``f"{location}-{its LOCATION}"``, or ``location(its LOCATION)``
    when ``location`` is callable (for backends whose LOCATION is a server address).
    ``exclude`` drops aliases of ``caches_setting_for_tests`` (e.g. ``cull`` on
    memcached); ``base_tests`` replaces ``BaseCacheTests`` (e.g.
    ``BaseMemcachedTests``) and ``base_attrs`` sets attributes on it
    (``incr_decr_type_error``, ``base_params``). ``skips`` maps a Django or own class
    name to ``{test name: reason}``.
    """
    options = dict(options or {})
    skips = dict(skips or {})
    classes: dict[str, type] = {}

    def params(original: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        return cache_params(backend, location, options, original, **extra)

    def add(base_name: str, bases: tuple[type, ...], caches_setting: dict[str, Any],
            attrs: Mapping[str, Any] | None = None) -> None:
        name = f"{prefix}{base_name}"
        namespace = {
            "__module__": module,
            "__qualname__": name,
            "__doc__": f"{base_name} on {backend}.",
            **(attrs or {}),
        }
        cls = type(name, bases, namespace)
        cls = override_settings(CACHES=caches_setting)(cls)
        _apply_skips(cls, skips.pop(base_name, {}))
        classes[name] = cls

    base = base_tests or dj.BaseCacheTests
    aliases = dj.caches_setting_for_tests(exclude=set(exclude))
    add(base.__name__, (base, TestCase), repoint_caches(aliases, backend, location, options),
        base_attrs)

    for django_class in DJANGO_CLASSES:
        original = (django_class._overridden_settings or {}).get("CACHES")
        add(django_class.__name__, (django_class,),
            repoint_caches(original, backend, location, options))

    closeable = hooks.register(f"{prefix}Closeable", hooks.CloseRecorder, backend)
    add("CacheClosingTests", (ClosingChecks, SimpleTestCase),
        {DEFAULT_CACHE_ALIAS: params(BACKEND=closeable)},
        {"closing_caches": {alias: params(BACKEND=closeable) for alias in ("cache_1", "cache_2")}})

    liberal = hooks.register(f"{prefix}LiberalKeys", hooks.LiberalKeys, backend)
    strict = hooks.register(f"{prefix}StrictKeys", hooks.StrictKeys, backend)
    add("CustomCacheKeyValidationTests", (KeyValidationChecks, SimpleTestCase),
        {DEFAULT_CACHE_ALIAS: params(BACKEND=liberal), "strict": params(BACKEND=strict)})

    add("DefaultTimeoutTests", (DefaultTimeoutChecks, SimpleTestCase),
        {DEFAULT_CACHE_ALIAS: params()}, {"params": staticmethod(params)})

    add("StoreTests", (StoreChecks, SimpleTestCase),
        {DEFAULT_CACHE_ALIAS: params(), "other": params({"LOCATION": "other"})})

    if skips:
        raise ValueError(f"skips name unknown classes: {sorted(skips)}")
    return classes


# --- Django's middleware tests on our drop-in middleware -------------------------

# Django classes that build the cache middleware or cache_page themselves.
MIDDLEWARE_CLASSES: tuple[type, ...] = (
    dj.CacheMiddlewareTest,
    dj.CacheHEADTest,
    dj.CacheI18nTest,
    dj.PrefixedCacheI18nTest,
    dj.TestWithTemplateResponse,
)
# Names Django's test module imported from django.middleware.cache and
# django.views.decorators.cache, and ours that replace them.
NATIVE_NAMES = {
    "CacheMiddleware": native_middleware.CacheMiddleware,
    "FetchFromCacheMiddleware": native_middleware.FetchFromCacheMiddleware,
    "UpdateCacheMiddleware": native_middleware.UpdateCacheMiddleware,
    "cache_page": native_decorators.cache_page,
}


class NativeMiddleware:
    """Runs a Django test class with our middleware and ``cache_page`` in place of
    Django's, by rebinding the names its module imported, for the class's duration."""

    @classmethod
    def setUpClass(cls) -> None:
        saved = {name: getattr(dj, name) for name in NATIVE_NAMES}
        for name, ours in NATIVE_NAMES.items():
            setattr(dj, name, ours)

        def restore() -> None:
            for name, theirs in saved.items():
                setattr(dj, name, theirs)

        cls.addClassCleanup(restore)  # type: ignore[attr-defined]
        super().setUpClass()  # type: ignore[misc]


class UnpicklableResponseChecks:
    """The one ``BaseCacheTests`` test that drives the middleware."""

    factory = dj.BaseCacheTests.factory
    tearDown = dj.BaseCacheTests.tearDown
    test_cache_write_unpicklable_object = dj.BaseCacheTests.test_cache_write_unpicklable_object


def make_middleware_suite(
    prefix: str,
    backend: str,
    location: Location,
    options: Mapping[str, Any] | None = None,
    *,
    module: str,
) -> dict[str, type]:
    """Django's middleware test classes on ``backend`` and our middleware, keyed by
    class name (``<prefix><Django name>``)."""
    classes: dict[str, type] = {}
    for django_class in (*MIDDLEWARE_CLASSES, UnpicklableResponseChecks):
        original = (getattr(django_class, "_overridden_settings", None) or {}).get("CACHES")
        bases = (NativeMiddleware, django_class)
        if django_class is UnpicklableResponseChecks:
            bases = (NativeMiddleware, django_class, SimpleTestCase)
        name = f"{prefix}{django_class.__name__}"
        cls = type(name, bases, {
            "__module__": module,
            "__qualname__": name,
            "__doc__": f"{django_class.__name__} on {backend}, through our middleware.",
        })
        classes[name] = override_settings(
            CACHES=repoint_caches(original, backend, location, options))(cls)
    return classes
