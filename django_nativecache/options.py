"""Validation of a cache's OPTIONS: every bad or unknown option is an
ImproperlyConfigured error that names it."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

_UNITS = {
    "": 1, "b": 1,
    "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
    "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
    "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")


def parse_size(value: Any) -> int:
    """A byte count from an int or a string like "64MB", "512 KiB", "1g" (binary units)."""
    if isinstance(value, bool):
        raise ValueError("expected a size, got a bool")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match and match.group(2).lower() in _UNITS:
            return int(match.group(1)) * _UNITS[match.group(2).lower()]
    raise ValueError(f"expected a size such as 67108864 or '64MB', got {value!r}")


def parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer, got a bool")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():  # 1e4, which Django's int() takes
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise ValueError(f"expected an integer, got {value!r}")


def parse_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"expected a number of seconds above 0, got {value!r}")
    return float(value)


def in_range(lo: int, hi: int, parse: Callable[[Any], int] = parse_int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        number = parse(value)
        if not lo <= number <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {number}")
        return number

    return check


def count_option(lo: int, hi: int, default: int) -> tuple[Callable[[Any], int], int]:
    """The schema entry of MAX_ENTRIES or CULL_FREQUENCY: an integer in [lo, hi], and, as in
    Django, None for the default."""
    check = in_range(lo, hi)
    return (lambda value: default if value is None else check(value)), default


def one_of(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(map(repr, choices))}, got {value!r}")
        return value

    return check


def validate_options(
    backend: str,
    options: Mapping[str, Any],
    schema: Mapping[str, tuple[Callable[[Any], Any], Any]],
) -> dict[str, Any]:
    """Checks options against schema {NAME: (parser, default)}; returns parsed values."""
    if not isinstance(options, Mapping):
        raise ImproperlyConfigured(f"{backend}: OPTIONS must be a dict, got {options!r}")
    unknown = sorted(set(options) - set(schema))
    if unknown:
        raise ImproperlyConfigured(
            f"{backend}: unknown OPTIONS {', '.join(map(repr, unknown))} "
            f"(accepted: {', '.join(sorted(schema))})"
        )
    parsed: dict[str, Any] = {}
    for name, (parse, default) in schema.items():
        if name not in options:
            parsed[name] = default
            continue
        try:
            parsed[name] = parse(options[name])
        except (TypeError, ValueError) as exc:
            raise ImproperlyConfigured(f"{backend}: OPTIONS[{name!r}] {exc}") from None
    return parsed
