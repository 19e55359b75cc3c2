"""The embedded broker's TLS: one server context per cluster, built from PEM files.

Kafka's listener names: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL. A broker may have one of
each (a plaintext listener beside a TLS one); the TLS ones (SSL, SASL_SSL) use the files
given. With ``ssl_cafile`` it
requires a client certificate signed by that CA (Kafka's ``ssl.client.auth=required``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, Final

__all__ = [
    "BROKER_SECURITY_PROTOCOLS",
    "UNEXPECTED_MESSAGE_ALERT",
    "SniffingListener",
    "first_byte",
    "listener_contexts",
    "looks_like_tls",
    "refuse_plaintext",
    "security_protocol_name",
]

BROKER_SECURITY_PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_TLS_PROTOCOLS: Final = ("SSL", "SASL_SSL")


def security_protocol_name(security_protocol: str) -> str:
    """The protocol's canonical name; ValueError says what to use instead."""
    protocol = str(security_protocol).upper()
    if protocol not in BROKER_SECURITY_PROTOCOLS:
        raise ValueError(
            f"security_protocol must be one of {', '.join(BROKER_SECURITY_PROTOCOLS)},"
            f" not {security_protocol!r}"
        )
    return protocol


def listener_contexts(
    protocols: Sequence[str],
    *,
    certfile: str | Path | None = None,
    keyfile: str | Path | None = None,
    cafile: str | Path | None = None,
) -> list[ssl.SSLContext | None]:
    """The TLS context of each listener (None: PLAINTEXT), one shared context built once;
    ValueError says what to fix."""
    names = [security_protocol_name(p) for p in protocols]
    if len(set(names)) != len(names):
        raise ValueError(
            f"listeners {', '.join(names)}: one listener per security protocol at most"
        )
    files = {"ssl_certfile": certfile, "ssl_keyfile": keyfile, "ssl_cafile": cafile}
    given = [name for name, path in files.items() if path is not None]
    tls_names = [name for name in names if name in _TLS_PROTOCOLS]
    if not tls_names:
        if given:
            raise ValueError(
                f"{', '.join(given)} given with security_protocol {names[0]!r}: use 'SSL'"
                " or 'SASL_SSL'"
            )
        return [None] * len(names)
    if certfile is None:
        raise ValueError(
            f"security_protocol {tls_names[0]!r} needs ssl_certfile (the broker's certificate,"
            " PEM) and ssl_keyfile (its key); `pykaf certs DIR` makes a throwaway pair"
        )
    for name in given:
        path = Path(str(files[name]))
        if not path.is_file():
            raise ValueError(f"{name}: no such file: {str(path)!r}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(certfile), None if keyfile is None else str(keyfile))
    except ssl.SSLError as exc:
        raise ValueError(
            f"ssl_certfile/ssl_keyfile cannot be loaded ({exc.reason or exc}): PEM files"
            " that belong together (an unencrypted key)"
        ) from None
    if cafile is not None:
        try:
            context.load_verify_locations(str(cafile))
        except ssl.SSLError as exc:
            raise ValueError(f"ssl_cafile holds no usable CA certificate ({exc})") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return [context if name in _TLS_PROTOCOLS else None for name in names]


# -- the listener's first look at a connection ---------------------------------------------
# asyncio's TLS server drops a connection whose first bytes are not TLS without a word, so
# a plaintext client at a TLS listener could only guess (and retry until its timeout).
# Kafka's listener answers such bytes with a TLS alert, and clients name the mistake from
# it (pykaf's SecurityProtocolMismatchError, franz-go's "is this a TLS port?"). So a TLS
# listener here accepts the socket itself, peeks at the first byte before any transport
# exists (a transport may read as soon as it is made: Python 3.11.2's does even when
# paused), and then either hands the socket to asyncio's TLS with the ClientHello still
# unread, or writes the alert and closes.

_TLS_HANDSHAKE_RECORD: Final = 0x16
# A TLS 1.2 record: alert, fatal, unexpected_message; what Java's SSLEngine sends.
UNEXPECTED_MESSAGE_ALERT: Final = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x0A])

log = logging.getLogger("pykaf.broker")

#: Serves one accepted socket (the listener's ``(socket, peer)``).
SocketHandler = Callable[[socket.socket, str], Coroutine[Any, Any, None]]


async def first_byte(sock: socket.socket, timeout: float) -> int | None:
    """The socket's first byte, peeked (left in the socket); None if the client closed,
    reset, or sent nothing within ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), readable)
    try:
        async with asyncio.timeout(timeout):
            await ready
        head = sock.recv(1, socket.MSG_PEEK)
    except (TimeoutError, OSError):
        return None
    finally:
        loop.remove_reader(sock.fileno())
    return head[0] if head else None


def refuse_plaintext(sock: socket.socket, limit: int = 1 << 16) -> None:
    """Drop what the client sent (at most ``limit`` bytes: a socket closed with unread
    bytes resets the connection, and the reset can overtake the alert), send Kafka's
    alert, and close."""
    with contextlib.suppress(OSError):
        while limit > 0 and (chunk := sock.recv(min(limit, 1 << 14))):
            limit -= len(chunk)
    with contextlib.suppress(OSError):
        sock.send(UNEXPECTED_MESSAGE_ALERT)  # 7 bytes: the send buffer is empty
        sock.shutdown(socket.SHUT_WR)
    sock.close()


def looks_like_tls(first: int) -> bool:
    return first == _TLS_HANDSHAKE_RECORD


class SniffingListener:
    """A listening socket whose connections ``handle(sock, peer)`` serves, each in a task
    of its own; what the broker needs of an ``asyncio.Server`` (``sockets``, ``close``,
    ``wait_closed``)."""

    def __init__(self, sock: socket.socket, handle: SocketHandler) -> None:
        self.sockets = [sock]
        self._handle = handle
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting = asyncio.get_running_loop().create_task(self._accept())

    @classmethod
    async def listen(cls, host: str, port: int, handle: SocketHandler) -> SniffingListener:
        sock = socket.create_server((host, port), backlog=128)
        sock.setblocking(False)
        return cls(sock, handle)

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        listening = self.sockets[0]
        while True:
            try:
                conn, address = await loop.sock_accept(listening)
            except OSError as exc:  # out of descriptors, say: wait a little, go on
                log.warning("a TLS listener could not accept a connection: %s", exc)
                await asyncio.sleep(0.1)
                continue
            conn.setblocking(False)
            peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else "?"
            task = loop.create_task(self._handle(conn, peer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        self._accepting.cancel()
        for task in list(self._tasks):
            task.cancel()
        self.sockets[0].close()

    async def wait_closed(self) -> None:
        await asyncio.gather(self._accepting, *self._tasks, return_exceptions=True)
