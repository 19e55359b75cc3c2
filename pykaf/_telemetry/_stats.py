"""``StatsCollector``: a client's statistics, built from its own event stream.

The collector subscribes to a client's ``EventBus`` only when asked for (``stats()``,
``stats_every``, a bridge), so a client nobody watches pays nothing. Each event costs one
dict lookup of its type and a few integer additions under a lock (events are per batch,
request or connection, never per record). ``snapshot()`` returns a plain frozen ``Stats``
value: counters, gauges, per broker, per partition, consumer lag, latency histograms.
Every counter is present from the start (at 0), so exporters see a stable set of names.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pykaf._telemetry._bus import EventBus
from pykaf._telemetry._dispatch import handlers_of
from pykaf._telemetry._events import (
    BatchAcknowledged,
    BatchFailed,
    BatchRetried,
    BatchSent,
    BufferFill,
    CommitDone,
    CommitFailed,
    ConnectionClosed,
    ConnectionFailed,
    ConnectionOpened,
    DowntimeBegan,
    DowntimeEnded,
    Event,
    FetchDone,
    GroupJoined,
    GroupLost,
    GroupRebalanced,
    JournalFill,
    LeaderMoved,
    MetadataRefreshed,
    ReplayFinished,
    ReplayStarted,
    RequestAnswered,
    Throttled,
)
from pykaf._telemetry._histogram import Histogram, HistogramCounts

__all__ = ["COUNTERS", "UNKNOWN_BROKER", "BrokerStats", "PartitionStats", "Stats", "StatsCollector"]

#: The broker key of what happened before a node id was known (a bootstrap address).
UNKNOWN_BROKER = -1

COUNTERS = (
    "records_sent",
    "batches_sent",
    "bytes_sent",
    "records_acknowledged",
    "batches_acknowledged",
    "bytes_acknowledged",
    "records_retried",
    "batches_retried",
    "records_failed",
    "batches_failed",
    "requests",
    "request_bytes",
    "response_bytes",
    "connections_opened",
    "connections_failed",
    "connections_closed",
    "throttles",
    "metadata_refreshes",
    "leader_moves",
    "downtimes",
    "records_saved_while_down",
    "replays",
    "records_replayed",
    "group_joins",
    "rebalances",
    "groups_lost",
    "commits",
    "commits_failed",
    "fetches",
    "records_fetched",
    "bytes_fetched",
)
GAUGES = (
    "buffer_used_bytes",
    "buffer_limit_bytes",
    "journal_used_bytes",
    "journal_limit_bytes",
    "journal_pending_records",
    "connections_open",
    "cluster_down",
    "assigned_partitions",
    "consumer_lag",
)
DURATIONS = ("downtime_seconds", "replay_seconds", "throttle_seconds")
HISTOGRAMS = ("request_latency", "batch_ack_latency", "time_to_connect", "commit_latency")


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerStats:
    """One broker as this client saw it (``latency``: its request latencies)."""

    requests: int
    request_bytes: int
    response_bytes: int
    latency: Histogram
    connections_open: int
    connections_opened: int
    connections_failed: int
    throttles: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionStats:
    """One partition: what was produced to it, and the consumer's lag on it (None until a
    fetch reported one)."""

    records_sent: int
    records_acknowledged: int
    bytes_acknowledged: int
    batches_acknowledged: int
    records_retried: int
    records_failed: int
    last_offset: int | None
    consumer_lag: int | None
    leader: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Stats:
    """One snapshot of a client's statistics (a plain value: compare, print, serialise).

    ``counters`` only grow; ``gauges`` are the latest values; ``durations`` are seconds
    summed (time down, replaying, throttled); ``requests_per_api`` counts answered
    requests by API name; ``brokers`` is keyed by node id (``UNKNOWN_BROKER``, -1, before
    one is known); ``histograms`` are latencies in seconds (``.p50``, ``.p99``)."""

    time: float
    client_id: str | None
    counters: dict[str, int] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    brokers: dict[int, BrokerStats] = field(default_factory=dict)
    partitions: dict[tuple[str, int], PartitionStats] = field(default_factory=dict)
    since: float = 0.0
    durations: dict[str, float] = field(default_factory=dict)
    requests_per_api: dict[str, int] = field(default_factory=dict)
    histograms: dict[str, Histogram] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The snapshot as JSON-ready dicts (histograms with their p50 / p99)."""

        def histogram(h: Histogram) -> dict[str, Any]:
            return {"count": h.count, "sum": h.sum, "p50": h.p50, "p99": h.p99}

        return {
            "time": self.time,
            "since": self.since,
            "client_id": self.client_id,
            "counters": dict(self.counters),
            "gauges": dict(self.gauges),
            "durations": dict(self.durations),
            "requests_per_api": dict(self.requests_per_api),
            "histograms": {name: histogram(h) for name, h in self.histograms.items()},
            "brokers": {
                str(node): {
                    "requests": b.requests,
                    "request_bytes": b.request_bytes,
                    "response_bytes": b.response_bytes,
                    "latency": histogram(b.latency),
                    "connections_open": b.connections_open,
                    "connections_opened": b.connections_opened,
                    "connections_failed": b.connections_failed,
                    "throttles": b.throttles,
                }
                for node, b in self.brokers.items()
            },
            "partitions": {
                f"{topic}/{partition}": {
                    "records_sent": p.records_sent,
                    "records_acknowledged": p.records_acknowledged,
                    "bytes_acknowledged": p.bytes_acknowledged,
                    "batches_acknowledged": p.batches_acknowledged,
                    "records_retried": p.records_retried,
                    "records_failed": p.records_failed,
                    "last_offset": p.last_offset,
                    "consumer_lag": p.consumer_lag,
                    "leader": p.leader,
                }
                for (topic, partition), p in self.partitions.items()
            },
        }


class _Broker:
    __slots__ = (
        "connections_failed",
        "connections_open",
        "connections_opened",
        "latency",
        "request_bytes",
        "requests",
        "response_bytes",
        "throttles",
    )

    def __init__(self) -> None:
        self.requests = self.request_bytes = self.response_bytes = 0
        self.connections_open = self.connections_opened = self.connections_failed = 0
        self.throttles = 0
        self.latency = HistogramCounts()

    def freeze(self) -> BrokerStats:
        return BrokerStats(
            requests=self.requests,
            request_bytes=self.request_bytes,
            response_bytes=self.response_bytes,
            latency=self.latency.snapshot(),
            connections_open=self.connections_open,
            connections_opened=self.connections_opened,
            connections_failed=self.connections_failed,
            throttles=self.throttles,
        )


class _Partition:
    __slots__ = (
        "batches_acknowledged",
        "bytes_acknowledged",
        "consumer_lag",
        "last_offset",
        "leader",
        "records_acknowledged",
        "records_failed",
        "records_retried",
        "records_sent",
    )

    def __init__(self) -> None:
        self.records_sent = self.records_acknowledged = self.bytes_acknowledged = 0
        self.batches_acknowledged = self.records_retried = self.records_failed = 0
        self.last_offset: int | None = None
        self.consumer_lag: int | None = None
        self.leader: int | None = None

    def freeze(self) -> PartitionStats:
        return PartitionStats(
            records_sent=self.records_sent,
            records_acknowledged=self.records_acknowledged,
            bytes_acknowledged=self.bytes_acknowledged,
            batches_acknowledged=self.batches_acknowledged,
            records_retried=self.records_retried,
            records_failed=self.records_failed,
            last_offset=self.last_offset,
            consumer_lag=self.consumer_lag,
            leader=self.leader,
        )


class StatsCollector:
    """Counts a bus's events into ``Stats`` (see the module doc). ``client_id`` None takes
    the first event's."""

    def __init__(self, bus: EventBus, client_id: str | None = None) -> None:
        self._client_id = client_id
        self._lock = threading.Lock()
        self._since = time.time()
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._gauges = dict.fromkeys(GAUGES, 0.0)
        self._durations = dict.fromkeys(DURATIONS, 0.0)
        self._apis: dict[str, int] = {}
        self._histograms = {name: HistogramCounts() for name in HISTOGRAMS}
        self._brokers: dict[int, _Broker] = {}
        self._partitions: dict[tuple[str, int], _Partition] = {}
        self._handlers = handlers_of(self)
        self._unsubscribe = bus.subscribe(self.observe)

    def observe(self, event: Event) -> None:
        """Count one event (the bus calls this; tests may too)."""
        handler = self._handlers.get(type(event))
        if handler is None:  # an event type added later: not counted, never an error
            return
        with self._lock:
            if self._client_id is None:
                self._client_id = event.client_id
            handler(event)

    def snapshot(self) -> Stats:
        with self._lock:
            return Stats(
                time=time.time(),
                since=self._since,
                client_id=self._client_id,
                counters=dict(self._counters),
                gauges=dict(self._gauges),
                durations=dict(self._durations),
                requests_per_api=dict(self._apis),
                histograms={name: h.snapshot() for name, h in self._histograms.items()},
                brokers={node: b.freeze() for node, b in self._brokers.items()},
                partitions={key: p.freeze() for key, p in self._partitions.items()},
            )

    def close(self) -> None:
        """Stop listening (the counts so far stay readable)."""
        self._unsubscribe()

    # -- one handler per event type (called under the lock) -----------------------------

    def _broker(self, node: int | None) -> _Broker:
        key = UNKNOWN_BROKER if node is None else node
        broker = self._brokers.get(key)
        if broker is None:
            broker = self._brokers[key] = _Broker()
        return broker

    def _partition(self, topic: str, partition: int) -> _Partition:
        key = (topic, partition)
        found = self._partitions.get(key)
        if found is None:
            found = self._partitions[key] = _Partition()
        return found

    def _on_connection_opened(self, event: ConnectionOpened) -> None:
        self._counters["connections_opened"] += 1
        self._gauges["connections_open"] += 1
        self._histograms["time_to_connect"].observe(event.time_to_connect)
        broker = self._broker(event.broker)
        broker.connections_opened += 1
        broker.connections_open += 1

    def _on_connection_failed(self, event: ConnectionFailed) -> None:
        self._counters["connections_failed"] += 1
        self._broker(event.broker).connections_failed += 1

    def _on_connection_closed(self, event: ConnectionClosed) -> None:
        self._counters["connections_closed"] += 1
        self._gauges["connections_open"] = max(0.0, self._gauges["connections_open"] - 1)
        broker = self._broker(event.broker)
        broker.connections_open = max(0, broker.connections_open - 1)

    def _on_request_answered(self, event: RequestAnswered) -> None:
        counters = self._counters
        counters["requests"] += 1
        counters["request_bytes"] += event.request_bytes
        counters["response_bytes"] += event.response_bytes
        self._apis[event.api] = self._apis.get(event.api, 0) + 1
        self._histograms["request_latency"].observe(event.latency)
        broker = self._broker(event.broker)
        broker.requests += 1
        broker.request_bytes += event.request_bytes
        broker.response_bytes += event.response_bytes
        broker.latency.observe(event.latency)

    def _on_throttled(self, event: Throttled) -> None:
        self._counters["throttles"] += 1
        self._durations["throttle_seconds"] += event.throttle_time
        self._broker(event.broker).throttles += 1

    def _on_metadata_refreshed(self, event: MetadataRefreshed) -> None:
        self._counters["metadata_refreshes"] += 1

    def _on_leader_moved(self, event: LeaderMoved) -> None:
        self._counters["leader_moves"] += 1
        self._partition(event.topic, event.partition).leader = event.new_leader

    def _on_batch_sent(self, event: BatchSent) -> None:
        counters = self._counters
        counters["batches_sent"] += 1
        counters["records_sent"] += event.records
        counters["bytes_sent"] += event.bytes
        self._partition(event.topic, event.partition).records_sent += event.records

    def _on_batch_acknowledged(self, event: BatchAcknowledged) -> None:
        counters = self._counters
        counters["batches_acknowledged"] += 1
        counters["records_acknowledged"] += event.records
        counters["bytes_acknowledged"] += event.bytes
        self._histograms["batch_ack_latency"].observe(event.latency)
        partition = self._partition(event.topic, event.partition)
        partition.records_acknowledged += event.records
        partition.bytes_acknowledged += event.bytes
        partition.batches_acknowledged += 1
        partition.last_offset = event.base_offset + event.records - 1
        if event.broker is not None:
            partition.leader = event.broker

    def _on_batch_retried(self, event: BatchRetried) -> None:
        self._counters["batches_retried"] += 1
        self._counters["records_retried"] += event.records
        self._partition(event.topic, event.partition).records_retried += event.records

    def _on_batch_failed(self, event: BatchFailed) -> None:
        self._counters["batches_failed"] += 1
        self._counters["records_failed"] += event.records
        self._partition(event.topic, event.partition).records_failed += event.records

    def _on_buffer_fill(self, event: BufferFill) -> None:
        self._gauges["buffer_used_bytes"] = event.used_bytes
        self._gauges["buffer_limit_bytes"] = event.limit_bytes

    def _on_journal_fill(self, event: JournalFill) -> None:
        self._gauges["journal_used_bytes"] = event.used_bytes
        self._gauges["journal_limit_bytes"] = event.limit_bytes
        self._gauges["journal_pending_records"] = event.pending_records

    def _on_downtime_began(self, event: DowntimeBegan) -> None:
        self._counters["downtimes"] += 1
        self._gauges["cluster_down"] = 1.0

    def _on_downtime_ended(self, event: DowntimeEnded) -> None:
        self._gauges["cluster_down"] = 0.0
        self._durations["downtime_seconds"] += event.seconds
        self._counters["records_saved_while_down"] += event.records_saved

    def _on_replay_started(self, event: ReplayStarted) -> None:
        self._counters["replays"] += 1

    def _on_replay_finished(self, event: ReplayFinished) -> None:
        self._counters["records_replayed"] += event.records
        self._durations["replay_seconds"] += event.seconds

    def _on_group_joined(self, event: GroupJoined) -> None:
        self._counters["group_joins"] += 1
        self._gauges["assigned_partitions"] = len(event.assignment)

    def _on_group_rebalanced(self, event: GroupRebalanced) -> None:
        self._counters["rebalances"] += 1
        assigned = self._gauges["assigned_partitions"]
        self._gauges["assigned_partitions"] = max(
            0.0, assigned - len(event.revoked) + len(event.assigned)
        )

    def _on_group_lost(self, event: GroupLost) -> None:
        self._counters["groups_lost"] += 1
        self._gauges["assigned_partitions"] = 0.0

    def _on_commit_done(self, event: CommitDone) -> None:
        self._counters["commits"] += 1
        self._histograms["commit_latency"].observe(event.latency)

    def _on_commit_failed(self, event: CommitFailed) -> None:
        self._counters["commits_failed"] += 1

    def _on_fetch_done(self, event: FetchDone) -> None:
        self._counters["fetches"] += 1
        self._counters["records_fetched"] += event.records
        self._counters["bytes_fetched"] += event.bytes
        if event.lag:
            partitions = self._partitions
            for topic, partition, lag in event.lag:
                self._partition(topic, partition).consumer_lag = lag
            self._gauges["consumer_lag"] = sum(
                p.consumer_lag for p in partitions.values() if p.consumer_lag is not None
            )
