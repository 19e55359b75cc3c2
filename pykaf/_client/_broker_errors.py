"""How a broker connection's failures read: which broker, and what went wrong, in words.

Socket errors become ``BrokerConnectionError`` naming the broker and the reason; bytes that
are not Kafka keep their ``RemoteProtocolError`` class but gain the broker's address (the
sans-I/O layer that raised them cannot know it).
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import Iterator

from pykaf._client._address import Address
from pykaf._errors import BrokerConnectionError, PykafError, RemoteProtocolError

__all__ = ["describe_broker", "map_os_error", "name_address", "os_reason", "unreachable_cause"]

_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})


def describe_broker(address: Address | str, node_id: int | None) -> str:
    return f"broker {node_id} at {address}" if node_id is not None else f"broker at {address}"


def os_reason(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the broker"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def map_os_error(
    exc: BaseException, address: Address, node_id: int | None
) -> BrokerConnectionError:
    return BrokerConnectionError(
        f"{describe_broker(address, node_id)}: {os_reason(exc)}",
        address=str(address),
        node_id=node_id,
    )


def name_address(exc: PykafError, where: str) -> PykafError:
    """``exc`` with the broker in its message, same class (the sans-I/O layer that raised
    it cannot know the address). Classes with their own constructor are left as they are."""
    if not isinstance(exc, RemoteProtocolError) or where in str(exc):
        return exc
    try:
        named = type(exc)(f"{where}: {exc}")
    except TypeError:
        return exc
    named.__cause__ = exc
    return named


def unreachable_cause(error: BaseException) -> tuple[str, str]:
    """(the cause in a word or two, what a reader should check) for a failure to reach or
    keep a broker: the line an operator reads first in an outage."""
    for exc in _causes(error):
        if isinstance(exc, socket.gaierror):
            return (
                "name not resolved",
                "the host name (bootstrap list or advertised listener) and DNS",
            )
        if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
            return (
                "refused",
                "that the broker runs and listens on this address (its advertised listener)",
            )
        if isinstance(exc, OSError) and exc.errno in _RESET_ERRNOS:
            return (
                "reset",
                "the broker's log (restart? crash?) and that TLS/SASL match its listener",
            )
        if isinstance(exc, ssl.SSLError):
            return (
                "TLS failed",
                "that the listener speaks TLS and ssl_context trusts its certificate",
            )
        if isinstance(exc, TimeoutError):
            return (
                "timeout",
                "that the host is reachable from here (firewall, routing) and not overloaded",
            )
        if isinstance(exc, RemoteProtocolError):
            return (
                "not Kafka",
                "that this port serves Kafka with the security protocol the client uses",
            )
    if isinstance(error, BrokerConnectionError):
        return "connection lost", "the broker's log (restart? crash?)"
    return type(error).__name__, "the error above"


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and its explicit causes (bounded: a cause chain cannot loop back)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__
