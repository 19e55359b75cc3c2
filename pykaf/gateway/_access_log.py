"""What each request leaves behind: one JSON line on the ``pykaf.gateway.access`` logger
and the gateway's own metrics (requests by route and status, latency, records, 429s).

The app wraps each HTTP exchange (``begin`` ... ``end``): the wrapper sees the status and
the bytes that cross, whichever way the handler answered (a whole ``Response`` or a
stream of its own), so a streaming route is logged like any other. The backend counts
the records a request put into custody or sent through ``count_records``, which finds
the request's exchange in a context variable: no handler has to remember to report.
"""

from __future__ import annotations

import bisect
import json
import logging
import threading
import time
from contextvars import ContextVar, Token
from typing import Any, Final

from pykaf.gateway._asgi import Message, Receive, Request, Scope, Send

__all__ = [
    "ACCESS_LOGGER",
    "LATENCY_BOUNDS",
    "Exchange",
    "GatewayTelemetry",
    "RequestMetrics",
    "count_records",
]

ACCESS_LOGGER: Final = "pykaf.gateway.access"
access_log = logging.getLogger(ACCESS_LOGGER)

#: Request latency bounds (seconds): finer at the bottom than the Kafka clients' own
#: (a record accepted in memory is answered in about 100 us), up to a sync answer
#: waiting on a slow broker.
LATENCY_BOUNDS: Final = (
    *(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05),
    *(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
# The status logged for a request whose client left before any answer (nginx's).
CLIENT_CLOSED: Final = 499


class Exchange:
    """One HTTP exchange as it crosses the wire: status, bytes each way, records."""

    __slots__ = (
        "_receive",
        "_send",
        "bytes_in",
        "bytes_out",
        "records",
        "request",
        "route",
        "started",
        "status",
    )

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self.started = time.monotonic()
        self.status: int | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.records = 0
        self.request: Request | None = None  # set once the request is parsed
        self.route: str | None = None  # the matched route's name

    async def receive(self) -> Message:
        message = await self._receive()
        body = message.get("body")
        if body:
            self.bytes_in += len(body)
        return message

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            self.bytes_out += len(message.get("body", b""))
        elif kind == "http.response.start":
            self.status = message["status"]
        await self._send(message)


_current: ContextVar[Exchange | None] = ContextVar("pykaf_gateway_exchange", default=None)


def count_records(count: int) -> None:
    """``count`` more records taken into custody (or sent) for the current request."""
    exchange = _current.get()
    if exchange is not None:
        exchange.records += count


class RequestMetrics:
    """The gateway's own counters, read by ``/metrics`` (plain numbers: recording one
    request needs no metrics library, only a scrape does)."""

    def __init__(self) -> None:
        # A scrape may run in another thread (a host app's own exporter): one lock.
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.records: dict[str, int] = {}
        self.too_many: dict[str, int] = {}
        self.latency: dict[str, list[int]] = {}  # per route: counts per bound, then +Inf
        self.latency_sum: dict[str, float] = {}

    def observe(self, route: str, status: int, seconds: float, records: int) -> None:
        with self._lock:
            key = (route, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            if records:
                self.records[route] = self.records.get(route, 0) + records
            if status == 429:
                self.too_many[route] = self.too_many.get(route, 0) + 1
            counts = self.latency.get(route)
            if counts is None:
                counts = self.latency[route] = [0] * (len(LATENCY_BOUNDS) + 1)
            counts[bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1
            self.latency_sum[route] = self.latency_sum.get(route, 0.0) + seconds

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(self.requests),
                "records": dict(self.records),
                "too_many": dict(self.too_many),
                "latency": {route: list(counts) for route, counts in self.latency.items()},
                "latency_sum": dict(self.latency_sum),
            }


class GatewayTelemetry:
    """The access log, the request metrics, and the Kafka clients whose statistics
    ``/metrics`` exposes (each watched from its creation, so its counters are whole)."""

    def __init__(self) -> None:
        self.metrics = RequestMetrics()
        self.clients: list[tuple[str, Any]] = []
        self.prometheus: Any = None  # pykaf.telemetry's collector, when prometheus_client is

    def watch_client(self, role: str, client: Any) -> None:
        """A Kafka client the backend just opened (``role``: "producer-memory", ...)."""
        self.clients.append((role, client))
        if self.prometheus is None:
            try:
                from pykaf.telemetry import prometheus_collector  # noqa: PLC0415

                self.prometheus = prometheus_collector()
            except ImportError:  # no prometheus_client: /metrics says so (501)
                return
        self.prometheus.add(client, role)

    def begin(self, receive: Receive, send: Send) -> tuple[Exchange, Token[Exchange | None]]:
        exchange = Exchange(receive, send)
        return exchange, _current.set(exchange)

    def end(self, exchange: Exchange, token: Token[Exchange | None], scope: Scope) -> None:
        """Count and log the exchange (called once, however the request ended)."""
        _current.reset(token)
        seconds = time.monotonic() - exchange.started
        status = CLIENT_CLOSED if exchange.status is None else exchange.status
        self.metrics.observe(exchange.route or "unmatched", status, seconds, exchange.records)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(access_line(exchange, scope, status, seconds))


def access_line(exchange: Exchange, scope: Scope, status: int, seconds: float) -> str:
    """One request as one JSON object on one line (what log shippers parse)."""
    client = scope.get("client")
    return json.dumps(
        {
            "time": round(time.time(), 3),
            "method": scope.get("method"),
            "path": scope.get("path"),
            "route": exchange.route,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
            "bytes_in": exchange.bytes_in,
            "bytes_out": exchange.bytes_out,
            "records": exchange.records,
            "principal": None if exchange.request is None else exchange.request.principal,
            "client": None if not client else f"{client[0]}:{client[1]}",
        },
        separators=(",", ":"),
    )
