"""What happens to a batch once its request is answered: success, retry, split or failure.

The engine pumps batches out; this module decides what each answer means for each batch
and carries it out. Kept apart from the pumping because it is the one place a batch's
fate is decided (the policy below) and the one place it gets its reports (``_finish``),
whereas the engine is about when to look and whom to send to. A mixin of
``ProducerEngine``, not an object of its own: it reads the engine's settings, clients and
flags, and the senders call it through the engine once per answer.

Outcomes of a batch:
- success (or a duplicate the broker already has): reports resolved, memory freed;
- a batch replayed after a crash with its journaled identity (``Batch.pinned``) that the
  broker can no longer place (``RESEQUENCE_CODES``): sent again under the current
  identity, counted as not proven delivered (``_replay_identity``);
- retriable (a broker error marked retriable, a lost connection, a timeout, a sequence
  that is out of order behind a failed one): held in its partition until every batch of
  that partition in flight is back, then put back in front, in order, after a backoff;
  a leader change (a stale-metadata code) also refreshes the metadata first;
- too large for the topic (MESSAGE_TOO_LARGE, more than one record): split in halves,
  sent in its place;
- anything else, or past ``delivery_timeout``: failed with a ``DeliveryError``.

A retry is logged at INFO (``retry_log``: at most one line per error class per window,
the rest counted and told when the window ends, so a dead broker's hundred batches are one
line and a count, never a hundred lines); what finally fails is the reporter's to tell.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from typing import Final

from pykaf._client._async_client import AsyncClient
from pykaf._client._backoff import Backoff
from pykaf._client._stale import METADATA_STALE_CODES
from pykaf._error_codes import error_for_code
from pykaf._errors import (
    ClientClosedError,
    DeliveryError,
    DeliveryTimeoutError,
    JournalKeptError,
    KafkaTimeoutError,
    ProducerClosedError,
    PykafError,
)
from pykaf._producer._accumulator import Accumulator
from pykaf._producer._batch_events import BatchEvents
from pykaf._producer._batches import Batch, PartitionQueue, split_batch
from pykaf._producer._delivery import Reporter
from pykaf._producer._idempotence import DUPLICATE_SEQUENCE_NUMBER, Idempotence, Verdict
from pykaf._producer._metadata import ProducerMetadata
from pykaf._producer._replay_identity import RESEQUENCE_CODES
from pykaf._producer._settings import ProducerSettings
from pykaf._producer._transform import delivered_view, failed_view
from pykaf._telemetry._bus import EventBus
from pykaf._telemetry._log_limit import LogLimiter
from pykaf.protocol._produce_response import ProduceOutcomes

__all__ = ["BatchOutcomes"]

log = logging.getLogger("pykaf.producer")

_MESSAGE_TOO_LARGE: Final = 10
# Codes after which the leader may have written the batch (the answer is not "no").
_MAYBE_WRITTEN_CODES: Final = frozenset({7, 20})  # REQUEST_TIMED_OUT, NOT_ENOUGH_..._AFTER_APPEND

# What a failed record's message adds when it may be in the log all the same.
_NO_ANSWER_ASKED = " (acks=0: no answer is asked for, so they may be in the log)"
_NO_ANSWER_CAME = " (a request carrying them got no answer: they may be in the log all the same)"


class BatchOutcomes:
    """The answer side of ``ProducerEngine`` (see the module doc)."""

    # The engine's, set by ``ProducerEngine.__init__``: what deciding an outcome reads.
    settings: ProducerSettings
    client: AsyncClient
    accumulator: Accumulator
    reporter: Reporter
    idempotence: Idempotence | None
    metadata: ProducerMetadata
    bus: EventBus
    batch_events: BatchEvents
    retry_log: LogLimiter
    _clock: Callable[[], float]
    _backoff: Backoff
    _closing: bool
    _flushes: list[tuple[int, Callable[[], object]]]
    # The engine's methods an outcome calls (pump again, fetch metadata, end flushes).
    schedule_pump: Callable[[], None]
    refresh: Callable[[Iterable[str]], None]
    _check_flushes: Callable[[], None]

    def __init__(self) -> None:
        self.failed_by_close = 0  # records failed by the close (``close`` returns it)
        self._finished: list[Batch] = []  # whose memory ``_release`` frees next
        self._batches_in_flight = 0  # sent, not answered yet (all senders)
        self._splits_open = 0  # batches split in halves, not finished yet

    def sent(self, batches: list[Batch], node_id: int) -> None:
        self._batches_in_flight += len(batches)
        for batch in batches:
            part = batch.part
            part.in_flight += 1
            part.in_flight_node = node_id
            batch.attempts += 1
        if self.bus.active:
            self.batch_events.sent(batches, node_id)

    def response(
        self, batches: list[Batch], response: ProduceOutcomes | None, *, node_id: int
    ) -> None:
        try:
            self._response(batches, response, node_id)
        finally:
            self._release()
            if self._flushes:  # now, not at the next pump: a flush waits on this turn
                self._check_flushes()
            if self.bus.active:
                self.batch_events.fill(self.accumulator.used)

    def _response(
        self, batches: list[Batch], outcomes: ProduceOutcomes | None, node_id: int
    ) -> None:
        if outcomes is None:
            if self.settings.acks_code == 0:  # written, never answered: that is success
                for batch in batches:
                    self._succeeded(batch, -1, -1)
                return
            error = PykafError(f"broker {node_id} gave no answer to a Produce")
            for batch in batches:
                self._failed(batch, error, retriable=True, maybe_written=True)
            return
        for batch in batches:
            outcome = outcomes.get((batch.topic, batch.partition))
            if outcome is None:
                outcome = outcomes.get((batch.part.topic.topic_id, batch.partition))
            if outcome is None:
                error = PykafError(
                    f"broker {node_id} answered a Produce without {batch.topic}-{batch.partition}"
                )
                self._failed(batch, error, retriable=True, maybe_written=True)
                continue
            code, base_offset, append_time, message = outcome
            if code == 0:
                self._succeeded(batch, base_offset, append_time)
            else:
                self._error_code(batch, code, message, base_offset, append_time, node_id)

    def _error_code(
        self,
        batch: Batch,
        code: int,
        message: str | None,
        base_offset: int,
        append_time: int,
        node_id: int,
    ) -> None:
        error = error_for_code(
            code,
            f"(Produce to {batch.topic}-{batch.partition}"
            + (f" on broker {node_id}: {message})" if message else f" on broker {node_id})"),
        )
        if batch.pinned is not None:  # replayed with its journaled identity
            if code == DUPLICATE_SEQUENCE_NUMBER:
                self._succeeded(batch, base_offset, append_time)
                return
            if code in RESEQUENCE_CODES:
                self._resequence(batch, error)
                return
        idem = self.idempotence
        verdict = Verdict.OTHER if idem is None else idem.classify(batch.part, batch, code)
        if verdict is Verdict.SUCCESS:
            self._succeeded(batch, base_offset, append_time)
            return
        if verdict is Verdict.FAIL:
            self._failed(batch, error, retriable=False, maybe_written=False)
            return
        if (
            code == _MESSAGE_TOO_LARGE
            and len(batch.records) > 1
            and batch.originals is None  # transformed: its reports map to these records
            and not self._closing
            and self._clock() < batch.deadline
        ):
            self._split(batch)
            return
        if code in METADATA_STALE_CODES:
            self.client._cluster.cache.mark_stale(batch.topic)
            self.refresh((batch.topic,))
        retriable = verdict is not Verdict.OTHER or error.retriable
        self._failed(batch, error, retriable=retriable, maybe_written=code in _MAYBE_WRITTEN_CODES)

    def _split(self, batch: Batch) -> None:
        """The broker refused ``batch`` as too large (its topic's max.message.bytes is
        below our batch size): send its halves instead, in its place and order, as the
        Java client does. Not a retry (no backoff growth); a single record still too
        large fails with MESSAGE_TOO_LARGE."""
        if batch.pinned is not None:
            batch.pinned.unpin(batch)  # its halves cannot be the batch the broker may have
        part = batch.part
        part.in_flight -= 1
        self._batches_in_flight -= 1
        self._splits_open += 1
        # In halves, or in as many parts as the topic's batches are capped at now
        # (``refused_as_too_large``): batches built before the cap are refused once.
        cap = self.accumulator.refused_as_too_large(batch.topic, batch.size)
        part.returned.extend(split_batch(batch, -(-batch.size // cap)))
        log.debug("split %r: the broker refused it as too large", batch)
        if part.in_flight == 0:
            batches, part.returned = part.returned, []
            self.accumulator.put_back(part, batches)
            self.schedule_pump()

    def _resequence(self, batch: Batch, error: BaseException) -> None:
        """A replayed batch the broker cannot place any more (it lost or moved past the
        crashed producer's state): sent again under this producer's identity, in its
        place, and counted as not proven delivered (``_replay_identity``)."""
        log.debug("%r: the broker cannot deduplicate it (%s): sending it again", batch, error)
        batch.pinned.unpin(batch)
        self._failed(batch, error, retriable=True, maybe_written=True)

    def request_failed(
        self, batches: list[Batch], error: BaseException, *, node_id: int, written: bool
    ) -> None:
        """The request of ``batches`` got no answer (connection lost, timeout...)."""
        closed = isinstance(error, ClientClosedError)
        retriable = not closed and bool(
            getattr(error, "retriable", False) or isinstance(error, OSError)
        )
        topics = {b.topic for b in batches}
        if retriable and not self._closing:
            records = sum(len(b.records) for b in batches)
            self.retry_log.log(
                logging.INFO,
                type(error).__name__,
                "Produce to broker %d got no answer (%s: %s): %d batch(es), %d record(s) retried",
                node_id,
                type(error).__name__,
                error,
                len(batches),
                records,
                weight=records,
            )
        for batch in batches:
            self._failed(batch, error, retriable=retriable, maybe_written=written, told=True)
        self._release()
        if self._flushes:
            self._check_flushes()
        if retriable:
            for topic in topics:
                self.client._cluster.cache.mark_stale(topic)
            self.refresh(topics)

    def _succeeded(self, batch: Batch, base_offset: int, append_time: int) -> None:
        part = batch.part
        part.in_flight -= 1
        self._batches_in_flight -= 1
        part.retries = 0
        part.last_error = None
        if batch.pinned is not None:  # a replayed batch, accepted under its own identity
            batch.pinned.proven(len(batch.records))
            batch.pinned = None
        if self.idempotence is not None:
            self.idempotence.succeeded(part, batch)
        if self.bus.active:
            self.batch_events.acknowledged(batch, base_offset)
        self._finish(batch, None, base_offset, append_time)
        if part.in_flight == 0 and part.returned:
            self._put_back(part)

    def _failed(
        self,
        batch: Batch,
        error: BaseException,
        *,
        retriable: bool,
        maybe_written: bool,
        told: bool = False,
    ) -> None:
        """``batch`` failed with ``error``: back into its partition for a retry, or its
        reports (``told``: its retry is logged already, with its request's)."""
        part = batch.part
        part.in_flight -= 1
        self._batches_in_flight -= 1
        if maybe_written:
            batch.maybe_persisted = True
        if retriable and not self._closing and self._clock() < batch.deadline:
            batch.last_error = error
            part.returned.append(batch)
            if not told:
                records = len(batch.records)
                self.retry_log.log(
                    logging.INFO,
                    type(error).__name__,
                    "%d record(s) to %s-%d retried after attempt %d on broker %d: %s",
                    records,
                    batch.topic,
                    batch.partition,
                    batch.attempts,
                    part.in_flight_node,
                    error,
                    weight=records,
                )
            if self.bus.active:
                self.batch_events.retried(batch, error)
        else:
            self._finish(batch, self._delivery_error(batch, error, retriable))
        if part.in_flight == 0 and part.returned:
            self._put_back(part)

    def _delivery_error(self, batch: Batch, error: BaseException, retriable: bool) -> DeliveryError:
        persisted = batch.maybe_persisted or self.settings.acks_code == 0
        where = f"{len(batch.records)} record(s) to {batch.topic}-{batch.partition}"
        if self._closing:
            if self.accumulator.keeps_at_close:
                return JournalKeptError(
                    f"{where}: the producer closed before delivery ({error}); kept in the"
                    " journal, the next producer on it sends them",
                    maybe_persisted=persisted,
                    cause=error,
                )
            return ProducerClosedError(
                f"{where}: the producer closed before delivery ({error})",
                maybe_persisted=persisted,
                cause=error,
            )
        # The message says what ``maybe_persisted`` says: "not delivered" alone would be
        # untrue of records a broker wrote without its answer reaching us (a hung broker
        # that wakes writes them; seen with tansu frozen by SIGSTOP, every one of 1,000).
        maybe = ""
        if persisted:
            maybe = _NO_ANSWER_ASKED if self.settings.acks_code == 0 else _NO_ANSWER_CAME
        if retriable:
            return DeliveryTimeoutError(
                f"{where}: not acknowledged within delivery_timeout"
                f" ({self.settings.delivery_timeout:g}s){maybe}; last error: {error}",
                maybe_persisted=persisted,
                cause=error,
            )
        return DeliveryError(f"{where}: {error}{maybe}", maybe_persisted=persisted, cause=error)

    def _put_back(self, part: PartitionQueue) -> None:
        batches, part.returned = part.returned, []
        part.retries += 1
        part.retry_at = self._clock() + self._backoff.delay(part.retries, random.random())
        self.accumulator.put_back(part, batches)
        self.schedule_pump()

    def _finish(
        self,
        batch: Batch,
        error: DeliveryError | None,
        base_offset: int = -1,
        append_time: int = -1,
    ) -> None:
        """The one place a batch gets its reports: exactly once."""
        if batch.done:
            return
        batch.done = True
        if error is None:
            if batch.originals is None:
                self.reporter.succeeded(batch, base_offset, append_time)
            else:  # transform_batch: each original record at the record it became
                self.reporter.succeeded(delivered_view(batch), base_offset, append_time)
        else:
            batch.last_error = error  # what the journal reads (kept at close: no DONE)
            if self.idempotence is not None:
                self.idempotence.failed(batch.part, batch)
            if self.bus.active:
                self.batch_events.failed(batch, error)
            if batch.originals is None:
                if isinstance(error, ProducerClosedError):
                    self.failed_by_close += len(batch.records)
                self.reporter.failed(batch, error)
            else:
                if isinstance(error, ProducerClosedError):
                    self.failed_by_close += len(batch.originals)
                self.reporter.failed(failed_view(batch), error)
        # Memory is freed in one go per response (one lock round trip): see _release.
        parent = batch.parent
        while parent is not None:  # a half of a split batch: the whole is the unit
            if error is not None:
                parent.last_error = error
            parent.children_left -= 1
            if parent.children_left:
                return
            parent.done = True
            self._splits_open -= 1
            batch, parent = parent, parent.parent
        self._finished.append(batch)

    def _release(self) -> None:
        finished = self._finished
        if finished:
            self._finished = []
            self.accumulator.complete(finished)

    def _expire(self, batches: Iterable[Batch]) -> None:
        for batch in batches:
            cause = (
                batch.last_error or batch.part.last_error or self.metadata.errors.get(batch.topic)
            )
            if cause is None:
                cause = KafkaTimeoutError("no broker took the batch in time")
            self._finish(batch, self._delivery_error(batch, cause, True))

    def _fail_all_queued(self, error: BaseException) -> None:
        batches = self.accumulator.take_all()
        for part in self.accumulator.partitions():
            if part.in_flight == 0 and part.returned:
                batches.extend(part.returned)
                part.returned = []
        for batch in batches:
            self._finish(batch, self._delivery_error(batch, error, False))
        self._release()

    def transform_failed(self, batch: Batch, error: DeliveryError) -> None:
        """``transform_batch`` failed for ``batch``, drained but not sent: it gives back
        the sequence it took (nothing was sent with it), and its records fail."""
        if self.idempotence is not None:
            self.idempotence.withdraw(batch.part, batch)
        self._finish(batch, error)
        self._release()
        if self._flushes:
            self._check_flushes()

    def transformed(self, batch: Batch) -> None:
        """``batch`` now holds the hook's records: its sequence spans those."""
        if self.idempotence is not None:
            self.idempotence.resized(batch.part, batch)

    def _fail_in_flight(self, batches: list[Batch]) -> None:
        for batch in batches:
            batch.part.in_flight -= 1
            self._batches_in_flight -= 1
            batch.maybe_persisted = True
            self._finish(
                batch,
                self._delivery_error(
                    batch, ProducerClosedError("closed with the request in flight"), False
                ),
            )
