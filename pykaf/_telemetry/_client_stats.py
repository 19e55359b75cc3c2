"""``ClientStats``: what backs ``stats()`` and ``stats_interval`` on every client.

One per client core (``AsyncClient``), shared by the role built on it (producer, consumer,
admin), because they share its event bus. Nothing listens until it must: the collector
is attached at the first ``stats()`` call (counting starts then), or at once when
``stats_interval`` asks for pushes (counting starts with the client), as librdkafka's
``statistics.interval.ms``.
"""

from __future__ import annotations

import threading

from pykaf._telemetry._bus import EventBus
from pykaf._telemetry._stats import Stats, StatsCollector
from pykaf._telemetry._stats_timer import StatsCallback, StatsTimer

__all__ = ["ClientStats"]


class ClientStats:
    """A client's statistics: its collector (made on demand) and its pusher, if any."""

    __slots__ = ("_bus", "_client_id", "_collector", "_lock", "_timer")

    def __init__(
        self,
        bus: EventBus,
        client_id: str | None,
        *,
        interval: float | None = None,
        callback: StatsCallback | None = None,
    ) -> None:
        self._bus = bus
        self._client_id = client_id
        self._lock = threading.Lock()
        self._collector: StatsCollector | None = None
        self._timer: StatsTimer | None = None
        if interval is not None and callback is not None:
            self._timer = StatsTimer(self._attached(), interval, callback)

    def _attached(self) -> StatsCollector:
        with self._lock:
            if self._collector is None:
                self._collector = StatsCollector(self._bus, self._client_id)
            return self._collector

    def snapshot(self) -> Stats:
        """The statistics now (the first call starts counting, unless pushes already did)."""
        return self._attached().snapshot()

    def close(self) -> None:
        """Stop the pushes and stop listening (the last snapshot stays readable)."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.close(wait=False)  # the client's close is bounded: no join here
        with self._lock:
            if self._collector is not None:
                self._collector.close()
