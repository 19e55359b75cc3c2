"""One TCP connection to one broker: pipelined requests over a sans-I/O client wire.

An ``asyncio.Protocol`` rather than streams plus a reader task: ``data_received`` feeds the
sans-I/O ``ClientConnection`` and resolves each response's future in the same
callback, with no task switch per read. Requests are written in the order their
correlation ids are assigned (no await between the two), and Kafka answers in order, so a
FIFO of futures pairs them.

Failures are mapped here, once: socket errors become ``BrokerConnectionError``, bytes that
are not Kafka keep their ``RemoteProtocolError`` class but name the address, timeouts are
``KafkaTimeoutError``. Once a connection failed it stays dead; the pool opens another.

A request that times out closes its connection (as Kafka's Java client does): a broker
serves one connection's requests in order, so everything behind the late one waits too,
and the connection cannot be trusted to be in step any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import socket
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final

from pykaf._client._address import Address
from pykaf._client._answer import Answer
from pykaf._client._broker_errors import (
    describe_broker,
    looks_like_tls,
    map_tls_error,
    name_address,
    os_reason,
)
from pykaf._client._connection_events import ConnectionEvents
from pykaf._client._connection_open import Opening
from pykaf._client._loop_bound import elsewhere
from pykaf._client._settings import ClientSettings
from pykaf._client._targets import Purpose
from pykaf._client._versions import BrokerApiVersions
from pykaf._errors import (
    BrokerConnectionError,
    ClientClosedError,
    KafkaTimeoutError,
    PykafError,
    SecurityProtocolMismatchError,
)
from pykaf._telemetry._bus import EventBus
from pykaf.protocol._apis import api_spec
from pykaf.protocol._framing import NEED_DATA, ClientConnection, Response
from pykaf.protocol._messages import Payload, payload_api
from pykaf.protocol._produce_request import ProduceTopic

__all__ = ["BrokerConnection"]

_PRODUCE_KEY: Final = 0
_CORRELATION_IDS: Final = 2**31
# After close(), the transport gets this long to flush before it is aborted, inside the
# caller's own bound.
_FLUSH_GRACE: Final = 0.5


class BrokerConnection(Opening):
    """A connection opened by ``open()``: handshaken (ApiVersions, SASL, then the
    authenticate hook), ready for ``send()``."""

    def __init__(
        self,
        address: Address,
        *,
        node_id: int | None,
        purpose: Purpose,
        settings: ClientSettings,
        on_lost: Callable[[BrokerConnection, PykafError], None] | None = None,
        events: EventBus | None = None,
    ) -> None:
        self.address = address
        self.node_id = node_id
        self.purpose = purpose
        self.versions: BrokerApiVersions | None = None
        # Seconds the broker's SASL session lasts (KIP-368), None when unbounded; when
        # this connection stops taking new requests for it (loop clock), and whether it
        # closes once its requests are answered (``retire``).
        self.session_lifetime: float | None = None
        self._session_ends: float | None = None
        self._retiring = False
        self._settings = settings
        self._loop = asyncio.get_running_loop()
        self._wire = ClientConnection(
            client_id=settings.client_id, max_frame_size=settings.max_response_size
        )
        self._transport: asyncio.Transport | None = None
        # Futures of send() and Answers of send_nowait(), in correlation order.
        self._waiters: deque[asyncio.Future[Any] | Answer] = deque()
        # acks=0 answers of send_nowait() written while the transport was paused: they
        # complete once it drains, which is what bounds an acks=0 producer's buffer.
        self._drain_answers: list[Answer] = []
        self._max_in_flight = settings.max_in_flight_per_connection
        self._in_flight = 0
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._drain_waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._error: PykafError | None = None
        # Requests still waiting for an answer when the connection failed (for the pool:
        # losing an idle connection is no outage, losing requests is).
        self.unanswered_at_loss = 0
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._on_lost = on_lost
        # Telemetry: the client's bus (tested before any event is built) and what builds
        # this connection's events; _opened once ready (then its end is ConnectionClosed).
        self._bus = bus = events if events is not None else EventBus()
        self._events = ConnectionEvents(
            bus, str(address), settings.client_id, settings.max_in_flight_per_connection
        )
        self._opened = False

    @classmethod
    async def open(
        cls,
        address: Address,
        *,
        node_id: int | None,
        purpose: Purpose,
        settings: ClientSettings,
        deadline: float,
        api_versions_version: int | None = None,
        on_lost: Callable[[BrokerConnection, PykafError], None] | None = None,
        events: EventBus | None = None,
    ) -> BrokerConnection:
        """Connect, negotiate versions, authenticate; bounded by ``connect_timeout`` and
        by ``deadline`` (the caller's, on the loop's clock), whichever comes first.

        ``api_versions_version``: the ApiVersions version to start with (default: pykaf's
        newest; the pool passes what this broker answered before, saving the
        UNSUPPORTED_VERSION round trip on every new connection to an older broker).
        """
        conn = cls(address, node_id=node_id, purpose=purpose, settings=settings, events=events)
        await conn._open(
            purpose=purpose,
            deadline=deadline,
            api_versions_version=api_versions_version,
            on_lost=on_lost,
        )
        return conn

    def __repr__(self) -> str:
        state = "dead" if self._error is not None else f"{self._in_flight} in flight"
        return f"<BrokerConnection {self.describe()} {self.purpose} {state}>"

    def describe(self) -> str:
        return describe_broker(self.address, self.node_id)

    @property
    def usable(self) -> bool:
        transport = self._transport
        return (
            self._error is None
            and transport is not None
            and not transport.is_closing()
            and not self._retiring
            and (self._session_ends is None or self._loop.time() < self._session_ends)
        )

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def error(self) -> PykafError | None:
        return self._error

    # -- requests -----------------------------------------------------------------------

    async def send(
        self, request: Payload, *, deadline: float | None = None, check_version: bool = True
    ) -> Any:
        """Send ``request`` (a kio request entity) and return the decoded response; None for
        Produce with acks=0, which Kafka never answers. ``deadline`` is on the loop's clock.
        """
        if self._error is not None:
            raise copy.copy(self._error)
        api_key, version = payload_api(request)
        versions = self.versions
        if check_version and versions is not None and not versions.supports(api_key, version):
            raise versions.unsupported(api_key, version)
        written = False
        try:
            async with asyncio.timeout_at(deadline):
                if self._in_flight < self._max_in_flight and not self._slot_waiters:
                    self._in_flight += 1  # the common case, without a coroutine
                else:
                    await self._acquire_slot()
                future = self._write(lambda wire: wire.send(request), api_key, version)
                assert not isinstance(future, Answer)
                written = True
                if self._paused:
                    await self._drain()
                if future is None:
                    return None
                return await future
        except TimeoutError as exc:
            if isinstance(exc, PykafError):  # our own errors are never the timeout's
                raise
            what = f"{api_spec(api_key).name} v{version}"
            where = self.describe()
            if written:
                self.abort(
                    BrokerConnectionError(
                        f"{where}: connection closed after a request timed out",
                        address=str(self.address),
                        node_id=self.node_id,
                    )
                )
                message = f"{what} to {where}: no answer within the timeout"
            else:
                message = f"{what} to {where}: still waiting for an in-flight slot at the timeout"
            raise KafkaTimeoutError(message, address=str(self.address)) from None

    def send_nowait(
        self,
        request: Payload,
        on_answer: Callable[[Any, BaseException | None], None],
        *,
        deadline: float,
    ) -> bool:
        """Write ``request`` now and call ``on_answer(response, None)`` or
        ``on_answer(None, error)`` exactly once, on the loop: from ``data_received`` for an
        answer, at ``deadline`` (the loop's clock) with a ``KafkaTimeoutError`` (the
        connection is closed then, as ``send`` does), or when the connection fails.

        No task and no coroutine per request: a request is written in the loop turn that
        made it and its answer handled in the turn it arrives (``send`` costs two turns
        more). The producer's hot path uses it through ``produce_nowait``. Returns
        False, writing nothing, when every in-flight slot is taken; raises like ``send``
        when the connection is dead or the version unsupported (nothing written then).
        """
        api_key, version = payload_api(request)
        return self._nowait(
            api_key,
            version,
            lambda wire: wire.send(request),
            on_answer,
            deadline,
        )

    def produce_nowait(
        self,
        version: int,
        *,
        acks: int,
        timeout_ms: int,
        topics: Sequence[ProduceTopic],
        on_answer: Callable[[Any, BaseException | None], None],
        deadline: float,
    ) -> bool:
        """``send_nowait`` for a Produce given as plain values: no kio entity is built
        (``ClientConnection.send_produce``) and the answer comes as ``ProduceOutcomes``."""

        def frame(wire: ClientConnection) -> bytes:
            return wire.send_produce(version, acks=acks, timeout_ms=timeout_ms, topics=topics)

        return self._nowait(_PRODUCE_KEY, version, frame, on_answer, deadline)

    def _nowait(
        self,
        api_key: int,
        version: int,
        frame: Callable[[ClientConnection], bytes],
        on_answer: Callable[[Any, BaseException | None], None],
        deadline: float,
    ) -> bool:
        if self._error is not None:
            raise copy.copy(self._error)
        versions = self.versions
        if versions is not None and not versions.supports(api_key, version):
            raise versions.unsupported(api_key, version)
        if self._in_flight >= self._max_in_flight or self._slot_waiters:
            return False
        self._in_flight += 1
        answer = Answer(on_answer, self._loop)
        if self._write(frame, api_key, version, answer) is None:  # acks=0: no answer
            if self._paused:
                self._drain_answers.append(answer)
            else:
                self._loop.call_soon(answer.set_result, None)
            return True
        answer.timer = self._loop.call_at(deadline, self._expire, answer, api_key, version)
        return True

    def _expire(self, answer: Answer, api_key: int, version: int) -> None:
        if answer.done():
            return
        where = self.describe()
        answer.set_exception(
            KafkaTimeoutError(
                f"{api_spec(api_key).name} v{version} to {where}: no answer within the timeout",
                address=str(self.address),
            )
        )
        self.abort(
            BrokerConnectionError(
                f"{where}: connection closed after a request timed out",
                address=str(self.address),
                node_id=self.node_id,
            )
        )

    def _write(
        self,
        frame: Callable[[ClientConnection], bytes],
        api_key: int,
        version: int,
        answer: Answer | None = None,
    ) -> asyncio.Future[Any] | Answer | None:
        """Frame (``frame(wire)``: assigns the correlation id) and write in one step."""
        if asyncio._get_running_loop() is not self._loop:
            # A client's public calls refuse this first (``_loop_bound``); any path they
            # miss stops here, before the request is framed: written from another
            # thread it broke the connection's reading in its own loop.
            self._release_slot()
            raise elsewhere("pykaf asyncio client", "client (Client, Producer, ...)", self._loop)
        transport = self._transport
        if self._error is not None or transport is None:
            self._release_slot()
            raise copy.copy(self._error) if self._error else self._closed_error("not connected")
        wire = self._wire
        before = wire.in_flight
        try:
            data = frame(wire)
        except BaseException:
            self._release_slot()
            raise
        # Same synchronous step as the correlation id assignment: writes stay in order.
        transport.write(data)
        if wire.in_flight == before:  # Produce acks=0: no answer will come
            self._release_slot()
            return None
        if self._bus.active:
            # The id frame() just took (ids wrap from 2**31 - 1 to 0).
            correlation_id = (wire.next_correlation_id - 1) % _CORRELATION_IDS
            self._events.sent(correlation_id, api_key, version, len(data))
        waiter: asyncio.Future[Any] | Answer = (
            self._loop.create_future() if answer is None else answer
        )
        self._waiters.append(waiter)
        return waiter

    async def _acquire_slot(self) -> None:
        while self._in_flight >= self._max_in_flight and self._error is None:
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._slot_waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    # Woken, then cancelled before running: pass the free slot on.
                    self._wake_slot_waiter()
                else:
                    with contextlib.suppress(ValueError):
                        self._slot_waiters.remove(waiter)
                raise
        if self._error is not None:
            raise copy.copy(self._error)
        self._in_flight += 1

    def _release_slot(self) -> None:
        self._in_flight -= 1
        self._wake_slot_waiter()

    def _wake_slot_waiter(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _drain(self) -> None:
        if self._drain_waiter is None or self._drain_waiter.done():
            self._drain_waiter = self._loop.create_future()
        # Shielded: one caller's cancellation must not cancel the others' wait.
        await asyncio.shield(self._drain_waiter)
        if self._error is not None:
            raise copy.copy(self._error)

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Requests are small and latency-bound; never wait for Nagle.
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        wire = self._wire
        if self.versions is None and self._settings.tls is None and looks_like_tls(data):
            self.abort(
                SecurityProtocolMismatchError(
                    f"{self.describe()} answered plaintext with TLS: is this a TLS port?"
                    f" use security_protocol={self._tls_protocol()!r} (or the port of a"
                    " listener without TLS)",
                    address=str(self.address),
                    node_id=self.node_id,
                )
            )
            return
        bus = self._bus
        try:
            wire.receive_data(data)
            while True:
                event = wire.next_event()
                if event is NEED_DATA:
                    return
                if isinstance(event, Response):
                    if bus.active:
                        self._events.answered(event, wire.last_response_size, self.node_id)
                    future = self._waiters.popleft()
                    self._release_slot()
                    if not future.done():
                        future.set_result(event.response)
                    if self._retiring and not self._waiters:
                        self._close_retired()
                        return
                else:  # ConnectionClosed: only after receive_data(b""), see eof_received
                    return
        except PykafError as exc:
            self.abort(name_address(exc, self.describe()))

    def eof_received(self) -> bool:
        unanswered = len(self._waiters)
        try:
            self._wire.receive_data(b"")
            self._wire.next_event()
        except PykafError as exc:
            # Cut off in the middle of an answer: a lost connection like any other, so
            # its requests are retried (a Produce safely, with idempotence), not failed.
            lost = self._closed_error(f"the broker closed the connection mid-answer ({exc})")
            lost.__cause__ = exc
            self.abort(lost)
            return False
        tail = f" with {unanswered} request(s) unanswered" if unanswered else ""
        if self.versions is None:
            tail = self._unanswered_handshake_hint()
        self._fail(self._closed_error(f"the broker closed the connection{tail}"))
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        if self._error is None and isinstance(exc, ssl.SSLError):
            # After the handshake, e.g. TLS 1.3's alert that our certificate was refused.
            tls_error = map_tls_error(exc, self.address, self.node_id)
            tls_error.__cause__ = exc
            self._fail(tls_error)
        if self._error is None:
            reason = f"connection lost ({os_reason(exc)})" if exc else "connection closed"
            if self.versions is None:
                reason += self._unanswered_handshake_hint()
            error = self._closed_error(reason)
            error.__cause__ = exc  # the outage log reads the cause (reset, ...) from it
            self._fail(error)
        if not self._lost.done():
            self._lost.set_result(None)
        self._wake_drain()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drain()

    def _wake_drain(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._drain_answers:
            answers, self._drain_answers = self._drain_answers, []
            for answer in answers:
                if self._error is None:
                    answer.set_result(None)
                else:
                    answer.set_exception(copy.copy(self._error))

    # -- failing and closing ------------------------------------------------------------

    def _unanswered_handshake_hint(self) -> str:
        """What may be wrong when a broker hangs up before answering ApiVersions: a
        listener that speaks another security protocol does exactly that."""
        if self._settings.tls is not None:
            return (
                " before answering ApiVersions: does it require a client certificate"
                " (ssl_certfile, ssl_keyfile) or SASL?"
            )
        return (
            " before answering ApiVersions: is this a TLS port? use"
            f" security_protocol={self._tls_protocol()!r}"
        )

    def _tls_protocol(self) -> str:
        """The security protocol to suggest when the listener turns out to speak TLS."""
        return "SASL_SSL" if self._settings.security_protocol == "SASL_PLAINTEXT" else "SSL"

    def _closed_error(self, reason: str) -> BrokerConnectionError:
        return BrokerConnectionError(
            f"{self.describe()}: {reason}", address=str(self.address), node_id=self.node_id
        )

    def _fail(self, error: PykafError, on_purpose: bool = False) -> bool:
        """Mark the connection dead; every waiter gets its own copy of ``error``."""
        if self._error is not None:
            return False
        self._error = error
        if self._opened and self._bus.active:
            self._events.closed(self.node_id, error, on_purpose)
        waiters, self._waiters = self._waiters, deque()
        self.unanswered_at_loss = len(waiters)
        for future in waiters:
            if not future.done():
                future.set_exception(copy.copy(error))
        slot_waiters, self._slot_waiters = self._slot_waiters, deque()
        for waiter in slot_waiters:
            if not waiter.done():
                waiter.set_result(None)  # they see self._error and raise
        self._in_flight = 0
        self._wake_drain()
        if self._on_lost is not None:
            on_lost, self._on_lost = self._on_lost, None
            on_lost(self, error)
        return True

    def retire(self) -> None:
        """Take no new requests; close once those in flight are answered (now if none).
        For a connection replaced by a new one (its SASL session about to end)."""
        self._retiring = True
        if not self._waiters:
            self._close_retired()

    def _close_retired(self) -> None:
        self.close(self._closed_error("replaced by a new connection (SASL session ending)"))

    def abort(self, error: PykafError) -> None:
        """Fail every request with ``error`` and drop the connection now."""
        self._fail(error)
        if self._transport is not None:
            self._transport.abort()
        elif not self._lost.done():
            self._lost.set_result(None)

    def close(self, error: PykafError | None = None) -> None:
        """Fail pending requests with ``error`` (ClientClosedError by default) and close
        gracefully; ``wait_closed`` bounds the wait."""
        self._on_lost = None  # a close we asked for is not a failure of the broker
        self._fail(
            error or ClientClosedError(f"{self.describe()}: the client was closed"),
            on_purpose=True,
        )
        if self._transport is not None:
            self._transport.close()
        elif not self._lost.done():
            self._lost.set_result(None)

    async def wait_closed(self, timeout: float = _FLUSH_GRACE) -> None:
        """Wait for the transport to finish closing, aborting it after ``timeout``."""
        if self._lost.done():
            return
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._lost)
        except TimeoutError:
            if self._transport is not None:
                self._transport.abort()
