"""Sans-I/O Kafka connections: bytes in, events out; requests in, bytes out.

No sockets, no clocks: the I/O layer feeds ``receive_data`` with what it read, drains
``next_event`` until ``NEED_DATA``, and writes what ``send``/``send_response`` return.
Kafka answers the requests of one connection in order, so the client side pairs each
response with the oldest outstanding request and refuses any other correlation id.

Once a connection has raised while reading (bad frame, bad bytes, wrong correlation id),
it is dead: every later call raises that same error. Encoding errors (a bad value given to
``send``) leave it usable, as nothing was emitted and no state moved.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, NoReturn

from pykaf._errors import (
    FrameTooLargeError,
    LocalProtocolError,
    NotKafkaError,
    PykafError,
    RemoteProtocolError,
    UnexpectedCorrelationIdError,
)
from pykaf.protocol._apis import api_spec
from pykaf.protocol._fetch_response import FetchAnswer, encode_fetch_response
from pykaf.protocol._messages import (
    API_VERSIONS_KEY,
    Buffer,
    Payload,
    decode_request_with,
    decode_response,
    encode_request,
    encode_response,
    is_supported_request,
    payload_api,
    peek_request,
)
from pykaf.protocol._produce_request import (
    ProduceTopic,
    encode_produce_entity,
    encode_produce_request,
    produce_request_version,
)
from pykaf.protocol._produce_response import decode_produce_frame

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "KAFKA_SASL_MAX_RECEIVE_SIZE",
    "NEED_DATA",
    "ClientConnection",
    "ConnectionClosed",
    "NeedData",
    "Request",
    "Response",
    "ServerConnection",
    "UnsupportedRequest",
]

# Kafka's broker default for socket.request.max.bytes.
DEFAULT_MAX_FRAME_SIZE: Final = 100 * 1024 * 1024
# Kafka's broker default for sasl.server.max.receive.size: the frame limit before and
# during SASL authentication, so an unauthenticated peer cannot make it buffer 100 MiB.
KAFKA_SASL_MAX_RECEIVE_SIZE: Final = 512 * 1024

_MAX_INT32: Final = 2**31 - 1
_PRODUCE_KEY: Final = 0
_FETCH_KEY: Final = 1
_I32: Final = struct.Struct(">i")


class NeedData(enum.Enum):
    """The type of ``NEED_DATA``: feed ``receive_data`` before asking again."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """A decoded response and the request it answers."""

    correlation_id: int
    api_key: int
    # The version the body was decoded as: the request's version, except for an
    # ApiVersions UNSUPPORTED_VERSION answer, which arrives as v0.
    api_version: int
    response: Payload


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """A decoded request, for the embedded broker."""

    correlation_id: int
    api_key: int
    api_version: int
    client_id: str | None
    request: Payload

    @property
    def expects_response(self) -> bool:
        """False for Produce with acks=0: Kafka sends no response to those."""
        return not (self.api_key == _PRODUCE_KEY and self.request.acks == 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnsupportedRequest:
    """A request for an API or version pykaf does not speak; its body was skipped.

    Kafka answers ApiVersions with UNSUPPORTED_VERSION and a v0 body (send_response takes
    one); for any other API the broker should close the connection.
    """

    correlation_id: int
    api_key: int
    api_version: int
    client_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed:
    """The peer closed the connection (``receive_data(b"")``) and every frame was read."""

    # Client side: requests that will never be answered. Always 0 on the server side.
    unanswered: int


def _sniff_other_protocol(head: bytes) -> str | None:
    """Name the protocol if the first bytes of a connection are clearly not Kafka."""
    # TLS record: content type 20-23 (handshake 22, alert 21), version 3.x.
    if head[0] in (20, 21, 22, 23) and head[1] == 3 and head[2] <= 4:
        return "TLS"
    if head.startswith((b"HTTP", b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC")):
        return "HTTP"
    if head.lower().startswith((b"<htm", b"<!do", b"<?xm")):
        return "HTTP"
    if head.startswith(b"SSH-"):
        return "SSH"
    return None


class _FrameBuffer:
    """Received bytes, split into length-prefixed frames without quadratic copies."""

    __slots__ = ("_buf", "_eof", "_frames_read")

    def __init__(self) -> None:
        # bytearray: appends are amortised O(1) and deleting a consumed prefix only moves
        # its start pointer in CPython, so neither small nor large frames copy twice.
        self._buf = bytearray()
        self._eof = False
        self._frames_read = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof and data:
            raise LocalProtocolError("receive_data() after end of stream (b'')")
        if not data:
            self._eof = True
            return
        self._buf += data

    @property
    def eof(self) -> bool:
        return self._eof

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def frame_length(self, limit: int, what: str) -> int | None:
        """Length of the next frame once all of it is buffered, else None. Checks the
        prefix (and sniffs for TLS/HTTP at the start) before anything is allocated."""
        buf = self._buf
        if len(buf) < 4:
            return None
        length: int = _I32.unpack_from(buf, 0)[0]
        if self._frames_read == 0:
            other = _sniff_other_protocol(bytes(buf[:4]))
            if other is not None:
                raise NotKafkaError(f"the peer at this port speaks {other}, not Kafka")
        if length < 0:
            raise FrameTooLargeError(f"{what} frame has a negative length ({length})")
        if length > limit:
            raise FrameTooLargeError(
                f"{what} frame of {length} bytes exceeds the limit of {limit} bytes"
            )
        if len(buf) - 4 < length:
            return None
        return length

    def declared_size(self) -> int | None:
        """Size (prefix included) the next frame declares, once its prefix has arrived."""
        if len(self._buf) < 4:
            return None
        length: int = _I32.unpack_from(self._buf, 0)[0]
        return 4 + max(0, length)

    def view(self, length: int) -> memoryview:
        """A read-only view of the next frame's payload; release() it before ``consume``."""
        return memoryview(self._buf)[4 : 4 + length].toreadonly()

    def consume(self, length: int) -> None:
        del self._buf[: 4 + length]
        self._frames_read += 1


class _Connection:
    __slots__ = ("_error", "_frames")

    def __init__(self) -> None:
        self._frames = _FrameBuffer()
        self._error: PykafError | None = None

    def _raise_dead(self) -> NoReturn:
        assert self._error is not None
        raise self._error.with_traceback(None)

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes read from the peer; ``b""`` means the peer closed the stream."""
        if self._error is not None:
            self._raise_dead()
        self._frames.feed(data)

    def _fail(self, error: PykafError) -> NoReturn:
        self._error = error
        raise error

    def _closed_or_need_data(self, unanswered: int) -> ConnectionClosed | NeedData:
        if not self._frames.eof:
            return NEED_DATA
        if self._frames.buffered:
            self._fail(
                RemoteProtocolError(
                    f"the peer closed the connection in the middle of a frame"
                    f" ({self._frames.buffered} bytes of it arrived)"
                )
            )
        return ConnectionClosed(unanswered=unanswered)


def _check_frame_size(max_frame_size: int, name: str) -> None:
    if type(max_frame_size) is not int or not 0 < max_frame_size <= _MAX_INT32:
        raise LocalProtocolError(
            f"{name} must be an int in 1..{_MAX_INT32}, not {max_frame_size!r}"
        )


class ClientConnection:
    """The client side of one Kafka connection (see the module doc)."""

    __slots__ = (
        "_conn",
        "_next_id",
        "_pending",
        "client_id",
        "last_response_size",
        "max_frame_size",
    )

    def __init__(
        self,
        *,
        client_id: str | None = "pykaf",
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        first_correlation_id: int = 0,
    ) -> None:
        _check_frame_size(max_frame_size, "max_frame_size")
        if type(first_correlation_id) is not int or not 0 <= first_correlation_id <= _MAX_INT32:
            raise LocalProtocolError(f"first_correlation_id must be in 0..{_MAX_INT32}")
        self.client_id = client_id
        self.max_frame_size = max_frame_size
        self._conn = _Connection()
        # Ids count up from here and wrap from 2**31-1 to 0 (Kafka's are int32).
        self._next_id = first_correlation_id
        # (correlation id, api key, api version, outcomes) of each request awaiting its
        # response; outcomes: a send_produce() answer, read by the hand-written decoder.
        self._pending: deque[tuple[int, int, int, bool]] = deque()
        # Bytes of the last response ``next_event`` returned, its 4-byte length prefix
        # included (telemetry reads it). An attribute, not a field of ``Response``: a
        # frozen dataclass field costs ~0.1 µs per answer, this a plain store.
        self.last_response_size = 0

    @property
    def in_flight(self) -> int:
        """Requests sent whose response has not been returned by ``next_event`` yet."""
        return len(self._pending)

    @property
    def next_correlation_id(self) -> int:
        return self._next_id

    def send(self, request: Payload, *, expect_response: bool = True) -> bytes:
        """Frame ``request`` with the next correlation id; returns the bytes to write.

        Produce with acks=0 never gets a response, whatever ``expect_response`` says.
        """
        if self._conn._error is not None:
            self._conn._raise_dead()
        correlation_id = self._next_id
        # Produce is the hot request: a hand-written encoder writes the same bytes as
        # kio's generic one at a fraction of the cost.
        produce_version = produce_request_version(type(request))
        data = None
        if produce_version is not None:
            data = encode_produce_entity(
                request, produce_version, correlation_id=correlation_id, client_id=self.client_id
            )
        if data is not None and produce_version is not None:
            api_key, api_version = _PRODUCE_KEY, produce_version
        else:
            data = encode_request(request, correlation_id=correlation_id, client_id=self.client_id)
            api_key, api_version = payload_api(request)
        self._next_id = 0 if correlation_id == _MAX_INT32 else correlation_id + 1
        if expect_response and not (api_key == _PRODUCE_KEY and request.acks == 0):
            self._pending.append((correlation_id, api_key, api_version, False))
        return data

    def send_produce(
        self,
        version: int,
        *,
        acks: int,
        timeout_ms: int,
        topics: Sequence[ProduceTopic],
        outcomes: bool = True,
    ) -> bytes:
        """Frame a ProduceRequest from plain values (``encode_produce_request``), with no
        kio entity built at all: the producer's hot path. Its answer comes back as
        ``ProduceOutcomes`` (``outcomes``, the default) or a kio entity; acks=0 gets none.
        """
        if self._conn._error is not None:
            self._conn._raise_dead()
        correlation_id = self._next_id
        data = encode_produce_request(
            version,
            correlation_id=correlation_id,
            client_id=self.client_id,
            acks=acks,
            timeout_ms=timeout_ms,
            topics=topics,
        )
        self._next_id = 0 if correlation_id == _MAX_INT32 else correlation_id + 1
        if acks != 0:
            self._pending.append((correlation_id, _PRODUCE_KEY, version, outcomes))
        return data

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        self._conn.receive_data(data)

    def next_event(self) -> Response | ConnectionClosed | NeedData:
        """The next response, ``NEED_DATA``, or ``ConnectionClosed`` after end of stream."""
        conn = self._conn
        if conn._error is not None:
            conn._raise_dead()
        try:
            return self._next_event()
        except PykafError as exc:
            conn._fail(exc)

    def _next_event(self) -> Response | ConnectionClosed | NeedData:
        frames = self._conn._frames
        length = frames.frame_length(self.max_frame_size, "response")
        if length is None:
            return self._conn._closed_or_need_data(len(self._pending))
        payload = frames.view(length)
        try:
            if length < 4:
                raise RemoteProtocolError(f"a response frame of {length} bytes has no header")
            (correlation_id,) = _I32.unpack_from(payload, 0)
            if not self._pending:
                raise UnexpectedCorrelationIdError(
                    f"received a response with correlation id {correlation_id} but no"
                    " request is outstanding"
                )
            expected, api_key, api_version, outcomes = self._pending[0]
            if correlation_id != expected:
                raise UnexpectedCorrelationIdError(
                    f"received a response with correlation id {correlation_id}, expected"
                    f" {expected} (the oldest outstanding request,"
                    f" {api_spec(api_key).name} v{api_version})"
                )
            if outcomes:
                _, response = decode_produce_frame(api_version, payload)
                version = api_version
            else:
                _, response = decode_response(api_key, api_version, payload)
                version = int(type(response).__version__)
        finally:
            payload.release()
        frames.consume(length)
        self._pending.popleft()
        self.last_response_size = length + 4
        return Response(
            correlation_id=correlation_id, api_key=api_key, api_version=version, response=response
        )


class ServerConnection:
    """The broker side of one Kafka connection (see the module doc).

    ``max_pre_auth_frame_size`` (None: no separate limit) applies until the first
    ApiVersions request, with ``pre_auth_until="first_request"`` to the first frame only
    (clients that pin a version and never send ApiVersions are then not held to it), or
    with ``pre_auth_until="authenticated"`` until the broker calls
    ``lift_pre_auth_limit()`` (after SASL, as Kafka's SaslServerAuthenticator does with
    ``KAFKA_SASL_MAX_RECEIVE_SIZE``).
    """

    __slots__ = (
        "_conn",
        "_pending",
        "_pre_auth",
        "_pre_auth_until",
        "max_frame_size",
        "max_pre_auth_frame_size",
    )

    def __init__(
        self,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_pre_auth_frame_size: int | None = None,
        pre_auth_until: Literal["api_versions", "first_request", "authenticated"] = "api_versions",
    ) -> None:
        _check_frame_size(max_frame_size, "max_frame_size")
        if max_pre_auth_frame_size is not None:
            _check_frame_size(max_pre_auth_frame_size, "max_pre_auth_frame_size")
        if pre_auth_until not in ("api_versions", "first_request", "authenticated"):
            raise LocalProtocolError(
                "pre_auth_until must be 'api_versions', 'first_request' or 'authenticated'"
            )
        self.max_frame_size = max_frame_size
        self.max_pre_auth_frame_size = max_pre_auth_frame_size
        self._pre_auth_until = pre_auth_until
        self._pre_auth = max_pre_auth_frame_size is not None
        self._conn = _Connection()
        # Correlation ids of requests awaiting a response, oldest first.
        self._pending: deque[int] = deque()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    @property
    def frame_limit(self) -> int:
        """The size limit for the next request frame."""
        if self._pre_auth and self.max_pre_auth_frame_size is not None:
            return min(self.max_pre_auth_frame_size, self.max_frame_size)
        return self.max_frame_size

    def lift_pre_auth_limit(self) -> None:
        """From now on only ``max_frame_size`` applies (call after authentication)."""
        self._pre_auth = False

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        self._conn.receive_data(data)

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as events (a partial frame, at NEED_DATA)."""
        return self._conn._frames.buffered

    @property
    def next_frame_size(self) -> int | None:
        """What the next (partial) frame declares, prefix included; None before 4 bytes."""
        return self._conn._frames.declared_size()

    def next_event(self) -> Request | UnsupportedRequest | ConnectionClosed | NeedData:
        conn = self._conn
        if conn._error is not None:
            conn._raise_dead()
        try:
            return self._next_event()
        except PykafError as exc:
            conn._fail(exc)

    def _next_event(self) -> Request | UnsupportedRequest | ConnectionClosed | NeedData:
        frames = self._conn._frames
        limit = self.frame_limit
        what = "unauthenticated request" if limit < self.max_frame_size else "request"
        length = frames.frame_length(limit, what)
        if length is None:
            return self._conn._closed_or_need_data(0)
        payload = frames.view(length)
        try:
            prefix = peek_request(payload)
            event: Request | UnsupportedRequest
            if not is_supported_request(prefix.api_key, prefix.api_version):
                event = UnsupportedRequest(
                    correlation_id=prefix.correlation_id,
                    api_key=prefix.api_key,
                    api_version=prefix.api_version,
                    client_id=prefix.client_id,
                )
            else:
                _, body = decode_request_with(
                    prefix.api_key, prefix.api_version, prefix, payload, lenient=True
                )
                event = Request(
                    correlation_id=prefix.correlation_id,
                    api_key=prefix.api_key,
                    api_version=prefix.api_version,
                    client_id=prefix.client_id,
                    request=body,
                )
        finally:
            payload.release()
        frames.consume(length)
        until = self._pre_auth_until
        if until == "first_request" or (
            until == "api_versions" and prefix.api_key == API_VERSIONS_KEY
        ):
            self._pre_auth = False
        if isinstance(event, UnsupportedRequest) or event.expects_response:
            self._pending.append(event.correlation_id)
        return event

    def send_response(
        self, request_event: Request | UnsupportedRequest, response: Payload
    ) -> bytes:
        """Frame ``response`` to ``request_event``; returns the bytes to write.

        Responses must go out in request order (Kafka clients rely on it). An
        ``UnsupportedRequest`` can only be answered for ApiVersions, with a response of any
        version (Kafka sends v0 with UNSUPPORTED_VERSION).
        """
        correlation_id = request_event.correlation_id
        self._check_next_answer(correlation_id)
        if isinstance(request_event, UnsupportedRequest):
            if request_event.api_key != API_VERSIONS_KEY:
                raise LocalProtocolError(
                    f"only ApiVersions can be answered at an unsupported version; close the"
                    f" connection for API key {request_event.api_key}"
                    f" v{request_event.api_version}"
                )
            api_key, api_version = payload_api(response)
            data = encode_response(api_key, api_version, correlation_id, response)
        else:
            data = encode_response(
                request_event.api_key, request_event.api_version, correlation_id, response
            )
        self._pending.popleft()
        return data

    def send_fetch_response(self, request_event: Request, answer: FetchAnswer) -> list[Buffer]:
        """Frame a Fetch answer given as plain values (``encode_fetch_response``): the
        broker's hot path. Returns buffers to write in order (``writelines``); the stored
        batches in ``answer`` are among them, not copied."""
        correlation_id = request_event.correlation_id
        self._check_next_answer(correlation_id)
        if request_event.api_key != _FETCH_KEY:
            raise LocalProtocolError(
                f"a Fetch answer given for API key {request_event.api_key}"
                f" (correlation id {correlation_id})"
            )
        parts = encode_fetch_response(request_event.api_version, correlation_id, answer)
        self._pending.popleft()
        return parts

    def _check_next_answer(self, correlation_id: int) -> None:
        if self._conn._error is not None:
            self._conn._raise_dead()
        if not self._pending or self._pending[0] != correlation_id:
            oldest = self._pending[0] if self._pending else None
            raise LocalProtocolError(
                f"response to correlation id {correlation_id} out of order: the oldest"
                f" request awaiting a response has {oldest}"
            )
