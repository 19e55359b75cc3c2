"""``JournalRuns``: ``produce_batch`` for ``JournalAccumulator`` (``_journaled``). Plain
values (bytes) are journaled and taken on ``append``'s hot path in runs, up to
``_LOCK_RUN`` a lock hold (``_append_run``, kept in step with ``append``); any other item,
or a value that path cannot take (a batch to open, a spill, the topic not known yet), goes
through ``_take``, the general path. A mixin over the accumulator's state, as
``JournalFeed`` is: it reads the journal fields ``JournalAccumulator`` sets up.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from typing import Any, Final

from pykaf._client._ctrl_c import whole
from pykaf._errors import BufferFullError, JournalError, ProducerClosedError
from pykaf._producer._accumulator import _LOCK_RUN
from pykaf._producer._batches import (
    FUTURES,
    RECORD_OVERHEAD,
    Batch,
    PartitionQueue,
    TopicQueues,
    TopicUnknownError,
    check_report,
)
from pykaf._producer._delivery import Report, unpack_item
from pykaf._producer._group_commit import GroupCommit
from pykaf._producer._journaled_feed import JournalFeed
from pykaf._producer._receipt import Receipt, ReceiptRun
from pykaf._producer.journal._record_writer import FastAppend

__all__ = ["JournalRuns"]

log = logging.getLogger("pykaf.producer.journal")

# ``_append_run``'s answers besides an item: the items ended; the run's bound was reached.
_NO_ITEM: Final = object()
_RUN_ENDED: Final = object()


class JournalRuns(JournalFeed):
    """The ``produce_batch`` side of ``JournalAccumulator`` (see the module doc)."""

    # Set up by ``JournalAccumulator.__init__``.
    commit: GroupCommit
    last_serial: int
    _sync_each: bool
    _full_episode: bool
    _fast_append: FastAppend

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
        raise NotImplementedError  # JournalAccumulator's

    def _sync_to(self, serial: int) -> None:
        raise NotImplementedError  # JournalAccumulator's

    def _place(
        self, t: TopicQueues, key: Any, partition: int | None, size: int, spilling: bool
    ) -> PartitionQueue:
        raise NotImplementedError  # JournalAccumulator's

    def _keep(self, serial: int, report: Report) -> None:
        raise NotImplementedError  # JournalAccumulator's

    def wait_for_feed_briefly(self, count: int) -> bool:
        raise NotImplementedError  # JournalAccumulator's

    def _withdraw(self, topic: str, partition: int, serial: int) -> None:
        raise NotImplementedError  # JournalAccumulator's

    def _past_strays(self, serial: int) -> int:
        """Lock held: the store holds records from ``serial`` on that no append counted,
        an interrupt having landed between a RECORD entry written and the serial that
        counts it (where nothing defers it: ``_ctrl_c``'s module doc). Before, the store
        refused every later serial ("serials must increase"): the producer was broken
        for good. Their produce() raised, so they are withdrawn as a refused record is
        (``_withdraw``: a restart must not send them, and reclaim must not wait for
        them forever); while records spill, the feeder hands them back instead, as any
        spilled record (it reads every serial below ``_next_record``). Returns the next
        serial to take. (Only ``_take`` looks: the hot paths' appends refuse a serial
        out of order, and send such a record here.)"""
        end = self.store.next_serial
        log.warning(
            "journal %s: serials %d..%d were journaled by an interrupted produce() and"
            " not taken: %s",
            self.store.directory,
            serial,
            end - 1,
            "fed back in order" if self._spill_next >= 0 else "withdrawn",
        )
        self._next_record = end  # first: whatever fails below, appends go on
        if self._spill_next >= 0:
            for stray in range(serial, end):
                self._keep(stray, None)
            return end
        try:
            strays = list(self.store.read_pending(serial, end))  # their topic and partition
        except JournalError as exc:
            log.warning("journal %s: interrupted records unread (%s)", self.store.directory, exc)
            return end  # pending until a restart sends them (at-least-once)
        for rec in strays:
            self._withdraw(rec.topic, rec.partition, rec.serial)
        return end

    def append_values(
        self,
        topic: str,
        values: list[bytes],
        receipt: Receipt,
        headers: list[tuple[str, bytes | None]] | None = None,
        headers_size: int = 0,
    ) -> int:
        """``append_many`` of ``values``, each journaled with its own serial and its own
        report, a ``ReceiptRun`` of one: every path of the journal (spill, feed, close,
        give-up) handles it as any report, and the caller still waits on one receipt,
        not a future per record. Returns how many were taken; none when the journal
        is full or failing, the topic is not known, or the producer is closed, or with
        ``headers`` (the journal's run path takes plain values only: the caller sends
        such records one by one)."""
        if headers:  # (the values are a list of bytes: ``produce_values`` checked them)
            return 0
        taken = [0]
        with contextlib.suppress(
            BufferFullError, JournalError, ProducerClosedError, TopicUnknownError
        ):
            self.append_many(topic, values, on_delivery=receipt, taken=taken)
        return taken[0]

    @whole
    def append_many(
        self,
        topic: str,
        items: Iterable[Any],
        *,
        partition: int | None = None,
        on_delivery: Report = None,
        taken: list[int] | None = None,
    ) -> None:
        """``produce_batch``, journaled item by item; one fsync at the end ("journal_sync").

        Plain values (bytes) take ``append``'s hot path in runs, under one lock hold a
        run (``_append_run``); any other item, or a value that path cannot take, goes
        through ``_take``. Measured (1,000 values of 1 KiB a call, mock cluster): 187,000
        records/s with every item through ``_take``, slower than ``produce()`` one at a
        time."""
        if on_delivery is not None and on_delivery.__class__ not in _NOT_CALLED:
            check_report(on_delivery)
        progress = [0, -1]  # records taken, the last one's serial
        try:
            rest = iter(items)
            while True:
                item = self._append_run(topic, rest, partition, on_delivery, progress)
                if item is _RUN_ENDED:
                    continue  # the lock was let go between two runs: others had their turn
                if item is _NO_ITEM:
                    break
                key, value, headers, timestamp, part = unpack_item(item, topic, partition)
                report = _own(on_delivery, progress[0])
                progress[1] = self._take(topic, value, key, part, headers, timestamp, report)
                progress[0] += 1
        finally:
            count, serial = progress
            if taken is not None:
                taken[0] = count
            if count and self._sync_each:
                self._sync_to(serial)
            elif count and self.commit.idle:
                self.commit.kick()

    def _append_run(
        self,
        topic: str,
        items: Iterator[Any],
        partition: int | None,
        on_delivery: Report,
        progress: list[int],
    ) -> Any:
        """Take plain values from ``items`` on ``append``'s hot path (kept in step with
        it), up to ``_LOCK_RUN`` under one lock hold; returns the first item it cannot
        take (``_take``'s), ``_NO_ITEM`` at the end, or ``_RUN_ENDED`` when the run's
        bound is reached (to be called again)."""
        t = self._topics.get(topic)
        if t is None:
            return next(items, _NO_ITEM)  # ``_take`` learns the topic
        plain = self._plain_limit
        with self._lock:  # not acquire() then try: see _accumulator_state (Ctrl-C)
            if self._spill_next >= 0:
                # As ``_take`` does per record: the feeder hands back two records for each
                # this run may add, so the backlog shrinks (not while the feed is stuck).
                self.wait_for_feed_briefly(2 * _LOCK_RUN)
            wall = -1  # a spilled record's timestamp: the run's, read once (``_take``'s)
            # The receipt's run the last record joined, its batch, and where the next
            # record must be (in the batch, in the call) to join it too: no step of
            # ``_report`` a record (0.15 us).
            grown: Batch | None = None
            grown_run: ReceiptRun | None = None
            grown_end = (-1, -1)
            for _ in range(_LOCK_RUN):
                item = next(items, _NO_ITEM)
                if item.__class__ is not bytes or self._closed:
                    return item
                size = RECORD_OVERHEAD + len(item)
                if self._spill_next >= 0:
                    # Spilling: to the journal only, placed as ``_take`` places it (the
                    # sticky partition moves by the bytes given it). A direct loop that
                    # outruns the brokers spills for as long as it runs: 3.3 us a record
                    # through ``_take``.
                    if size > plain or (partition is not None and partition.__class__ is not int):
                        return item
                    if partition is not None and not 0 <= partition < t.count:
                        return item  # _take raises the error
                    index = self._place(t, None, partition, size, True).index
                    if wall < 0:
                        wall = self._wall_ms()
                    at = self._next_record
                    end = self._fast_append(at, topic, index, wall, None, item)
                    if end < 0:
                        end = self.store.try_append_record(at, topic, index, wall, None, item)
                        if end < 0:
                            return item  # _take waits for room, or raises
                    progress[1] = self.last_serial = at
                    self._next_record = at + 1
                    self._keep(at, _own(on_delivery, progress[0]))
                    progress[0] += 1
                    continue
                if partition is None:
                    part = t.sticky
                elif partition.__class__ is int and 0 <= partition < t.count:
                    part = t.parts[partition]
                else:
                    return item  # _take raises the error
                batch = None if part is None else part.open
                if batch is None or size > plain:
                    return item
                filled = batch.size + size
                if filled > t.batch_limit or (
                    filled > batch.reserved and not self._room(batch, t, size)
                ):
                    return item
                at = self._next_record
                stamp = batch.created_ms
                end = self._fast_append(at, topic, batch.partition, stamp, None, item)
                if end < 0:
                    end = self.store.try_append_record(
                        at, topic, batch.partition, stamp, None, item
                    )
                    if end < 0:
                        return item
                progress[1] = self.last_serial = at
                self._next_record = at + 1
                records = batch.records
                records.append((None, item, None, stamp))
                batch.size = filled
                if on_delivery is not None:
                    index = len(records) - 1
                    if grown is batch and grown_end == (index, progress[0]):
                        grown_run.count += 1  # type: ignore[union-attr]  # a receipt's, set
                        grown_end = (index + 1, progress[0] + 1)
                    else:
                        grown_run = _report(batch, index, on_delivery, progress[0])
                        grown = batch if grown_run is not None else None
                        grown_end = (index + 1, progress[0] + 1)
                progress[0] += 1
                if batch.journal_first < 0:
                    batch.journal_first = at
                batch.journal_last = at
                if self._full_episode:
                    self._full_episode = False
                    log.info("the journal in %s has room again", self.store.directory)
        return _RUN_ENDED


# Reports ``append_many`` does not call: futures, and a receipt (each record gets its own
# ``ReceiptRun`` of it).
_NOT_CALLED: Final = frozenset({*FUTURES, Receipt})


def _own(on_delivery: Report, index: int) -> Report:
    """The report of the record at ``index`` of the call: ``on_delivery`` itself, or for
    a receipt, a run of one record of it."""
    if on_delivery.__class__ is Receipt:
        return ReceiptRun(on_delivery, index, 1)
    return on_delivery


def _report(batch: Batch, index: int, on_delivery: Report, item: int) -> ReceiptRun | None:
    """Give the record at ``index`` of ``batch`` (item ``item`` of the call) its report;
    for a receipt, the run it is in (to grow). A receipt's run of the records just
    before it in the batch and in the call grows by one instead: a record's own
    ``ReceiptRun`` (and its list entry, and a step of the reporter) cost the v3 stream
    0.1-0.2 us a record with a journal."""
    reports = batch.reports
    if on_delivery.__class__ is Receipt and reports:
        at, last = reports[-1]
        if (
            last.__class__ is ReceiptRun
            and last.receipt is on_delivery
            and at + last.count == index
            and last.first + last.count == item
        ):
            last.count += 1
            return last
    report = _own(on_delivery, item)
    if reports is None:
        batch.reports = [(index, report)]
    else:
        reports.append((index, report))
    return report if report.__class__ is ReceiptRun else None
