"""Replay after a crash, deduplicated by the broker (DESIGN.md "Custody").

A journaled idempotent producer writes an IDENTITY entry for every batch before sending
it: producer id, epoch, base sequence and the journal serials of its records. After a
crash, recovery hands over the entries whose records are all still pending
(``Recovery.batch_identities``), and the feed of recovered records goes through the
``ReplayPlan`` here:

- records covered by an entry are held until their batch is whole, then put back as one
  closed batch carrying that identity and base sequence (``JournalAccumulator.
  replay_batch``; ``Batch.pinned``): the sender sends it as is, one at a time per
  partition, before anything newer of the partition. A broker that wrote it before the
  crash answers with the original offsets (or DUPLICATE_SEQUENCE_NUMBER), one that did not
  appends it: either way the records are in Kafka once ("proven");
- if the broker no longer knows the batch (OUT_OF_ORDER_SEQUENCE_NUMBER: older than the
  five batches per producer and partition it remembers; UNKNOWN_PRODUCER_ID,
  INVALID_PRODUCER_EPOCH, PRODUCER_FENCED: the producer state is gone or moved on), the
  batch is sent again under the new producer's identity: at-least-once, counted as
  "resent_unproven" (they may now be in Kafka twice);
- records without an entry were never sent by the crashed producer (an idempotent one
  writes the entry before the request): they go like new records, counted "unsent".

The broker can only deduplicate while it holds the producer's state: Kafka forgets a
producer id after ``producer.id.expiration.ms`` (a day by default) without writes, so a
journal replayed later than that may be written twice unnoticed.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Final, NamedTuple, Protocol

from pykaf._producer._batches import RECORD_OVERHEAD, Batch
from pykaf._producer._delivery import Report
from pykaf._producer.journal import Identity, JournalRecord
from pykaf.protocol._records import BATCH_OVERHEAD

__all__ = [
    "RESEQUENCE_CODES",
    "ReplayPlan",
    "ReplayStats",
    "ReplayTally",
    "ReplayUnit",
]

log = logging.getLogger("pykaf.producer.journal")

# The broker cannot tell whether it holds a replayed batch (see the module doc).
RESEQUENCE_CODES: Final = frozenset({45, 59, 47, 90})


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayStats:
    """What became of the records recovered from the journal (``Producer.replay_stats``).

    ``recovered``: records found pending when the journal was opened. ``proven``: re-sent
    as the very batch the crashed producer sent (same producer id, epoch and sequences)
    and accepted: in Kafka once, deduplicated by the broker if it had them.
    ``resent_unproven``: had been sent, but the broker could no longer tell (it lost the
    producer's state): sent again under the new identity, so possibly in Kafka twice.
    ``unsent``: never sent by the crashed producer (no identity journaled), sent as new.
    ``failed``: could not be sent (topic or partition gone, a refusal, the producer closed
    first), reported as failures. ``settled``: every recovered record is counted above.
    """

    recovered: int
    proven: int
    resent_unproven: int
    unsent: int
    failed: int
    settled: bool


class ReplayTally:
    """The counts behind ``ReplayStats``; updated by the feed and the event loop."""

    def __init__(self, directory: object, recovered: int) -> None:
        self._directory = directory
        self._lock = threading.Lock()
        self.recovered = recovered
        self._proven = self._unproven = self._unsent = self._failed = 0
        self._logged = recovered == 0

    def proven(self, records: int) -> None:
        self._add(records, 0, 0, 0)

    def unproven(self, records: int) -> None:
        self._add(0, records, 0, 0)

    def unsent(self, records: int) -> None:
        self._add(0, 0, records, 0)

    def failed(self, records: int) -> None:
        self._add(0, 0, 0, records)

    def unpin(self, batch: Batch) -> None:
        """``batch`` cannot go with its journaled identity after all: counted unproven,
        it is sequenced afresh (under the current identity) when next sent."""
        self.unproven(len(batch.records))
        batch.pinned = None
        batch.identity = None
        batch.base_sequence = -1
        batch.encoded = None

    def _add(self, proven: int, unproven: int, unsent: int, failed: int) -> None:
        with self._lock:
            self._proven += proven
            self._unproven += unproven
            self._unsent += unsent
            self._failed += failed
            stats = self._stats()
            if self._logged or not stats.settled:
                return
            self._logged = True
        level = logging.INFO if not (stats.resent_unproven or stats.failed) else logging.WARNING
        log.log(
            level,
            "journal %s: replay finished: %d recovered record(s): %d re-sent as the same"
            " idempotent batches (proven delivered once, not duplicated), %d could not be"
            " proven delivered and were sent again (may be duplicated), %d had never been"
            " sent, %d failed",
            self._directory,
            stats.recovered,
            stats.proven,
            stats.resent_unproven,
            stats.unsent,
            stats.failed,
        )

    def _stats(self) -> ReplayStats:
        decided = self._proven + self._unproven + self._unsent + self._failed
        return ReplayStats(
            recovered=self.recovered,
            proven=self._proven,
            resent_unproven=self._unproven,
            unsent=self._unsent,
            failed=self._failed,
            settled=decided >= self.recovered,
        )

    def snapshot(self) -> ReplayStats:
        with self._lock:
            return self._stats()


class Replaying(Protocol):
    """What the plan uses of ``JournalAccumulator`` (named here: it imports this module)."""

    @property
    def buffer_limit(self) -> int: ...

    def replay(self, rec: JournalRecord, report: Report, *, block: bool) -> None: ...

    def replay_run(self, records: list[JournalRecord], report: Report, *, block: bool) -> int: ...

    def replay_batch(
        self,
        records: list[JournalRecord],
        identity: Identity,
        report: Report,
        tally: ReplayTally,
        *,
        block: bool,
    ) -> None: ...


class ReplayUnit(NamedTuple):
    """What the feed puts back in one go: one record, or one whole journaled batch
    (``identity`` set). ``sent_before``: a lone record that had an identity (its batch
    could not be rebuilt): counted as re-sent unproven."""

    records: list[JournalRecord]
    identity: Identity | None
    sent_before: bool


class ReplayPlan:
    """Groups the feed's records into the batches they were sent in (the module doc)."""

    def __init__(
        self,
        identities: dict[tuple[str, int], tuple[Identity, ...]],
        tally: ReplayTally,
        recovered_below: int,
    ) -> None:
        self.tally = tally
        # Serials from this one on are this producer's own records (not counted).
        self._recovered_below = recovered_below
        self._queues = {key: deque(found) for key, found in identities.items()}
        self._held: dict[tuple[str, int], list[JournalRecord]] = {}

    def take(self, rec: JournalRecord, accumulator: Replaying) -> list[ReplayUnit]:
        """The units ``rec`` completes, in order (none while its batch is incomplete)."""
        key = (rec.topic, rec.partition)
        queue = self._queues.get(key)
        if not queue:
            return [ReplayUnit([rec], None, False)]
        out: list[ReplayUnit] = []
        while queue and queue[0].last_serial < rec.serial:
            # Recovery keeps whole ranges only, so this is a guard: whatever was held
            # goes as lone records, in order, before ``rec``.
            queue.popleft()
            out.extend(ReplayUnit([held], None, True) for held in self._held.pop(key, ()))
        if not queue or rec.serial < queue[0].first_serial:
            out.append(ReplayUnit([rec], None, False))
            return out
        identity = queue[0]
        held = self._held.setdefault(key, [])
        if held and rec.serial <= held[-1].serial:
            return out  # held already: a feed pass that failed after it is tried again
        held.append(rec)
        if len(held) < identity.record_count:
            return out
        queue.popleft()
        del self._held[key]
        if _estimate(held) > accumulator.buffer_limit:
            # Larger than this producer's memory: it cannot go as one batch again.
            out.extend(ReplayUnit([one], None, True) for one in held)
        else:
            out.append(ReplayUnit(held, identity, True))
        return out

    def is_plain(self, rec: JournalRecord) -> bool:
        """Whether ``take`` would make ``rec`` a unit of its own, never sent (no batch
        of its partition waits to be rebuilt), and it has no headers: ``put_run`` may
        put it back."""
        return not rec.headers and not self._queues.get((rec.topic, rec.partition))

    def put_run(
        self, accumulator: Replaying, records: list[JournalRecord], report: Report, *, block: bool
    ) -> int:
        """Put back plain records (``is_plain``) in one go; returns how many (the rest go
        one by one through ``put``, which raises what is wrong), and counts them."""
        taken = accumulator.replay_run(records, report, block=block)
        recovered = sum(1 for rec in records[:taken] if rec.serial < self._recovered_below)
        if recovered:
            self.tally.unsent(recovered)
        return taken

    def put(self, accumulator: Replaying, unit: ReplayUnit, report: Report, *, block: bool) -> None:
        """Put ``unit`` back (raises as ``JournalAccumulator.replay`` does: then nothing
        of it was taken), and count it."""
        if unit.identity is not None:
            accumulator.replay_batch(unit.records, unit.identity, report, self.tally, block=block)
            return  # counted when the broker answers
        rec = unit.records[0]
        accumulator.replay(rec, report, block=block)
        if rec.serial >= self._recovered_below:
            return
        if unit.sent_before:
            self.tally.unproven(1)
        else:
            self.tally.unsent(1)

    def lost(self, unit: ReplayUnit) -> None:
        """``unit`` got failure reports instead of being put back."""
        self.tally.failed(len(unit.records))


def _estimate(records: list[JournalRecord]) -> int:
    size = BATCH_OVERHEAD
    for rec in records:
        size += RECORD_OVERHEAD + len(rec.key or b"") + len(rec.value or b"")
        for name, value in rec.headers:
            size += len(name) * 4 + len(value or b"") + 4
    return size
