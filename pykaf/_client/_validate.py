"""Checks shared by every settings dataclass: each names the setting and says what to pass.

One place, so the client, producer and consumer settings word their errors alike.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

__all__ = [
    "MAX_INT32",
    "boolean",
    "choice",
    "count",
    "seconds",
    "settings_or_options",
    "unknown_setting",
]

MAX_INT32: Final = 2**31 - 1


def seconds(name: str, value: object, *, allow_zero: bool) -> float:
    """A finite duration in seconds, > 0 (or >= 0 with ``allow_zero``)."""
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > 0 or (allow_zero and value == 0))
    ):
        return float(value)
    want = ">= 0" if allow_zero else "> 0"
    raise ValueError(f"{name} must be a finite number of seconds {want}, not {value!r}")


def count(
    name: str, value: object, *, minimum: int = 1, maximum: int = MAX_INT32, unit: str = ""
) -> int:
    """An int (not a bool) in ``minimum..maximum``."""
    if type(value) is not int or not minimum <= value <= maximum:
        what = f" ({unit})" if unit else ""
        raise ValueError(f"{name} must be an int in {minimum}..{maximum}{what}, not {value!r}")
    return value


def boolean(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, not {value!r}")
    return value


def choice(name: str, value: object, choices: Sequence[str], hint: str = "") -> str:
    if isinstance(value, str) and value in choices:
        return value
    quoted = ", ".join(repr(c) for c in choices)
    raise ValueError(f"{name} must be one of {quoted}, not {value!r}{hint}")


def unknown_setting(kind: str, name: str, known: Sequence[str]) -> TypeError:
    """The error for a setting name nobody knows, naming the close ones."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}?" if close else f"known: {', '.join(known)}"
    return TypeError(f"unknown {kind} {name!r}; {hint}")


S = TypeVar("S")


def settings_or_options(
    settings: S | None, options: Mapping[str, Any], parse: Callable[[Mapping[str, Any]], S]
) -> S:
    """What every client constructor takes: a ready ``settings=`` object or keyword
    options (``parse``d and checked), never both."""
    if settings is None:
        return parse(options)
    if options:
        raise TypeError(
            f"pass either settings= or keyword options, not both (got {', '.join(options)})"
        )
    return settings
