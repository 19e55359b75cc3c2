"""``EventBus``: who hears a client's events, and the cost rule that keeps it free.

Every client (producer, consumer, admin, raw client) has one bus (``client.events``).
Emitters test ``bus.active`` before they build an event, so with nobody subscribed an
event costs one attribute read, and no emitter sits on a per-record path: events are per
batch, per request, per connection, per rebalance.

Subscribers run on the thread that emits (the client's loop thread, a journal feeder, the
caller's thread for some producer events): keep them short, never block. An exception in
a subscriber is logged once per subscriber (WARNING, with its type) and otherwise
ignored: telemetry must never break the client it watches.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import TypeAlias

from pykaf._telemetry._events import Event

__all__ = ["EventBus", "EventCallback"]

log = logging.getLogger("pykaf.telemetry")

EventCallback: TypeAlias = Callable[[Event], object]


class EventBus:
    """The subscribers of one client's events (see the module doc)."""

    __slots__ = ("_failed", "_lock", "_subscribers", "active")

    def __init__(self, subscribers: EventCallback | Iterable[EventCallback] | None = None):
        self._lock = threading.Lock()
        self._subscribers: tuple[EventCallback, ...] = ()
        self._failed: set[int] = set()
        #: True while someone listens: emitters test it before building an event.
        self.active = False
        if subscribers is not None:
            for callback in [subscribers] if callable(subscribers) else list(subscribers):
                self.subscribe(callback)

    def __repr__(self) -> str:
        return f"<EventBus subscribers={len(self._subscribers)}>"

    def subscribe(self, callback: EventCallback) -> Callable[[], None]:
        """Hear every event from now on; returns a function that unsubscribes."""
        if not callable(callback):
            raise TypeError(f"an event subscriber is a callable(event), not {callback!r}")
        with self._lock:
            self._subscribers = (*self._subscribers, callback)
            self.active = True

        def unsubscribe() -> None:
            with self._lock:
                kept = list(self._subscribers)
                if callback in kept:
                    kept.remove(callback)
                self._subscribers = tuple(kept)
                self.active = bool(kept)

        return unsubscribe

    def emit(self, event: Event) -> None:
        """Give ``event`` to every subscriber (the tuple read is atomic: no lock here)."""
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception as exc:  # a subscriber's bug must not break the client
                key = id(callback)
                if key not in self._failed:
                    self._failed.add(key)
                    log.warning(
                        "event subscriber %r raised %s (said once per subscriber; its"
                        " later failures are ignored silently)",
                        callback,
                        type(exc).__name__,
                    )
