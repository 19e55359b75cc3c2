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

from pykaf.gateway._asgi import Message, Request, Scope, Send

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
    """One HTTP exchange as it crosses the wire: status, bytes out, records. The app
    records its own whole answers (``answered``); a handler that answers itself sends
    through ``send``, which looks at what passes. The bytes in are the request's own
    count (``Request.bytes_in``): no wrapper around ``receive``."""

    __slots__ = ("_send", "bytes_out", "records", "request", "route", "started", "status")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = time.monotonic()
        self.status: int | None = None
        self.bytes_out = 0
        self.records = 0
        self.request: Request | None = None  # set once the request is parsed
        self.route: str | None = None  # the matched route's name

    def answered(self, status: int, size: int) -> None:
        """The app sends a whole answer of ``size`` body bytes itself."""
        self.status = status
        self.bytes_out += size

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            self.bytes_out += len(message.get("body", b""))
        elif kind == "http.response.start":
            self.status = message["status"]
        await self._send(message)

    @property
    def bytes_in(self) -> int:
        return 0 if self.request is None else self.request.bytes_in


_current: ContextVar[Exchange | None] = ContextVar("pykaf_gateway_exchange", default=None)


def count_records(count: int) -> None:
    """``count`` more records taken into custody (or sent) for the current request."""
    exchange = _current.get()
    if exchange is not None:
        exchange.records += count


class _RouteCounts:
    """One route's counters (found by one lookup per request)."""

    __slots__ = ("latency", "latency_sum", "records", "statuses", "too_many")

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.records = 0
        self.too_many = 0
        self.latency = [0] * (len(LATENCY_BOUNDS) + 1)  # counts per bound, then +Inf
        self.latency_sum = 0.0


class RequestMetrics:
    """The gateway's own counters, read by ``/metrics`` (plain numbers: recording one
    request needs no metrics library, only a scrape does)."""

    def __init__(self) -> None:
        # A scrape may run in another thread (a host app's own exporter): one lock.
        self._lock = threading.Lock()
        self._routes: dict[str, _RouteCounts] = {}

    def observe(self, route: str, status: int, seconds: float, records: int) -> None:
        with self._lock:
            counts = self._routes.get(route)
            if counts is None:
                counts = self._routes[route] = _RouteCounts()
            statuses = counts.statuses
            statuses[status] = statuses.get(status, 0) + 1
            if records:
                counts.records += records
            if status == 429:
                counts.too_many += 1
            counts.latency[bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1
            counts.latency_sum += seconds

    def snapshot(self) -> dict[str, Any]:
        """``requests`` by (route, status), ``records`` and ``too_many`` by route (routes
        with some only), ``latency`` (counts per bound, then +Inf) and ``latency_sum``
        by route."""
        with self._lock:
            routes = list(self._routes.items())
            return {
                "requests": {
                    (route, status): count
                    for route, counts in routes
                    for status, count in counts.statuses.items()
                },
                "records": {route: c.records for route, c in routes if c.records},
                "too_many": {route: c.too_many for route, c in routes if c.too_many},
                "latency": {route: list(c.latency) for route, c in routes},
                "latency_sum": {route: c.latency_sum for route, c in routes},
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

    def begin(self, send: Send) -> tuple[Exchange, Token[Exchange | None]]:
        exchange = Exchange(send)
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
