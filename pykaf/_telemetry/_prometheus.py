"""``PrometheusCollector``: clients' statistics as ``prometheus_client`` metric families.

A custom collector (what ``prometheus_client`` calls at each scrape): it reads each
client's ``StatsCollector`` snapshot then, so between scrapes a client pays only the
collector's per-event counting. Families (namespace ``pykaf``): every counter of
``Stats.counters`` as ``pykaf_<name>_total``, the gauges, the summed durations as
``pykaf_<name>_total`` (seconds), ``pykaf_api_requests_total{api}``, the latency
histograms as ``pykaf_<name>_seconds``, per broker ``pykaf_broker_*{broker}`` and per
partition ``pykaf_partition_*{topic,partition}``. Every sample carries ``client_id`` and
``client`` (the role, numbered from the second one: ``producer``, ``producer-2``), so one
collector serves every client of a process. Register one collector per registry and
``add()`` clients to it: prometheus_client refuses two collectors with the same names.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from pykaf._telemetry._histogram import Histogram
from pykaf._telemetry._source import bus_of, client_id_of
from pykaf._telemetry._stats import (
    COUNTERS,
    DURATIONS,
    GAUGES,
    HISTOGRAMS,
    Stats,
    StatsCollector,
)

__all__ = ["PrometheusCollector"]

_BROKER_COUNTERS = (
    ("requests", "requests answered by the broker"),
    ("request_bytes", "request bytes written to the broker"),
    ("response_bytes", "response bytes read from the broker"),
    ("connections_opened", "connections opened to the broker"),
    ("connections_failed", "connection attempts to the broker that failed"),
    ("throttles", "times the broker asked the client to slow down"),
)
_PARTITION_COUNTERS = (
    ("records_sent", "records sent to the partition (retries count again)"),
    ("records_acknowledged", "records the partition's leader acknowledged"),
    ("bytes_acknowledged", "batch bytes the partition's leader acknowledged"),
    ("records_retried", "records in batches retried"),
    ("records_failed", "records whose batch failed for good"),
)


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    cumulative = 0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip(histogram.bounds, histogram.counts, strict=False):
        cumulative += count
        buckets.append((repr(bound), cumulative))
    buckets.append(("+Inf", histogram.count))
    return buckets


class PrometheusCollector:
    """Collects the statistics of the clients given (and ``add``-ed) at each scrape."""

    def __init__(self, *clients: Any, namespace: str = "pykaf") -> None:
        self._namespace = namespace
        self._lock = threading.Lock()
        self._sources: list[tuple[str, StatsCollector]] = []
        self._roles: dict[str, int] = {}
        for client in clients:
            self.add(client)

    def add(self, client: Any, name: str | None = None) -> StatsCollector:
        """Start collecting ``client``'s statistics (``name``: its ``client`` label;
        default its role, numbered from the second one). Returns its collector."""
        collector = StatsCollector(bus_of(client), client_id_of(client))
        with self._lock:
            if name is None:
                role = type(client).__name__.lower()
                seen = self._roles[role] = self._roles.get(role, 0) + 1
                name = role if seen == 1 else f"{role}-{seen}"
            self._sources.append((name, collector))
        return collector

    def close(self) -> None:
        """Stop listening to every client (the registry may keep the collector)."""
        with self._lock:
            sources, self._sources = self._sources, []
        for _, collector in sources:
            collector.close()

    def describe(self) -> Iterable[Metric]:
        # The family names, so a registry can refuse a second collector with the same
        # ones (at register time, rather than an exposition with duplicates).
        return list(self._families([]))

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            sources = list(self._sources)
        snapshots = [(name, collector.snapshot()) for name, collector in sources]
        yield from self._families(snapshots)

    def _families(self, snapshots: list[tuple[str, Stats]]) -> Iterator[Metric]:
        ns = self._namespace
        base = ["client_id", "client"]

        def labels(name: str, stats: Stats) -> list[str]:
            return [stats.client_id or "", name]

        for counter in COUNTERS:
            family = CounterMetricFamily(f"{ns}_{counter}", counter.replace("_", " "), labels=base)
            for name, stats in snapshots:
                family.add_metric(labels(name, stats), stats.counters.get(counter, 0))
            yield family
        for duration in DURATIONS:
            family = CounterMetricFamily(
                f"{ns}_{duration}", duration.replace("_", " ") + " (summed)", labels=base
            )
            for name, stats in snapshots:
                family.add_metric(labels(name, stats), stats.durations.get(duration, 0.0))
            yield family
        for gauge in GAUGES:
            gauges = GaugeMetricFamily(f"{ns}_{gauge}", gauge.replace("_", " "), labels=base)
            for name, stats in snapshots:
                gauges.add_metric(labels(name, stats), stats.gauges.get(gauge, 0.0))
            yield gauges
        apis = CounterMetricFamily(
            f"{ns}_api_requests", "requests answered, by API", labels=[*base, "api"]
        )
        for name, stats in snapshots:
            for api, count in sorted(stats.requests_per_api.items()):
                apis.add_metric([*labels(name, stats), api], count)
        yield apis
        for histogram_name in HISTOGRAMS:
            histogram = HistogramMetricFamily(
                f"{ns}_{histogram_name}_seconds", histogram_name.replace("_", " "), labels=base
            )
            for name, stats in snapshots:
                h = stats.histograms[histogram_name]
                histogram.add_metric(labels(name, stats), _buckets(h), h.sum)
            yield histogram
        yield from self._broker_families(snapshots, labels)
        yield from self._partition_families(snapshots, labels)

    def _broker_families(self, snapshots: list[tuple[str, Stats]], labels: Any) -> Iterator[Metric]:
        ns = self._namespace
        keys = ["client_id", "client", "broker"]
        for field, help_text in _BROKER_COUNTERS:
            family = CounterMetricFamily(f"{ns}_broker_{field}", help_text, labels=keys)
            for name, stats in snapshots:
                for node, broker in sorted(stats.brokers.items()):
                    family.add_metric([*labels(name, stats), str(node)], getattr(broker, field))
            yield family
        open_ = GaugeMetricFamily(f"{ns}_broker_connections_open", "open connections", labels=keys)
        latency = HistogramMetricFamily(
            f"{ns}_broker_request_latency_seconds", "request latency by broker", labels=keys
        )
        for name, stats in snapshots:
            for node, broker in sorted(stats.brokers.items()):
                key = [*labels(name, stats), str(node)]
                open_.add_metric(key, broker.connections_open)
                latency.add_metric(key, _buckets(broker.latency), broker.latency.sum)
        yield open_
        yield latency

    def _partition_families(
        self, snapshots: list[tuple[str, Stats]], labels: Any
    ) -> Iterator[Metric]:
        ns = self._namespace
        keys = ["client_id", "client", "topic", "partition"]
        rows = [
            ([*labels(name, stats), topic, str(partition)], p)
            for name, stats in snapshots
            for (topic, partition), p in sorted(stats.partitions.items())
        ]
        for field, help_text in _PARTITION_COUNTERS:
            family = CounterMetricFamily(f"{ns}_partition_{field}", help_text, labels=keys)
            for key, p in rows:
                family.add_metric(key, getattr(p, field))
            yield family
        lag = GaugeMetricFamily(
            f"{ns}_partition_consumer_lag", "high watermark minus position", labels=keys
        )
        offset = GaugeMetricFamily(
            f"{ns}_partition_last_offset", "offset of the last record acknowledged", labels=keys
        )
        for key, p in rows:
            if p.consumer_lag is not None:
                lag.add_metric(key, p.consumer_lag)
            if p.last_offset is not None:
                offset.add_metric(key, p.last_offset)
        yield lag
        yield offset
