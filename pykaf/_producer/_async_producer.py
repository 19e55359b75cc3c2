"""``AsyncProducer``: the asyncio producer.

Records are appended into the accumulator in the caller's task, synchronously; the
engine (``_engine.ProducerEngine``) runs on the same loop and is woken only when a batch
becomes ready or a linger timer must start. ``await produce(...)`` therefore returns at
once unless the buffer is full or the topic's metadata is not known yet: those appends
wait in a backlog, in call order, so a later record never overtakes an earlier one. One
call in ``_TURN_EVERY`` gives the loop a turn first, so a loop of them shares it.
"""

from __future__ import annotations

import asyncio
import contextlib
from _thread import get_ident as _get_ident
from collections import deque
from collections.abc import AsyncGenerator, Iterable
from types import TracebackType
from typing import Any, Final, Self

from pykaf._client._async_client import AsyncClient
from pykaf._client._fork import closed_copy, quiet_tasks, refusing, refusing_async, watch
from pykaf._client._loop_bound import elsewhere, no_loop
from pykaf._client._validate import settings_or_options
from pykaf._errors import (
    BufferFullError,
    DeliveryError,
    JournalDiskError,
    JournalFullError,
    KafkaTimeoutError,
    ProducerClosedError,
    PykafError,
)
from pykaf._producer._accumulator import plain_value_ends
from pykaf._producer._async_backlog import AsyncBacklog, Waiting
from pykaf._producer._batches import TopicUnknownError, check_headers, check_report
from pykaf._producer._custody import Custody, build_accumulator, open_custody
from pykaf._producer._custody_events import CustodyEventCallback
from pykaf._producer._delivery import (
    DeliveryCallback,
    ErrorCallback,
    RecordMetadata,
    Reporter,
    unpack_item,
)
from pykaf._producer._engine import ProducerEngine
from pykaf._producer._exit_flush import (
    INTERRUPTED_FLUSH,
    OPEN_GUARDS,
    close_when_loop_ends,
)
from pykaf._producer._journaled import JournalAccumulator
from pykaf._producer._receipt import Receipt
from pykaf._producer._replay_identity import ReplayStats, ReplayTally
from pykaf._producer._settings import ProducerSettings
from pykaf._producer._when_full import BlockWhenFull, room_wait

__all__ = ["AsyncProducer"]

# Before the append (a cancel there takes nothing). Without it a loop of awaited produce()
# calls held the loop (its I/O, other tasks, Ctrl-C) until ``buffer_memory`` was full:
# 58-103 ms at a time with 100 B records, now 2.2 ms, and more records/s, not fewer
# (README, "The producer"). Every 256 calls cost 1 KiB records a third of their rate.
_TURN_EVERY: Final = 1024


def _never() -> bool:
    return False


class AsyncProducer(AsyncBacklog):
    """Produce records to Kafka from asyncio code.

    ``AsyncProducer(bootstrap, *, on_error=None, **settings)``: settings are
    ``ProducerSettings`` names plus every client setting, or ``settings=``. Nothing
    connects before the first record. ``async with`` closes it (flushing first).

    - ``await produce(topic, value, key=None, *, partition=None, headers=None,
      timestamp=None, on_delivery=None)``: fire-and-forget (the fastest path);
    - ``send(...)``: an ``asyncio.Future`` of ``RecordMetadata`` (``await`` it for the ack);
    - ``await produce_batch(topic, items)``: many records in one call;
    - ``await flush(timeout=None)``, ``await close(timeout=None)``.

    Custody levels as ``Producer`` has them (``custody=``, ``journal_dir=``,
    ``recovered()``, ``on_replayed_delivery``). With "journal_sync", ``await produce()``
    returns after the fsync (run on the journal's thread, never on the loop); ``send()``
    returns its future at once. With a journal, records past ``buffer_memory`` wait in
    the journal instead of the backlog (``on_custody_event`` as ``Producer`` has it).

    Failures of records with no ``on_delivery`` and no future go to ``on_error(record,
    error)``, else to the "pykaf.producer" log at ERROR: never silent.
    """

    def __init__(
        self,
        bootstrap: str | Iterable[str | tuple[str, int]],
        *,
        on_error: ErrorCallback | None = None,
        on_replayed_delivery: DeliveryCallback | None = None,
        on_custody_event: CustodyEventCallback | None = None,
        settings: ProducerSettings | None = None,
        **options: Any,
    ) -> None:
        self.settings = settings_or_options(settings, options, ProducerSettings.from_options)
        self._reporter = Reporter(on_error)
        self._client = AsyncClient(bootstrap, settings=self.settings.client)
        self._client.kind = ("AsyncProducer", "pykaf.Producer")
        self.events = self._client.events  # telemetry (pykaf.events): the client's bus
        self.stats = self._client.stats  # telemetry: a Stats snapshot (pykaf.telemetry)
        self._custody = open_custody(
            self.settings,
            self._reporter,
            on_replayed_delivery,
            on_custody_event,
            self._client.events,
        )
        # The loop never blocks: syncs run on the journal's thread (``_produce_synced``).
        self._accumulator = build_accumulator(
            self.settings,
            self._custody,
            BlockWhenFull(),
            can_block=_never,
            sync_in_caller=False,
            awaits_room=True,
        )
        # Never block the loop: a full buffer or an unknown topic raises, and the append
        # waits in the backlog instead.
        self._accumulator.max_block = 0.0
        self._accumulator.fetch_topic = None
        self._append = self._accumulator.append
        self._until_turn = _TURN_EVERY
        self._engine: ProducerEngine | None = None
        # The engine loop's thread: the per-record calls check they run there (60 ns;
        # the running loop costs 250, a third of a produce(): ``_loop_bound``).
        self._thread = 0
        self._backlog: deque[Waiting] = deque()
        self._backlog_task: asyncio.Task[None] | None = None
        self._backlog_empty: list[asyncio.Future[None]] = []
        self._closed = False
        self._closing: asyncio.Future[int] | None = None
        self._exit_guard: AsyncGenerator[None] | None = None
        watch(self)
        if self._custody is not None and self._custody.sync_each:
            # "journal_sync": produce() returns after the fsync (chosen once, here).
            self.produce = self._produce_synced  # type: ignore[method-assign]
            self.produce_batch = self._produce_batch_synced  # type: ignore[method-assign]
        if self._custody is not None and self._custody.pending:
            with contextlib.suppress(RuntimeError):  # no loop yet: the first call starts it
                asyncio.get_running_loop()
                self._start()

    def forked(self, parent_pid: int) -> None:
        """In a forked child (``pykaf._client._fork``): as ``Producer.forked``."""
        self._closed = True
        refuse = refusing("producer", parent_pid)
        for name in ("send", "produce_values"):
            setattr(self, name, refuse)
        for name in ("produce", "produce_batch", "partitions_for", "flush", "fsync"):
            setattr(self, name, refusing_async(refuse))
        self.close = closed_copy  # type: ignore[method-assign]  # nothing of this process's
        if self._engine is not None:
            quiet_tasks(self._engine.loop)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<AsyncProducer {','.join(map(str, self._client.bootstrap))} {state}>"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and issubclass(
            exc_type, asyncio.CancelledError | KeyboardInterrupt
        ):
            # Cancelled (asyncio.run's Ctrl-C): a short flush, then every record left
            # gets its report; not a wait of delivery_timeout.
            await self.close(INTERRUPTED_FLUSH)
        else:
            await self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def recovered(self) -> dict[tuple[str, int], int]:
        """Records an earlier producer journaled and did not get acknowledged, being sent
        again now (custody "journal"/"journal_sync"): a count per (topic, partition).
        Their reports go to ``on_replayed_delivery`` (or, failures, to ``on_error``)."""
        return {} if self._custody is None else self._custody.recovered()

    def pending(self) -> int:
        """Records produced and not reported yet (``Producer.pending``), plus those whose
        ``produce`` still waits for metadata or memory."""
        custody = self._custody
        unfed = 0 if custody is None else custody.unfed()
        return self._accumulator.pending() + unfed + len(self._backlog)

    def _buffered(self) -> int:
        # Records taken and not reported yet, and appends still waiting to be taken.
        return self._accumulator.pending() + len(self._backlog)

    def _here(self, engine: ProducerEngine) -> None:
        if asyncio._get_running_loop() is not engine.loop:
            raise self._elsewhere()

    def _elsewhere(self) -> PykafError:
        # What a call outside the producer's loop raises, before it touches anything.
        if self._closed:
            return ProducerClosedError("the producer is closed")
        engine = self._engine
        return elsewhere("AsyncProducer", "pykaf.Producer", None if engine is None else engine.loop)

    def replay_stats(self) -> ReplayStats:
        """What became of the recovered records so far (``Producer.replay_stats``)."""
        if self._custody is None:
            return ReplayTally(None, 0).snapshot()
        return self._custody.replay_stats()

    def _start(self) -> ProducerEngine:
        engine = self._engine
        if engine is None:
            loop = asyncio._get_running_loop()
            if loop is None:
                raise no_loop("AsyncProducer", "pykaf.Producer")
            self._thread = _get_ident()
            engine = self._engine = ProducerEngine(
                self.settings,
                self._client,
                self._accumulator,
                self._reporter,
                loop,
            )
            self._accumulator.wake = engine.schedule_pump
            # Ctrl-C on a loop of the main thread waits for the loop's wait (``_ctrl_c``).
            self._client.hold_ctrl_c()
            # Started by hand up to its yield: from here the loop tracks it.
            self._exit_guard = close_when_loop_ends(self)
            OPEN_GUARDS.add(self._exit_guard)
            with contextlib.suppress(StopIteration):
                self._exit_guard.asend(None).send(None)
            if self._custody is not None:
                self._attach(self._custody, engine)
        return engine

    def _attach(self, custody: Custody, engine: ProducerEngine) -> None:
        # The journal's feeder is a thread (it reads files and waits for memory): it
        # reaches this loop only through call_soon_threadsafe.
        loop = engine.loop
        max_block = self.settings.max_block
        reporter = self._reporter

        def ensure_topic(topic: str) -> None:
            try:
                waiting = asyncio.run_coroutine_threadsafe(
                    engine.ensure_topic(topic, max_block), loop
                )
            except RuntimeError:
                raise ProducerClosedError("the producer's event loop is closed") from None
            try:
                waiting.result(max_block + 1.0)
            except TimeoutError:
                waiting.cancel()
                raise KafkaTimeoutError(
                    f"no metadata for {topic!r} within {max_block:g}s"
                ) from None

        def report(record: Any, error: DeliveryError) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(reporter.failed, record, error)

        def wake() -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(engine.feed_moved)

        custody.attach(self._accumulator, ensure_topic=ensure_topic, report=report, wake=wake)
        self._client.on_cluster_outage(custody.downtime.cluster_changed)

    async def _produce_synced(self, *args: Any, **kwargs: Any) -> None:
        """``produce`` with custody "journal_sync" (same arguments): returns once the
        record is fsynced; callers waiting together share one fsync on the journal's thread."""
        await AsyncProducer.produce(self, *args, **kwargs)
        await self._synced()

    async def _produce_batch_synced(self, *args: Any, **kwargs: Any) -> None:
        await AsyncProducer.produce_batch(self, *args, **kwargs)
        await self._synced()

    async def partitions_for(self, topic: str) -> list[int]:
        """``topic``'s partitions, fetching its metadata first if this producer has not
        (up to ``max_block``). A producer that knows a topic can take its records while
        no broker answers (into memory, or with a journal into the journal)."""
        engine = self._engine or self._start()
        self._here(engine)
        if not self._accumulator.knows(topic):
            await engine.ensure_topic(topic, self.settings.max_block)
        return self._accumulator.partition_numbers(topic)

    async def fsync(self) -> None:
        """Return once every record produced so far is on disk (fsynced in the journal):
        "journal_sync" for the records before this call, chosen per call (callers waiting
        together share one fsync). Raises the journal's ``JournalDiskError`` once it has
        stopped, even with nothing left to sync (a health check can rely on it). Custody
        "memory" keeps nothing on disk: this raises ``ValueError`` there rather than
        pretend."""
        if self._custody is None:
            raise ValueError('fsync() needs custody "journal" or "journal_sync" (and journal_dir)')
        engine = self._engine
        if engine is not None:
            self._here(engine)
        await self._synced()

    async def _synced(self) -> None:
        # The last serial taken is this caller's or a later one: its sync covers ours.
        accumulator = self._accumulator
        assert isinstance(accumulator, JournalAccumulator)
        assert self._custody is not None
        if accumulator.store.failed is not None:  # stopped: nothing is synced any more
            raise accumulator.store.failed
        serial = accumulator.last_serial
        if serial >= 0:
            await self._custody.commit.synced(serial, asyncio.get_running_loop())

    # -- sending --------------------------------------------------------------------------

    async def produce(
        self,
        topic: str,
        value: Any,
        key: Any = None,
        *,
        partition: int | None = None,
        headers: Any = None,
        timestamp: int | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Queue one record; ``on_delivery(metadata, error)`` gets its outcome. Waits
        only when the buffer is full or the topic is new (up to ``max_block``), and gives
        the loop a turn every thousand calls."""
        engine = self._engine or self._start()
        if _get_ident() != self._thread:
            raise self._elsewhere()
        self._until_turn -= 1
        if not self._until_turn:
            self._until_turn = _TURN_EVERY
            await asyncio.sleep(0)
        if not self._backlog:
            try:
                self._append(
                    topic,
                    value,
                    key,
                    partition=partition,
                    headers=headers,
                    timestamp=timestamp,
                    on_delivery=on_delivery,
                )
                return
            except (TopicUnknownError, BufferFullError, JournalFullError, JournalDiskError):
                pass  # waited for behind the backlog (a stopped journal raises there)
        check_report(on_delivery)
        self._here(engine)  # (off the hot path: the wait below is the loop's)
        await self._take_in_turn(
            engine, (topic, value, key, partition, headers, timestamp), on_delivery
        )

    def send(
        self,
        topic: str,
        value: Any,
        key: Any = None,
        *,
        partition: int | None = None,
        headers: Any = None,
        timestamp: int | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """Queue one record; the returned future resolves to its ``RecordMetadata``
        (or fails with a ``DeliveryError``). If the buffer is full the append waits in
        the background and the future fails with ``BufferFullError`` after
        ``max_block``. Bad arguments raise here."""
        engine = self._engine or self._start()
        if _get_ident() != self._thread or not engine.loop.is_running():
            # Another thread, or this one with another loop running (the producer's
            # loop cannot run meanwhile): the future would be the other loop's, and
            # awaiting it here raised asyncio's ValueError, which named neither.
            raise self._elsewhere()
        future: asyncio.Future[RecordMetadata] = engine.loop.create_future()
        # The same try-now-else-wait as produce(), written out in each: one call fewer
        # per record on the async hot path.
        if not self._backlog:
            try:
                self._append(
                    topic,
                    value,
                    key,
                    partition=partition,
                    headers=headers,
                    timestamp=timestamp,
                    on_delivery=future,
                )
                return future
            except (TopicUnknownError, BufferFullError, JournalFullError, JournalDiskError):
                pass  # waited for behind the backlog (a stopped journal raises there)
        self._wait((topic, value, key, partition, headers, timestamp), future, None)
        return future

    def produce_values(
        self, topic: str, values: list[bytes], receipt: Receipt, *, headers: Any = None
    ) -> int:
        """Take at once as many of ``values`` (plain bytes, no key, placed by the
        partitioner) as there is room for, in order, their outcomes told to ``receipt``
        (``receipt.expect`` is called for them); returns how many were taken. The rest
        are the caller's to send (``send``, in order after these). For a caller that
        wants each record's outcome of a large batch without a future each (the
        gateway's v3 stream): 0.15 us a record where ``send`` takes 0.8. In memory a
        run of records in one batch has one report; with a journal each record has its
        own (a ``ReceiptRun`` of one), as every record there has its own serial. Takes
        none when the path is not open: records waiting before these, a topic not known
        yet (``partitions_for`` learns it), a value too large for a batch (``send``
        says why), ``headers`` with a journal (it takes plain values in runs only).
        ``headers`` (as ``produce``'s) go on every record. Raises ``TypeError`` for
        values that are not a list of bytes, or bad headers."""
        if receipt.__class__ is not Receipt:
            raise TypeError(f"receipt must be a pykaf.Receipt, not {type(receipt).__name__}")
        # (plain_value_ends: None unless every item is bytes; one pass in C.)
        if values.__class__ is not list or (values and plain_value_ends(values, 0, 2**62) is None):
            raise TypeError(
                "produce_values takes a list of bytes (no keys, no other types);"
                " produce_batch takes keys, dicts and ProducerRecords"
            )
        checked, size = check_headers(headers) if headers is not None else (None, 0)
        self._engine or self._start()
        if _get_ident() != self._thread:
            raise self._elsewhere()
        taken = (
            0
            if self._backlog
            else self._accumulator.append_values(topic, values, receipt, checked or None, size)
        )
        receipt.expect(taken)
        return taken

    async def produce_batch(
        self,
        topic: str,
        items: Iterable[Any],
        *,
        partition: int | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Queue many records for ``topic`` in one call: values, ``(key, value)``
        pairs, dicts or ``ProducerRecord``s. ``on_delivery`` is called once per record."""
        engine = self._engine or self._start()
        self._here(engine)
        check_report(on_delivery)
        items = items if isinstance(items, list | tuple) else list(items)
        start = 0
        if not self._backlog:
            # Taken in runs: a full buffer waits for room (up to max_block) and the rest
            # goes on in one call, not an item at a time through the backlog (which
            # cost ~2 us an item: a batch larger than the room left went that way).
            deadline = engine.loop.time() + self.settings.max_block
            taken = [0]
            while True:
                try:
                    self._accumulator.append_many(
                        topic,
                        items[start:] if start else items,
                        partition=partition,
                        on_delivery=on_delivery,
                        taken=taken,
                    )
                    return
                except BufferFullError as exc:
                    start += taken[0]
                    wait = room_wait(exc, deadline - engine.loop.time())
                    if wait is None:
                        exc.taken = start
                        raise
                    # then one more try, or raise (``RoomSoon``: sooner, then it spills)
                    await engine.wait_for_space(wait)
                    if self._backlog:
                        break  # others wait already: behind them, in order
                except (TopicUnknownError, JournalFullError, JournalDiskError):
                    start += taken[0]
                    break
        # The slow path, one item at a time, behind the backlog: an item that cannot be
        # taken raises here (the ones before it are taken, the ones after are not).
        for index in range(start, len(items)):
            key, value, headers, timestamp, part = unpack_item(items[index], topic, partition)
            try:
                await self._take_in_turn(
                    engine, (topic, value, key, part, headers, timestamp), on_delivery
                )
            except (BufferFullError, JournalFullError, JournalDiskError) as exc:
                exc.taken = index
                raise

    # -- flush and close ------------------------------------------------------------------

    async def flush(self, timeout: float | None = None) -> int:
        """Send everything buffered now and wait for the reports of the records
        produced before this call, at most ``timeout`` seconds (None: no bound but
        ``delivery_timeout``). Returns how many are still pending (0: all reported)."""
        engine = self._engine
        custody = self._custody
        if engine is None and custody is not None and custody.pending:
            engine = self._start()  # recovered records to send
        if engine is None:
            return 0
        loop = engine.loop
        self._here(engine)
        deadline = None if timeout is None else loop.time() + timeout
        if custody is not None and custody.pending:
            # Records waiting in the journal only come before this call's: the feeder
            # hands them to memory first (waited for off the loop).
            bound = self.settings.delivery_timeout if timeout is None else timeout
            fed, _ = await loop.run_in_executor(None, custody.wait_fed, bound)
            if not fed:
                return engine.accumulator.pending() + custody.unfed() + len(self._backlog)
        if self._backlog:
            with contextlib.suppress(TimeoutError):
                await self._backlog_drained(deadline)
        remaining = None if deadline is None else max(0.0, deadline - loop.time())
        return await engine.flush(remaining) + len(self._backlog)

    async def close(self, timeout: float | None = None) -> int:
        """Flush (within ``timeout``; None: ``delivery_timeout``), then fail whatever is
        still pending with ``ProducerClosedError`` and close the connections. Returns the
        number of records that failed because of the close. Never hangs. Cancelled
        (``wait_for`` around it), it waits no more: what is left fails with its report
        at once (stays in the journal, with one) before the cancel goes on; a later
        close() finishes whatever the cancel cut short."""
        if self._engine is not None and not self._closed:
            self._here(self._engine)
        closing = self._closing
        if closing is not None:
            try:
                return await asyncio.shield(closing)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not closing.cancelled() or (task is not None and task.cancelling()):
                    raise  # this call was cancelled, not the one it waited for
            # The close it waited for was cut short: this one finishes it (each step is
            # done once: what is closed stays closed).
        loop = asyncio.get_running_loop()
        closing = self._closing = loop.create_future()
        try:
            count = await self._close(timeout)
        except Exception as exc:
            closing.set_exception(exc)
            closing.exception()  # a later close() sees it; nobody else must
            raise
        except BaseException:
            # Cut short (a cancel; asyncio.run's second Ctrl-C raises KeyboardInterrupt,
            # then cancels every task): the exit guard stays, and when the loop ends it
            # fails what is left at once, so every record still gets its report. A later
            # close() runs again: before, it raised CancelledError, every time, in a
            # task nobody had cancelled.
            self._closing = None
            closing.cancel()
            raise
        if self._exit_guard is not None:
            OPEN_GUARDS.discard(self._exit_guard)
        closing.set_result(count)
        return count

    async def _close(self, timeout: float | None) -> int:
        try:
            return await self._close_engine(timeout)
        finally:
            if self._custody is not None:
                # After the last report: the DONE entries are written and synced, off
                # the loop (fsyncs block).
                custody, self._custody = self._custody, None
                bound = self.settings.client.close_timeout + 1.0
                await asyncio.get_running_loop().run_in_executor(None, custody.close, bound)

    async def _close_engine(self, timeout: float | None) -> int:
        engine = self._engine
        if engine is None:
            self._closed = True
            self._accumulator.close()
            await self._client.close()
            return 0
        loop = engine.loop
        bound = self.settings.delivery_timeout if timeout is None else timeout
        deadline = loop.time() + bound
        cancelled = False
        if self._backlog and bound > 0:
            try:
                with contextlib.suppress(TimeoutError):
                    await self._backlog_drained(deadline)
            except asyncio.CancelledError:
                # Cancelled while waiting (asyncio.run's second Ctrl-C): wait no more,
                # report every record, then let the cancellation go on.
                cancelled = True
                deadline = loop.time()
        custody = self._custody
        if custody is not None and custody.pending and not cancelled:
            # What waits in the journal only goes to memory first, within the bound;
            # what the feeder cannot hand over in time stays in the journal.
            left = max(0.0, deadline - loop.time())
            await loop.run_in_executor(None, custody.wait_fed, left)
        self._closed = True
        # Not taken: the produce()/produce_batch() call waiting on it raises, a send()
        # future fails.
        failed = self._drop_backlog()
        failed += await engine.close(max(0.0, deadline - loop.time()))
        if cancelled:
            raise asyncio.CancelledError
        return failed
