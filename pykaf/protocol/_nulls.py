"""Refuse null arrays where the schema does not allow null.

kio's reader decodes an array length of -1 as None whatever the schema says (it checks
strings, not arrays), so a request with ``topics = null`` where Kafka's schema has no
``nullableVersions`` would reach the code that iterates it. Kafka's own parser refuses
such a request, and so do we, with an error that names the field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from pykaf._errors import RemoteProtocolError

__all__ = ["check_null_arrays"]

# Per entity class: (field name, may be null, entity class of the elements or None).
_Plan = tuple[tuple[str, bool, type | None], ...]
_PLANS: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is not None:
        return plan
    hints = typing.get_type_hints(cls)
    entries: list[tuple[str, bool, type | None]] = []
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        args = typing.get_args(hint)
        nullable = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
        if nullable:
            hint = next(a for a in args if a is not type(None))
        if typing.get_origin(hint) is not tuple:
            continue
        element = typing.get_args(hint)[0]
        nested: type | None = (
            element if isinstance(element, type) and dataclasses.is_dataclass(element) else None
        )
        if nullable and nested is None:
            continue  # nothing to check inside, and null is allowed
        entries.append((field.name, nullable, nested))
    plan = _PLANS[cls] = tuple(entries)
    return plan


def check_null_arrays(entity: Any, what: str) -> None:
    """Raise ``RemoteProtocolError`` if a non-nullable array (at any depth) is null."""
    for name, nullable, nested in _plan(type(entity)):
        value = getattr(entity, name)
        if value is None:
            if not nullable:
                raise RemoteProtocolError(
                    f"{what}: the array {name!r} is null, which its schema does not allow"
                )
            continue
        if nested is not None:
            for item in value:
                check_null_arrays(item, what)
