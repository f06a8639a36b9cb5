"""Config value checks, in one place. Each returns the value it accepted or raises a one-line ValueError in
the project's format: `<key>=<value> is invalid: allowed values are <what is allowed>` (a ConfigError, a ValueError). The key is the full
config path (`sampler.beta`, `task.limit`) so that a user can paste the fix onto the command line.

A bool is never accepted as a number (YAML's `true` would otherwise pass as 1).
"""
from __future__ import annotations

import math
from typing import Any, Iterable


class ConfigError(ValueError):
    """A bad config value; raised before any model loads, with a one-line message (run.py prints it and exits)."""


def invalid(key: str, value: Any, allowed: str) -> ConfigError:
    """The error for `key=value`, naming what is allowed (`allowed` completes "allowed values are ...")."""
    return ConfigError(f"{key}={value!r} is invalid: allowed values are {allowed}")


def one_of(key: str, value: Any, allowed: Iterable) -> Any:
    allowed = tuple(allowed)
    if not any(a == value and isinstance(a, bool) == isinstance(value, bool) for a in allowed):
        raise invalid(key, value, ", ".join(_show(a) for a in allowed))
    return value


def flag(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise invalid(key, value, "true, false")
    return value


def integer(key: str, value: Any, *, minimum: int = 1, null: bool = False) -> int | None:
    """An int >= minimum (or None where `null`)."""
    if value is None and null:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise invalid(key, value, f"{'null or ' if null else ''}integers >= {minimum}")
    return value


def number(key: str, value: Any, *, above: float | None = None, at_least: float | None = None,
           below: float | None = None, at_most: float | None = None, finite: bool = True,
           null: bool = False, note: str = "") -> float | None:
    """A real number in the stated range (finite unless `finite=False`; None where `null`). `note` is added
    to the allowed values (e.g. "(0 = greedy)")."""
    if value is None and null:
        return None
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and not math.isnan(value)
    ok = ok and not (finite and math.isinf(value))
    ok = ok and (above is None or value > above) and (at_least is None or value >= at_least)
    ok = ok and (below is None or value < below) and (at_most is None or value <= at_most)
    if not ok:
        words = _range_words(above, at_least, below, at_most, "finite numbers" if finite else "numbers")
        raise invalid(key, value, ("null or " if null else "") + words + (f" {note}" if note else ""))
    return float(value)


def _range_words(above, at_least, below, at_most, kind: str) -> str:
    lo = ("(", above) if above is not None else ("[", at_least) if at_least is not None else None
    hi = (")", below) if below is not None else ("]", at_most) if at_most is not None else None
    if lo and hi:
        return f"{kind} in {lo[0]}{_show(lo[1])}, {_show(hi[1])}{hi[0]}"
    if lo:
        return f"{kind} {'>' if lo[0] == '(' else '>='} {_show(lo[1])}"
    if hi:
        return f"{kind} {'<' if hi[0] == ')' else '<='} {_show(hi[1])}"
    return kind


def _show(x: Any) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    if x is None:
        return "null"
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)
