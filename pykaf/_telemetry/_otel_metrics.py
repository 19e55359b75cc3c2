"""``OtelMetrics``: a client's statistics as OpenTelemetry instruments.

The same numbers as the stats snapshot, through an OTel ``Meter``: every counter of
``Stats.counters`` as an observable counter ``pykaf.<name>``, the gauges as observable
gauges, the summed durations as observable counters in seconds (all read from one
``StatsCollector`` when the SDK collects, so between collections a client pays only the
collector's counting). Latencies are histograms recorded per event (per request or
batch, never per record): ``pykaf.request.duration`` (by API and broker) and, from the
messaging semantic conventions, ``messaging.client.operation.duration`` (a batch sent
until acknowledged), ``messaging.client.sent.messages`` (by topic and partition, with
``error.type`` for failures) and ``messaging.client.consumed.messages``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from pykaf._telemetry._dispatch import handlers_of
from pykaf._telemetry._events import (
    BatchAcknowledged,
    BatchFailed,
    Event,
    FetchDone,
    RequestAnswered,
)
from pykaf._telemetry._source import bus_of, client_id_of
from pykaf._telemetry._stats import COUNTERS, DURATIONS, GAUGES, Stats, StatsCollector
from pykaf._version import __version__

__all__ = ["OtelMetrics"]

_BYTES = frozenset({"bytes_sent", "bytes_acknowledged", "request_bytes", "response_bytes"})


class OtelMetrics:
    """Publishes ``client``'s statistics through ``meter_provider`` (default: the global
    one) until ``close()``."""

    def __init__(self, client: Any, meter_provider: MeterProvider | None = None) -> None:
        bus = bus_of(client)
        self._client_id = client_id_of(client)
        self._stats = StatsCollector(bus, self._client_id)
        self._closed = False
        self._cached: tuple[float, Stats] | None = None
        self._lock = threading.Lock()
        meter = metrics.get_meter("pykaf", __version__, meter_provider=meter_provider)
        self._base: dict[str, Any] = {"messaging.system": "kafka"}
        if self._client_id:
            self._base["messaging.client.id"] = self._client_id
        for name in COUNTERS:
            unit = "By" if name in _BYTES else "{" + name.split("_")[0].rstrip("s") + "}"
            meter.create_observable_counter(
                f"pykaf.{name}", [self._observer("counters", name)], unit=unit
            )
        for name in DURATIONS:
            meter.create_observable_counter(
                f"pykaf.{name}", [self._observer("durations", name)], unit="s"
            )
        for name in GAUGES:
            meter.create_observable_gauge(f"pykaf.{name}", [self._observer("gauges", name)])
        self._request_duration = meter.create_histogram(
            "pykaf.request.duration", unit="s", description="request written to answer read"
        )
        self._operation_duration = meter.create_histogram(
            "messaging.client.operation.duration",
            unit="s",
            description="a batch sent until acknowledged",
        )
        self._sent = meter.create_counter("messaging.client.sent.messages", unit="{message}")
        self._consumed = meter.create_counter(
            "messaging.client.consumed.messages", unit="{message}"
        )
        self._handlers = handlers_of(self)
        self._unsubscribe = bus.subscribe(self._observe)

    def _snapshot(self, now: float) -> Stats:
        # One snapshot per collection, shared by every instrument's callback.
        with self._lock:
            if self._cached is None or now - self._cached[0] > 0.05:
                self._cached = (now, self._stats.snapshot())
            return self._cached[1]

    def _observer(
        self, group: str, name: str
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            if self._closed:
                return []
            values: dict[str, float] = getattr(self._snapshot(time.monotonic()), group)
            return [Observation(values.get(name, 0), self._base)]

        return observe

    def _observe(self, event: Event) -> None:
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def _on_request_answered(self, e: RequestAnswered) -> None:
        attributes = {
            **self._base,
            "pykaf.api": e.api,
            "pykaf.broker": -1 if e.broker is None else e.broker,
        }
        self._request_duration.record(e.latency, attributes)

    def _destination(self, topic: str, partition: int) -> dict[str, Any]:
        return {
            **self._base,
            "messaging.operation.name": "send",
            "messaging.destination.name": topic,
            "messaging.destination.partition.id": str(partition),
        }

    def _on_batch_acknowledged(self, e: BatchAcknowledged) -> None:
        attributes = self._destination(e.topic, e.partition)
        self._operation_duration.record(e.latency, attributes)
        self._sent.add(e.records, attributes)

    def _on_batch_failed(self, e: BatchFailed) -> None:
        self._sent.add(
            e.records, {**self._destination(e.topic, e.partition), "error.type": e.error}
        )

    def _on_fetch_done(self, e: FetchDone) -> None:
        self._consumed.add(e.records, {**self._base, "messaging.operation.name": "poll"})

    def snapshot(self) -> Stats:
        """The statistics behind the instruments."""
        return self._stats.snapshot()

    def close(self) -> None:
        """Stop listening; the observable instruments report nothing from now on."""
        self._closed = True
        self._unsubscribe()
        self._stats.close()
