"""One broker's listener: asyncio server, one task per connection, one dispatch function.

Kafka semantics: a connection's requests are handled one at a time, in order (the broker
mutes a connection while one of its requests is in progress), so responses leave in
request order; pipelined requests wait in the socket buffer. A long-polling Fetch blocks
only its own connection. A bad request (malformed frame or body, a frame over the limit,
an API or version the broker does not answer) closes that connection with a log line on
the ``pykaf.broker`` logger; nothing a client sends can stop the broker.

The seam for fault injection is ``BrokerServer.dispatch``: every request passes through it,
and when an ``Interceptor`` is set it gets the request first, with the real handler as
``call_next``. It may delay, answer by itself (an injected error), hold the response back,
or raise ``CloseConnection``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Final, TypeAlias

from pykaf._errors import PykafError, RemoteProtocolError
from pykaf.broker._bad_clients import BadClients
from pykaf.broker._read_budget import ReadBudget
from pykaf.broker._registry import (
    CloseConnection,
    ConnectionInfo,
    RequestContext,
    handler_for,
)
from pykaf.broker._sasl_auth import BrokerUsers
from pykaf.broker._state import BrokerNode, ClusterState
from pykaf.broker._tls import (
    SniffingListener,
    first_byte,
    looks_like_tls,
    refuse_plaintext,
)
from pykaf.broker.apis.api_versions import UNSUPPORTED_VERSION, api_versions_entries
from pykaf.protocol._apis import api_spec
from pykaf.protocol._fetch_response import FetchAnswer, fetch_response_entity
from pykaf.protocol._framing import (
    DEFAULT_MAX_FRAME_SIZE,
    KAFKA_SASL_MAX_RECEIVE_SIZE,
    NEED_DATA,
    ConnectionClosed,
    Request,
    ServerConnection,
    UnsupportedRequest,
)
from pykaf.protocol._messages import API_VERSIONS_KEY, Buffer, Payload, build_response

__all__ = [
    "DEFAULT_CONNECTIONS_MAX_IDLE",
    "DEFAULT_QUEUED_MAX_REQUEST_BYTES",
    "DEFAULT_REQUEST_RECEIVE_TIMEOUT",
    "BrokerServer",
    "CallNext",
    "Interceptor",
    "check_read_limits",
]

log = logging.getLogger("pykaf.broker")

CallNext: TypeAlias = Callable[[RequestContext, Payload], Awaitable[Payload | None]]
# (ctx, request, call_next) -> response (None: no response, e.g. Produce acks=0).
Interceptor: TypeAlias = Callable[[RequestContext, Payload, CallNext], Awaitable[Payload | None]]

_READ_SIZE: Final = 1024 * 1024
# Kafka's defaults: connections.max.idle.ms is 10 minutes. queued.max.request.bytes is
# unlimited in Kafka; an embedded broker shares its process with the tests, so it gets a
# real cap. A frame that has started must complete within a minute (a peer trickling a
# 100 MiB frame would otherwise hold its reservation forever).
DEFAULT_QUEUED_MAX_REQUEST_BYTES: Final = 100 * 1024 * 1024
DEFAULT_CONNECTIONS_MAX_IDLE: Final = 600.0
DEFAULT_REQUEST_RECEIVE_TIMEOUT: Final = 60.0
_STREAM_LIMIT: Final = 4 * 1024 * 1024
# Above this many unsent bytes, wait for the socket to drain before the next request.
_WRITE_HIGH_WATER: Final = 8 * 1024 * 1024
# Response buffers smaller than this are joined before a write (see _write_buffers).
_COALESCE_BELOW: Final = 16 * 1024


def check_read_limits(
    queued_max_request_bytes: int, connections_max_idle: float, request_receive_timeout: float
) -> None:
    """Raise ValueError naming the setting that is not usable."""
    if type(queued_max_request_bytes) is not int or queued_max_request_bytes < 1:
        raise ValueError(
            "queued_max_request_bytes must be a positive int (bytes),"
            f" not {queued_max_request_bytes!r}"
        )
    for name, seconds in (
        ("connections_max_idle", connections_max_idle),
        ("request_receive_timeout", request_receive_timeout),
    ):
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
            raise ValueError(f"{name} must be a positive number of seconds, not {seconds!r}")


def _api_name(api_key: int) -> str:
    try:
        return api_spec(api_key).name
    except PykafError:
        return f"API key {api_key}"


class BrokerServer:
    """The listener of one broker node. Start with ``start()``, stop with ``stop()``."""

    def __init__(
        self,
        node: BrokerNode,
        state: ClusterState,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_pre_auth_frame_size: int = KAFKA_SASL_MAX_RECEIVE_SIZE,
        queued_max_request_bytes: int = DEFAULT_QUEUED_MAX_REQUEST_BYTES,
        connections_max_idle: float = DEFAULT_CONNECTIONS_MAX_IDLE,
        request_receive_timeout: float = DEFAULT_REQUEST_RECEIVE_TIMEOUT,
        tls: ssl.SSLContext | None = None,
        extra_listeners: Mapping[str, ssl.SSLContext | None] | None = None,
        security_protocol: str = "PLAINTEXT",
        users: BrokerUsers | None = None,
    ) -> None:
        check_read_limits(queued_max_request_bytes, connections_max_idle, request_receive_timeout)
        sasl_listeners = [
            name
            for name in (security_protocol, *(extra_listeners or {}))
            if name.startswith("SASL_")
        ]
        if sasl_listeners and users is None:
            raise ValueError(f"listener {sasl_listeners[0]} needs users (BrokerUsers)")
        self._node = node
        self.state = state
        self.max_frame_size = max_frame_size
        self.max_pre_auth_frame_size = max_pre_auth_frame_size
        self.connections_max_idle = float(connections_max_idle)
        self.request_receive_timeout = float(request_receive_timeout)
        self.read_budget = ReadBudget(queued_max_request_bytes, owner=f"broker {node.node_id}")
        self.interceptor: Interceptor | None = None
        #: The listener speaks TLS with this context (None: PLAINTEXT).
        self.tls = tls
        #: Listeners beside the main one, by name, with their TLS context (None: plain);
        #: their ports are in ``node.listener_ports``.
        self.extra_listeners = dict(extra_listeners or {})
        #: The main listener's security protocol; SASL_PLAINTEXT and SASL_SSL listeners
        #: (main or extra) authenticate every connection against ``users``.
        self.security_protocol = security_protocol
        self.users = users
        self._server: asyncio.Server | SniffingListener | None = None
        self._extra_servers: list[asyncio.Server | SniffingListener] = []
        self._connections: dict[int, tuple[asyncio.Task[None], asyncio.StreamWriter]] = {}
        self._ids = itertools.count(1)
        #: Connections closed for breaking the protocol (logged once a minute, counted).
        self.bad_clients = BadClients(log, node.node_id)

    @property
    def node(self) -> BrokerNode:
        return self._node

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    async def start(self, port: int | None = None) -> None:
        """Listen on ``node.host`` at ``port`` (default: the node's port; 0: a free one)."""
        if self._server is not None:
            return
        want = self._node.port if port is None else port
        self._server = server = await self._listen(None, want, self.tls)
        self._node.port = server.sockets[0].getsockname()[1]
        try:
            for name, tls in self.extra_listeners.items():
                server = await self._listen(name, self._node.listener_ports.get(name, 0), tls)
                self._extra_servers.append(server)
                self._node.listener_ports[name] = server.sockets[0].getsockname()[1]
        except BaseException:
            await self.stop()
            raise

    async def _listen(
        self, name: str | None, port: int, tls: ssl.SSLContext | None
    ) -> asyncio.Server | SniffingListener:
        serve = functools.partial(self._serve, listener=name)
        if tls is None:
            return await asyncio.start_server(
                serve, self._node.host, port, limit=_STREAM_LIMIT, reuse_address=True
            )
        # TLS starts per connection, after a look at its first byte (see ``_tls``).
        tls_context = tls

        async def handle(sock: socket.socket, peer: str) -> None:
            await self._start_tls(sock, peer, tls_context, serve)

        return await SniffingListener.listen(self._node.host, port, handle)

    async def _start_tls(
        self,
        sock: socket.socket,
        peer: str,
        tls: ssl.SSLContext,
        serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    ) -> None:
        """TLS on a connection of a TLS listener, then serve it; a client whose first
        bytes are not TLS gets Kafka's alert and is closed, a failed handshake is logged."""
        # A client that stalls holds no more than a request that stalls.
        try:
            first = await first_byte(sock, self.request_receive_timeout)
        except BaseException:  # the listener is closing: the socket is still ours to close
            sock.close()
            raise
        if first is None:
            sock.close()
            return
        if not looks_like_tls(first):
            log.info(
                "broker %d: %s sent plaintext (first byte 0x%02x) to a TLS listener;"
                " answered with a TLS alert",
                self.node.node_id,
                peer,
                first,
            )
            refuse_plaintext(sock)
            return
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_STREAM_LIMIT, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, serve, loop=loop)
        try:
            await loop.connect_accepted_socket(
                lambda: protocol,
                sock,
                ssl=tls,
                ssl_handshake_timeout=self.request_receive_timeout,
            )
        except (ssl.SSLError, ConnectionError, OSError, TimeoutError) as exc:
            log.info("broker %d: TLS handshake with %s failed: %s", self.node.node_id, peer, exc)
            _forget_traceback(exc)
            sock.close()
        except BaseException:  # cancelled mid-handshake by stop(): close, then go on stopping
            sock.close()
            raise

    async def stop(self) -> None:
        """Stop listening and close every connection (bounded: tasks are cancelled)."""
        server, self._server = self._server, None
        servers = [server, *self._extra_servers] if server is not None else self._extra_servers
        self._extra_servers = []
        for each in servers:
            each.close()
        await self.close_connections()
        for each in servers:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(each.wait_closed(), timeout=1.0)

    async def close_connections(self) -> None:
        """Close every client connection (the listener keeps running)."""
        tasks = []
        for task, writer in list(self._connections.values()):
            writer.transport.abort()
            task.cancel()
            tasks.append(task)
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)

    async def dispatch(self, ctx: RequestContext, request: Payload) -> Payload | None:
        """Answer one request: through the interceptor when one is set, else the handler.

        Without an interceptor a Fetch is answered with a ``FetchAnswer`` (plain values
        holding the stored batches), which the listener writes without building kio's
        entity; an interceptor always sees kio entities (``call_handler``).
        """
        interceptor = self.interceptor
        if interceptor is not None:
            return await interceptor(ctx, request, call_handler)
        return await _call_registered(ctx, request)

    # -- connections --------------------------------------------------------------------

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        listener: str | None = None,
    ) -> None:
        conn_id = next(self._ids)
        task = asyncio.current_task()
        assert task is not None
        self._connections[conn_id] = (task, writer)
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if peername else "?"
        protocol = listener or self.security_protocol
        session = (
            self.users.session()
            if self.users is not None and protocol.startswith("SASL_")
            else None
        )
        info = ConnectionInfo(connection_id=conn_id, peer=peer, listener=listener, sasl=session)
        reading = _Reading(writer.transport)
        try:
            await self._run_connection(reader, writer, info, reading)
        except CloseConnection as exc:
            log.info(
                "broker %d: closing connection from %s: %s",
                self.node.node_id,
                peer,
                exc.reason,
            )
        except RemoteProtocolError as exc:
            self.bad_clients.closed(peer, exc)
            _forget_traceback(exc)
        except (ConnectionError, OSError) as exc:
            _forget_traceback(exc)  # the client went away; nothing to tell
        except asyncio.CancelledError:
            pass  # the broker is stopping (or this connection was dropped on purpose)
        except Exception as exc:
            log.exception(
                "broker %d: internal error answering %s; closing its connection",
                self.node.node_id,
                peer,
            )
            _forget_traceback(exc)
        finally:
            self._connections.pop(conn_id, None)
            writer.transport.abort()
            if reading.reserved:
                self.read_budget.release(reading.reserved)

    async def _run_connection(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        info: ConnectionInfo,
        reading: _Reading,
    ) -> None:
        # Without SASL the pre-authentication limit guards the first frame only: a peer
        # that starts with garbage cannot make the broker buffer 100 MiB, while clients that
        # skip ApiVersions (old ones with a pinned version) are not held to 512 KiB
        # afterwards. With SASL it holds until the client has authenticated, as in Kafka.
        session = info.sasl
        conn = ServerConnection(
            max_frame_size=self.max_frame_size,
            max_pre_auth_frame_size=min(self.max_pre_auth_frame_size, self.max_frame_size),
            pre_auth_until="first_request" if session is None else "authenticated",
        )
        transport = writer.transport
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                conn.receive_data(await self._read(reader, conn, reading))
                continue
            if isinstance(event, ConnectionClosed):
                return
            if isinstance(event, UnsupportedRequest):
                writer.write(self._refuse(conn, event))
                continue
            if session is not None:
                refusal = session.refusal(event.api_key, _api_name(event.api_key))
                if refusal is not None:
                    raise CloseConnection(refusal)
            response = await self._answer(event, info)
            if event.expects_response:
                if response is None:
                    raise CloseConnection(
                        f"no response produced for {_api_name(event.api_key)} v{event.api_version}"
                    )
                if isinstance(response, FetchAnswer):
                    await _write_buffers(writer, conn.send_fetch_response(event, response))
                else:
                    writer.write(conn.send_response(event, response))
                if transport.get_write_buffer_size() > _WRITE_HIGH_WATER:
                    await writer.drain()
            if session is not None and session.failure is not None:
                # Kafka closes the connection once the failure is answered (a failed
                # re-authentication too: the session it would have renewed is over).
                await self._flush(writer)
                raise CloseConnection(
                    f"SASL authentication failed (client {event.client_id!r}): {session.failure}"
                )
            if session is not None and session.authenticated:
                conn.lift_pre_auth_limit()

    async def _flush(self, writer: asyncio.StreamWriter) -> None:
        """Wait (bounded) until everything written has gone to the socket: closing aborts
        the transport, which would drop a last answer still buffered."""
        writer.transport.set_write_buffer_limits(high=0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.request_receive_timeout):
                await writer.drain()

    async def _read(
        self, reader: asyncio.StreamReader, conn: ServerConnection, reading: _Reading
    ) -> bytes:
        """The next bytes from the peer, within the idle timeout (nothing buffered) or the
        deadline of the frame that has started; a partial frame reserves its declared size
        from ``read_budget`` first (see ``_read_budget``)."""
        loop = asyncio.get_running_loop()
        consumed = reading.received - conn.buffered  # stream offset of the partial frame
        if reading.reserved and consumed >= reading.frame_end:
            self.read_budget.release(reading.reserved)
            reading.reserved = 0
        if not conn.buffered:
            deadline = loop.time() + self.connections_max_idle
        else:
            if consumed != reading.frame_start:  # a new frame; its size follows its prefix
                reading.frame_start = consumed
                reading.frame_end = -1
                reading.frame_started = loop.time()
            deadline = reading.frame_started + self.request_receive_timeout
            size = conn.next_frame_size
            if size is not None and not reading.reserved:
                reading.frame_end = consumed + size
                await self._reserve(size, reading.transport, deadline, conn)
                reading.reserved = size
        try:
            async with asyncio.timeout_at(deadline):
                data = await reader.read(_READ_SIZE)
        except TimeoutError:
            raise CloseConnection(self._timeout_reason(conn)) from None
        reading.received += len(data)
        return data

    def _timeout_reason(self, conn: ServerConnection) -> str:
        if not conn.buffered:
            return f"idle for {self.connections_max_idle:g} s (connections_max_idle)"
        return (
            f"a request frame did not complete within {self.request_receive_timeout:g} s"
            f" (request_receive_timeout; {conn.buffered} bytes of it arrived)"
        )

    async def _reserve(
        self,
        size: int,
        transport: asyncio.WriteTransport,
        deadline: float,
        conn: ServerConnection,
    ) -> None:
        """Reserve ``size`` bytes; while the budget is spent, stop reading the connection
        (what arrived stays buffered; the peer's sends back up in TCP)."""
        budget = self.read_budget
        if budget.try_reserve(size):
            return
        assert isinstance(transport, asyncio.ReadTransport)
        transport.pause_reading()
        try:
            while not budget.try_reserve(size):
                try:
                    async with asyncio.timeout_at(deadline):
                        await budget.wait_for_space()
                except TimeoutError:
                    raise CloseConnection(self._timeout_reason(conn)) from None
        finally:
            if not transport.is_closing():
                transport.resume_reading()

    def _refuse(self, conn: ServerConnection, event: UnsupportedRequest) -> bytes:
        if event.api_key != API_VERSIONS_KEY:
            raise RemoteProtocolError(
                f"{_api_name(event.api_key)} v{event.api_version} is not supported"
                f" (client {event.client_id!r})"
            )
        # Kafka's answer to an ApiVersions version it does not know: UNSUPPORTED_VERSION
        # with a v0 body listing what it speaks, so the client can retry lower.
        response = build_response(
            API_VERSIONS_KEY,
            0,
            error_code=UNSUPPORTED_VERSION,
            api_keys=api_versions_entries(),
            throttle_time=0,
        )
        return conn.send_response(event, response)

    async def _answer(self, event: Request, info: ConnectionInfo) -> Payload | None:
        if handler_for(event.api_key, event.api_version) is None:
            raise RemoteProtocolError(
                f"{_api_name(event.api_key)} v{event.api_version} is not answered by this"
                f" broker (client {event.client_id!r})"
            )
        ctx = RequestContext(
            broker=self,
            state=self.state,
            connection=info,
            api_key=event.api_key,
            api_version=event.api_version,
            correlation_id=event.correlation_id,
            client_id=event.client_id,
        )
        return await self.dispatch(ctx, event.request)


def _forget_traceback(exc: BaseException) -> None:
    """Drop the tracebacks of a connection's last error (and what it chained).

    The framing layer keeps its error on the connection object (and the stream reader
    its socket error), while the traceback's frames hold that connection: a cycle that
    kept a partial frame of up to 100 MiB in memory until the cyclic GC happened to run.
    Without the frames it goes at once.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__


class _Reading:
    """Where one connection's reading stands: bytes received so far, the stream offsets
    where the partial frame starts and ends (-1: not known), when it started, what it
    reserved."""

    __slots__ = ("frame_end", "frame_start", "frame_started", "received", "reserved", "transport")

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self.transport = transport
        self.received = 0
        self.frame_start = -1
        self.frame_end = -1
        self.frame_started = 0.0
        self.reserved = 0


async def _write_buffers(writer: asyncio.StreamWriter, parts: list[Buffer]) -> None:
    """Write a response given as buffers (stored batches among them) in order.

    Big buffers go one ``write`` each, as memoryviews: while the socket takes them,
    nothing is copied (the transport sends straight from the stored batch; Python 3.11's
    ``writelines`` would join them all first, and slicing bytes would copy the unsent rest
    once more). Small ones are joined first: copying a few KiB costs less than a system
    call or a Python step each, so a response of many small batches is one join and one
    write. Only what the socket refuses is copied, once, into the transport's buffer,
    which ``_WRITE_HIGH_WATER`` bounds.
    """
    transport = writer.transport
    if sum(map(len, parts)) < len(parts) * _COALESCE_BELOW:
        transport.write(memoryview(b"".join(parts)))
    else:
        small: list[Buffer] = []
        small_size = 0
        for part in parts:
            size = len(part)
            if size < _COALESCE_BELOW:
                small.append(part)
                small_size += size
                if small_size < _COALESCE_BELOW:
                    continue
                transport.write(b"".join(small))
                small.clear()
                small_size = 0
            else:
                if small:
                    transport.write(b"".join(small))
                    small.clear()
                    small_size = 0
                transport.write(memoryview(part))
            if transport.get_write_buffer_size() > _WRITE_HIGH_WATER:
                await writer.drain()
        if small:
            transport.write(b"".join(small))
    if transport.get_write_buffer_size() > _WRITE_HIGH_WATER:
        await writer.drain()


async def _call_registered(ctx: RequestContext, request: Payload) -> Payload | None:
    handler = handler_for(ctx.api_key, ctx.api_version)
    if handler is None:
        raise CloseConnection(f"{_api_name(ctx.api_key)} v{ctx.api_version} has no handler")
    return await handler.func(ctx, request)


async def call_handler(ctx: RequestContext, request: Payload) -> Payload | None:
    """The registered handler for the request (the end of any interceptor chain): always
    a kio entity (or None), so interceptors may read and change any answer."""
    response = await _call_registered(ctx, request)
    if isinstance(response, FetchAnswer):
        return fetch_response_entity(ctx.api_version, response)
    return response
