"""One sender per broker: drain its partitions' ready batches into Produce requests.

A sender holds one "produce" connection to its broker and pipelines up to
``max_in_flight_per_connection`` requests on it. Each request carries at most one batch
per partition (Kafka's rule), drained from the accumulator by the broker's current
leadership, so a batch is never tied to a sender: after a leader change the next drain of
the new leader's sender takes it.

Requests are framed from plain values and written in the turn that drained them
(``BrokerConnection.produce_nowait``: no task, no coroutine, no kio entity); answers come
back through a callback, already read into ``ProduceOutcomes`` by the hand-written
decoder. Outcomes are handed to the engine strictly in send order (a deque of in-flight
entries, popped from the head only once the head is done). The engine decides what each
outcome means (success, retry, failure): the sender only moves bytes.

A throttled answer (the broker's quota, KIP-219) holds the sender: from Produce v6 on the
broker answers at once and expects no request from the client until the throttle time has
passed (it mutes the connection meanwhile), so, as librdkafka and the Java client do, the
sender sends nothing to that broker until then; older versions were delayed by the broker
itself. The ``Throttled`` event is the connection's, as for every other API.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Protocol

from pykaf._client._connection import BrokerConnection
from pykaf._errors import BrokerConnectionError, DeliveryError, PykafError, TransformError
from pykaf._producer._accumulator import Accumulator
from pykaf._producer._batches import Batch, PartitionQueue
from pykaf._producer._journaled import JournalAccumulator
from pykaf._producer._settings import ProducerSettings
from pykaf._producer._transform import transform
from pykaf.protocol._compression import Compression
from pykaf.protocol._produce_response import ProduceOutcomes, ThrottledOutcomes
from pykaf.protocol._records import encode_batch

__all__ = [
    "BrokerSender",
    "SenderHost",
    "encode_for_send",
]

_PRODUCE_KEY: Final = 0
_TOPIC_ID_VERSION: Final = 13  # Produce v13 names topics by id only
_CLIENT_THROTTLES_VERSION: Final = 6  # KIP-219: from v6 the client holds off, not the broker


def encode_for_send(batch: Batch) -> bytes:
    """The batch's wire bytes for its current identity and sequence (cached)."""
    encoded = batch.encoded
    if encoded is None:
        t = batch.part.topic
        identity: Any = batch.identity
        encoded = batch.encoded = encode_batch(
            batch.records,
            compression=Compression.parse(t.compression),
            compression_level=t.compression_level,
            producer_id=-1 if identity is None else identity.producer_id,
            producer_epoch=-1 if identity is None else identity.epoch,
            base_sequence=batch.base_sequence,
            now_ms=batch.created_ms,
        )
    return encoded


class _InFlight:
    """One Produce request on its way: its batches and, once done, its outcome."""

    __slots__ = ("batches", "done", "error", "response", "written")

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches
        self.done = False
        self.response: ProduceOutcomes | None = None
        self.error: BaseException | None = None
        self.written = False


class SenderHost(Protocol):
    """What a sender uses of the engine that owns it (``ProducerEngine`` is the one).
    Naming only this keeps the sender from importing the engine, which creates senders."""

    @property
    def settings(self) -> ProducerSettings: ...
    @property
    def accumulator(self) -> Accumulator: ...
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...
    @property
    def gate(self) -> Callable[[PartitionQueue, Batch], bool]: ...

    async def connection(self, node_id: int) -> BrokerConnection: ...
    def node_failed(self, node_id: int, error: BaseException) -> None: ...
    def schedule_pump(self) -> None: ...
    def sent(self, batches: list[Batch], node_id: int) -> None: ...
    def response(
        self, batches: list[Batch], response: ProduceOutcomes | None, *, node_id: int
    ) -> None: ...
    def answered(self) -> None: ...
    def transformed(self, batch: Batch) -> None: ...
    def transform_failed(self, batch: Batch, error: DeliveryError) -> None: ...
    def request_failed(
        self, batches: list[Batch], error: BaseException, *, node_id: int, written: bool
    ) -> None: ...


class BrokerSender:
    """The sender of one broker (see the module doc); lives on the engine's loop."""

    def __init__(self, engine: SenderHost, node_id: int) -> None:
        self.node_id = node_id
        self._engine = engine
        self._loop = engine.loop
        settings = engine.settings
        self._max_in_flight = settings.max_in_flight_per_connection
        self._max_request = settings.max_request_size
        self._request_timeout = settings.request_timeout
        self._acks = settings.acks_code
        self._timeout_ms = int(settings.request_timeout * 1000)
        self._conn: BrokerConnection | None = None
        self._version = -1
        self._connecting: asyncio.Task[None] | None = None
        self._in_flight: deque[_InFlight] = deque()
        self._closed = False
        self._throttled_until = 0.0  # loop time; nothing is sent before it (KIP-219)
        # Custody "journal": the identities of batches are journaled before they are sent.
        accumulator = engine.accumulator
        self._journal_identities: Callable[[list[Batch]], None] | None = (
            accumulator.journal_identities if isinstance(accumulator, JournalAccumulator) else None
        )
        self._transform = settings.transform_batch

    def __repr__(self) -> str:
        return f"<BrokerSender {self.node_id} {len(self._in_flight)} in flight>"

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    # -- sending ------------------------------------------------------------------------

    def pump(self, now: float) -> None:
        """Send what is ready, up to the in-flight limit; connect first if needed."""
        if self._closed:
            return
        if self._throttled_until:
            if self._loop.time() < self._throttled_until:
                return  # _hold_off pumps again when the throttle time is over
            self._throttled_until = 0.0
        conn = self._conn
        if conn is None or not conn.usable:
            self._conn = None
            self._connect()
            return
        engine = self._engine
        drain = engine.accumulator.drain
        gate = engine.gate
        while len(self._in_flight) < self._max_in_flight:
            batches = drain(self.node_id, now, self._max_request, gate, self._max_in_flight)
            if not batches:
                return
            if self._transform is not None:
                batches = self._transformed(batches)
                if not batches:
                    continue
            self._send(conn, batches)

    def _transformed(self, batches: list[Batch]) -> list[Batch]:
        """``transform_batch`` applied to each batch not sent before (a retry keeps its
        records); returns those to send: a batch whose hook failed is failed here."""
        hook = self._transform
        assert hook is not None
        engine = self._engine
        kept = []
        for batch in batches:
            if batch.encoded is None and batch.originals is None and batch.pinned is None:
                # (A batch replayed with its journaled identity goes as it was sent.)
                try:
                    transform(batch, hook)
                except TransformError as exc:
                    engine.transform_failed(batch, exc)
                    continue
                engine.transformed(batch)
            kept.append(batch)
        return kept

    def _send(self, conn: BrokerConnection, batches: list[Batch]) -> None:
        engine = self._engine
        version = self._version
        topics: dict[str, list[tuple[int, bytes]]] = {}
        ids: dict[str, uuid.UUID | None] = {}
        encoded_now: list[tuple[Batch, int]] = []
        try:
            for batch in batches:
                fresh = batch.encoded is None
                records = encode_for_send(batch)
                if fresh:
                    encoded_now.append((batch, len(records)))
                entry = topics.get(batch.topic)
                if entry is None:
                    entry = topics[batch.topic] = []
                    ids[batch.topic] = batch.part.topic.topic_id
                entry.append((batch.partition, records))
            if version >= _TOPIC_ID_VERSION and any(ids[name] is None for name in topics):
                version = _TOPIC_ID_VERSION - 1  # a topic without an id: name it instead
        except Exception as exc:  # an encoder bug: fail these batches, never hang
            engine.accumulator.charge(encoded_now)
            engine.sent(batches, self.node_id)
            engine.request_failed(batches, exc, node_id=self.node_id, written=False)
            return
        if self._journal_identities is not None and encoded_now:
            # Newly sequenced batches are the freshly encoded ones (a retry keeps its bytes).
            self._journal_identities([batch for batch, _ in encoded_now])
        # The encoded copies stay (a retry re-sends the same bytes): they hold memory
        # too. (A re-encode for a new producer epoch, rare, counts again: the safe side.)
        engine.accumulator.charge(encoded_now)
        engine.sent(batches, self.node_id)
        entry_ = _InFlight(batches)
        self._in_flight.append(entry_)
        deadline = self._loop.time() + self._request_timeout

        def on_answer(response: Any, error: BaseException | None) -> None:
            self._answered(conn, entry_, response, error)

        by_id = version >= _TOPIC_ID_VERSION
        try:
            # Plain values straight to bytes: no kio entity on the hot path. A dead
            # connection raises before writing anything: then the broker certainly did
            # not get it (entry.written stays False).
            written = conn.produce_nowait(
                version,
                acks=self._acks,
                timeout_ms=self._timeout_ms,
                topics=[(ids[name] if by_id else name, parts) for name, parts in topics.items()],
                on_answer=on_answer,
                deadline=deadline,
            )
        except Exception as exc:
            self._answered(conn, entry_, None, exc)
            return
        if written:
            entry_.written = True
            return
        # Cannot happen: this sender is its connection's only user and keeps to the same
        # in-flight limit. Should it ever, the batches are retried on a new connection.
        error = BrokerConnectionError(
            f"broker {self.node_id}: no free request slot on the produce connection",
            node_id=self.node_id,
        )
        self._answered(conn, entry_, None, error)

    def _answered(
        self,
        conn: BrokerConnection,
        entry: _InFlight,
        response: Any,
        error: BaseException | None,
    ) -> None:
        if error is None:
            entry.response = response
            if type(response) is ThrottledOutcomes:
                self._hold_off(response.throttle_time_ms)
        else:
            entry.error = error
            if isinstance(error, PykafError | OSError):
                self._lost(conn)
        entry.done = True
        self._finish()

    def _hold_off(self, throttle_ms: int) -> None:
        """The broker asked for ``throttle_ms`` without requests (see the module doc)."""
        if self._version < _CLIENT_THROTTLES_VERSION or self._closed:
            return  # the broker delayed this answer by the throttle time already
        until = self._loop.time() + throttle_ms / 1000
        if until > self._throttled_until:
            self._throttled_until = until
            self._loop.call_at(until, self._engine.schedule_pump)

    def _finish(self) -> None:
        # Outcomes strictly in send order: only the head may be handed on.
        engine = self._engine
        queue = self._in_flight
        handled = False
        while queue and queue[0].done:
            entry = queue.popleft()
            handled = True
            if self._closed:
                continue
            if entry.error is not None:
                engine.request_failed(
                    entry.batches, entry.error, node_id=self.node_id, written=entry.written
                )
            else:
                engine.response(entry.batches, entry.response, node_id=self.node_id)
        if handled:
            engine.answered()

    def _lost(self, conn: BrokerConnection) -> None:
        if self._conn is conn:
            self._conn = None

    # -- connecting -----------------------------------------------------------------------

    def _connect(self) -> None:
        if self._connecting is not None or self._closed:
            return
        self._connecting = self._loop.create_task(self._open())

    async def _open(self) -> None:
        engine = self._engine
        try:
            conn = await engine.connection(self.node_id)
            assert conn.versions is not None
            version = conn.versions.version(_PRODUCE_KEY)  # no common version: raises
        except asyncio.CancelledError:
            raise
        except (PykafError, OSError) as exc:
            self._connecting = None
            engine.node_failed(self.node_id, exc)
            return
        finally:
            if self._connecting is asyncio.current_task():
                self._connecting = None
        if self._closed:
            return
        self._version = version
        self._conn = conn
        engine.schedule_pump()

    # -- closing --------------------------------------------------------------------------

    def abort(self, fail: Callable[[list[Batch]], None]) -> None:
        """Stop: hand every batch in flight to ``fail`` (in send order); answers that
        arrive later are dropped."""
        self._closed = True
        entries, self._in_flight = list(self._in_flight), deque()
        for entry in entries:
            fail(entry.batches)
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
