"""uvicorn's HTTP protocols with what the gateway needs from the server itself.

- The ASGI TLS extension (``scope["extensions"]["tls"]``: ``client_cert_chain``,
  ``client_cert_name``, ``tls_version``...), which uvicorn does not fill: it is how the
  app learns a verified client certificate's subject (client-certificate
  authentication). Read once per connection, after the handshake.
- A bound on the request head (request line and headers): h11 has one
  (``max_incomplete_event_size``), httptools (llhttp) none at all, so a client could
  stream one endless header into memory. Past ``LimitSettings.max_header_bytes``: 431.
- A slow-head timeout: uvicorn waits forever for a head that arrives a byte at a time
  (or for a new connection that sends nothing). Past ``LimitSettings.header_timeout``
  (checked a few times per timeout by one timer per loop, ``_head_clock``): 408, and the
  connection is closed.
- What a client can make uvicorn log (a WARNING per unparsable request) said once a
  minute with a count (``_peer_log``).
- One write per whole answer (httptools only): its head waits for its body
  (``_one_write``); and the keep-alive deadline of an idle connection on the same
  one-timer clock as the slow heads, not a timer per answer (httptools only).
- A request body read ahead up to 1 MiB (at most ``max_body_bytes``) before reading
  pauses, not 64 KiB (httptools only).

``uvicorn_options(security, limits)`` gives every ``uvicorn.Config`` keyword the gateway
needs (the protocol, the head size for h11, TLS); uvicorn is imported only when asked
for, so the app itself does not need it.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import ssl
from typing import Any, Final, Literal, cast

from pykaf.gateway._auth_certs import rfc4514_name
from pykaf.gateway._head_clock import HeadClock
from pykaf.gateway._limits import Limits, LimitSettings
from pykaf.gateway._one_write import OneWriteTransport
from pykaf.gateway._peer_log import PeerLog
from pykaf.gateway._security import SecuritySettings

__all__ = ["tls_extension", "uvicorn_http_protocol", "uvicorn_options"]

Parser = Literal["auto", "httptools", "h11"]

# ASGI's tls_version is the TLS protocol number.
_TLS_VERSIONS: Final = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
_CERT_REQS: Final = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}
_PHRASES: Final = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
# Request body bytes a connection reads ahead of the app before it stops reading
# (httptools only; uvicorn's own mark is 64 KiB): ``on_body``.
_BODY_BUFFER: Final = 1 << 20
_UVICORN_BODY_BUFFER: Final = 64 * 1024
# How long a refused connection is read (and dropped) before it is closed.
_LINGER: Final = 2.0


def tls_extension(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> dict[str, Any] | None:
    """The ASGI TLS extension for one connection (None: not TLS). ``ssl`` shows the peer's
    certificate only, not the chain it came with, so the chain holds that one; the name
    is set only for a certificate that was verified (against the server's CA file)."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    verified = ssl_object.getpeercert() if der else None
    subject = verified.get("subject") if verified else None
    version = ssl_object.version()
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": rfc4514_name(subject) if subject else None,  # type: ignore[arg-type]
        "client_cert_error": None,  # a certificate that fails verification fails the handshake
        "tls_version": _TLS_VERSIONS.get(version or ""),
        "cipher_suite": None,
    }


def _refusal(status: int, message: str) -> bytes:
    body = json.dumps({"error_code": status, "message": message}).encode()
    return b"".join(
        [
            b"HTTP/1.1 %d %s\r\n" % (status, _PHRASES[status]),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class _Guard:
    """Per-connection state both protocols share: the head timer and the refusals."""

    def __init__(self, protocol: Any, settings: LimitSettings, limits: Limits | None) -> None:
        self.protocol = protocol
        self.settings = settings
        self.limits = limits
        self.clock: HeadClock | None = None  # the loop's, once a head is timed
        self.timed = False  # a head is open, its deadline on the clock
        self.head_bytes = 0
        self.refused = False  # answered 408/431: what the client still sends is dropped
        self.linger: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        timeout = self.settings.header_timeout
        if timeout is not None and not self.timed and not self.refused:
            clock = self.clock
            if clock is None:
                clock = self.clock = HeadClock.of(self.protocol.loop, timeout)
            clock.watch(self._slow_head)
            self.timed = True

    def disarm(self) -> None:
        if self.timed:
            self.timed = False
            assert self.clock is not None
            self.clock.unwatch(self._slow_head)

    def _slow_head(self) -> None:
        self.timed = False
        self.refuse(
            408,
            "slow_header",
            f"no complete request head within {self.settings.header_timeout:g} s",
        )

    def head_too_large(self) -> None:
        self.refuse(
            431,
            "header_too_large",
            f"the request head is larger than the gateway's limit of"
            f" {self.settings.max_header_bytes} bytes",
        )

    def refuse(self, status: int, reason: str, message: str) -> None:
        self.disarm()
        transport = self.protocol.transport
        if self.refused or transport is None or transport.is_closing():
            return
        self.refused = True
        if self.limits is not None:
            self.limits.rejected[reason] += 1
        transport.write(_refusal(status, message))
        if not transport.can_write_eof():  # TLS: no half-close
            transport.close()
            return
        # A lingering close (as nginx does): the answer, then our end of the stream, and
        # what the client still sends is read and dropped for a moment. Closing at once
        # with its bytes unread makes the kernel reset the connection, which can destroy
        # the answer before the client reads it.
        transport.write_eof()
        self.linger = self.protocol.loop.call_later(_LINGER, transport.close)

    def stop(self) -> None:
        self.disarm()
        if self.linger is not None:
            self.linger.cancel()
            self.linger = None

    def wrap_app(self, transport: asyncio.Transport) -> None:
        extension = tls_extension(transport.get_extra_info("ssl_object"))
        if extension is None:
            return  # plain HTTP: no wrapper, no cost
        inner = self.protocol.app

        async def with_tls(scope: Any, receive: Any, send: Any) -> None:
            scope.setdefault("extensions", {})["tls"] = extension
            await inner(scope, receive, send)

        self.protocol.app = with_tls


class _Guarded(asyncio.Protocol):
    """What both of uvicorn's protocols get: the guard, armed from the connection's start
    (a connection that never sends a head is closed too), and the TLS extension."""

    limit_settings: LimitSettings = LimitSettings()
    gateway_limits: Limits | None = None
    peer_log: PeerLog | None = None  # the server's (``uvicorn_http_protocol``)
    body_buffer: int = _UVICORN_BODY_BUFFER  # see ``on_body`` (httptools)
    app: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    logger: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = _Guard(self, self.limit_settings, self.gateway_limits)
        if self.peer_log is not None:
            self.logger = self.peer_log  # what a client can make it log: throttled

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.guard.wrap_app(self.transport)
        self.guard.arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.stop()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.guard.refused:
            return  # lingering after a refusal: read and dropped
        super().data_received(data)


class _HeadTooLarge(Exception):
    pass


@functools.cache
def _base_classes() -> tuple[type[asyncio.Protocol], type[asyncio.Protocol] | None]:
    """(h11 protocol, httptools protocol or None when httptools is not installed)."""
    import h11  # noqa: PLC0415  (uvicorn's dependency; only when serving)
    from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: PLC0415

    class _H11Connection(h11.Connection):
        # h11 bounds only a head still incomplete (``max_incomplete_event_size``); one
        # that arrives whole in one read is parsed at any size, so it is measured here.
        # The error is remembered so that "too large" answers 431 rather than 400.
        last_error: h11.RemoteProtocolError | None = None

        def __init__(self, max_head: int) -> None:
            super().__init__(h11.SERVER, max_incomplete_event_size=max_head)
            self.max_head = max_head

        def next_event(self) -> Any:
            try:
                event = super().next_event()
                if isinstance(event, h11.Request):
                    size = len(event.method) + len(event.target) + 12  # spaces, version
                    size += sum(len(name) + len(value) + 4 for name, value in event.headers)
                    if size > self.max_head:
                        raise h11.RemoteProtocolError("head too large", error_status_hint=431)
                return event
            except h11.RemoteProtocolError as exc:
                self.last_error = exc
                raise

    class GatewayH11Protocol(_Guarded, H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.conn = _H11Connection(self.limit_settings.max_header_bytes)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is h11.IDLE:
                if self.conn.trailing_data[0]:
                    self.guard.arm()  # part of a head: it must be whole in time
            else:
                self.guard.disarm()

        def send_400_response(self, msg: str) -> None:
            error = getattr(self.conn, "last_error", None)
            if error is not None and error.error_status_hint == 431:
                self.guard.head_too_large()
            else:
                super().send_400_response(msg)

    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: PLC0415
    except ImportError:
        return GatewayH11Protocol, None

    class GatewayHttpToolsProtocol(_Guarded, HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.in_head = False
            self.too_large = False
            self.head_exact = 0  # request line and headers as parsed

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.in_head and not self.too_large:
                # The head is still incomplete: what llhttp holds of it grows with each
                # chunk (an upper bound: a chunk may start with the previous request's end).
                self.guard.head_bytes += len(data)
                if self.guard.head_bytes > self.limit_settings.max_header_bytes:
                    self.too_large = True
                    self.guard.head_too_large()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.in_head = True
            self.guard.head_bytes = self.head_exact = 0
            self.guard.arm()

        def on_url(self, url: bytes) -> None:
            super().on_url(url)
            self.head_exact += len(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self.head_exact += len(name) + len(value) + 4  # ": " and CRLF
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self.in_head = False
            self.guard.disarm()
            if self.head_exact > self.limit_settings.max_header_bytes:
                self.too_large = True
                raise _HeadTooLarge()  # httptools raises it on as a parser error: 431 below
            super().on_headers_complete()
            cycle = self.cycle
            if cycle is not None and cycle.transport is self.transport:  # a new cycle
                # What the cycle calls of a transport, ``OneWriteTransport`` has.
                cycle.transport = cast(
                    "asyncio.Transport", OneWriteTransport(self.transport, cycle)
                )

        def on_body(self, body: bytes) -> None:
            # uvicorn's own steps, but the mark past which it stops reading the socket
            # until the app takes the body: 64 KiB there, so a body of 100 KiB paused
            # and resumed the reading once per request (two ``epoll_ctl`` calls and
            # their Python: 8-10% of ``/batch/async``'s CPU with 1,000 lines of 100
            # bytes). The gateway's routes take the whole body anyway (``max_body_bytes``
            # bounds it); a connection still holds at most ``_BODY_BUFFER`` unread.
            cycle = self.cycle
            if (self.parser.should_upgrade() and self._should_upgrade()) or (
                cycle.response_complete
            ):
                return
            cycle.body += body
            if len(cycle.body) > self.body_buffer:
                self.flow.pause_reading()
            cycle.message_event.set()

        # Keep-alive: uvicorn arms a timer per answer (``call_later``) and cancels it when
        # the next request's bytes come; here the idle connection waits on the loop's
        # ``HeadClock`` for ``timeout_keep_alive`` instead (a dict entry; closed after
        # between 1 and 1.25 times the timeout). The timers, their heap and the cancelled
        # handles the loop sweeps were 5 us of /async's 71 (alternating runs).
        _idle_clock: HeadClock | None = None  # the loop's, for timeout_keep_alive

        def on_response_complete(self) -> None:
            if self.pipeline:  # uvicorn starts the next request and arms no timer
                super().on_response_complete()
                return
            # uvicorn's own steps (0.30 to 0.55), but the keep-alive timer.
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            self._unset_keepalive_if_required()
            self.flow.resume_reading()
            clock = self._idle_clock
            if clock is None:
                clock = self._idle_clock = HeadClock.of(self.loop, self.timeout_keep_alive)
            clock.watch(self.timeout_keep_alive_handler)

        def _unset_keepalive_if_required(self) -> None:
            super()._unset_keepalive_if_required()  # a timer uvicorn armed itself
            clock = self._idle_clock
            if clock is not None:
                clock.unwatch(self.timeout_keep_alive_handler)

        def send_400_response(self, msg: str) -> None:
            if self.too_large:
                self.guard.head_too_large()
            else:
                super().send_400_response(msg)

    return GatewayH11Protocol, GatewayHttpToolsProtocol


def uvicorn_http_protocol(
    limits: Limits | LimitSettings | None = None, *, parser: Parser = "auto"
) -> type[asyncio.Protocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``: uvicorn's own (httptools
    when installed, else h11; or the one named) with the TLS extension, the head size
    bound and the slow-head timeout of ``limits``, refusals counted in ``limits.rejected``
    when a ``Limits`` is given (the app's: ``app.limits``)."""
    if parser not in ("auto", "httptools", "h11"):
        raise ValueError(f"parser must be 'auto', 'httptools' or 'h11', not {parser!r}")
    h11_class, httptools_class = _base_classes()
    if parser == "httptools" and httptools_class is None:
        raise ValueError("parser='httptools' needs httptools: pip install 'pykaf[gateway]'")
    base = h11_class if parser == "h11" or httptools_class is None else httptools_class
    if isinstance(limits, Limits):
        settings, counted = limits.settings, limits
    else:
        settings, counted = limits or LimitSettings(), None
    peer_log = PeerLog(logging.getLogger("uvicorn.error"), counted)
    return type(
        base.__name__,
        (base,),
        {
            "limit_settings": settings,
            "gateway_limits": counted,
            "peer_log": peer_log,
            "body_buffer": max(_UVICORN_BODY_BUFFER, min(_BODY_BUFFER, settings.max_body_bytes)),
        },
    )


def uvicorn_options(
    security: SecuritySettings, limits: Limits | LimitSettings, *, parser: Parser = "auto"
) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config``: the protocol (``uvicorn_http_protocol``),
    h11's head bound, and TLS from ``security`` (certificate, key, client CA, whether a
    client certificate is asked for)."""
    settings = limits.settings if isinstance(limits, Limits) else limits
    options: dict[str, Any] = {
        "http": uvicorn_http_protocol(limits, parser=parser),
        "h11_max_incomplete_event_size": settings.max_header_bytes,
    }
    if security.tls_certfile is None:
        if security.client_cert:
            raise ValueError(
                "client_cert needs TLS on the HTTP side: set tls_certfile, tls_keyfile and"
                " tls_ca_certs (the CA that signs client certificates)"
            )
        return options
    options.update(
        ssl_certfile=security.tls_certfile,
        ssl_keyfile=security.tls_keyfile,
        ssl_keyfile_password=security.tls_keyfile_password,
        ssl_ca_certs=security.tls_ca_certs,
        ssl_cert_reqs=_CERT_REQS[security.client_cert_mode],
    )
    return options
