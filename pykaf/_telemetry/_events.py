"""The events a client emits (``pykaf.events`` names them all): frozen values.

Every event carries ``time`` (seconds since the epoch, when it happened) and ``client_id``.
Durations are seconds (floats), sizes bytes, partitions ``(topic, partition)`` pairs (this
layer sits below the consumer's ``TopicPartition``). Broker ids are Kafka node ids (None while
only a bootstrap address is known). Events are per batch, request, connection or
rebalance, never per record (see ``_bus``).

This module is the skeleton of issue 15: the field lists below are the contract between
emitters (client core, producer, consumer) and the bridges (stats, statsd, Prometheus,
OpenTelemetry); add fields at the end with defaults, never reorder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "BatchAcknowledged",
    "BatchFailed",
    "BatchRetried",
    "BatchSent",
    "BufferFill",
    "CommitDone",
    "CommitFailed",
    "ConnectionClosed",
    "ConnectionFailed",
    "ConnectionOpened",
    "DowntimeBegan",
    "DowntimeEnded",
    "Event",
    "FetchDone",
    "GroupJoined",
    "GroupLost",
    "GroupRebalanced",
    "JournalFill",
    "LeaderMoved",
    "MetadataRefreshed",
    "ReplayFinished",
    "ReplayStarted",
    "RequestAnswered",
    "Throttled",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """What every event has."""

    time: float
    client_id: str | None


# -- client core (connections, requests, metadata) -------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionOpened(Event):
    """A connection is ready (TCP, TLS, ApiVersions, SASL done)."""

    broker: int | None
    address: str
    purpose: str
    time_to_connect: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionFailed(Event):
    """A connection attempt failed (``error`` is the exception's class name, ``reason``
    its message)."""

    broker: int | None
    address: str
    error: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed(Event):
    """An open connection ended (``reason``: why; ``error`` None when closed on purpose)."""

    broker: int | None
    address: str
    reason: str
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestAnswered(Event):
    """One request and its answer (``latency``: written to answer read)."""

    broker: int | None
    api: str
    version: int
    request_bytes: int
    response_bytes: int
    latency: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Throttled(Event):
    """A broker asked the client to slow down (``throttle_time`` seconds)."""

    broker: int | None
    api: str
    throttle_time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataRefreshed(Event):
    brokers: int
    topics: int
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderMoved(Event):
    topic: str
    partition: int
    old_leader: int | None
    new_leader: int | None
    leader_epoch: int | None = None


# -- producer ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchSent(Event):
    """A batch left for its leader (``compression_ratio``: encoded / raw bytes)."""

    topic: str
    partition: int
    broker: int | None
    records: int
    bytes: int
    compression_ratio: float
    attempt: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchAcknowledged(Event):
    topic: str
    partition: int
    broker: int | None
    records: int
    bytes: int
    base_offset: int
    latency: float


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchRetried(Event):
    topic: str
    partition: int
    records: int
    error: str
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchFailed(Event):
    topic: str
    partition: int
    records: int
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BufferFill(Event):
    """The producer's memory buffer (emitted when it changes by a tenth, at most)."""

    used_bytes: int
    limit_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalFill(Event):
    used_bytes: int
    limit_bytes: int
    pending_records: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DowntimeBegan(Event):
    """No broker of the cluster can be reached (custody keeps records meanwhile)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DowntimeEnded(Event):
    """A broker answers again: ``seconds`` down, ``records_saved`` while down."""

    seconds: float
    records_saved: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayStarted(Event):
    records: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayFinished(Event):
    records: int
    seconds: float


# -- consumer ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupJoined(Event):
    group_id: str
    member_id: str
    generation: int
    assignment: tuple[tuple[str, int], ...]
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupRebalanced(Event):
    group_id: str
    revoked: tuple[tuple[str, int], ...]
    assigned: tuple[tuple[str, int], ...]
    duration: float


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupLost(Event):
    group_id: str
    reason: str
    lost: tuple[tuple[str, int], ...] = field(default=())


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitDone(Event):
    group_id: str
    partitions: int
    latency: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitFailed(Event):
    group_id: str
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchDone(Event):
    """One fetch answer: records and bytes handed in, and the lag (high watermark minus
    position) per partition it covered, as ``(topic, partition, lag)``."""

    broker: int | None
    records: int
    bytes: int
    lag: tuple[tuple[str, int, int], ...] = ()
