"""``Outcomes``: the per-item answer of an admin call on many items.

Kafka answers a request on many topics, groups or partitions item by item; one item's
failure must neither hide the others nor pass unnoticed. So a call returns an
``Outcomes`` mapping: every item asked about is a key; reading a failed one raises that
item's own typed error (as a Java AdminClient future's ``get()`` does), ``ok`` holds the
items that succeeded and ``errors`` the ones that failed, and ``raise_for_errors()``
raises ``AdminItemsError`` naming each failed item at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Generic, TypeVar

from pykaf._errors import AdminItemsError, PykafError

__all__ = ["Outcomes"]

_K = TypeVar("_K")
_V = TypeVar("_V")


class Outcomes(Mapping[_K, _V], Generic[_K, _V]):
    """Item -> result; ``outcomes[item]`` raises the item's error if it failed."""

    __slots__ = ("_errors", "_ok", "_order")

    def __init__(self, ok: Mapping[_K, _V], errors: Mapping[_K, PykafError]) -> None:
        overlap = set(ok) & set(errors)
        if overlap:
            raise ValueError(f"items both succeeded and failed: {sorted(map(str, overlap))}")
        self._ok: Mapping[_K, _V] = MappingProxyType(dict(ok))
        self._errors: Mapping[_K, PykafError] = MappingProxyType(dict(errors))
        self._order = (*self._ok, *self._errors)

    @property
    def ok(self) -> Mapping[_K, _V]:
        """The items that succeeded, with their results."""
        return self._ok

    @property
    def errors(self) -> Mapping[_K, PykafError]:
        """The items that failed, with their typed errors."""
        return self._errors

    def __getitem__(self, item: _K) -> _V:
        try:
            return self._ok[item]
        except KeyError:
            error = self._errors.get(item)
            if error is None:
                raise
            raise error from None

    def __iter__(self) -> Iterator[_K]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, item: object) -> bool:
        return item in self._ok or item in self._errors

    def __repr__(self) -> str:
        failed = ", ".join(f"{k!r}: {type(e).__name__}" for k, e in self._errors.items())
        return f"<Outcomes ok={list(self._ok)!r} failed={{{failed}}}>"

    def raise_for_errors(self) -> None:
        """Raise ``AdminItemsError`` (its ``errors`` maps each failed item to its error)
        if any item failed."""
        if self._errors:
            raise AdminItemsError(dict(self._errors))
