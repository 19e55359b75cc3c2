"""``Producer``: the blocking producer.

``produce()`` appends into the accumulator from the caller's thread, under its lock: no
thread hop per record. The event-loop half (``_producer._engine.ProducerEngine``) runs on a
private loop thread; the caller's thread wakes it (``call_soon_threadsafe``) only when an
append says a batch became ready or a linger timer must start, and at most once until
the loop has looked. Reports (callbacks, futures) are resolved on the loop thread: keep
callbacks short, and do not block in them.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from functools import partial
from types import TracebackType
from typing import Any, Final, Self

from pykaf._client._async_client import AsyncClient
from pykaf._client._ctrl_c import defer_in_main_thread, release_handler
from pykaf._client._fork import refusing, watch
from pykaf._client._loop_thread import LoopThread, waits_for_itself
from pykaf._client._validate import settings_or_options
from pykaf._errors import (
    ClientClosedError,
    DeliveryError,
    KafkaTimeoutError,
    ProducerClosedError,
)
from pykaf._producer._custody import Custody, build_accumulator, open_custody
from pykaf._producer._custody_events import CustodyEventCallback
from pykaf._producer._delivery import (
    DeliveryCallback,
    ErrorCallback,
    RecordMetadata,
    Reporter,
)
from pykaf._producer._engine import ProducerEngine
from pykaf._producer._exit_flush import EXIT_FLUSH, INTERRUPTED_FLUSH, warn_unclosed
from pykaf._producer._future import DeliveryFuture
from pykaf._producer._replay_identity import ReplayStats, ReplayTally
from pykaf._producer._settings import ProducerSettings
from pykaf._producer._when_full import BlockWhenFull

__all__ = ["Producer"]

# Extra wait on top of an operation's own bound before the blocking side gives up: the
# loop side raises its own typed error first; this only guards against a stuck loop.
_MARGIN: Final = 1.0


class Producer:
    """Produce records to Kafka from blocking code; thread-safe.

    ``Producer(bootstrap, *, on_error=None, **settings)``: settings are
    ``ProducerSettings`` names plus every client setting, or ``settings=``. Nothing
    connects before the first record. ``with Producer(...) as p:`` closes it on exit
    (flushing first).

    - ``produce(topic, value, key=None, *, partition=None, headers=None, timestamp=None,
      on_delivery=None)``: fire-and-forget, the fastest path;
    - ``send(...)``: a ``concurrent.futures.Future`` of ``RecordMetadata``;
    - ``produce_batch(topic, items)``: many records in one call;
    - ``flush(timeout=None) -> int``, ``close(timeout=None) -> int``.

    Custody (``custody=``, DESIGN.md "Custody"): "memory" (the default) holds records in
    RAM; "journal" appends each to ``journal_dir`` before produce() returns (fsynced within
    ``journal_fsync_interval``); "journal_sync" returns after that fsync. A journaled
    producer first re-sends what an earlier one on the same directory left unacknowledged
    (``recovered()`` says what; their reports go to ``on_replayed_delivery(metadata,
    error)``, else failures to ``on_error``); a second live producer on the directory gets
    ``JournalLockedError``; a full journal blocks like a full buffer, then
    ``JournalFullError``. With a journal a full buffer never blocks: records past
    ``buffer_memory`` wait in the journal and are fed back in order as memory frees
    (brokers down for hours cost disk, not memory). ``close()`` keeps what was not
    delivered in the journal for the next producer (reports: ``JournalKeptError``).
    ``on_custody_event(event)`` hears downtime and replays (``CustodyEvent``).

    Telemetry: ``on_event=`` or ``events.subscribe`` hears ``pykaf.events`` (batches sent,
    acknowledged, retried, failed; buffer and journal fill; downtime; replay), per batch.
    ``transform_batch(topic, partition, records) -> records`` rewrites or merges each
    batch's records before it is sent (``pykaf._producer._transform``).

    Appends block (up to ``max_block``) only when the buffer is full or the topic is new
    (its metadata is fetched once). Failures of records with no ``on_delivery`` and no
    future go to ``on_error(record, error)``, else to the "pykaf.producer" log at ERROR.
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
        # Validate in the caller's thread, so bad settings raise before a thread starts.
        self.settings = settings_or_options(settings, options, ProducerSettings.from_options)
        reporter = Reporter(on_error)
        client = AsyncClient(bootstrap, settings=self.settings.client)
        self.events = client.events  # telemetry (pykaf.events): the client's bus
        self.stats = client.stats  # telemetry: a Stats snapshot (pykaf.telemetry)
        # Before the loop thread: a locked or damaged journal_dir refuses with no thread.
        self._custody = open_custody(
            self.settings, reporter, on_replayed_delivery, on_custody_event, client.events
        )
        self._loop = LoopThread("pykaf-producer")
        loop_thread = self._loop

        def can_block() -> bool:
            # The loop thread frees memory: blocking it (from a delivery callback that
            # produces) would wait forever.
            return not loop_thread.in_loop_thread

        accumulator = build_accumulator(
            self.settings,
            self._custody,
            BlockWhenFull(can_block=can_block),
            can_block=can_block,
            sync_in_caller=True,
        )
        self._accumulator = accumulator
        self._engine = ProducerEngine(self.settings, client, accumulator, reporter, self._loop.loop)
        pump = self._engine.pump
        call_soon_threadsafe = self._loop.loop.call_soon_threadsafe

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop already stopped (closed)
                call_soon_threadsafe(pump)

        accumulator.wake = wake
        self._wake_loop = wake
        call_soon_threadsafe(self._engine.watch_wakes)
        accumulator.fetch_topic = self._ensure_topic
        accumulator.max_block = self.settings.max_block
        # The hot path: produce() is the accumulator's append itself, no wrapper call
        # per record (same signature; the method below documents it).
        self.produce = accumulator.append  # type: ignore[method-assign]
        self._append = accumulator.append
        self._bootstrap = client.bootstrap
        self._close_lock = threading.Lock()
        self._closed = False
        self._failed_by_close = 0
        _OPEN.add(self)
        watch(self)
        if self._custody is not None:
            self._attach(self._custody, client, reporter)
        # Ctrl-C in the middle of an append waits for its end (``_ctrl_c``).
        self._defers_ctrl_c = defer_in_main_thread()

    def forked(self, parent_pid: int) -> None:
        """In a forked child (``pykaf._client._fork``): every call raises
        ``ProducerForkedError``; close() does nothing (the records are the parent's to
        send and report, the journal the parent's to write), nor does interpreter exit."""
        _OPEN.discard(self)
        self._closed = True
        self._defers_ctrl_c = False  # the parent's Ctrl-C handler: not this copy's to give back
        refuse = refusing("producer", parent_pid)
        for name in ("produce", "send", "produce_batch", "partitions_for", "flush"):
            setattr(self, name, refuse)

    def _attach(self, custody: Custody, client: AsyncClient, reporter: Reporter) -> None:
        # The journal's feeder runs in a thread of its own: it reaches the loop safely.
        call_soon_threadsafe = self._loop.loop.call_soon_threadsafe

        def report(record: Any, error: DeliveryError) -> None:
            with contextlib.suppress(RuntimeError):  # the loop already stopped (closed)
                call_soon_threadsafe(reporter.failed, record, error)

        custody.attach(
            self._accumulator, ensure_topic=self._ensure_topic, report=report, wake=self._wake_loop
        )
        client.on_cluster_outage(custody.downtime.cluster_changed)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Producer {','.join(map(str, self._bootstrap))} {state}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            # Ctrl-C: the user wants out, not a wait of delivery_timeout. A short flush,
            # then every record left gets its report (a second Ctrl-C cuts the flush).
            self.close(INTERRUPTED_FLUSH)
        else:
            self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def recovered(self) -> dict[tuple[str, int], int]:
        """Records an earlier producer journaled and did not get acknowledged, being sent
        again now (custody "journal"/"journal_sync"): a count per (topic, partition).
        Their reports go to ``on_replayed_delivery`` (or, failures, to ``on_error``)."""
        return {} if self._custody is None else self._custody.recovered()

    def pending(self) -> int:
        """How many records are produced and not reported yet (delivered or failed): in
        memory, and with a journal also those waiting in it only (recovered after a
        crash, or past ``buffer_memory``). confluent-kafka's ``len(producer)``; unlike
        ``flush(0)``, it sends nothing early and waits for nothing."""
        custody = self._custody
        return self._accumulator.pending() + (0 if custody is None else custody.unfed())

    def replay_stats(self) -> ReplayStats:
        """What became of the recovered records so far: how many the broker accepted as
        the very batches the crashed producer had sent (``proven``: not duplicated), how
        many had to be sent again without that proof (``resent_unproven``: possibly
        duplicated), never sent before, failed; ``settled`` once all are counted. All
        zero without a journal. A line at INFO (WARNING if any were unproven or failed)
        says the same when the replay is settled."""
        if self._custody is None:
            return ReplayTally(None, 0).snapshot()
        return self._custody.replay_stats()

    # -- sending --------------------------------------------------------------------------

    def produce(
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
        """Queue one record; ``on_delivery(metadata, error)`` (on the producer's thread)
        gets its outcome. Raises ``BufferFullError`` after ``max_block`` when the buffer
        stays full, ``RecordTooLargeError``, ``ProducerClosedError``, ``TypeError`` /
        ``ValueError`` for bad arguments: the record was not taken then."""
        self._append(
            topic,
            value,
            key,
            partition=partition,
            headers=headers,
            timestamp=timestamp,
            on_delivery=on_delivery,
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
    ) -> concurrent.futures.Future[RecordMetadata]:
        """Queue one record; the future resolves to its ``RecordMetadata`` or fails with a
        ``DeliveryError``. Blocks (up to ``max_block``) only when the buffer is full."""
        # A concurrent.futures.Future subclass that builds its lock only when waited on.
        future: DeliveryFuture[RecordMetadata] = DeliveryFuture()
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

    def produce_batch(
        self,
        topic: str,
        items: Iterable[Any],
        *,
        partition: int | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Queue many records for ``topic`` in one call: values, ``(key, value)`` pairs,
        dicts or ``ProducerRecord``s. ``on_delivery`` is called once per record. If an
        item cannot be taken the call raises; the items before it were taken."""
        self._accumulator.append_many(topic, items, partition=partition, on_delivery=on_delivery)

    def partitions_for(self, topic: str) -> list[int]:
        """``topic``'s partitions, fetching its metadata first if this producer has not
        (up to ``max_block``). A producer that knows a topic can take its records while
        no broker answers (into memory, or with a journal into the journal)."""
        if not self._accumulator.knows(topic):
            self._ensure_topic(topic)
        return self._accumulator.partition_numbers(topic)

    def _ensure_topic(self, topic: str) -> None:
        if self._closed:
            raise ProducerClosedError("the producer is closed")
        if self._loop.in_loop_thread:
            raise KafkaTimeoutError(
                f"topic {topic!r} is new, and its metadata cannot be fetched from a delivery"
                " callback (the producer's own thread); produce to it once from elsewhere"
            )
        try:
            outcome = self._loop.run(
                lambda: _returning_errors(
                    self._engine.ensure_topic(topic, self.settings.max_block)
                ),
                self.settings.max_block + _MARGIN,
            )
        except ClientClosedError:
            raise ProducerClosedError("the producer was closed") from None
        if outcome is not None:
            raise outcome

    # -- flush and close ------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> int:
        """Send everything buffered now and wait for the reports of the records produced
        before this call, at most ``timeout`` seconds (None: until each is delivered or
        failed, so at most ``delivery_timeout``). Returns how many are still pending."""
        if self._closed:
            return 0
        bound = (self.settings.delivery_timeout if timeout is None else timeout) + _MARGIN
        if self._loop.in_loop_thread:  # from a delivery callback: the loop cannot wait
            raise waits_for_itself("flush")
        accumulator = self._accumulator
        custody = self._custody
        if custody is not None and custody.pending:
            # Records waiting in the journal only (recovered, or past buffer_memory) come
            # before this call's: wait for the feeder to hand them over to memory first
            # (they are then covered like any other).
            fed, left = custody.wait_fed(bound if timeout is None else timeout)
            if not fed:
                return accumulator.pending() + custody.unfed()
            if timeout is not None:
                timeout = left
        # The hot one-at-a-time path: the flush registers with the accumulator (under its
        # lock) and the loop picks it up at its next look; the loop is woken only if no
        # wake is pending already (the append just before usually woke it). The loop
        # releases a held lock: no task, no coroutine, no run_coroutine_threadsafe, and
        # not a threading.Event either, whose Condition costs the loop thread a second
        # lock round trip while this thread, just woken, waits for the GIL behind it.
        done = threading.Lock()
        done.acquire()
        # Every batch is ready from here to end_flush: linger is not waited out.
        target, registered, wake = accumulator.watch_flush(_releaser(done))
        try:
            if not registered:
                return accumulator.pending(target)
            if wake:
                self._wake_loop()
            done.acquire(timeout=bound if timeout is None else timeout)
        finally:
            accumulator.end_flush()
        return accumulator.pending(target)

    def close(self, timeout: float | None = None) -> int:
        """Flush within ``timeout`` (None: ``delivery_timeout``), then fail every record
        still pending with ``ProducerClosedError`` (its report says whether it may have
        been written), close the connections and stop the producer's thread. Returns the
        number of records that failed because of the close. Never hangs: bounded by
        ``timeout`` plus the client's ``close_timeout`` and a small margin."""
        if self._loop.in_loop_thread and not self._closed:
            # Before: it waited out its whole bound for the loop it was blocking (8 s
            # for close(5)), then stopped that loop with no close of the engine.
            raise waits_for_itself("close")
        closing = self._begin_close(timeout)
        if closing is not None:
            self._end_close(*closing)
        return self._failed_by_close

    def _begin_close(
        self, timeout: float | None
    ) -> tuple[concurrent.futures.Future[int] | None, float] | None:
        """``close`` up to the flush handed to the producer's loop, which goes on there
        while the caller does something else (closes other producers: ``_close_open_producers``);
        None when the producer was closed already. ``_end_close`` waits for it."""
        with self._close_lock:
            if self._closed:
                return None
            self._closed = True
        flush_bound = self.settings.delivery_timeout if timeout is None else max(0.0, timeout)
        custody = self._custody
        if custody is not None:
            # Let the feeder hand what waits in the journal to memory within the flush's
            # bound; what it could not stays in the journal for the next producer.
            flush_bound = custody.wait_fed(flush_bound)[1]
        self._accumulator.close()
        _OPEN.discard(self)
        bound = flush_bound + self.settings.client.close_timeout + _MARGIN
        closing: concurrent.futures.Future[int] | None = None
        try:
            closing = self._loop.submit(partial(self._engine.close, flush_bound))
        except ClientClosedError:
            pass  # the loop stopped already: nothing to flush through it
        except KeyboardInterrupt:
            self._end_close(None, bound)  # nothing was handed over: close without a flush
            raise
        return closing, bound

    def _end_close(self, closing: concurrent.futures.Future[int] | None, bound: float) -> None:
        try:
            # A loop too stuck to close in time is abandoned: close() must return.
            with contextlib.suppress(KafkaTimeoutError, ClientClosedError):
                self._failed_by_close = self._wait_for_close(closing, bound)
        finally:
            self._loop.stop(_MARGIN)
            custody = self._custody
            if custody is not None:
                # Every report is given: their DONE entries are written and synced (and
                # what stays in the journal for the next producer is said at WARNING).
                custody.close(self.settings.client.close_timeout + _MARGIN)
            if self._defers_ctrl_c:
                self._defers_ctrl_c = False
                release_handler()

    def _wait_for_close(self, closing: concurrent.futures.Future[int] | None, bound: float) -> int:
        try:
            if closing is None:  # the flush was never handed over: close without one
                closing = self._loop.submit(partial(self._engine.close, 0.0))
            return self._loop.wait(closing, bound)
        except KeyboardInterrupt:
            # Ctrl-C during the flush: stop it; every record left fails at once (its
            # report runs), then the interrupt goes on.
            self._loop.loop.call_soon_threadsafe(self._engine.cut_flush)
            if closing is None:  # interrupted while handing the close over: again, no flush
                closing = self._loop.submit(partial(self._engine.close, 0.0))
            with contextlib.suppress(KafkaTimeoutError, ClientClosedError):
                self._failed_by_close = self._loop.wait(
                    closing, self.settings.client.close_timeout + _MARGIN
                )
            raise


# Open producers, closed by ``_close_open_producers`` at interpreter exit. Strong
# references on purpose: a producer dropped without close() still owes reports.
_OPEN: set[Producer] = set()


@atexit.register
def _close_open_producers() -> None:
    """The interpreter exits with producers open: flush them briefly, report the rest
    (callbacks, on_error) and say so, rather than lose their buffers in silence. Their
    flushes run at the same time, within one ``EXIT_FLUSH`` from now, each on its own
    loop: three producers left open with their brokers away took three flushes one after
    the other (3 x 5 s, plus each one's close_timeout)."""
    ends_at = time.monotonic() + EXIT_FLUSH
    closing = []
    for producer in list(_OPEN):
        with contextlib.suppress(Exception):
            pending = producer._accumulator.pending()
            begun = producer._begin_close(max(0.0, ends_at - time.monotonic()))
            closing.append((producer, pending, begun))
    for producer, pending, begun in closing:
        with contextlib.suppress(Exception):
            if begun is not None:
                producer._end_close(*begun)
            warn_unclosed(producer, pending, producer._failed_by_close, "interpreter exit")


def _releaser(lock: threading.Lock) -> Callable[[], None]:
    def release() -> None:
        with contextlib.suppress(RuntimeError):  # released already (close raced the flush)
            lock.release()

    return release


async def _returning_errors(coro: Coroutine[Any, Any, None]) -> BaseException | None:
    """The coroutine's error as a value: ``LoopThread.run`` would take a
    ``KafkaTimeoutError`` (a ``TimeoutError``) for its own timeout and reword it."""
    try:
        await coro
    except ClientClosedError:
        return ProducerClosedError("the producer was closed")
    except Exception as exc:
        return exc
    return None
