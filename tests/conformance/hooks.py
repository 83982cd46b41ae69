"""Backend subclasses that the conformance checks name in ``CACHES``.

Django's ``CacheClosingTests`` and ``CustomCacheKeyValidationTests`` point at backends
defined in Django's test package (subclasses of ``LocMemCache``). Ours do the same
over any backend: ``register()`` records a mixin and a backend's dotted path and
returns a dotted path for ``CACHES["..."]["BACKEND"]``; the class is built the first
time Django imports it, so a backend that fails to import fails the tests that use
it rather than the collection of the whole module.
"""

from __future__ import annotations

from typing import Any

from django.utils.module_loading import import_string

_registry: dict[str, tuple[type, str]] = {}


class RejectedKey(Exception):
    """Raised by ``StrictKeys.validate_key``."""


class CloseRecorder:
    """Counts ``close()`` calls and still runs the backend's own ``close()``."""

    close_calls = 0

    def close(self, **kwargs: Any) -> None:
        self.close_calls += 1
        super().close(**kwargs)  # type: ignore[misc]


class LiberalKeys:
    """Accepts every key: no ``CacheKeyWarning``, whatever its length or characters."""

    def validate_key(self, key: str) -> None:
        pass


class StrictKeys:
    """Refuses keys containing ``forbidden``, on top of the backend's own checks."""

    def validate_key(self, key: str) -> None:
        if "forbidden" in key:
            raise RejectedKey(key)
        super().validate_key(key)  # type: ignore[misc]


def register(name: str, mixin: type, backend: str) -> str:
    """Declare ``<this module>.<name>`` as ``class name(mixin, <backend>)``."""
    previous = _registry.setdefault(name, (mixin, backend))
    if previous != (mixin, backend):
        raise ValueError(f"{name} is already registered for {previous}")
    return f"{__name__}.{name}"


def __getattr__(name: str) -> type:
    try:
        mixin, backend = _registry[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    cls = type(name, (mixin, import_string(backend)), {"__module__": __name__})
    globals()[name] = cls
    return cls
