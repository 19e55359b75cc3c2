"""What a bridge listens to: a client (anything with ``.events``) or an ``EventBus``."""

from __future__ import annotations

from typing import Any

from pykaf._telemetry._bus import EventBus

__all__ = ["bus_of", "client_id_of"]


def bus_of(source: Any) -> EventBus:
    """The ``EventBus`` of ``source``: the bus itself, or a client's ``.events``."""
    if isinstance(source, EventBus):
        return source
    bus = getattr(source, "events", None)
    if isinstance(bus, EventBus):
        return bus
    raise TypeError(
        "telemetry listens to a pykaf client (Producer, Consumer, Admin, Client and their"
        f" async twins: they have .events) or an EventBus, not {source!r}"
    )


def client_id_of(source: Any) -> str | None:
    """The client id a client was configured with, None if it does not say (the collector
    then takes the first event's)."""
    settings = getattr(source, "settings", None)
    for candidate in (getattr(settings, "client", None), settings):
        client_id = getattr(candidate, "client_id", None)
        if isinstance(client_id, str):
            return client_id
    return None
