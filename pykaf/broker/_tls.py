"""The embedded broker's TLS: one server context per cluster, built from PEM files.

Kafka's listener names: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL. A broker may have one of
each (a plaintext listener beside a TLS one); the TLS ones (SSL, SASL_SSL) use the files
given. With ``ssl_cafile`` it
requires a client certificate signed by that CA (Kafka's ``ssl.client.auth=required``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Final

__all__ = [
    "BROKER_SECURITY_PROTOCOLS",
    "UNEXPECTED_MESSAGE_ALERT",
    "HeldStreamProtocol",
    "discard_unread",
    "first_byte",
    "listener_contexts",
    "looks_like_tls",
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
# listener here accepts plain TCP, holds reading, peeks at the first byte without taking
# it, and then either starts TLS on the connection (the ClientHello still unread, for the
# TLS layer) or writes the alert and closes.

_TLS_HANDSHAKE_RECORD: Final = 0x16
# A TLS 1.2 record: alert, fatal, unexpected_message; what Java's SSLEngine sends.
UNEXPECTED_MESSAGE_ALERT: Final = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x0A])


class HeldStreamProtocol(asyncio.StreamReaderProtocol):
    """A stream protocol that reads nothing until TLS starts (``start_tls`` resumes it)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Before the transport's first read is scheduled: the first bytes stay in the
        # socket, where the TLS layer will read them.
        assert isinstance(transport, asyncio.ReadTransport)
        transport.pause_reading()
        super().connection_made(transport)


async def first_byte(writer: asyncio.StreamWriter, timeout: float) -> int | None:
    """The connection's first byte, peeked (left in the socket); None if the client
    closed or sent nothing within ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    # Watched and read through a duplicate of the descriptor: the loop refuses to watch
    # one a transport owns, and asyncio's own socket object refuses recv().
    with socket.socket(fileno=os.dup(writer.get_extra_info("socket").fileno())) as peek:
        peek.setblocking(False)
        ready: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(peek.fileno(), readable)
        try:
            async with asyncio.timeout(timeout):
                await ready
            head = peek.recv(1, socket.MSG_PEEK)
        except (TimeoutError, OSError):  # silent, or reset by the client
            return None
        finally:
            loop.remove_reader(peek.fileno())
    return head[0] if head else None


def discard_unread(writer: asyncio.StreamWriter, limit: int = 1 << 16) -> None:
    """Drop what the client sent and nobody read (at most ``limit`` bytes): a socket
    closed with unread bytes resets the connection, and the reset can overtake the alert
    written just before it."""
    with socket.socket(fileno=os.dup(writer.get_extra_info("socket").fileno())) as sock:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            while limit > 0 and (chunk := sock.recv(min(limit, 1 << 14))):
                limit -= len(chunk)


def looks_like_tls(first: int) -> bool:
    return first == _TLS_HANDSHAKE_RECORD
