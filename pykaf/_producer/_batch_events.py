"""The producer's telemetry events (``pykaf.events``): batches sent, acknowledged,
retried and failed, and how full the buffer and the journal are.

The cost rule (``pykaf._telemetry._bus``): the engine tests ``bus.active`` once per
request or answer and calls in here only then, so a producer nobody listens to pays one
attribute read per request and nothing per record; with a listener, events are per
batch. Everything here runs on the producer's loop.

- ``BatchSent``: ``bytes`` is the encoded batch, ``compression_ratio`` encoded / raw,
  where raw is the batch's uncompressed size as the accumulator estimates it (1.0
  without compression); ``attempt`` counts from 1.
- ``BatchAcknowledged``: ``latency`` from the request's send to its answer (0.0 for a
  batch sent before anyone listened).
- ``BatchRetried`` / ``BatchFailed``: ``error`` is the exception's class name
  (``NotLeaderOrFollowerError``, ``DeliveryTimeoutError``, ``TransformError``...).
- ``BufferFill`` / ``JournalFill``: when the bytes in use cross a tenth of their limit,
  up or down, looked at once per pump and per answer (never per record).

Record counts are the batch's records on the wire (with ``transform_batch``, what the
hook returned), but ``BatchFailed`` counts the records that failed, as produced: each of
those got its failure report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pykaf._producer._batches import Batch
from pykaf._telemetry._bus import EventBus
from pykaf._telemetry._events import (
    BatchAcknowledged,
    BatchFailed,
    BatchRetried,
    BatchSent,
    BufferFill,
    JournalFill,
)

__all__ = ["BatchEvents"]


class BatchEvents:
    """Builds and emits one producer's batch and fill events (see the module doc)."""

    def __init__(
        self,
        bus: EventBus,
        client_id: str | None,
        buffer_limit: int,
        clock: Callable[[], float],
        journal: Any = None,
        journal_limit: int = 0,
    ) -> None:
        self.bus = bus
        self._client_id = client_id
        self._clock = clock
        self._buffer_limit = buffer_limit
        self._journal = journal  # the JournalAccumulator, for custody "journal"
        self._journal_limit = journal_limit
        self._tenths: dict[str, int] = {}  # the tenth of each limit last told

    def _about(self, batch: Batch, wall: float | None = None) -> dict[str, Any]:
        """The fields every batch event has."""
        return {
            "time": time.time() if wall is None else wall,
            "client_id": self._client_id,
            "topic": batch.topic,
            "partition": batch.partition,
        }

    def sent(self, batches: list[Batch], node_id: int) -> None:
        now = self._clock()
        wall = time.time()
        emit = self.bus.emit
        for batch in batches:
            batch.sent_at = now
            encoded = batch.encoded
            size = batch.size if encoded is None else len(encoded)
            compressed = batch.part.topic.compression != "none"
            emit(
                BatchSent(
                    **self._about(batch, wall),
                    broker=node_id,
                    records=len(batch.records),
                    bytes=size,
                    compression_ratio=size / batch.size if compressed and batch.size else 1.0,
                    attempt=batch.attempts,
                )
            )

    def acknowledged(self, batch: Batch, base_offset: int) -> None:
        sent_at = batch.sent_at
        encoded = batch.encoded
        self.bus.emit(
            BatchAcknowledged(
                **self._about(batch),
                broker=batch.part.in_flight_node,
                records=len(batch.records),
                bytes=batch.size if encoded is None else len(encoded),
                base_offset=base_offset,
                latency=self._clock() - sent_at if sent_at else 0.0,
            )
        )

    def retried(self, batch: Batch, error: BaseException) -> None:
        self.bus.emit(
            BatchRetried(
                **self._about(batch),
                records=len(batch.records),
                error=type(error).__name__,
                attempt=batch.attempts,
            )
        )

    def failed(self, batch: Batch, error: BaseException) -> None:
        originals = batch.originals
        self.bus.emit(
            BatchFailed(
                **self._about(batch),
                records=len(batch.records if originals is None else originals),
                error=type(error).__name__,
            )
        )

    def fill(self, used: int) -> None:
        """The buffer holds ``used`` bytes (and the journal what it holds): an event for
        each that crossed a tenth of its limit since the last one."""
        limit = self._buffer_limit
        if self._crossed("buffer", used, limit):
            self.bus.emit(
                BufferFill(
                    time=time.time(), client_id=self._client_id, used_bytes=used, limit_bytes=limit
                )
            )
        journal = self._journal
        if journal is None:
            return
        held, limit = journal.store.used_bytes, self._journal_limit
        if self._crossed("journal", held, limit):
            self.bus.emit(
                JournalFill(
                    time=time.time(),
                    client_id=self._client_id,
                    used_bytes=held,
                    limit_bytes=limit,
                    # The journal's index holds what memory holds; past buffer_memory
                    # records wait in the journal only (``unfed``): both are pending.
                    pending_records=journal.store.pending_records + journal.unfed,
                )
            )

    def _crossed(self, what: str, used: int, limit: int) -> bool:
        tenth = used * 10 // limit
        if tenth == self._tenths.get(what, 0):
            return False
        self._tenths[what] = tenth
        return True
