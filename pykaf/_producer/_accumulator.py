"""The record accumulator: per-partition buffers that callers append to, bounded in bytes.

Callers (any thread) append under one lock: choose the partition, add a small tuple to the
open batch of that partition, return. No clock read, no allocation beyond the record tuple,
no thread hop per record. The event loop's side (the engine) asks which brokers have a
batch ready (full, lingered, flushed, retried) and drains them one broker at a time; it
never blocks on this lock for longer than a few list operations.

Batches are encoded when drained (``pykaf.protocol.encode_batch``), not here: records stay
``(key, value, headers, timestamp)`` tuples, exactly what the encoder reads. Records with
no timestamp get their batch's opening time (wall clock ms) when encoded.

Memory: each batch reserves up to 16 KiB (``batch_size`` if smaller; a larger record, its
own size) from ``buffer_memory`` when it opens, and more in such steps as it fills, up to
``batch_size``: the per-record path only compares with the reservation. When a new batch
does not fit, the ``WhenFull`` policy decides: block up to ``max_block`` then raise
``BufferFullError`` (today); spill to a disk journal (the seam).

Wakeups: an append tells its caller to wake the loop only when a batch became ready (a
full batch sealed, or ``linger`` is 0) or a new batch must linger sooner than the loop's
armed timer; and only if no wakeup is already pending. Everything else waits for the
timer or for the next response.

This module is the append path (any thread, once per record). The accumulator's other
sides are mixins over one shared state (``_accumulator_state``), each in its own module:
the topic table (``_topic_table``, metadata), the loop's side (``_drain``: ready, drain,
put back, complete), flush bookkeeping (``_flush_bookkeeping``); the back-pressure policy
is ``_when_full``. Mixins, not objects of their own: the append path reads the shared
fields once per record and must not pay an attribute hop to reach them.
"""

from __future__ import annotations

import contextlib
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from itertools import accumulate, islice, repeat
from operator import add
from typing import Any, Final

from pykaf._client._ctrl_c import whole
from pykaf._errors import BufferFullError, ProducerClosedError, RecordTooLargeError
from pykaf._producer._batches import (
    FUTURES,
    RECORD_OVERHEAD,
    Batch,
    PartitionQueue,
    TopicQueues,
    TopicUnknownError,
    as_bytes,
    bad_timestamp,
    check_headers,
    check_report,
    normalise,
)
from pykaf._producer._delivery import Report, unpack_item
from pykaf._producer._drain import Draining
from pykaf._producer._flush_bookkeeping import FlushBookkeeping
from pykaf._producer._receipt import Receipt, ReceiptRun
from pykaf._producer._topic_table import TopicTable
from pykaf.protocol._records import BATCH_OVERHEAD, c_accelerated, encode_batch

__all__ = [
    "Accumulator",
    "extend_plain_records",
    "extend_plain_records_python",
    "plain_value_ends",
    "plain_value_ends_python",
]

_LOCK_RUN: Final = 256  # produce_batch items appended per lock hold
_ONLY_BYTES: Final = {bytes}
_NONES: Final = repeat(None)  # endless: zip stops at the values


class Accumulator(TopicTable, Draining, FlushBookkeeping):
    """The buffers of one producer (see the module doc). Thread-safe.

    Takes ``(settings, *, clock, wall_ms, when_full, rng)``: see ``AccumulatorState``."""

    #: Does a close keep unsent records (in a journal) rather than lose them?
    keeps_at_close = False

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
        """Add one record; ``on_delivery`` is its report (a callback or a future).

        The blocking producer's ``produce`` is this method itself (one call per record
        saved). It calls ``wake()`` when the event loop must look, blocks up to
        ``max_block`` when memory is full, and asks ``fetch_topic(topic)`` for a topic it
        does not know yet (None: raise ``TopicUnknownError``, the async producer's cue).
        Raises ``RecordTooLargeError``, ``BufferFullError``, ``ProducerClosedError``,
        ``TypeError``/``ValueError`` for a bad argument: nothing was taken then."""
        # The hot path: written for speed (locals, no `with`, one lock round trip).
        if value.__class__ is not bytes and value is not None:
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
        if on_delivery is not None and on_delivery.__class__ not in FUTURES:
            check_report(on_delivery)
        t = self._topics.get(topic)
        if t is None:
            t = self._unknown(topic)
        record = (key, value, headers, timestamp)
        if size > self._plain_limit:
            self._check_size(record, size)
        lock = self._lock
        # acquire() then try, not ``with`` (80 ns more a record); the outer handler
        # releases what Ctrl-C may leave held in between (``_accumulator_state``).
        try:
            lock.acquire()
            try:
                if self._closed:
                    raise ProducerClosedError("the producer is closed")
                if partition is None:
                    part = t.sticky if key is None else None
                    if part is None:
                        part = t.parts[t.partitioner.partition(topic, key, t.count, t.available)]
                        if key is None and t.can_stick:
                            t.sticky = part
                else:
                    if partition.__class__ is not int or not 0 <= partition < t.count:
                        raise ValueError(
                            f"partition {partition!r} is not in 0..{t.count - 1} (topic {topic!r}"
                            f" has {t.count} partitions)"
                        )
                    part = t.parts[partition]
                batch = part.open
                if batch is not None and batch.size + size <= batch.reserved:
                    records = batch.records
                    records.append(record)
                    batch.size += size
                    if on_delivery is not None:
                        if batch.reports is None:
                            batch.reports = [(len(records) - 1, on_delivery)]
                        else:
                            batch.reports.append((len(records) - 1, on_delivery))
                    return
                wake = self._append_new(t, part, record, size, on_delivery, partition is None)
            finally:
                lock.release()
        except BaseException:
            self._release_if_interrupted()
            raise
        if wake:
            self.wake()

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
        """``produce_batch``: append every item (a value, a ``(key, value)`` pair, a
        dict or a ``ProducerRecord``), taking the lock once per run of items. An item
        that cannot be taken raises; the ones before it were taken (``taken[0]`` says
        how many, when a list is given)."""
        if on_delivery is not None and on_delivery.__class__ not in FUTURES:
            check_report(on_delivery)
        t = self._topics.get(topic)
        if t is None:
            t = self._unknown(topic)
        plain = self._plain_limit
        if (
            on_delivery is None
            and items.__class__ is list
            and (
                (partition is None and t.can_stick)
                or (partition.__class__ is int and 0 <= partition < t.count)
            )
        ):
            ends = plain_value_ends(items, RECORD_OVERHEAD, plain)
            if ends is not None:
                self._append_values(t, items, ends, partition, taken, None)
                return
        rest = iter(items)
        progress = [0, 0]  # items appended, and whether to wake the loop (kept if one raises)
        try:
            # A run of up to _LOCK_RUN items per lock hold: the loop (and other producers)
            # get their turn between runs.
            while True:
                with self._lock:
                    if self._append_items(t, rest, partition, on_delivery, progress):
                        break
        finally:
            if taken is not None:
                taken[0] = progress[0]
            if progress[1]:
                self.wake()

    @whole
    def append_values(
        self,
        topic: str,
        values: list[bytes],
        receipt: Receipt,
        headers: list[tuple[str, bytes | None]] | None = None,
        headers_size: int = 0,
    ) -> int:
        """Take as many of ``values`` (plain bytes, no key, placed by the partitioner;
        each with ``headers``, checked, ``headers_size`` their size) as can be taken at
        once, in order, their outcomes told to ``receipt`` by run; returns how many (the
        caller sends the rest its own way). Takes none when this path is not open: a
        topic not known yet, a partitioner that does not stick, a value that is not
        bytes or too large, a closed producer."""
        t = self._topics.get(topic)
        if t is None or not t.can_stick or values.__class__ is not list:
            return 0
        ends = plain_value_ends(values, RECORD_OVERHEAD + headers_size, self._plain_limit)
        if ends is None:
            return 0
        taken = [0]
        with contextlib.suppress(BufferFullError, ProducerClosedError):
            self._append_values(t, values, ends, None, taken, receipt, headers)
        return taken[0]

    def _append_items(
        self,
        t: TopicQueues,
        items: Iterator[Any],
        partition: int | None,
        on_delivery: Report,
        progress: list[int],
    ) -> bool:
        """Lock held: ``append_many``'s general path, for up to ``_LOCK_RUN`` of
        ``items``. Returns whether ``items`` ended; counts in ``progress`` the items
        appended and whether the loop must be woken."""
        plain = self._plain_limit
        # Loop-invariant: plain values, placed by the strategy, no reports.
        simple = partition is None and on_delivery is None
        held = 0
        for item in islice(items, _LOCK_RUN):
            held += 1
            if held == 1 and self._closed:  # looked at once a run has an item
                raise ProducerClosedError("the producer is closed")
            if simple and item.__class__ is bytes:
                # The common case inlined: the sticky partition's open batch has room.
                size = RECORD_OVERHEAD + len(item)
                part = t.sticky
                batch = None if part is None else part.open
                if batch is not None and batch.size + size <= batch.reserved and size <= plain:
                    batch.records.append((None, item, None, None))
                    batch.size += size
                    progress[0] += 1
                    continue
                key, value, headers, timestamp, part_no = None, item, None, None, None
            elif item.__class__ is bytes:
                key, value, headers, timestamp, part_no = None, item, None, None, partition
                size = RECORD_OVERHEAD + len(item)
            else:
                key, value, headers, timestamp, part_no = unpack_item(item, t.name, partition)
                key, value, headers, size = normalise(key, value, headers, timestamp)
            record = (key, value, headers, timestamp)
            if size > plain:
                self._check_size(record, size)
            if self._put(t, part_no, record, size, on_delivery):
                progress[1] = 1
            progress[0] += 1
        return held < _LOCK_RUN

    def _append_values(
        self,
        t: TopicQueues,
        values: list[bytes],
        ends: list[int],
        partition: int | None,
        taken: list[int] | None,
        receipt: Receipt | None,
        headers: list[tuple[str, bytes | None]] | None = None,
    ) -> None:
        """``append_many`` of plain values (bytes, no key, no report) to the sticky
        partition or to ``partition``: each run that fits the open batch's reservation
        is added in one step (a bisect on the running sizes, tuples made by ``zip``), so
        no Python code runs per record. The record that does not fit takes ``_put``'s
        path (a new batch, the sticky partition moving on): the same batches, the same
        order and the same memory accounting as one ``append`` per value. With a
        ``receipt``, each run has one report, a ``ReceiptRun`` (``append_values``)."""
        count = len(values)
        lock = self._lock
        wake = False
        i = 0
        try:
            while i < count:
                # A run of up to _LOCK_RUN records per lock hold, as in append_many.
                with lock:
                    if self._closed:
                        raise ProducerClosedError("the producer is closed")
                    held = 0
                    while i < count and held < _LOCK_RUN:
                        part = t.sticky if partition is None else t.parts[partition]
                        batch = None if part is None else part.open
                        before = ends[i - 1] if i else 0
                        if batch is not None:
                            room = before + batch.reserved - batch.size
                            stop = bisect_right(ends, room, i, min(count, i + _LOCK_RUN - held))
                            if stop > i:
                                if receipt is not None:
                                    run = (len(batch.records), ReceiptRun(receipt, i, stop - i))
                                    if batch.reports is None:
                                        batch.reports = [run]
                                    else:
                                        batch.reports.append(run)
                                if headers is None:
                                    extend_plain_records(batch.records, values, i, stop)
                                else:  # the tuples made by zip, in C as well
                                    batch.records.extend(
                                        zip(repeat(None), values[i:stop], repeat(headers), _NONES)
                                    )
                                batch.size += ends[stop - 1] - before
                                held += stop - i
                                i = stop
                                continue
                            if self._room(batch, t, ends[i] - before):
                                continue  # the reservation grew a step: the next run fits
                        record = (None, values[i], headers, None)
                        report = None if receipt is None else ReceiptRun(receipt, i, 1)
                        wake = self._put(t, partition, record, ends[i] - before, report) or wake
                        held += 1
                        i += 1
        finally:
            if taken is not None:
                taken[0] = i
            if wake:
                self.wake()

    def _put(
        self,
        t: TopicQueues,
        partition: int | None,
        record: tuple[Any, Any, Any, Any],
        size: int,
        report: Report,
    ) -> bool:
        """Lock held: ``append``'s placement (kept in step with it; ``append`` inlines
        it for speed). Returns whether to wake the loop."""
        if self._closed:
            raise ProducerClosedError("the producer is closed")
        key = record[0]
        if partition is None:
            part = t.sticky if key is None else None
            if part is None:
                part = t.parts[t.partitioner.partition(t.name, key, t.count, t.available)]
                if key is None and t.can_stick:
                    t.sticky = part
        else:
            if partition.__class__ is not int or not 0 <= partition < t.count:
                raise ValueError(
                    f"partition {partition!r} is not in 0..{t.count - 1} (topic {t.name!r}"
                    f" has {t.count} partitions)"
                )
            part = t.parts[partition]
        batch = part.open
        if batch is not None and batch.size + size <= batch.reserved:
            records = batch.records
            records.append(record)
            batch.size += size
            if report is not None:
                if batch.reports is None:
                    batch.reports = [(len(records) - 1, report)]
                else:
                    batch.reports.append((len(records) - 1, report))
            return False
        return self._append_new(t, part, record, size, report, partition is None)

    def take_kept(self) -> tuple[int, list[Report]]:
        """At close: records kept for a later producer, and their reports (a journal
        keeps records that never reached memory; memory keeps nothing)."""
        return 0, []

    def _unknown(self, topic: str) -> TopicQueues:
        if not isinstance(topic, str) or not topic:
            raise TypeError(f"topic must be a non-empty str, not {topic!r}")
        fetch = self.fetch_topic
        if fetch is None:
            raise TopicUnknownError(topic)
        fetch(topic)
        t = self._topics.get(topic)
        if t is None:  # the fetcher raises when it cannot; this is a guard
            raise TopicUnknownError(topic)
        return t

    def _check_size(self, record: tuple[Any, Any, Any, Any], size: int) -> None:
        # Near or over a limit: measure exactly (rare, so encoding once is fine).
        exact = len(encode_batch([record], now_ms=0, producer_id=0, producer_epoch=0))
        if exact > self._max_request:
            raise RecordTooLargeError(
                f"the record is {exact} bytes once encoded, more than max_request_size"
                f" ({self._max_request}); raise max_request_size (and the topic's"
                " max.message.bytes) or send smaller records"
            )
        if max(size, exact) > self._limit:
            raise RecordTooLargeError(
                f"the record is {exact} bytes, more than buffer_memory ({self._limit})"
            )

    def _append_new(
        self,
        t: TopicQueues,
        part: PartitionQueue,
        record: tuple[Any, Any, Any, Any],
        size: int,
        report: Report,
        chosen: bool,
    ) -> bool:
        """Lock held: the record needs more room than the open batch has reserved, or a
        new batch (the open one is full, or none). Returns whether to wake the loop."""
        wake = False
        batch = part.open
        if batch is not None:
            if self._room(batch, t, size):
                self._add(batch, record, size, report)
                return False
            self._seal(batch)  # full: ready to go
            part.open = None
            wake = True
        if chosen and t.can_stick and record[0] is None:
            # KIP-480: the sticky partition's batch is done; let the strategy move on,
            # then place the record again (it may fit an open batch elsewhere). Only a
            # sticky strategy's keyless choice is asked again: any other strategy (round
            # robin, random, a custom function) already chose this record's partition,
            # and asking it twice would skip a turn or call the user's function twice.
            t.partitioner.on_new_batch(t.name, t.count, t.available, part.index)
            t.sticky = None
            moved = t.parts[t.partitioner.partition(t.name, record[0], t.count, t.available)]
            if moved is not part:
                part = moved
                batch = part.open
                if batch is not None:
                    if self._room(batch, t, size):
                        self._add(batch, record, size, report)
                        return self._wake(wake)
                    self._seal(batch)
                    part.open = None
                    wake = True
        need = max(t.reserve, size + BATCH_OVERHEAD)
        if self._used + need > self._limit:
            self.when_full.wait(
                self._space, lambda: self._used + need <= self._limit, need, self.max_block
            )
            if self._closed:
                raise ProducerClosedError("the producer was closed while waiting for memory")
            # Others appended while we waited: the partition may have an open batch.
            batch = part.open
            if batch is not None:
                if self._room(batch, t, size):
                    self._add(batch, record, size, report)
                    return self._wake(wake)
                self._seal(batch)
                part.open = None
                wake = True
        self._used += need
        now = self._clock()
        self._serial += 1
        batch = Batch(part, self._serial, now, self._wall_ms(), now + self._delivery_timeout)
        batch.reserved = need
        self._add(batch, record, size, report)
        part.batches.append(batch)
        part.open = batch
        self._incomplete[batch.serial] = batch
        if t.linger <= 0:
            wake = True
        else:
            due = now + t.linger
            if self._timer_at is None or due < self._timer_at:
                wake = True
        return self._wake(wake)

    def _room(self, batch: Batch, t: TopicQueues, size: int) -> bool:
        """Lock held: can ``batch`` take ``size`` more bytes? It grows its reservation
        by steps of ``t.reserve`` up to the batch limit while memory allows (so a large
        ``batch_size`` costs memory as it fills, not up front)."""
        want = batch.size + size
        if want <= batch.reserved:
            return True
        if want > t.batch_limit:
            return False
        grown = min(t.batch_limit, max(want, batch.reserved + t.reserve))
        extra = grown - batch.reserved
        if self._used + extra > self._limit:
            return False  # full for now: a new batch waits for memory (WhenFull)
        self._used += extra
        batch.reserved = grown
        return True

    @staticmethod
    def _add(batch: Batch, record: tuple[Any, Any, Any, Any], size: int, report: Report) -> None:
        batch.records.append(record)
        batch.size += size
        if report is not None:
            index = len(batch.records) - 1
            if batch.reports is None:
                batch.reports = [(index, report)]
            else:
                batch.reports.append((index, report))


def plain_value_ends_python(items: list[Any], overhead: int, limit: int) -> list[int] | None:
    """The running totals of the records' sizes (``overhead`` + the value's length) when
    every item is ``bytes`` and no record is larger than ``limit``, else None (the
    per-item path then checks and converts each). Loops in C: ``map``, ``accumulate``."""
    if not items or {*map(type, items)} != _ONLY_BYTES:
        return None
    sizes = list(map(add, map(len, items), repeat(overhead)))
    if max(sizes) > limit:
        return None
    return list(accumulate(sizes))


plain_value_ends: Callable[[list[Any], int, int], list[int] | None] = (
    c_accelerated("plain_value_ends") or plain_value_ends_python
)
"""The C twin (one pass, ~10x faster) when ``_crecords`` has it, else pure Python."""


def extend_plain_records_python(
    records: list[tuple[Any, Any, Any, Any]], values: list[bytes], start: int, stop: int
) -> None:
    """Add ``values[start:stop]`` to a batch's ``records`` as ``(None, value, None, None)``
    (no Python code runs per record: ``zip`` makes the tuples)."""
    records.extend(zip(repeat(None), values[start:stop], repeat(None), repeat(None)))


extend_plain_records: Callable[[list[tuple[Any, Any, Any, Any]], list[bytes], int, int], None] = (
    c_accelerated("extend_plain_records") or extend_plain_records_python
)
"""The C twin when ``_crecords`` has it: the same tuples, made untracked by the cyclic
collector (they hold no container), which takes about a fifth off ``produce_batch``'s CPU
(the young-generation collections no longer walk them); else pure Python."""
