"""Operations several groups time, and the values they use.

Each builder returns ``prepare(cache, n) -> Prepared``: it writes what the operation needs
(only what is missing, since a write can be slow), checks the answer once on the subject
so that a broken backend shows as an error rather than as fast, and hands back the timed
loop from harness, the same code for every subject.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

from .harness import NotApplicable, Prepared, cycle, loop_call1, loop_call2

POOL = 1000  # distinct keys an operation cycles over
SHORT = "hello world"

Prepare = Callable[[Any, int], Prepared]


def _object_of_pickled_size(size: int) -> dict[str, Any]:
    """A session-like dict whose highest-protocol pickle is exactly ``size`` bytes."""
    base = {
        "id": 48213,
        "user": "alice@example.com",
        "roles": ["editor", "viewer"],
        "active": True,
        "score": 0.875,
        "note": "",
    }
    for pad in range(size):
        candidate = dict(base, note="n" * pad)
        if len(pickle.dumps(candidate, pickle.HIGHEST_PROTOCOL)) == size:
            return candidate
    raise ValueError(f"no padding gives a {size}-byte pickle")


OBJ_187 = _object_of_pickled_size(187)
assert len(pickle.dumps(OBJ_187, pickle.HIGHEST_PROTOCOL)) == 187


def keys(prefix: str, count: int = POOL) -> list[str]:
    return [f"bench:{prefix}:{i}" for i in range(count)]


def windows(names: list[str], batch: int) -> list[list[str]]:
    """``names`` cut into consecutive batches of ``batch`` keys."""
    return [names[i : i + batch] for i in range(0, len(names), batch)]


def fill(cache: Any, names: list[str], value: Any) -> None:
    """Writes the keys that do not hold ``value`` yet."""
    got = cache.get_many(names)
    missing = [k for k in names if k not in got or got[k] != value]
    if missing:
        failed = cache.set_many(dict.fromkeys(missing, value))
        assert not failed, f"set_many failed for {len(failed)} keys"


def get_hit(prefix: str, value: Any) -> Prepare:
    def prepare(cache: Any, n: int) -> Prepared:
        names = keys(prefix)
        fill(cache, names, value)
        got = cache.get(names[1])
        assert got == value and type(got) is type(value), f"get returned {got!r}"
        items = cycle(names, n)
        get = cache.get
        return Prepared(lambda: loop_call1(get, items), items)

    return prepare


FRESH_GET = "get hit, new instance (ASGI)"


def fresh_instance_get(prefix: str, value: Any) -> Prepare:
    """A get hit through an instance made for it from the subject's CACHES entry, by
    Django's CacheHandler: under ASGI ``caches[alias]`` is per request task, so each
    request that touches the cache makes one (and never closes it)."""

    def prepare(cache: Any, n: int) -> Prepared:
        from django.core.cache import CacheHandler

        entry = getattr(cache, "bench_caches_entry", None)
        if entry is None:
            raise NotApplicable
        alias, settings_entry = entry
        make = CacheHandler({alias: dict(settings_entry)}).create_connection
        names = keys(prefix)
        fill(cache, names, value)

        def get(key: str) -> Any:
            return make(alias).get(key)

        got = get(names[1])
        assert got == value, f"get through a new instance returned {got!r}"
        items = cycle(names, n)
        return Prepared(lambda: loop_call1(get, items), items)

    return prepare


def get_miss(cache: Any, n: int) -> Prepared:
    names = keys("miss")
    got = cache.get(names[1])
    assert got is None, f"get of a missing key returned {got!r}"
    items = cycle(names, n)
    get = cache.get
    return Prepared(lambda: loop_call1(get, items), items)


def set_short(cache: Any, n: int) -> Prepared:
    names = keys("set")
    cache.delete(names[1])
    cache.set(names[1], SHORT)
    got = cache.get(names[1])
    assert got == SHORT, f"get after set returned {got!r}"
    items = cycle(names, n)
    set_ = cache.set
    return Prepared(lambda: loop_call2(set_, items, SHORT), items)


def get_many(batch: int) -> Prepare:
    def prepare(cache: Any, n: int) -> Prepared:
        names = keys("many")
        fill(cache, names, SHORT)
        batches = windows(names, batch)
        got = cache.get_many(batches[1])
        assert len(got) == batch and all(v == SHORT for v in got.values()), (
            f"get_many returned {len(got)} of {batch} keys"
        )
        items = cycle(batches, n)
        get_many_ = cache.get_many
        return Prepared(lambda: loop_call1(get_many_, items), items)

    return prepare


def set_many(batch: int) -> Prepare:
    def prepare(cache: Any, n: int) -> Prepared:
        batches = [dict.fromkeys(w, SHORT) for w in windows(keys("setmany"), batch)]
        cache.delete_many(list(batches[1]))
        failed = cache.set_many(batches[1])
        assert not failed, f"set_many failed for {len(failed)} keys"
        got = cache.get_many(list(batches[1]))
        assert len(got) == batch and all(v == SHORT for v in got.values()), (
            f"get_many after set_many returned {len(got)} of {batch} keys"
        )
        items = cycle(batches, n)
        set_many_ = cache.set_many
        return Prepared(lambda: loop_call1(set_many_, items), items)

    return prepare


def incr(cache: Any, n: int) -> Prepared:
    names = keys("ctr")
    for k in names:
        cache.set(k, 0)
    got = cache.incr(names[1])
    assert got == 1, f"incr of 0 returned {got!r}"
    got = cache.get(names[1])
    assert got == 1, f"get after incr returned {got!r}"
    items = cycle(names, n)
    incr_ = cache.incr
    return Prepared(lambda: loop_call1(incr_, items), items)
