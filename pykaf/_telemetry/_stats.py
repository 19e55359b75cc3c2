"""``StatsCollector``: a client's statistics, built from its own event stream.

(Skeleton of issue 15: helper T4 fills it.) The collector subscribes to a client's
``EventBus`` only when asked for (the first ``stats()`` call, or ``stats_interval``), so a
client nobody watches pays nothing. ``snapshot()`` returns a plain frozen ``Stats`` value:
counters, gauges, per broker, per partition, consumer lag, latency histograms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pykaf._telemetry._bus import EventBus
from pykaf._telemetry._events import Event

__all__ = ["Stats", "StatsCollector"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Stats:
    """One snapshot of a client's statistics (a plain value: compare, print, serialise)."""

    time: float
    client_id: str | None
    counters: dict[str, int] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    brokers: dict[int, dict[str, Any]] = field(default_factory=dict)
    partitions: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)


class StatsCollector:
    """Counts a bus's events into ``Stats`` (see the module doc)."""

    def __init__(self, bus: EventBus, client_id: str | None) -> None:
        self._client_id = client_id
        self._unsubscribe = bus.subscribe(self.observe)

    def observe(self, event: Event) -> None:
        raise NotImplementedError

    def snapshot(self) -> Stats:
        raise NotImplementedError

    def close(self) -> None:
        self._unsubscribe()
