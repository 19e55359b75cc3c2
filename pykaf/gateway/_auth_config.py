"""Settings dataclasses from plain mappings (a config file's sections), with errors that
name the section, the key and what would be accepted."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

__all__ = [
    "check_bool",
    "check_number",
    "check_str_map",
    "check_optional_str",
    "settings_from_mapping",
]

T = TypeVar("T")


def settings_from_mapping(cls: type[T], values: Mapping[str, Any], section: str) -> T:
    """``cls(**values)`` after checking that every key is one of its fields; a bad value
    fails in the class's own checks, and either error names ``section``."""
    if not isinstance(values, Mapping):
        raise ValueError(f"[{section}] must be a table of settings, not {type(values).__name__}")
    names = [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    for key in values:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"[{section}] has no setting {key!r}{hint}; known: {', '.join(sorted(names))}"
            )
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"[{section}] {exc}") from None


def check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, not {value!r}")


def check_number(
    name: str, value: object, *, low: float, optional: bool = False, integer: bool = False
) -> None:
    if value is None and optional:
        return
    good = False
    if isinstance(value, int | float) and not isinstance(value, bool):
        good = value >= low and (isinstance(value, int) or not integer)  # NaN: not >= low
    if not good:
        what = "a whole number" if integer else "a number"
        none = " (or none)" if optional else ""
        raise ValueError(f"{name} must be {what} >= {low:g}{none}, not {value!r}")


def check_optional_str(name: str, value: object) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"{name} must be a non-empty string (or none), not {value!r}")


def check_str_map(name: str, value: object) -> None:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f"{name} must map strings to strings, not {_shape(value)}")


def _shape(value: object) -> str:
    if isinstance(value, Mapping):
        return "a table with other values"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "a list"
    return repr(value)
