"""``JournalAccumulator``: the accumulator of a producer with custody "journal" or
"journal_sync" (DESIGN.md "Custody"). The memory level never meets this module: the
producer picks the class when it is built, so the memory append path has no custody check.

An append here, under the accumulator's one lock: decide the partition (so a replay lands
where the record would have gone), take the next journal serial, append its RECORD entry
(a copy into a mapped file, no fsync), then put it in its batch (``append`` does it all
inline for the common record; ``_take`` is the general path). Serials, journal order and
batch order are therefore the same order per partition, and each batch remembers the
serials of its first and last record: once the batch has its reports, ``complete`` writes
one DONE entry for that range (per batch, so per partition range) when the store's lock
is free, else queues it for the group-commit thread; the sender writes what is still
queued before the identities of the next batches it sends (``journal_identities``), so a
crash never leaves pending more than the batches in flight.

Spill: when ``buffer_memory`` has no room (brokers away, or slower than the producer),
the record stays in the journal only, and so does every record after it, whatever its
partition, until a feeder (``_custody``, through ``_journaled_feed``) has read them all
back into memory in serial order as batches complete: order per partition holds across
the memory/disk boundary, and memory stays bounded by ``buffer_memory`` however long the
outage (the journal grows instead, up to ``journal_max_bytes``). produce() blocks on
memory for a moment at most: a blocking caller waits up to ``_SPILL_AFTER`` for room
before a spill begins (brokers merely slower than the caller free it by then, and a
record read back from disk costs more than that wait). While records spill, a blocking
caller waits for the feeder to hand back two records per record it adds, unless the
feed has stopped moving (an outage): a backlog a stall left behind shrinks, and the
spill ends, while the caller goes on (``_wait_for_feed``). Records recovered after a
crash are fed the same way, before anything newer. A spilled record keeps only its
report (when it has one) in memory until it is fed.

A record refused after its RECORD entry is written (a bad partition, the producer closed)
is withdrawn at once with a DONE entry of its own serial, so that a restart never re-sends
a record whose produce() raised.

Journaled batches never expire by ``delivery_timeout`` (an outage of hours must not turn
into failures) unless ``journal_delivery_timeout`` asks for it. close() keeps what was
not delivered in the journal for the next producer: those reports are
``JournalKeptError`` (a ``ProducerClosedError``) and no DONE entry is written for them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, Final

from pykaf._client._ctrl_c import whole
from pykaf._errors import (
    JournalDiskError,
    JournalError,
    JournalFullError,
    JournalKeptError,
    ProducerClosedError,
)
from pykaf._producer._batches import (
    FUTURES,
    PYTHON_RECORD_COST,
    PYTHON_REPORT_COST,
    RECORD_OVERHEAD,
    Batch,
    PartitionQueue,
    TopicQueues,
    as_bytes,
    bad_timestamp,
    check_headers,
    check_report,
    normalise,
)
from pykaf._producer._delivery import Report
from pykaf._producer._group_commit import GroupCommit
from pykaf._producer._identity_entries import IdentityWriter
from pykaf._producer._journaled_feed import FeedSoon, NoRoom, RoomSoon
from pykaf._producer._journaled_runs import JournalRuns
from pykaf._producer._settings import ProducerSettings
from pykaf._producer.journal import Done, JournalRecord, JournalStore
from pykaf.protocol._records import BATCH_OVERHEAD

__all__ = ["JournalAccumulator"]

log = logging.getLogger("pykaf.producer.journal")

# Journaled batches' deadline: never, in practice (ten years; finite for the timers).
_NEVER: Final = 10 * 365 * 86400.0
# How often an append blocked on a full journal looks again (reclaim frees it elsewhere).
_FULL_POLL: Final = 0.01
# How long an append waits for memory (blocking callers only) before it spills (module
# doc): longer than an acknowledgement takes to free a batch, short beside an outage.
_SPILL_AFTER: Final = 0.05


class _RefuseWhenFull:
    """The accumulator's ``WhenFull`` here: never wait under the lock after a journal
    append (another append would take a later serial and pass it); refuse instead."""

    def wait(
        self, space: threading.Condition, fits: Callable[[], bool], need: int, max_block: float
    ) -> None:
        if not fits():
            raise NoRoom(need)


class JournalAccumulator(JournalRuns):
    """An ``Accumulator`` whose records are journaled first (see the module doc)."""

    keeps_at_close = True

    def __init__(
        self,
        settings: ProducerSettings,
        store: JournalStore,
        commit: GroupCommit,
        *,
        sync_each: bool,
        can_block: Callable[[], bool] = lambda: True,
        awaits_room: bool = False,
        recovered: int = 0,
    ) -> None:
        super().__init__(settings, when_full=_RefuseWhenFull())
        timeout = settings.journal_delivery_timeout
        self._delivery_timeout = _NEVER if timeout is None else timeout
        self.store = store
        self._fast_append = store.fast_append
        self.commit = commit
        self._identities = IdentityWriter(store, commit)
        self._next_record = store.next_serial
        # Serials below this were journaled by an earlier producer (recovered).
        self.opened_serial = store.next_serial
        self._sync_each = sync_each  # "journal_sync" in the caller's thread (blocking)
        self._can_block = can_block
        # An ``AsyncProducer``'s: a full memory raises ``RoomSoon`` (its caller awaits
        # room) for as long as a blocking caller would wait (within the producer's own
        # ``max_block``), before records spill; a spill ``FeedSoon``, for the feed.
        self._awaits_room = awaits_room
        self._await_for = min(settings.max_block, _SPILL_AFTER) if awaits_room else 0.0
        self._full_since: float | None = None  # when ``RoomSoon`` was first raised
        self.last_serial = -1  # the serial of the last record taken
        self._full_episode = False
        self._sync_turn = threading.Condition()  # "journal_sync": who leads the next fsync
        self._syncing = False
        # Spill (see the module doc): the next serial the feeder hands to memory, or -1
        # when nothing waits in the journal only. Recovered records wait from the start.
        self._spill_next = 0 if recovered else -1
        if recovered:
            store.defer_index(store.next_serial)
        self.unfed = recovered  # records in the journal only, not handed to memory yet
        self.spilled = 0  # records of this producer that went to the journal only
        self.fed_total = 0  # records the feeder handed to memory, ever (``_wait_for_feed``)
        self._feed_stalled_at = -1  # ``fed_total`` when a wait for the feed timed out
        self._spill_reports: dict[int, Report] = {}  # serial -> report, until fed
        self._sticky_fill: dict[str, int] = {}  # spill: bytes given the sticky partition
        self._fed_change = threading.Condition(self._lock)
        self.on_spill: Callable[[], object] | None = None  # starts the feeder
        self.kept_at_close = 0  # records in memory that close() left in the journal
        self.feed_wake: Callable[[], object] | None = None  # wakes the loop from the feeder

    # -- appending (any thread) -----------------------------------------------------------

    @whole
    def append(
        self,
        topic: str,
        value: Any,
        key: Any = None,
        *,
        partition: int | None = None,
        headers: Any = None,
        timestamp: int | None = None,
        on_delivery: Report = None,
    ) -> None:
        """``Accumulator.append``, journaled; with "journal_sync" (blocking producer),
        returns after the fsync that covers the record. Raises as ``append`` does, plus
        ``JournalFullError`` (after ``max_block``) and the store's ``JournalDiskError``s;
        never ``BufferFullError``: past ``buffer_memory`` records wait in the journal.

        The hot path (the blocking producer's ``produce`` is this method): a record
        whose open batch has room is journaled and taken here, under one lock hold, with
        no helper call but the store's lock-free ``fast_append`` (C) and, for a keyed
        record, the partitioner's; anything else takes ``_take`` (with the partition
        already chosen: a partitioner is asked once per record). Keyed records and
        records with headers took ``_take`` every time before (1 KiB, one run each):
        with 97 keys 126,498 records/s, 0.32x the memory level's 390,300, now 179,042,
        0.46x; with a 16-byte header 62,686, 0.21x of 294,410, now 204,795, 0.69x. Measured (the
        appending thread's CPU per 1 KiB record, mock cluster, fire-and-forget, no key):
        1.6-1.8 us (user 1.35-1.5, system 0.25-0.3, with the pages written ahead,
        ``_mapped``); 2.0-2.4 us before, when 1 record in 15 went through ``_take`` to
        grow its batch's reservation and the kernel prepared each new page of the
        segment in this thread; the memory level's append, 0.65-0.8 us."""
        # ``normalise``'s checks, inlined as ``Accumulator.append`` inlines them (a call
        # and a tuple per record): change the three together.
        if value.__class__ is not bytes and value is not None:
            value = as_bytes(value, "value")
        size = RECORD_OVERHEAD if value is None else RECORD_OVERHEAD + len(value)
        if key is not None:
            if key.__class__ is not bytes:
                key = as_bytes(key, "key")
            size += len(key)
        if timestamp is not None and (timestamp.__class__ is not int or timestamp < 0):
            raise bad_timestamp(timestamp)
        if on_delivery is not None and on_delivery.__class__ not in FUTURES:
            check_report(on_delivery)
        if headers is not None:
            headers, extra = check_headers(headers)
            size += extra
            if not headers:
                headers = None
        serial = -1
        placed = partition  # a keyed record's partition once chosen: ``_take`` gets it
        if size <= self._plain_limit:
            t = self._topics.get(topic)
            if t is None:
                t = self._unknown(topic)
            lock = self._lock
            # acquire() then try, not ``with`` (80 ns more a record); the outer handler
            # releases what Ctrl-C may leave held in between (``_accumulator_state``).
            try:
                lock.acquire()
                try:
                    if self._spill_next < 0 and not self._closed:
                        if partition is None:
                            if key is None:
                                part = t.sticky
                            else:  # as ``_place`` chooses, once per record
                                index = t.partitioner.partition(topic, key, t.count, t.available)
                                part = t.parts[index]
                                placed = index
                        elif partition.__class__ is int and 0 <= partition < t.count:
                            part = t.parts[partition]
                        else:
                            part = None  # _take raises the error
                        batch = None if part is None else part.open
                        if batch is not None:
                            filled = batch.size + size
                            # Both bounds: a sticky batch past batch_limit moves (``_place``).
                            # Past its reservation, the batch grows it here while memory
                            # allows (``_room``): once every ``t.reserve`` bytes, 1 record in
                            # 15 of 1 KiB, which through ``_take`` cost 0.2-0.3 us a record
                            # on average (a sixth of the hot path's time).
                            if filled <= t.batch_limit and (
                                filled <= batch.reserved or self._room(batch, t, size)
                            ):
                                at = self._next_record
                                # A record without a timestamp gets its batch's opening time
                                # when encoded (``Accumulator``): journaled with that same time.
                                stamp = batch.created_ms if timestamp is None else timestamp
                                # The store's lock-free append (C), else its locked one.
                                end = self._fast_append(
                                    at, topic, batch.partition, stamp, key, value, headers
                                )
                                if end < 0:
                                    if headers is None:
                                        end = self.store.try_append_record(
                                            at, topic, batch.partition, stamp, key, value
                                        )
                                    else:
                                        end = self._append_with_headers(
                                            at, topic, batch.partition, stamp, key, value, headers
                                        )
                                if end >= 0:
                                    serial = self.last_serial = at
                                    self._next_record = at + 1
                                    records = batch.records
                                    records.append((key, value, headers, stamp))
                                    batch.size = filled
                                    if on_delivery is not None:
                                        if batch.reports is None:
                                            batch.reports = [(len(records) - 1, on_delivery)]
                                        else:
                                            batch.reports.append((len(records) - 1, on_delivery))
                                    if batch.journal_first < 0:
                                        batch.journal_first = at
                                    batch.journal_last = at
                                    if self._full_episode:
                                        self._full_episode = False
                                        log.info(
                                            "the journal in %s has room again", self.store.directory
                                        )
                finally:
                    lock.release()
            except BaseException:
                self._release_if_interrupted()
                raise
        if serial < 0:
            serial = self._take(topic, value, key, placed, headers, timestamp, on_delivery)
        if self._sync_each:
            self._sync_to(serial)
        elif self.commit.idle:
            self.commit.kick()

    def _append_with_headers(
        self,
        serial: int,
        topic: str,
        partition: int,
        timestamp: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes | None]],
    ) -> int:
        """Lock held, the hot path: a record with headers, through the store's locked
        append (the lock-free one takes none); -1 with nothing written when it refuses
        (full, a disk error, a serial a stray took, a field out of range): ``_take``
        then does it again and waits or says what is wrong. It arms the store's
        lock-free path again (``JournalStore.append_record``), which takes headers too."""
        try:
            return self.store.append_record(
                serial, topic, partition, timestamp, key, value, headers
            )
        except (JournalError, ValueError, RuntimeError):  # refused: nothing was written
            return -1

    def _sync_to(self, serial: int) -> None:
        """Return once record ``serial`` is fsynced. Group commit among callers: one
        leads an fsync, the others wait for it and return if it covered them (it covers
        every record appended before it started), else one of them leads the next."""
        store = self.store
        cond = self._sync_turn
        with cond:
            while store.synced_serial <= serial:
                if store.failed is not None:
                    raise store.failed
                if not self._syncing:
                    self._syncing = True
                    break
                cond.wait()
            else:
                return
        try:
            store.sync()
        finally:
            with cond:
                self._syncing = False
                cond.notify_all()

    def _take(
        self,
        topic: str,
        value: Any,
        key: Any,
        partition: int | None,
        headers: Any,
        timestamp: int | None,
        report: Report,
    ) -> int:
        """Journal and take one record; returns its serial."""
        key, value, headers, size = normalise(key, value, headers, timestamp)
        if report is not None and report.__class__ not in FUTURES:
            check_report(report)
        t = self._topics.get(topic)
        if t is None:
            t = self._unknown(topic)
        if timestamp is None:
            # Journaled with the record, so a replay carries the time it was produced.
            timestamp = self._wall_ms()
        record = (key, value, headers, timestamp)
        if size > self._plain_limit:
            self._check_size(record, size)
        clock = self._clock
        now = clock()
        deadline = now + self.max_block
        spill_after = now + min(self.max_block, _SPILL_AFTER)
        spill_began = wake = fed_waited = False
        placed: PartitionQueue | None = None
        with self._lock:
            while True:
                if self._closed:
                    raise ProducerClosedError("the producer is closed")
                spilling = self._spill_next >= 0
                if spilling and not fed_waited:
                    fed_waited = True  # once a call: a moment at most, as below
                    if self.wait_for_feed_briefly(2):
                        continue  # the spill may have ended meanwhile
                if placed is None or spilling:
                    part = self._place(t, key, partition, size, spilling)
                else:
                    part = placed  # placed before the wait below: not asked again
                placed = None
                if not spilling and self._no_room(t, part, size):
                    remaining = spill_after - clock()
                    if remaining > 0 and self._can_block():
                        # Memory full for a moment (brokers slower than the caller):
                        # wait a little as the memory level would, before the journal
                        # takes the serial. A spill reads every record after it back
                        # from disk: ~3x what a blocked append costs per record
                        # (benchmarks/custody.py). An outage still spills, after this.
                        self._space.wait(remaining)
                        placed = part
                        continue
                    if self._awaits_room:
                        # The same wait for an ``AsyncProducer``, awaited on its loop:
                        # before, its records spilled the moment memory was full, and
                        # a saturating one ran at the feeder's pace (0.13x memory's).
                        moment = clock()
                        if self._full_since is None:
                            self._full_since = moment
                        left = self._full_since + self._await_for - moment
                        if left > 0:
                            raise RoomSoon(left)
                serial = self._next_record
                if serial < self.store.next_serial:
                    serial = self._past_strays(serial)
                try:
                    if headers or (
                        self._fast_append(serial, topic, part.index, timestamp, key, value) < 0
                    ):
                        self.store.append_record(
                            serial, topic, part.index, timestamp, key, value, headers
                        )
                except (JournalFullError, JournalDiskError) as exc:
                    if isinstance(exc, JournalDiskError) and self.store.failed is not None:
                        raise  # the store stopped (EIO, a failed fsync): no waiting helps
                    # Full, or the disk full (ENOSPC: the store goes on): acknowledged
                    # records free it as reclaim deletes their segments.
                    self._wait_for_journal(exc, deadline - clock())
                    continue
                self._next_record = serial + 1
                self.last_serial = serial
                if spilling:
                    self._keep(serial, report)
                    break
                try:
                    wake = self._put(t, part.index, record, size, report)
                except NoRoom:
                    # Memory is full: this record, and every one after it, waits in
                    # the journal for the feeder (order per partition holds). The ones
                    # after it enter the journal's index only when fed: memory stays
                    # bounded however long they wait.
                    self._spill_next = serial
                    self.store.defer_index(serial + 1)
                    self._keep(serial, report)
                    spill_began = True
                    break
                except BaseException:
                    self._withdraw(topic, part.index, serial)
                    raise
                self._mark(part, serial)
                self._full_since = None
                break
            if self._full_episode:
                self._full_episode = False
                log.info("the journal in %s has room again", self.store.directory)
        if spill_began and self.on_spill is not None:
            self.on_spill()
        if wake:
            self.wake()
        return serial

    def wait_for_feed_briefly(self, count: int) -> bool:
        """Lock held, records spilling (``_take``, per record; ``produce_batch``'s runs):
        ``_wait_for_feed`` for ``count`` records, up to the wait a spill allows, and
        True (the lock was let go meanwhile); an ``AsyncProducer``'s call raises
        ``FeedSoon`` instead, to await it on its loop; False when nothing waited."""
        if self._can_block():
            self._wait_for_feed(self._clock() + min(self.max_block, _SPILL_AFTER), count)
            return True
        if self._awaits_room:
            left = self.feed_wait_left(count, self._await_for)
            if left > 0:
                raise FeedSoon(left)  # awaited on the loop, then the call again
        return False

    def _no_room(self, t: TopicQueues, part: PartitionQueue, size: int) -> bool:
        # Lock held: might ``_put`` need memory that ``buffer_memory`` has not? An
        # estimate of ``_append_new``'s need, never below it (a miss would spill): it
        # only decides whether to wait a little.
        need = max(t.reserve, size + BATCH_OVERHEAD)
        batch = part.open
        if batch is not None:
            if batch.size + size <= batch.reserved:
                return False
            # Full, it is sealed first, which charges its records' Python objects.
            need += len(batch.records) * PYTHON_RECORD_COST
            if batch.reports is not None:
                need += len(batch.reports) * PYTHON_REPORT_COST
        return self._used + need > self._limit

    def _keep(self, serial: int, report: Report) -> None:
        # Lock held: a record in the journal only, until the feeder hands it over.
        if report is not None:
            self._spill_reports[serial] = report
        self.unfed += 1
        self.spilled += 1

    def _place(
        self, t: TopicQueues, key: Any, partition: int | None, size: int, spilling: bool
    ) -> PartitionQueue:
        """Lock held: the record's partition, decided before it is journaled. The same
        choice as ``Accumulator.append`` (KIP-480: a sticky partition moves when its batch
        is full), made up front: the accumulator must not move a journaled record. While
        records spill, no batch fills: the bytes given the sticky partition stand in."""
        if partition is not None:
            if partition.__class__ is not int or not 0 <= partition < t.count:
                raise ValueError(
                    f"partition {partition!r} is not in 0..{t.count - 1} (topic {t.name!r}"
                    f" has {t.count} partitions)"
                )
            return t.parts[partition]
        part = t.sticky if key is None else None
        if part is None:
            part = t.parts[t.partitioner.partition(t.name, key, t.count, t.available)]
            if key is None and t.can_stick:
                t.sticky = part
        if key is None and t.can_stick:
            if spilling:
                filled = self._sticky_fill.get(t.name, 0) + size
                full = filled > t.batch_limit
                self._sticky_fill[t.name] = size if full else filled
            else:
                batch = part.open
                full = batch is None or batch.size + size > t.batch_limit
            if full:
                t.partitioner.on_new_batch(t.name, t.count, t.available, part.index)
                part = t.parts[t.partitioner.partition(t.name, key, t.count, t.available)]
                t.sticky = part
        return part

    def _withdraw(self, topic: str, partition: int, serial: int) -> None:
        # The caller is told the record was not taken: it must not come back on a restart.
        try:
            self.store.append((Done(topic, partition, serial, serial),))
        except JournalError as exc:
            log.log(
                logging.INFO if self.store.failed is not None else logging.WARNING,
                "journal serial %d (%s-%d) was refused by the producer but could not be"
                " marked done (%s): a restart on this journal would send it",
                serial,
                topic,
                partition,
                exc,
            )

    def _wait_for_journal(self, exc: JournalError, remaining: float) -> None:
        # Lock held. Back-pressure: acknowledged records free the journal (reclaim), so
        # wait like a full buffer does, up to max_block, then raise the typed error.
        if not self._full_episode:
            self._full_episode = True
            log.warning("%s; produce() blocks up to max_block for room", exc)
        if remaining <= 0 or not self._can_block():
            raise exc
        self._space.wait(min(remaining, _FULL_POLL))

    def journal_identities(self, batches: list[Batch]) -> None:
        """The sender, before a Produce request: the identities of ``batches`` and the
        DONE entries still queued, journaled (``IdentityWriter``). Never raises."""
        self._identities.write(batches)

    def give_up(self, rec: JournalRecord) -> Report:
        """A record in the journal only that cannot be sent (its topic or partition is
        gone): marked done; returns its own report (None for a recovered record)."""
        with self._lock:
            report = (
                self._spill_reports.get(rec.serial) if rec.serial >= self.opened_serial else None
            )
            self._fed(rec.serial)
            self._withdraw(rec.topic, rec.partition, rec.serial)
            return report

    # -- reports --------------------------------------------------------------------------

    def complete(self, batches: Iterable[Batch]) -> None:
        """Batches that got their reports: queue their DONE entries (not for records the
        close kept for the next producer), free their memory."""
        batches = list(batches)
        for b in batches:
            if b.pinned is not None:  # a replayed batch that ended without success
                b.pinned.failed(len(b.records))
                b.pinned = None
        dones = []
        for b in batches:
            if b.journal_first < 0:
                continue
            if isinstance(b.last_error, JournalKeptError):
                self.kept_at_close += len(b.records if b.originals is None else b.originals)
            else:
                dones.append(Done(b.topic, b.partition, b.journal_first, b.journal_last))
        if dones and not self.store.try_append_dones(dones):
            self.commit.add_dones(dones)
        super().complete(batches)
