"""The event-loop half of a producer: pumping, timers, senders, metadata, producer id.

Both producers share it: ``AsyncProducer`` runs it on the caller's loop, ``Producer`` on
its private loop thread. Callers never call into it per record: they append into the
accumulator and, when the append says so, ``wake()`` it (a coalesced ``pump``).

``pump`` looks at the accumulator once: fails queued batches past ``delivery_timeout``,
starts the sender of every broker with a ready batch, asks for metadata where a partition
has no leader, and arms one timer for the next linger, backoff or deadline. Responses come
back through ``response`` / ``request_failed`` in send order, per broker: what they mean
for each batch (success, retry, split, failure) is ``_outcomes.BatchOutcomes``, a mixin of
the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Final

from pykaf._client._async_client import AsyncClient
from pykaf._client._backoff import Backoff
from pykaf._client._connection import BrokerConnection
from pykaf._error_codes import error_for_code
from pykaf._errors import (
    BrokerError,
    ClientClosedError,
    DeliveryError,
    JournalKeptError,
    ProducerClosedError,
    PykafError,
)
from pykaf._producer._accumulator import Accumulator
from pykaf._producer._batch_events import BatchEvents
from pykaf._producer._batches import Batch, PartitionQueue
from pykaf._producer._custody_events import Downtime
from pykaf._producer._delivery import LooseRecords, Reporter
from pykaf._producer._idempotence import Idempotence
from pykaf._producer._metadata import ProducerMetadata
from pykaf._producer._outcomes import BatchOutcomes
from pykaf._producer._sender import BrokerSender
from pykaf._producer._settings import ProducerSettings
from pykaf._telemetry._log_limit import LogLimiter
from pykaf.protocol._messages import build_request

__all__ = ["ProducerEngine"]

log = logging.getLogger("pykaf.producer")

_INIT_PRODUCER_ID: Final = 22
# A blocking producer's loop looks this often for a wake promised and never sent
# (``watch_wakes``).
_WAKE_WATCH: Final = 0.5


class ProducerEngine(BatchOutcomes):
    def __init__(
        self,
        settings: ProducerSettings,
        client: AsyncClient,
        accumulator: Accumulator,
        reporter: Reporter,
        loop: asyncio.AbstractEventLoop,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.client = client
        self.accumulator = accumulator
        self.reporter = reporter
        self.loop = loop
        self._clock = clock
        self.idempotence = Idempotence() if settings.idempotent else None
        self.gate: Callable[[PartitionQueue, Batch], bool] = (
            self.idempotence.gate if self.idempotence is not None else _always
        )
        self._backoff = Backoff(initial=settings.retry_backoff, maximum=settings.retry_backoff_max)
        self._senders: dict[int, BrokerSender] = {}
        self._pump_scheduled = False
        self._pumps = 0
        self._pumps_at_watch = 0
        self._wake_watch: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.metadata = ProducerMetadata(
            client, accumulator, settings, loop, self._backoff, on_change=self._metadata_changed
        )
        self._identity_task: asyncio.Task[None] | None = None
        self._identity_bug_said = False  # a bug asking for an id was logged, none got through since
        # The cluster refused to bump this producer's epoch (KIP-360) once: from then on a
        # reset asks for a new producer id instead (``_init_producer_id``).
        self._no_bump = False
        # (serial, callback): called once every batch with serial <= it is finished.
        self._flushes: list[tuple[int, Callable[[], object]]] = []
        self._space: asyncio.Event | None = None
        self._next_age_check = clock() + settings.client.metadata_max_age
        self._fatal: BaseException | None = None
        self._closing = False
        self._absent_warned: set[str] = set()  # topics absent, their WARNING given
        self._reshaped = False  # metadata changed since a journaled producer looked
        self._closed = False
        self._close_flush: asyncio.Task[int] | None = None
        self._flush_cut = False
        accumulator.on_space = self._on_space
        # Lines that come in storms (retries, records that fail): rate-limited, counted,
        # the counts told at the end of each window (a timer on this loop) or at close.
        self.retry_log = LogLimiter(log, unit="record(s)", schedule=loop.call_later)
        reporter.log_limit.schedule = loop.call_later
        # Telemetry (``_batch_events``): the client's bus, tested once per request/answer.
        self.bus = client.events
        self.batch_events = BatchEvents(
            self.bus,
            settings.client.client_id,
            settings.buffer_memory,
            clock,
            accumulator if accumulator.keeps_at_close else None,
            settings.journal_max_bytes,
        )
        if not accumulator.keeps_at_close:
            # Custody "memory": its downtime, for the events only (a journal's is the
            # custody's own, with its log lines and on_custody_event).
            downtime = Downtime(None, None, self.bus, settings.client.client_id)
            downtime.records_taken = accumulator.records_taken
            client.on_cluster_outage(downtime.cluster_changed)

    # -- waking -------------------------------------------------------------------------

    def schedule_pump(self) -> None:
        """Pump once, soon (coalesced); call on the loop."""
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self.loop.call_soon(self.pump)

    def pump(self) -> None:
        self._pump_scheduled = False
        self._pumps += 1
        self._release()
        if self._closed:
            return
        now = self._clock()
        state = self.accumulator.ready(now)
        if state.flush_watchers:  # left by a blocking flush()
            self._flushes.extend(state.flush_watchers)
        if state.expired:
            self._expire(state.expired)
            # Their memory now, not at the next pump: with every broker down nothing
            # may pump again, and a journal's feeder waiting for that memory waited on
            # (records unreported past flush(30), 1 run in 30 of the custody tests).
            self._release()
        if self.accumulator.keeps_at_close and (self.metadata.absent_since or self._reshaped):
            self._fail_absent_topics()
            self._release()
        if self._fatal is not None:
            self._fail_all_queued(self._fatal)
            return
        idem = self.idempotence
        if idem is not None and idem.wants_new and (state.nodes or state.unled):
            self._start_identity()
        for node in state.nodes:
            sender = self._senders.get(node)
            if sender is None:
                sender = self._senders[node] = BrokerSender(self, node)
            sender.pump(now)
        if state.unled:
            self.refresh(state.unled)
        if now >= self._next_age_check:
            self._next_age_check = now + self.settings.client.metadata_max_age
            self.refresh(self.accumulator.topics())
        self._arm(state.next_at)
        if self._flushes:
            self._check_flushes()
        if self.bus.active:
            self.batch_events.fill(self.accumulator.used)

    def watch_wakes(self) -> None:
        """On the loop, every ``_WAKE_WATCH`` seconds until closed: pump if the wake the
        accumulator promised has not come in a whole round.

        A blocking producer's caller sends the wake it promised right after the
        accumulator's lock, unless Ctrl-C's ``KeyboardInterrupt`` lands in between (a
        program may catch it and go on producing). Then no wake comes, and while the
        promise stands no later append sends one: records would wait for close, or for
        their delivery deadline."""
        if self._closed:
            return
        if self.accumulator.wake_pending and self._pumps == self._pumps_at_watch:
            self.pump()
        self._pumps_at_watch = self._pumps
        self._wake_watch = self.loop.call_later(_WAKE_WATCH, self.watch_wakes)

    def _arm(self, when: float | None) -> None:
        if when == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None:
            delay = max(0.0, when - self._clock())
            self._timer = self.loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.pump()

    # -- after answers (what they mean per batch: _outcomes) -----------------------------

    def answered(self) -> None:
        """A sender handed on its answered requests: pump again only if a batch waits
        (one the in-flight limit or a gate held back). Every unfinished batch in flight
        means nothing is queued, and an append wakes the loop itself: skipping the pump
        then keeps the loop turn after a one-at-a-time answer empty, which is the turn
        the caller's thread waits behind for the GIL."""
        # (Halves of a split batch are not counted by the accumulator: pump for them.)
        if (
            self.accumulator.incomplete > self._batches_in_flight
            or self._splits_open
            or self._closing
        ):
            self.schedule_pump()

    # -- connections and metadata -----------------------------------------------------------

    async def connection(self, node_id: int) -> BrokerConnection:
        cluster = self.client._cluster
        conn = cluster.ready_connection(node_id, "produce")
        if conn is not None:
            return conn
        deadline = self.loop.time() + self.settings.request_timeout
        return await cluster.connection(node_id, "produce", deadline)

    def node_failed(self, node_id: int, error: BaseException) -> None:
        """Connecting to ``node_id`` failed: its partitions may have a new leader."""
        topics: set[str] = set()
        for part in self.accumulator.partitions():
            if part.leader == node_id and part.batches:
                topics.add(part.topic.name)
                part.last_error = error
        for topic in topics:
            self.client._cluster.cache.mark_stale(topic)
        if topics:
            self.refresh(topics)
        # Try again after the pool's reconnect backoff (or the next response, or refresh).
        pool = self.client._pool
        broker = self.client._cluster.cache.brokers.get(node_id)
        wait = self.settings.retry_backoff
        if broker is not None:
            wait = max(wait, pool.wait_before_connect(broker.address, self.loop.time()))
        self.loop.call_later(wait, self.schedule_pump)

    def refresh(self, topics: Iterable[str]) -> None:
        """Fetch metadata for ``topics`` soon (see ``ProducerMetadata``)."""
        self.metadata.refresh(topics)

    async def ensure_topic(self, topic: str, timeout: float) -> None:
        """Wait (up to ``timeout`` s) until ``topic``'s partitions are known."""
        await self.metadata.ensure_topic(topic, timeout)

    # -- producer id ------------------------------------------------------------------------

    def _start_identity(self) -> None:
        if self._identity_task is None and not self._closing:
            self._identity_task = self.loop.create_task(self._init_producer_id())

    async def _init_producer_id(self) -> None:
        idem = self.idempotence
        assert idem is not None
        attempt = 0
        try:
            while idem.wants_new and not self._closing:
                try:
                    await self._ask_producer_id(idem)
                except (BrokerError, PykafError, OSError) as exc:
                    if isinstance(exc, ClientClosedError):
                        return
                    if not getattr(exc, "retriable", False) and not isinstance(exc, OSError):
                        if idem.identity is not None and not self._no_bump:
                            # Brokers that speak InitProducerId v3+ without the epoch bump
                            # answer it with an error (tansu: UNKNOWN_SERVER_ERROR; the
                            # mock cluster: INVALID_PRODUCER_ID_MAPPING). A new producer id
                            # starts every partition at sequence 0 all the same; failing
                            # for good instead would fail every later record.
                            self._no_bump = True
                            log.warning(
                                "the cluster refused to bump this producer's epoch (%s):"
                                " asking for a new producer id instead",
                                exc,
                            )
                            continue
                        log.error("InitProducerId failed for good: %s", exc)
                        self._fatal = exc
                        self.schedule_pump()
                        return
                except Exception:
                    # A bug, none of the client's errors: said once per episode with its
                    # traceback, then tried again. Before, the task ended, and asyncio
                    # printed the exception only when the task was collected.
                    level = logging.DEBUG if self._identity_bug_said else logging.ERROR
                    self._identity_bug_said = True
                    log.log(level, "asking for a producer id failed; trying again", exc_info=True)
                else:
                    self._identity_bug_said = False  # got through: the episode is over
                    continue
                attempt += 1
                await asyncio.sleep(self._backoff.delay(attempt, random.random()))
        finally:
            self._identity_task = None
        self.schedule_pump()

    async def _ask_producer_id(self, idem: Idempotence) -> None:
        versions = await self.client.api_versions()
        version = versions.version(_INIT_PRODUCER_ID)
        current = idem.identity
        bump = current is not None and version >= 3 and not self._no_bump
        request = build_request(
            _INIT_PRODUCER_ID,
            version,
            transactional_id=None,
            transaction_timeout=60000,
            producer_id=current.producer_id if bump and current else -1,
            producer_epoch=current.epoch if bump and current else -1,
        )
        response = await self.client.request(request, to="any")
        code = int(response.error_code)
        if code:
            raise error_for_code(code, "(InitProducerId)")
        identity = idem.set_identity(int(response.producer_id), int(response.producer_epoch))
        log.debug("producer id %s", identity)

    # -- memory, flush, close ---------------------------------------------------------------

    def _on_space(self) -> None:
        # Called by the accumulator (lock held) when memory was freed, on this loop.
        if self._space is not None:
            self._space.set()

    def feed_moved(self) -> None:
        # The journal's feeder handed records back to memory (from its thread, through
        # the loop): send them, and wake the callers that await the feed (``FeedSoon``)
        # as those that await room.
        self.schedule_pump()
        self._on_space()

    async def wait_for_space(self, timeout: float) -> bool:
        if self._space is None:
            self._space = asyncio.Event()
        self._space.clear()
        try:
            async with asyncio.timeout(timeout):
                await self._space.wait()
        except TimeoutError:
            return False
        return True

    def _check_flushes(self) -> None:
        waiting = []
        done_up_to = self.accumulator.done_up_to
        for target, callback in self._flushes:
            if done_up_to(target):
                callback()
            else:
                waiting.append((target, callback))
        self._flushes = waiting

    def watch_flush(self, target: int, callback: Callable[[], object]) -> None:
        """Call ``callback`` (on the loop) once the batches up to serial ``target`` are
        finished, or at close; sends what is buffered now. The blocking producer's flush
        uses it through one ``call_soon_threadsafe``: no task, no coroutine."""
        if self.accumulator.done_up_to(target):
            callback()
            return
        self._flushes.append((target, callback))
        self.pump()

    async def flush(self, timeout: float | None) -> int:
        """Send everything now; wait until the records produced before the call are
        reported (at most ``timeout`` s). Returns how many of those are still pending."""
        accumulator = self.accumulator
        target = accumulator.begin_flush()
        try:
            if not accumulator.done_up_to(target):
                future: asyncio.Future[None] = self.loop.create_future()

                def resolve() -> None:
                    if not future.done():
                        future.set_result(None)

                self.watch_flush(target, resolve)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await future
        finally:
            accumulator.end_flush()
        return accumulator.pending(target)

    def cut_flush(self) -> None:
        """Stop the flush of a close in progress: the close fails the rest at once."""
        self._flush_cut = True
        if self._close_flush is not None:
            self._close_flush.cancel()

    async def close(self, timeout: float | None) -> int:
        """Flush within ``timeout`` (None: ``delivery_timeout``), then fail whatever is
        left with ``ProducerClosedError`` and close the connections. Returns the number
        of records that failed because of the close."""
        self.accumulator.close()
        if timeout is None:
            timeout = self.settings.delivery_timeout
        if timeout > 0 and not self._closed and not self._flush_cut:
            # A task of its own, so ``cut_flush`` (a second Ctrl-C) can end it early.
            self._close_flush = self.loop.create_task(self.flush(timeout))
            try:
                await asyncio.wait({self._close_flush})
            except asyncio.CancelledError:
                # asyncio.run's second Ctrl-C cancels every task left: no more waiting,
                # but every record still gets its report before the cancellation goes on.
                self._close_flush.cancel()
                await self._end(ProducerClosedError("the producer was closed"))
                raise
        return await self._end(ProducerClosedError("the producer was closed"))

    def _metadata_changed(self) -> None:
        self._reshaped = True
        self.schedule_pump()

    def _fail_absent_topics(self) -> None:
        # A journaled producer waits out outages without a deadline; a topic that a
        # broker says does not exist (deleted meanwhile) for max_block would be waited
        # for forever: its queued records fail with a report instead.
        if self._reshaped:
            self._reshaped = False
            for batch in self.accumulator.take_orphaned():
                self._finish(
                    batch,
                    DeliveryError(
                        f"{len(batch.records)} record(s) to {batch.topic}-{batch.partition}:"
                        " the topic no longer has this partition (deleted and created again?)"
                    ),
                )
        now = self.loop.time()
        absent = self.metadata.absent_since
        self._absent_warned &= absent.keys()  # a topic back ends its episode
        for topic, since in list(absent.items()):
            if now - since < self.settings.max_block:
                continue
            batches = self.accumulator.take_topic(topic)
            if not batches:
                continue
            cause = self.metadata.errors.get(topic)
            if topic not in self._absent_warned:
                self._absent_warned.add(topic)
                log.warning(
                    "topic %r does not exist (deleted?) for %.0f s: its journaled records"
                    " fail with a report (%d now)",
                    topic,
                    now - since,
                    sum(len(batch.records) for batch in batches),
                )
            for batch in batches:
                self._finish(
                    batch,
                    DeliveryError(
                        f"{len(batch.records)} record(s) to {topic}-{batch.partition}: the"
                        f" topic does not exist (deleted?), said for {now - since:.0f}s",
                        cause=cause,
                    ),
                )
        self._release()

    def _report_kept(self) -> None:
        # Records still in the journal only (spilled, not fed to memory yet): they stay
        # there for the next producer; this one's reports end with JournalKeptError.
        count, reports = self.accumulator.take_kept()
        self.failed_by_close += count
        if reports:
            self.reporter.failed(
                LooseRecords(
                    "(journal)",
                    -1,
                    [(None, None, None, None)] * len(reports),
                    list(enumerate(reports)),
                ),
                JournalKeptError(
                    "the producer closed before the record was sent; it is kept in the"
                    " journal, and the next producer on it sends it"
                ),
            )

    async def _end(self, error: ProducerClosedError) -> int:
        """Fail whatever is left with ``error`` and close the connections (once)."""
        if self._closed:
            return self.failed_by_close
        self._closing = True
        self.metadata.closing = True  # no new metadata requests from here
        for sender in self._senders.values():
            sender.abort(self._fail_in_flight)
        self._fail_all_queued(error)
        self._report_kept()
        for part in self.accumulator.partitions():
            if part.returned:
                returned, part.returned = part.returned, []
                for batch in returned:
                    self._finish(
                        batch, self._delivery_error(batch, ProducerClosedError("closed"), False)
                    )
        # Last, a batch in no queue and no request: a KeyboardInterrupt (asyncio.run's
        # second Ctrl-C) can land in the code that moves a batch between them. It still
        # owes its reports; whether it was written is unknown, so it says "maybe".
        for batch in self.accumulator.unfinished():
            if not batch.done and not batch.children_left:
                batch.maybe_persisted = True
                self._finish(batch, self._delivery_error(batch, error, False))
        self.metadata.close()
        self._release()
        self.retry_log.flush()
        self.reporter.log_limit.flush()
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._wake_watch is not None:
            self._wake_watch.cancel()
        if self._identity_task is not None:
            self._identity_task.cancel()
        self._flushes.extend(self.accumulator.take_flush_watchers())
        self._check_flushes()
        flushes, self._flushes = self._flushes, []
        for _, callback in flushes:
            callback()
        with contextlib.suppress(PykafError):
            await self.client.close()
        return self.failed_by_close


def _always(part: PartitionQueue, batch: Batch) -> bool:
    return True
