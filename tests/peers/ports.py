"""Free loopback ports and a raw Kafka ApiVersions probe for readiness checks."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

__all__ = ["LOOPBACK", "free_port", "kafka_api_versions_ok", "wait_for_kafka"]

LOOPBACK = "127.0.0.1"

_API_VERSIONS_KEY = 18
_PROBE_CORRELATION_ID = 0x5059_4B46  # "PYKF": easy to spot in a packet capture
_PROBE_CLIENT_ID = b"pykaf-peer-probe"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    The port is released before returning, so another process can take it before the
    caller binds it: callers that start a server on it must retry on "address in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _recv_exact(sock: socket.socket, count: int) -> bytes:
    chunks = bytearray()
    # Bounded: every recv either returns data, raises (timeout set by caller) or hits EOF.
    while len(chunks) < count:
        chunk = sock.recv(count - len(chunks))
        if not chunk:
            raise ConnectionError("peer closed the connection mid-response")
        chunks += chunk
    return bytes(chunks)


def kafka_api_versions_ok(host: str, port: int, *, timeout: float = 1.0) -> bool:
    """Send one ApiVersions v0 request; True if a well-formed, error-free answer comes back.

    Hand-built rather than through pykaf so the peers do not depend on the code under test.
    """
    header = struct.pack(
        ">hhih", _API_VERSIONS_KEY, 0, _PROBE_CORRELATION_ID, len(_PROBE_CLIENT_ID)
    )
    body = header + _PROBE_CLIENT_ID  # ApiVersions v0 has an empty request body
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(struct.pack(">i", len(body)) + body)
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            if not 6 <= size <= 1 << 20:
                return False
            payload = _recv_exact(sock, size)
    except OSError:
        return False
    correlation_id, error_code = struct.unpack_from(">ih", payload)
    return bool(correlation_id == _PROBE_CORRELATION_ID and error_code == 0)


def wait_for_kafka(
    host: str,
    port: int,
    *,
    timeout: float,
    alive: Callable[[], bool] | None = None,
    interval: float = 0.05,
) -> bool:
    """Probe until ApiVersions succeeds or ``timeout`` seconds pass.

    ``alive`` may be a zero-argument callable returning False once waiting is pointless
    (the server process died); the wait then stops early.
    """
    deadline = time.monotonic() + timeout
    # Bounded in count as well as in time, in case the clock misbehaves.
    max_attempts = int(timeout / interval) + 2
    for _ in range(max_attempts):
        if alive is not None and not alive():
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if kafka_api_versions_ok(host, port, timeout=min(1.0, remaining)):
            return True
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
    return False
