"""``JournalFeed``: the side of ``JournalAccumulator`` (``_journaled``) that puts records
waiting in the journal only (spilled past ``buffer_memory``, or recovered after a crash)
back into memory, for the feeder thread (``_custody``), and what a close leaves behind.
A mixin over the accumulator's state, as the accumulator's own sides are
(``_accumulator``): it reads the journal fields ``JournalAccumulator`` sets up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final

from pykaf._errors import BufferFullError, ProducerClosedError
from pykaf._producer._accumulator import Accumulator
from pykaf._producer._batches import RECORD_OVERHEAD, Batch, PartitionQueue, normalise
from pykaf._producer._delivery import Report
from pykaf._producer._idempotence import ProducerIdentity
from pykaf._producer._replay_identity import ReplayTally
from pykaf._producer.journal import Identity, JournalRecord, JournalStore
from pykaf.protocol._records import BATCH_OVERHEAD

__all__ = ["FeedSoon", "JournalFeed", "NoRoom", "RoomSoon"]

# A stalled feed (``feed_wait_left``): an ``AsyncProducer``'s loop gets a turn once per
# this many records aimed at (twice the records added), for this long at most.
_YIELD_EVERY: Final = 128
_TURN: Final = 1e-6


class NoRoom(Exception):
    """Internal: ``buffer_memory`` has no room for a new batch (never reaches a caller)."""

    def __init__(self, need: int) -> None:
        super().__init__(need)
        self.need = need


class RoomSoon(BufferFullError):
    """``buffer_memory`` is full, for less than a spill waits: nothing was journaled. An
    ``AsyncProducer`` awaits room (up to ``retry_after`` seconds) and tries again; by
    then room came, or the record goes to the journal only (``JournalAccumulator._take``)."""

    def __init__(self, retry_after: float, waits_for: str = "for room") -> None:
        super().__init__(
            f"buffer_memory is full: the record waits up to {retry_after:.3f}s {waits_for}"
            " before it waits in the journal only"
        )
        self.retry_after = retry_after


class FeedSoon(RoomSoon):
    """Records wait in the journal only (a spill) and the feeder is handing them back: an
    ``AsyncProducer``'s record awaits that (up to ``retry_after`` seconds), as a blocking
    caller waits for it (``JournalFeed.feed_wait_left``), before it joins the backlog."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(retry_after, "for the feeder to hand records back")


class JournalFeed(Accumulator):
    """The feed side of ``JournalAccumulator`` (see the module doc)."""

    # Set up by ``JournalAccumulator.__init__`` (its module doc says what each means).
    store: JournalStore
    opened_serial: int
    unfed: int
    fed_total: int
    feed_wake: Callable[[], object] | None
    _next_record: int
    _spill_next: int
    _spill_reports: dict[int, Report]
    _sticky_fill: dict[str, int]
    _fed_change: threading.Condition
    _feed_stalled_at: int
    _clock: Callable[[], float]
    #: An ``AsyncProducer``'s wait for the feed: (fed_total when it began, the fed_total
    #: it waits for, until when, whether a whole wait); see ``feed_wait_left``.
    _feed_aim: tuple[int, int, float, bool] | None = None
    _since_turn = 0  # records aimed at since the loop last had a turn (stalled feed)

    def _mark(self, part: PartitionQueue, serial: int) -> None:
        # Lock held: the record just put is the last of its partition's open batch.
        batch = part.open
        assert batch is not None
        if batch.journal_first < 0:
            batch.journal_first = serial
        batch.journal_last = serial

    def _wait_for_feed(self, until: float, count: int = 2) -> None:
        """Lock held, records spilling: wait until the feeder has handed two more records
        back to memory, up to ``until``. A blocking caller that outran the feeder grew
        the backlog for as long as it ran: a producer that spilled over a moment's stall
        (a saturated broker's hiccup) stayed at the feeder's pace, under half its own,
        until it paused. With two fed per record added the backlog shrinks and the spill
        ends. A feed that does not move (an outage: memory full, nothing acknowledged)
        makes one caller wait ``until`` once; later callers do not wait until it moves
        again (the journal takes their records, as the outage needs). After an outage a
        caller waits about two records' feeding (microseconds) a call. ``count``: the
        records to wait for (``produce_batch``'s runs: twice the run's)."""
        fed = self.fed_total
        if fed == self._feed_stalled_at:
            return
        target = fed + count
        clock = self._clock
        while self._spill_next >= 0 and self.fed_total < target and not self._closed:
            remaining = until - clock()
            if remaining <= 0:
                self._feed_stalled_at = self.fed_total
                return
            self._fed_change.wait(remaining)

    def feed_wait_left(self, count: int, bound: float) -> float:
        """Lock held, records spilling, an ``AsyncProducer``'s call (it cannot wait here:
        its loop would stop): the seconds it should await the feeder before its records
        join the backlog in the journal (0: now). ``_wait_for_feed``'s rule, awaited:
        the first call aims at ``count`` more records fed; a later call goes on once the
        feeder got there or ``bound`` seconds passed. A feed that did not move at all in
        that time is stalled (an outage): calls go on without waiting until it moves
        (and always, with ``bound`` 0), but for a moment (one turn of the loop) once per
        ``_YIELD_EVERY`` records aimed at. The producer's I/O shares the loop with a
        caller that may never await: it acknowledges the records that free the memory
        the feed needs. Before, a caller that outran the feeder after a stall kept its
        loop to itself, and the spill went on for as long as it produced."""
        fed = self.fed_total
        now = self._clock()
        aim = self._feed_aim
        if aim is not None:
            began, target, until, whole = aim
            if fed < target and now < until:
                return until - now
            self._feed_aim = None
            if whole and fed == began:
                self._feed_stalled_at = fed
            return 0.0
        if fed == self._feed_stalled_at or bound <= 0:
            self._since_turn += count
            if self._since_turn < _YIELD_EVERY:
                return 0.0
            self._since_turn = 0
            self._feed_aim = (fed, fed + count, now, False)  # the next call goes on
            return _TURN
        self._feed_aim = (fed, fed + count, now + bound, True)
        return bound

    # -- the feed (one feeder thread at a time, see _custody) -------------------------------

    def feed_span(self) -> tuple[int, int] | None:
        """The serials the feeder reads next, ``[first, end)``; None when it has caught
        up, which ends the spill (records go straight to memory again)."""
        with self._lock:
            first = self._spill_next
            if first < 0:
                return None
            if first >= self._next_record:
                self._spill_next = -1
                self.store.resume_index()  # every deferred record is fed or done
                self._sticky_fill.clear()
                self._fed_change.notify_all()
                return None
            return first, self._next_record

    def fed_through(self, end: int) -> None:
        """The feeder read every serial below ``end`` (the ones it skipped were done)."""
        with self._lock:
            if 0 <= self._spill_next < end:
                self._spill_next = end
                self._fed_change.notify_all()

    def wait_fed(self, timeout: float) -> tuple[bool, float]:
        """Wait up to ``timeout`` until every record journaled so far is in memory (a
        flush covers it then); returns whether they are, and the time left."""
        clock = self._clock
        deadline = clock() + timeout
        with self._lock:
            target = self._next_record
            while 0 <= self._spill_next < target and not self._closed:
                remaining = deadline - clock()
                if remaining <= 0:
                    break
                self._fed_change.wait(min(remaining, 1.0))
            reached = not 0 <= self._spill_next < target
        return reached, max(0.0, deadline - clock())

    def is_fed(self) -> bool:
        return self._spill_next < 0

    def replay(self, rec: JournalRecord, report: Report, *, block: bool) -> None:
        """Put a record waiting in the journal into memory, in its journaled partition
        with its serial (no new entry); a spilled record of this producer gets its own
        report, a recovered one ``report``. Raises ``BufferFullError`` when memory is
        full and ``block`` is False (else waits until it frees or the producer closes),
        ``TopicUnknownError`` (async: fetch first), ``ValueError`` when the partition no
        longer exists."""
        t = self._topics.get(rec.topic)
        if t is None:
            t = self._unknown(rec.topic)
        headers = rec.headers or None
        key, value, headers, size = normalise(rec.key, rec.value, headers, rec.timestamp_ms)
        record = (key, value, headers, rec.timestamp_ms)
        with self._lock:
            if not 0 <= rec.partition < t.count:
                raise ValueError(
                    f"partition {rec.partition} of {rec.topic!r} no longer exists (the topic"
                    f" has {t.count} partitions)"
                )
            while True:
                if self._closed:
                    raise ProducerClosedError("the producer is closed")
                own = (
                    self._spill_reports.get(rec.serial)
                    if rec.serial >= self.opened_serial
                    else report
                )
                try:
                    wake = self._put(t, rec.partition, record, size, own)
                except NoRoom as full:
                    if not block:
                        raise BufferFullError(f"no room for {full.need} bytes") from None
                    self._space.wait(1.0)  # the loop frees memory as batches complete
                    continue
                self._mark(t.parts[rec.partition], rec.serial)
                self.store.index_fed(rec.serial, rec.topic, rec.partition)
                self._fed(rec.serial)
                break
        if wake:
            (self.feed_wake or self.wake)()

    def replay_run(self, records: list[JournalRecord], report: Report, *, block: bool) -> int:
        """``replay`` for a run of records without headers, under one hold of the lock
        (the feed after a spill or an outage: one record at a time, the lock, the
        checks and the journal's index per record held it near 55,000 1 KiB records/s).
        Returns how many it put back, in order: it stops at a record of a topic it does
        not know, a partition that does not exist, one with headers or a negative
        timestamp, or (``block`` False) when memory is full; ``replay`` then says what
        is wrong with that one.
        Raises ``ProducerClosedError`` when closed (what it put back before stays)."""
        taken = 0
        while True:
            done = [taken, 0, 0]  # put back so far; whether to wake the loop; bytes it lacked
            with self._lock:
                try:
                    self._replay_run_locked(records, report, done)
                finally:
                    # Indexed before the lock goes: once acknowledged, a record is
                    # marked done in the index, which must know it by then.
                    if done[0] > taken:
                        self.store.index_fed_many(records[taken : done[0]])
            if done[1]:
                # Before any wait for memory too: the loop sends the new batches.
                (self.feed_wake or self.wake)()
            taken = done[0]
            if not done[2] or not block:
                return taken
            with self._lock:
                if self._closed:
                    raise ProducerClosedError("the producer is closed")
                # The loop frees memory as batches complete, and says so to whoever waits
                # then. The lock was let go since the record found no room: if memory
                # was freed meanwhile, that was said to nobody. Before, the feeder then
                # waited out the whole second (memory empty, the spill growing behind).
                if self._used + done[2] > self._limit:
                    self._space.wait(1.0)

    def _replay_run_locked(
        self, records: list[JournalRecord], report: Report, done: list[int]
    ) -> None:
        topics = self._topics
        reports = self._spill_reports
        opened = self.opened_serial
        for rec in records[done[0] :]:
            t = topics.get(rec.topic)
            partition = rec.partition
            if t is None or rec.headers or not 0 <= partition < t.count or rec.timestamp_ms < 0:
                return  # ``replay`` says what is wrong
            key, value = rec.key, rec.value
            size = RECORD_OVERHEAD + len(key or b"") + len(value or b"")
            record = (key, value, None, rec.timestamp_ms)
            own = reports.get(rec.serial) if rec.serial >= opened else report
            try:
                if self._put(t, partition, record, size, own):
                    done[1] = 1
            except NoRoom as full:
                done[2] = max(full.need, 1)
                return
            self._mark(t.parts[partition], rec.serial)
            self._fed(rec.serial)
            done[0] += 1

    def replay_batch(
        self,
        records: list[JournalRecord],
        identity: Identity,
        report: Report,
        tally: ReplayTally,
        *,
        block: bool,
    ) -> None:
        """Put back the records of one batch sent before a crash as that same batch: closed,
        with its journaled producer id, epoch and base sequence, which the sender keeps
        (``Batch.pinned``), so the broker can recognise it (``_replay_identity``). Raises
        as ``replay`` does; nothing is taken then."""
        topic, partition = identity.topic, identity.partition
        t = self._topics.get(topic)
        if t is None:
            t = self._unknown(topic)
        taken: list[tuple[Any, Any, Any, Any]] = []
        size = BATCH_OVERHEAD
        for rec in records:
            key, value, headers, one = normalise(rec.key, rec.value, rec.headers or None, 0)
            taken.append((key, value, headers, rec.timestamp_ms))
            size += one
        with self._lock:
            if not 0 <= partition < t.count:
                raise ValueError(
                    f"partition {partition} of {topic!r} no longer exists (the topic"
                    f" has {t.count} partitions)"
                )
            while True:
                if self._closed:
                    raise ProducerClosedError("the producer is closed")
                if self._used + size <= self._limit:
                    break
                if not block:
                    raise BufferFullError(f"no room for {size} bytes")
                self._space.wait(1.0)  # the loop frees memory as batches complete
            part = t.parts[partition]
            if part.open is not None:  # earlier records go first, in their own batch
                self._seal(part.open)
                part.open = None
            now = self._clock()
            self._serial += 1
            batch = Batch(part, self._serial, now, self._wall_ms(), now + self._delivery_timeout)
            batch.records = taken
            if report is not None:
                batch.reports = [(i, report) for i in range(len(taken))]
            batch.size = batch.reserved = size
            self._used += size
            self._seal(batch)
            batch.identity = ProducerIdentity(
                producer_id=identity.producer_id, epoch=identity.epoch
            )
            batch.base_sequence = identity.base_sequence
            batch.journal_first = identity.first_serial
            batch.journal_last = identity.last_serial
            batch.pinned = tally
            part.batches.append(batch)
            self._incomplete[batch.serial] = batch
            for rec in records:
                self._fed(rec.serial)
            wake = self._wake(True)
        if wake:
            (self.feed_wake or self.wake)()

    @property
    def buffer_limit(self) -> int:
        """``buffer_memory``: no batch larger than this can be put back whole."""
        return self._limit

    def _fed(self, serial: int) -> None:
        # Lock held: one record left the journal-only state.
        self._spill_reports.pop(serial, None)
        self.unfed -= 1
        self.fed_total += 1
        if 0 <= self._spill_next <= serial:
            self._spill_next = serial + 1
            self._fed_change.notify_all()

    def take_kept(self) -> tuple[int, list[Report]]:
        """At close: how many records stay in the journal only (for the next producer),
        and the reports of this producer's among them (each is owed ``JournalKeptError``)."""
        with self._lock:
            reports = list(self._spill_reports.values())
            self._spill_reports.clear()
            return self.unfed, reports
