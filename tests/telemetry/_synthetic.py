"""Synthetic events for the bridges' unit tests: every field given, time and client id
filled in."""

from __future__ import annotations

from typing import Any, TypeVar

from pykaf._telemetry._events import Event

E = TypeVar("E", bound=Event)

CLIENT_ID = "unit"


def make(kind: type[E], **fields: Any) -> E:
    fields.setdefault("time", 1_700_000_000.0)
    fields.setdefault("client_id", CLIENT_ID)
    return kind(**fields)
