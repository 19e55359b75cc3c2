"""Event dispatch for subscribers that handle some event types: a handler per type,
found by name (``BatchSent`` -> ``_on_batch_sent``), looked up by ``type(event)`` in one
dict read per event."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pykaf._telemetry import _events
from pykaf._telemetry._events import Event

__all__ = ["handlers_of"]

_WORD = re.compile(r"(?<!^)(?=[A-Z])")


def handlers_of(owner: object) -> dict[type[Event], Callable[[Any], None]]:
    """``{event type: owner._on_<snake name>}`` for each handler ``owner`` defines."""
    found: dict[type[Event], Callable[[Any], None]] = {}
    for name in _events.__all__:
        kind = getattr(_events, name)
        handler = getattr(owner, "_on_" + _WORD.sub("_", name).lower(), None)
        if kind is not Event and handler is not None:
            found[kind] = handler
    return found
