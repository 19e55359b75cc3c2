"""``StatsTimer``: a ``Stats`` snapshot pushed to a callback every ``interval`` seconds,
like librdkafka's ``statistics.interval.ms`` and its stats callback.

A daemon thread of its own (not the client's loop thread: a slow callback must not delay
the client), waiting on an ``Event`` so ``close()`` ends it at once. A callback that
raises is said at WARNING once, then its failures are counted (``failures``).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable

from pykaf._telemetry._stats import Stats, StatsCollector

__all__ = ["StatsCallback", "StatsTimer"]

log = logging.getLogger("pykaf.telemetry")

StatsCallback = Callable[[Stats], object]


class StatsTimer:
    """Calls ``callback(collector.snapshot())`` every ``interval`` seconds until
    ``close()`` (which also closes the collector when ``owns_collector``)."""

    def __init__(
        self,
        collector: StatsCollector,
        interval: float,
        callback: StatsCallback,
        *,
        owns_collector: bool = False,
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int | float):
            raise TypeError(f"interval is in seconds (a number), not {interval!r}")
        if not math.isfinite(interval) or interval <= 0:
            raise ValueError(f"interval must be a positive number of seconds, not {interval!r}")
        if not callable(callback):
            raise TypeError(f"callback must be a function(stats), not {callback!r}")
        self.collector = collector
        self.interval = float(interval)
        self.failures = 0
        self._callback = callback
        self._owns_collector = owns_collector
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pykaf-stats", daemon=True)
        self._thread.start()

    def __enter__(self) -> StatsTimer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._push()

    def _push(self) -> None:
        try:
            self._callback(self.collector.snapshot())
        except Exception as exc:  # the user's callback must not end the timer
            self.failures += 1
            if self.failures == 1:
                log.warning(
                    "the stats callback %r raised %s: %s (said once; later failures are"
                    " counted in .failures)",
                    self._callback,
                    type(exc).__name__,
                    exc,
                )

    def close(self, *, wait: bool = True) -> None:
        """Stop the pushes; with ``wait``, wait for a callback in progress (up to its
        interval). A client's close does not wait: it is bounded by its close_timeout."""
        self._stop.set()
        if wait and self._thread is not threading.current_thread():
            self._thread.join(self.interval + 5.0)
        if self._owns_collector:
            self.collector.close()
