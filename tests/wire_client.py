"""A tiny blocking Kafka client over pykaf.protocol, for tests that need exact bytes."""

from __future__ import annotations

import socket
import struct
from typing import Any

from pykaf.protocol import (
    NEED_DATA,
    ClientConnection,
    ConnectionClosed,
    NegotiatedVersions,
    api_versions_retry_version,
    build_request,
    negotiate,
    pick_version,
)


class WireClient:
    """One connection to one broker; every call is bounded by ``timeout``."""

    def __init__(self, address: str, *, timeout: float = 5.0, client_id: str = "wire-test") -> None:
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.settimeout(timeout)
        self.conn = ClientConnection(client_id=client_id)

    def send(self, api: str, version: int, **fields: Any) -> None:
        request = build_request(api, version, **fields)
        self.sock.sendall(self.conn.send(request))

    def receive(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is NEED_DATA:
                self.conn.receive_data(self.sock.recv(1 << 20))
                continue
            if isinstance(event, ConnectionClosed):
                raise ConnectionError("the broker closed the connection")
            return event.response

    def request(self, api: str, version: int, **fields: Any) -> Any:
        self.send(api, version, **fields)
        return self.receive()

    def negotiate(self) -> NegotiatedVersions:
        """ApiVersions, then remember the highest common version of every API."""
        sent = 3
        response = self.request(
            "ApiVersions", sent, client_software_name="pykaf-tests", client_software_version="0"
        )
        retry = api_versions_retry_version(response, sent_version=sent)
        if retry is not None:  # the broker knows an older ApiVersions only
            response = self.request("ApiVersions", retry)
        self.versions = negotiate(response)
        return self.versions

    def call(self, api: str, **fields: Any) -> Any:
        """Send ``api`` at the negotiated version (``negotiate`` first) and wait for the answer."""
        return self.request(api, pick_version(self.versions, api), **fields)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def is_closed_by_peer(self) -> bool:
        """True when the broker closed this connection (reads EOF or a reset)."""
        try:
            return self.sock.recv(1 << 16) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> WireClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raw_frame(api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    """A request frame with header v1 (client id "raw") and an arbitrary body."""
    header = struct.pack(">hhih", api_key, version, correlation_id, 3) + b"raw"
    payload = header + body
    return struct.pack(">i", len(payload)) + payload
