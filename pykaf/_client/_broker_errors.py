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
from typing import Final

from pykaf._client._address import Address
from pykaf._errors import (
    BrokerConnectionError,
    PykafError,
    RemoteProtocolError,
    SaslAuthenticationError,
    SaslError,
    SecurityProtocolMismatchError,
    TlsCertificateError,
    TlsError,
    TlsHostnameMismatchError,
)

__all__ = [
    "describe_broker",
    "looks_like_tls",
    "map_os_error",
    "map_tls_error",
    "name_address",
    "os_reason",
    "unreachable_cause",
]

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
    exc: BaseException, address: Address, node_id: int | None, *, tls_handshake: bool = False
) -> BrokerConnectionError:
    """``exc`` (from opening a connection) as a ``BrokerConnectionError`` naming the broker;
    ``tls_handshake``: it came while a TLS handshake was under way."""
    if isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLEOFError):
        return map_tls_error(exc, address, node_id)
    reason = os_reason(exc)
    if tls_handshake and isinstance(exc, ConnectionError | ssl.SSLEOFError | EOFError):
        # What a Kafka PLAINTEXT listener does with a TLS ClientHello: it reads a frame
        # size of ~350 MB and hangs up. Retriable all the same: a broker that is starting
        # or over its connection quota hangs up too.
        reason = (
            "the broker closed the connection during the TLS handshake: is this the"
            " PLAINTEXT listener? use security_protocol='PLAINTEXT' or the SSL port"
        )
    return BrokerConnectionError(
        f"{describe_broker(address, node_id)}: {reason}", address=str(address), node_id=node_id
    )


# X509_V_ERR_HOSTNAME_MISMATCH, _EMAIL_MISMATCH, _IP_ADDRESS_MISMATCH
_NAME_MISMATCH_CODES: Final = frozenset({62, 63, 64})
# OpenSSL's reasons when the peer answered a ClientHello with bytes that are not TLS.
_NOT_TLS_REASONS: Final = frozenset(
    {"WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "HTTP_REQUEST", "PACKET_LENGTH_TOO_LONG"}
)


def map_tls_error(exc: ssl.SSLError, address: Address, node_id: int | None) -> TlsError:
    """A typed error saying what to fix for an ``ssl`` failure with this broker."""
    where = describe_broker(address, node_id)
    kind: type[TlsError] = TlsError
    reason = str(exc.reason or exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or reason
        if exc.verify_code in _NAME_MISMATCH_CODES:
            kind = TlsHostnameMismatchError
            text = (
                f"its TLS certificate is not valid for {address.host} ({detail}): connect to"
                " a name the certificate lists (the broker's advertised listener must be one),"
                " or set ssl_check_hostname=False"
            )
        else:
            kind = TlsCertificateError
            text = (
                f"its TLS certificate is not trusted ({detail}): give the CA that signed it"
                " as ssl_cafile (or load it into ssl_context)"
            )
    elif reason in _NOT_TLS_REASONS:
        kind = SecurityProtocolMismatchError
        text = (
            f"answered TLS with plaintext ({reason}): is this the PLAINTEXT listener?"
            " use security_protocol='PLAINTEXT' or the SSL port"
        )
    elif "ALERT" in reason and ("CERTIFICATE" in reason or "UNKNOWN_CA" in reason):
        kind = TlsCertificateError
        text = (
            f"the broker refused the client's TLS certificate ({reason}): it requires one"
            " signed by a CA it trusts; give ssl_certfile and ssl_keyfile"
        )
    else:
        text = f"TLS failed ({reason}): check that the listener speaks TLS and the TLS settings"
    return kind(f"{where}: {text}", address=str(address), node_id=node_id)


def looks_like_tls(data: bytes) -> bool:
    """Do these first bytes from a broker look like a TLS record (alert or handshake,
    version 3.x)? A TLS listener answers a plaintext request with an alert (Kafka's
    does): read as a Kafka frame, its length would be ~350 MB."""
    return len(data) >= 3 and data[0] in (0x15, 0x16) and data[1] == 0x03 and data[2] <= 0x04


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
        if isinstance(exc, SaslAuthenticationError):
            return (
                "SASL authentication failed",
                "sasl_username, sasl_password (or the OAUTHBEARER token) and sasl_mechanism",
            )
        if isinstance(exc, SaslError):
            return ("SASL failed", "sasl_mechanism and that the listener speaks SASL")
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
        if isinstance(exc, SecurityProtocolMismatchError):
            return (
                "security protocol mismatch",
                "that security_protocol (PLAINTEXT or SSL) matches this listener",
            )
        if isinstance(exc, TlsHostnameMismatchError):
            return (
                "TLS hostname mismatch",
                "that the broker's certificate lists the host of its advertised listener",
            )
        if isinstance(exc, TlsCertificateError):
            return (
                "TLS certificate refused",
                "ssl_cafile (the CA of the broker's certificate) and ssl_certfile/ssl_keyfile",
            )
        if isinstance(exc, ssl.SSLError | TlsError):
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
