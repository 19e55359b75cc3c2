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
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Protocol

from pykaf._errors import BufferFullError, ProducerClosedError, RecordTooLargeError
from pykaf._producer._batches import (
    FUTURES,
    PYTHON_RECORD_COST,
    PYTHON_REPORT_COST,
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
from pykaf._producer._settings import ProducerSettings
from pykaf.protocol._records import BATCH_OVERHEAD, encode_batch

__all__ = [
    "RECORD_OVERHEAD",
    "Accumulator",
    "Batch",
    "BlockWhenFull",
    "PartitionQueue",
    "ReadyState",
    "TopicQueues",
    "TopicUnknownError",
    "WhenFull",
    "check_report",
]

# A partition's linger-ready batch that could not be sent for this long (its broker is
# down, say) is closed, so records that follow get a fresh timestamp in a new batch.
_MAX_OPEN_AFTER_READY: Final = 1.0
_LOCK_RUN: Final = 256  # produce_batch items appended per lock hold


def _nothing() -> None:
    return None


class WhenFull(Protocol):
    """What an append does when ``buffer_memory`` has no room for a new batch.

    The seam for custody levels: blocking is today's policy; a journal policy would write
    the record to disk and let the append go on. Called with the accumulator's lock held
    (``space`` is a condition on it); return once ``fits()`` holds, or raise."""

    def wait(
        self, space: threading.Condition, fits: Callable[[], bool], need: int, max_block: float
    ) -> None: ...


class BlockWhenFull:
    """Block up to ``max_block`` seconds for memory to free, then ``BufferFullError``.

    ``can_block()`` False (the thread that frees memory is the caller) raises at once."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        can_block: Callable[[], bool] | None = None,
    ) -> None:
        self._clock = clock
        self._can_block = can_block

    def wait(
        self, space: threading.Condition, fits: Callable[[], bool], need: int, max_block: float
    ) -> None:
        if self._can_block is not None and max_block > 0 and not self._can_block():
            max_block = 0.0
        deadline = self._clock() + max_block
        while not fits():
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise BufferFullError(
                    f"buffer_memory is full: no room for {need} more bytes within"
                    f" max_block ({max_block:g}s); the record was not taken (raise"
                    " buffer_memory or max_block, or produce more slowly)"
                )
            space.wait(remaining)


class ReadyState:
    """What one look at the accumulator found (see ``Accumulator.ready``)."""

    __slots__ = ("expired", "flush_watchers", "next_at", "nodes", "unled")

    def __init__(self) -> None:
        self.nodes: set[int] = set()  # brokers with a batch ready to go
        self.next_at: float | None = None  # when something else becomes ready
        self.expired: list[Batch] = []  # queued batches past delivery_timeout
        self.unled: set[str] = set()  # topics with batches for leaderless partitions
        # (serial, callback) left by ``watch_flush`` since the last look: the loop calls
        # each once the batches up to its serial are finished.
        self.flush_watchers: list[tuple[int, Callable[[], object]]] = []


class Accumulator:
    """The buffers of one producer (see the module doc). Thread-safe."""

    def __init__(
        self,
        settings: ProducerSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        when_full: WhenFull | None = None,
        rng: Any = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._wall_ms = wall_ms
        self._rng = rng
        self.when_full: WhenFull = when_full or BlockWhenFull(clock)
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._topics: dict[str, TopicQueues] = {}
        self._by_node: dict[int, list[PartitionQueue]] = {}
        self._drain_from: dict[int, int] = {}
        self._limit = settings.buffer_memory
        self._used = 0
        self._serial = 0
        # Batches not finished yet, oldest first (insertion order is serial order).
        self._incomplete: dict[int, Batch] = {}
        self._wake_pending = False
        self._timer_at: float | None = None
        self._flushing = 0
        self._flush_watchers: list[tuple[int, Callable[[], object]]] = []
        self._closed = False
        self._delivery_timeout = settings.delivery_timeout
        self._max_request = settings.max_request_size
        # Records up to this estimated size need no exact size check.
        self._plain_limit = min(
            settings.max_request_size - BATCH_OVERHEAD - 32, settings.buffer_memory
        )
        # Called (lock held, loop thread) when memory was freed: wakes asyncio waiters.
        self.on_space: Callable[[], None] | None = None
        # Hooks the producer sets (see ``append``).
        self.wake: Callable[[], None] = _nothing
        self.fetch_topic: Callable[[str], None] | None = None
        self.max_block = settings.max_block

    # -- appending (any thread) -----------------------------------------------------------

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
        if wake:
            self.wake()

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
        lock = self._lock
        # Loop-invariant: plain values, placed by the strategy, no reports.
        simple = partition is None and on_delivery is None
        wake = False
        held = count = 0
        lock.acquire()
        try:
            if self._closed:
                raise ProducerClosedError("the producer is closed")
            for item in items:
                if held >= _LOCK_RUN:
                    # Let the loop (and other producers) in between runs.
                    held = 0
                    lock.release()
                    lock.acquire()
                    if self._closed:
                        raise ProducerClosedError("the producer is closed")
                held += 1
                if simple and item.__class__ is bytes:
                    # The common case inlined: the sticky partition's open batch has room.
                    size = RECORD_OVERHEAD + len(item)
                    part = t.sticky
                    batch = None if part is None else part.open
                    if batch is not None and batch.size + size <= batch.reserved and size <= plain:
                        batch.records.append((None, item, None, None))
                        batch.size += size
                        count += 1
                        continue
                    key, value, headers, timestamp, part_no = None, item, None, None, None
                elif item.__class__ is bytes:
                    key, value, headers, timestamp, part_no = None, item, None, None, partition
                    size = RECORD_OVERHEAD + len(item)
                else:
                    key, value, headers, timestamp, part_no = unpack_item(item, topic, partition)
                    key, value, headers, size = normalise(key, value, headers, timestamp)
                record = (key, value, headers, timestamp)
                if size > plain:
                    self._check_size(record, size)
                wake = self._put(t, part_no, record, size, on_delivery) or wake
                count += 1
        finally:
            lock.release()
            if taken is not None:
                taken[0] = count
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

    def _seal(self, batch: Batch) -> None:
        """Lock held: ``batch`` takes no more records. Its reservation counted wire bytes
        only; now it also holds what its records cost as Python objects (reservations
        grow per batch, not per record: the append path stays as it was)."""
        if batch.sealed:
            return
        batch.sealed = True
        held = len(batch.records) * PYTHON_RECORD_COST
        if batch.reports is not None:
            held += len(batch.reports) * PYTHON_REPORT_COST
        batch.reserved += held
        self._used += held

    def charge(self, held: Iterable[tuple[Batch, int]]) -> None:
        """More bytes held for each batch until it completes (its encoded copy, kept
        for retries), in one lock round. Any thread."""
        with self._lock:
            for batch, extra in held:
                whole = batch
                while whole.parent is not None:  # a split half: its whole is the unit
                    whole = whole.parent
                whole.reserved += extra
                self._used += extra

    def _wake(self, wake: bool) -> bool:
        if not wake or self._wake_pending:
            return False
        self._wake_pending = True
        return True

    # -- metadata (event loop) ------------------------------------------------------------

    def knows(self, topic: str) -> bool:
        t = self._topics.get(topic)
        return t is not None and t.count > 0

    def topic(self, topic: str) -> TopicQueues | None:
        return self._topics.get(topic)

    def topics(self) -> list[str]:
        with self._lock:
            return list(self._topics)

    def set_topic(self, name: str, leaders: Sequence[int], topic_id: Any = None) -> bool:
        """The partitions of ``name`` and their leaders (-1: none), from metadata. True if
        a leader changed (batches may now go to another broker)."""
        with self._lock:
            t = self._topics.get(name)
            if t is None:
                t = self._topics[name] = TopicQueues(name, self._settings, self._rng)
            t.topic_id = topic_id
            changed = False
            for index in range(len(t.parts), len(leaders)):
                t.parts.append(PartitionQueue(t, index))
            for index, part in enumerate(t.parts):
                leader = leaders[index] if index < len(leaders) else -1
                if part.leader != leader:
                    part.leader = leader
                    changed = True
            available = tuple(i for i, leader in enumerate(leaders) if leader >= 0)
            if available != t.available:
                t.available = available  # a new object: sticky strategies re-check it
            t.count = len(leaders)
            t.sticky = None
            if changed:
                self._reindex()
            return changed

    def _reindex(self) -> None:
        by_node: dict[int, list[PartitionQueue]] = {}
        for t in self._topics.values():
            for part in t.parts:
                if part.leader >= 0:
                    by_node.setdefault(part.leader, []).append(part)
        self._by_node = by_node

    def partitions(self) -> list[PartitionQueue]:
        with self._lock:
            return [p for t in self._topics.values() for p in t.parts]

    # -- the loop's side --------------------------------------------------------------------

    def ready(self, now: float) -> ReadyState:
        """Which brokers have a batch ready, when to look again, and the queued batches
        past their delivery deadline (taken out: the caller fails them)."""
        state = ReadyState()
        next_at: float | None = None
        with self._lock:
            self._wake_pending = False
            if self._flush_watchers:
                state.flush_watchers, self._flush_watchers = self._flush_watchers, []
            flushing = self._flushing > 0 or self._closed
            for t in self._topics.values():
                linger = t.linger
                for part in t.parts:
                    batches = part.batches
                    if not batches:
                        continue
                    while batches and batches[0].deadline <= now:
                        expired = batches.popleft()
                        if expired is part.open:
                            self._seal(expired)
                            part.open = None
                        state.expired.append(expired)
                    if not batches:
                        continue
                    head = batches[0]
                    when = head.deadline
                    if part.returned:
                        pass  # waits for its in-flight batches to come back
                    elif part.retry_at > now:
                        when = min(when, part.retry_at)
                    elif head.sealed or flushing or len(batches) > 1:
                        if part.leader >= 0:
                            state.nodes.add(part.leader)
                        else:
                            state.unled.add(t.name)
                    else:
                        due = head.created + linger
                        if due <= now:
                            if part.leader >= 0:
                                state.nodes.add(part.leader)
                            else:
                                state.unled.add(t.name)
                            if due + _MAX_OPEN_AFTER_READY <= now and head is part.open:
                                self._seal(head)
                                part.open = None
                        else:
                            when = min(when, due)
                    if next_at is None or when < next_at:
                        next_at = when
            self._timer_at = next_at
        state.next_at = next_at
        return state

    def drain(
        self,
        node: int,
        now: float,
        max_bytes: int,
        gate: Callable[[PartitionQueue, Batch], bool],
        max_in_flight: int = 5,
    ) -> list[Batch]:
        """Take at most one ready batch per partition led by ``node``, up to
        ``max_bytes`` (at least one batch), for one Produce request.

        A partition is skipped while: a batch of it waits to be retried (``returned``),
        it backs off, it has ``max_in_flight`` batches out, or batches in flight to
        another broker (a leader change: they come back first, so order holds). ``gate``
        (idempotence) may hold a batch back; it is called last, and only for a batch that
        will be taken if it agrees."""
        out: list[Batch] = []
        with self._lock:
            parts = self._by_node.get(node)
            if not parts:
                return out
            flushing = self._flushing > 0 or self._closed
            total = 0
            count = len(parts)
            start = self._drain_from.get(node, 0) % count
            for step in range(count):
                part = parts[(start + step) % count]
                batches = part.batches
                if not batches or part.returned or part.retry_at > now:
                    continue
                if part.in_flight and (
                    part.in_flight >= max_in_flight or part.in_flight_node != node
                ):
                    continue
                head = batches[0]
                if not (
                    head.sealed
                    or flushing
                    or len(batches) > 1
                    or head.created + part.topic.linger <= now
                ):
                    continue
                if out and total + head.size > max_bytes:
                    break
                if not gate(part, head):
                    continue
                batches.popleft()
                if head is part.open:
                    part.open = None
                self._seal(head)
                total += head.size
                out.append(head)
            self._drain_from[node] = start + 1
        return out

    def put_back(self, part: PartitionQueue, batches: Iterable[Batch]) -> None:
        """Return failed batches to the front of their partition, oldest first."""
        ordered = sorted(batches, key=lambda b: b.serial)
        with self._lock:
            for batch in reversed(ordered):
                batch.sealed = True
                part.batches.appendleft(batch)

    def complete(self, batches: Iterable[Batch]) -> None:
        """Batches that got their reports: free their memory."""
        with self._lock:
            freed = 0
            for batch in batches:
                if self._incomplete.pop(batch.serial, None) is not None:
                    freed += batch.reserved
            if freed:
                self._used -= freed
                self._space.notify_all()
                if self.on_space is not None:
                    self.on_space()

    def take_all(self) -> list[Batch]:
        """Every queued batch (not in flight, not waiting for a retry), taken out."""
        out: list[Batch] = []
        with self._lock:
            for t in self._topics.values():
                for part in t.parts:
                    out.extend(part.batches)
                    part.batches.clear()
                    part.open = None
        return out

    # -- flush and close ------------------------------------------------------------------

    def begin_flush(self) -> int:
        """Every batch becomes ready now (until ``end_flush``); returns the serial of the
        newest batch so far: the flush waits for it and the older ones."""
        with self._lock:
            self._flushing += 1
            return self._serial

    def watch_flush(self, callback: Callable[[], object]) -> tuple[int, bool, bool]:
        """``begin_flush`` from any thread, leaving ``callback`` for the loop's next look
        (``ready``) instead of hopping to the loop to register it: the blocking flush
        then costs no wake at all when the append before it already woke the loop.

        Returns ``(target serial, registered, wake)``: not registered when there is
        nothing to wait for (or the accumulator is closed); ``wake`` says the caller must
        wake the loop (no wake is pending that would make it look).
        """
        with self._lock:
            self._flushing += 1
            target = self._serial
            if self._closed or not self._incomplete or next(iter(self._incomplete)) > target:
                return target, False, False
            self._flush_watchers.append((target, callback))
            return target, True, self._wake(True)

    def take_flush_watchers(self) -> list[tuple[int, Callable[[], object]]]:
        """The callbacks left by ``watch_flush`` not taken by ``ready`` yet (at close)."""
        with self._lock:
            taken, self._flush_watchers = self._flush_watchers, []
            return taken

    def end_flush(self) -> None:
        with self._lock:
            self._flushing -= 1

    def pending(self, up_to: int | None = None) -> int:
        """Records not finished yet (in batches with serial <= ``up_to``)."""
        with self._lock:
            return sum(
                len(b.records) for s, b in self._incomplete.items() if up_to is None or s <= up_to
            )

    def done_up_to(self, serial: int) -> bool:
        """Are all batches with serial <= ``serial`` finished?"""
        with self._lock:
            for first in self._incomplete:
                return first > serial
            return True

    def close(self) -> None:
        """Take no more records; waiting appends raise ``ProducerClosedError``."""
        with self._lock:
            self._closed = True
            self._space.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def used(self) -> int:
        return self._used

    @property
    def incomplete(self) -> int:
        """Batches not finished yet."""
        return len(self._incomplete)

    def unfinished(self) -> list[Batch]:
        """The batches not finished yet, wherever they are (for the close's last sweep)."""
        with self._lock:
            return list(self._incomplete.values())
