"""What the accumulator keeps: batches, per-partition queues, per-topic state, and the
checks a record passes before it is taken.

Mutable, slotted classes rather than frozen dataclasses: they are made per batch and
updated per record on the produce hot path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import deque
from collections.abc import Iterable
from itertools import pairwise
from typing import Any, Final

from pykaf._producer._delivery import Report
from pykaf._producer._future import DeliveryFuture
from pykaf._producer._partitioner import Partitioner, make_partitioner
from pykaf._producer._receipt import ReceiptRun
from pykaf._producer._settings import ProducerSettings
from pykaf.protocol._records import BATCH_OVERHEAD

__all__ = [
    "split_batch",
    "FUTURES",
    "PYTHON_RECORD_COST",
    "PYTHON_REPORT_COST",
    "RECORD_OVERHEAD",
    "Batch",
    "PartitionQueue",
    "TopicQueues",
    "TopicUnknownError",
    "as_bytes",
    "bad_timestamp",
    "check_headers",
    "check_report",
    "normalise",
]

# Bytes a record costs beyond its key, value and headers in a v2 batch, for small ones:
# length, attributes, timestamp delta, offset delta, key and value lengths, header count.
# An estimate (varints grow with the values); batches are sized with it.
RECORD_OVERHEAD: Final = 12
# What a buffered record costs in memory beyond the bytes RECORD_OVERHEAD counts:
# measured with tracemalloc (tests/producer/test_buffer_memory.py), CPython 3.11, 64-bit:
# the record tuple, its list slot and the value's bytes object header come to ~104 bytes
# (a key's bytes object ~40 more: counted as half of that, keys being common); a report
# (index, callback or future) ~190, and the index's int object (28) once past CPython's
# cached small ints (256): most of a batch's, batches being 256 KiB. Counted against
# buffer_memory when a batch is sealed.
PYTHON_RECORD_COST: Final = 124
PYTHON_REPORT_COST: Final = 218
_HEADER_OVERHEAD: Final = 4
_RESERVE_STEP: Final = 16384
_STICKY: Final = frozenset({"sticky", "murmur2", "sticky_round_robin"})
FUTURES: Final = frozenset({concurrent.futures.Future, asyncio.Future, DeliveryFuture})


class TopicUnknownError(Exception):
    """Internal: the topic's metadata is not known yet (the producer fetches it, then
    appends again). Never reaches the caller."""

    def __init__(self, topic: str) -> None:
        super().__init__(topic)
        self.topic = topic


class Batch:
    """Records for one partition, sent together. Mutable, slotted: made once per batch
    and updated as it is filled, sent, retried.

    Appending threads touch ``records``, ``reports`` and ``size`` under the accumulator's
    lock while the batch is open; once drained only the event loop touches it."""

    __slots__ = (
        "attempts",
        "base_sequence",
        "children_left",
        "created",
        "created_ms",
        "deadline",
        "done",
        "encoded",
        "identity",
        "journal_first",
        "journal_last",
        "last_error",
        "maybe_persisted",
        "originals",
        "parent",
        "part",
        "partition",
        "pinned",
        "records",
        "reports",
        "reserved",
        "sealed",
        "sent_at",
        "serial",
        "size",
        "topic",
    )

    def __init__(
        self, part: PartitionQueue, serial: int, created: float, created_ms: int, deadline: float
    ) -> None:
        self.part = part
        self.topic = part.topic.name
        self.partition = part.index
        self.serial = serial
        self.records: list[tuple[Any, Any, Any, Any]] = []
        self.reports: list[tuple[int, Report]] | None = None
        self.size = BATCH_OVERHEAD
        self.reserved = 0
        self.created = created
        self.created_ms = created_ms
        self.deadline = deadline
        self.sealed = False
        # -- sending state (event loop only) --
        self.attempts = 0
        self.maybe_persisted = False
        self.last_error: BaseException | None = None
        self.identity: object | None = None  # the ProducerIdentity of base_sequence
        self.base_sequence = -1
        self.encoded: bytes | None = None
        self.done = False
        # Split (MESSAGE_TOO_LARGE): the halves point at the batch they came from, which
        # stays the unit of memory and flush accounting until both halves are done.
        self.parent: Batch | None = None
        self.children_left = 0
        # Custody "journal": the journal serials of its first and last record (-1: none).
        self.journal_first = -1
        self.journal_last = -1
        # A batch replayed after a crash with the identity and base sequence it was sent
        # with before (journaled): the sender must not give it new ones. The replay's
        # tally (``_replay_identity.ReplayTally``) that counts its outcome; None otherwise.
        self.pinned: Any = None
        # transform_batch: the records the caller produced, once ``records`` holds what
        # the hook made of them (None: not transformed). See ``_transform``.
        self.originals: list[tuple[Any, Any, Any, Any]] | None = None
        # When its request left (loop clock), for BatchAcknowledged's latency: set only
        # while someone listens to the producer's events (0.0 otherwise).
        self.sent_at = 0.0

    def __repr__(self) -> str:
        return (
            f"<Batch {self.topic}-{self.partition} #{self.serial} {len(self.records)} records"
            f" seq={self.base_sequence}>"
        )


def split_batch(batch: Batch, pieces: int = 2) -> list[Batch]:
    """``batch`` in ``pieces`` parts (halves by default; at most one a record), oldest
    records first, for a broker that refused it as too large (MESSAGE_TOO_LARGE). The
    parts keep its serial, times and deadline; with a sequence, the first keeps its base
    sequence and each next follows on, so the records keep the sequences they had (as
    the Java client splits) and batches behind them stay valid. The parts carry no
    memory of their own: ``batch`` keeps it."""
    records = batch.records
    pieces = max(2, min(pieces, len(records)))
    bounds = [len(records) * i // pieces for i in range(pieces + 1)]
    halves = []
    for start, stop in pairwise(bounds):
        half = Batch(batch.part, batch.serial, batch.created, batch.created_ms, batch.deadline)
        half.records = records[start:stop]
        if batch.reports:
            half.reports = _reports_within(batch.reports, start, stop)
        half.size = BATCH_OVERHEAD + sum(_record_size(r) for r in half.records)
        half.sealed = True
        half.attempts = batch.attempts
        half.identity = batch.identity
        if batch.base_sequence >= 0:
            half.base_sequence = (batch.base_sequence + start) & 0x7FFFFFFF
        half.parent = batch
        halves.append(half)
    batch.children_left = len(halves)
    return halves


def _reports_within(
    reports: list[tuple[int, Report]], start: int, stop: int
) -> list[tuple[int, Report]] | None:
    """The reports of records ``start`` to ``stop - 1``, placed from 0 (a run of a
    receipt in its part only)."""
    within: list[tuple[int, Report]] = []
    for index, report in reports:
        if report.__class__ is ReceiptRun:
            part = report.split(index, start, stop)
            if part is not None:
                within.append(part)
        elif start <= index < stop:
            within.append((index - start, report))
    return within or None


def _record_size(record: tuple[Any, Any, Any, Any]) -> int:
    """The size estimate ``Accumulator.append`` makes for a record (inline there: it is
    the hot path), recomputed for a record already taken."""
    key, value, headers, _ = record
    size = RECORD_OVERHEAD + (len(value) if value is not None else 0)
    size += len(key) if key is not None else 0
    if headers:
        size += check_headers(headers)[1]  # the estimate the append made
    return size


class PartitionQueue:
    """One partition's batches, oldest first, and its sending state.

    ``batches`` and ``open`` are guarded by the accumulator's lock; the rest belongs to
    the event loop (the drain reads it under the lock, from the loop)."""

    __slots__ = (
        "batches",
        "in_flight",
        "in_flight_node",
        "index",
        "last_error",
        "leader",
        "open",
        "retries",
        "retry_at",
        "returned",
        "sequence",
        "topic",
    )

    def __init__(self, topic: TopicQueues, index: int) -> None:
        self.topic = topic
        self.index = index
        self.batches: deque[Batch] = deque()
        self.open: Batch | None = None  # the last batch, while it takes records
        self.leader = -1
        # -- event loop only --
        self.in_flight = 0
        self.in_flight_node = -1
        # Batches that failed and will be retried, held until every batch of this
        # partition in flight has come back, then put back in front in order.
        self.returned: list[Batch] = []
        self.retry_at = 0.0
        self.retries = 0
        self.last_error: BaseException | None = None  # why it could not be sent lately
        self.sequence: Any = None  # idempotence state (see _idempotence.PartitionSequence)

    def __repr__(self) -> str:
        return f"<PartitionQueue {self.topic.name}-{self.index} {len(self.batches)} batches>"


class TopicQueues:
    """A topic's partitions and the settings it is produced with."""

    __slots__ = (
        "available",
        "batch_limit",
        "can_stick",
        "capped_at",
        "compression",
        "compression_level",
        "count",
        "linger",
        "name",
        "partitioner",
        "parts",
        "reserve",
        "sticky",
        "topic_id",
    )

    def __init__(self, name: str, settings: ProducerSettings, rng: Any = None) -> None:
        own = settings.for_topic(name)
        self.name = name
        self.topic_id: Any = None
        self.partitioner: Partitioner = make_partitioner(own.partitioner, rng=rng)
        # The built-in sticky strategies place keyless records on one partition until
        # on_new_batch() or new metadata: remember it, and skip the call per record.
        self.can_stick = getattr(self.partitioner, "name", None) in _STICKY
        self.sticky: PartitionQueue | None = None
        self.linger = own.linger
        self.compression = own.compression
        self.compression_level = own.compression_level
        self.batch_limit = self.reserve = 0
        self.capped_at = 0.0  # when a refusal capped batch_limit (TopicTable), or 0.0
        self.uncap(settings)
        self.count = 0
        self.available: tuple[int, ...] = ()
        self.parts: list[PartitionQueue] = []

    def uncap(self, settings: ProducerSettings) -> None:
        """Batches up to the topic's ``batch_size`` (a cap a refusal taught, lifted)."""
        # A batch never grows past a request: the request limit caps the batch size.
        limit = min(settings.for_topic(self.name).batch_size, settings.max_request_size)
        self.batch_limit = max(limit, BATCH_OVERHEAD + 1)
        # Memory is reserved per batch in steps of this (see Accumulator._room).
        self.reserve = min(self.batch_limit, _RESERVE_STEP)
        self.capped_at = 0.0


def as_bytes(value: object, what: str) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes):
        return bytes(value)  # a bytes subclass: plain bytes for the encoder
    if isinstance(value, bytearray | memoryview):
        # A copy: the caller may reuse its buffer once produce() returns.
        return memoryview(value).tobytes()
    raise TypeError(f"{what} must be bytes, str or None, not {type(value).__name__}")


def check_headers(headers: object) -> tuple[list[tuple[str, bytes | None]], int]:
    items = headers.items() if isinstance(headers, dict) else headers
    if isinstance(items, str | bytes) or not isinstance(items, Iterable):
        raise TypeError(
            f"headers must be a dict or a list of (name, value) pairs, not {type(headers).__name__}"
        )
    out: list[tuple[str, bytes | None]] = []
    size = 0
    for item in items:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise TypeError(f"each header must be a (name, value) pair, not {item!r}")
        name, value = item
        if not isinstance(name, str):
            raise TypeError(f"a header name must be a str, not {type(name).__name__}")
        if value is not None and type(value) is not bytes:
            value = as_bytes(value, f"header {name!r}")
        out.append((name, value))
        size += len(name) * 4 + (0 if value is None else len(value)) + _HEADER_OVERHEAD
    return out, size


def check_report(report: object) -> None:
    """Refuse a report that is neither a callback nor a future, at the call."""
    if report is None or callable(report):
        return
    if not isinstance(report, asyncio.Future | concurrent.futures.Future):
        raise TypeError(f"on_delivery must be a function (metadata, error), not {report!r}")


def normalise(key: Any, value: Any, headers: Any, timestamp: Any) -> tuple[Any, Any, Any, int]:
    """Checked ``(key, value, headers, estimated size)`` of one record.

    ``Accumulator.append`` inlines these same checks (a call per record is measurable on
    the hot path): change both together."""
    if value is not None and value.__class__ is not bytes:
        value = as_bytes(value, "value")
    size = RECORD_OVERHEAD if value is None else RECORD_OVERHEAD + len(value)
    if key is not None:
        if key.__class__ is not bytes:
            key = as_bytes(key, "key")
        size += len(key)
    if headers is not None:
        headers, extra = check_headers(headers)
        size += extra
        if not headers:
            headers = None
    if timestamp is not None and (timestamp.__class__ is not int or timestamp < 0):
        raise bad_timestamp(timestamp)
    return key, value, headers, size


def bad_timestamp(timestamp: object) -> Exception:
    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        return ValueError(f"timestamp must be >= 0 (ms since the epoch), not {timestamp}")
    return TypeError(f"timestamp must be an int (ms since the epoch) or None, not {timestamp!r}")
