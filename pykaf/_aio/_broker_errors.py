"""How a broker connection's failures read: which broker, and what went wrong, in words.

Socket errors become ``BrokerConnectionError`` naming the broker and the reason; bytes that
are not Kafka keep their ``RemoteProtocolError`` class but gain the broker's address (the
sans-I/O layer that raised them cannot know it).
"""

from __future__ import annotations

import socket

from pykaf._core._address import Address
from pykaf._errors import BrokerConnectionError, PykafError, RemoteProtocolError

__all__ = ["describe_broker", "map_os_error", "name_address", "os_reason"]


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
