"""What one broker connection tells its client's ``EventBus`` (issue 15's client core).

Kept out of ``_connection`` so the connection's hot path shows only the cost rule: it
tests ``bus.active`` once per written request and once per answer, and calls in here
only when someone listens. Nothing here runs per record.

Request timings: a request written while someone listens is noted (correlation id, api,
version, bytes, time); its answer pops the note and becomes a ``RequestAnswered``. The
bus may be subscribed or left between a request and its answer: an answer with no note
gives no ``RequestAnswered`` (its ``Throttled`` still comes), notes whose answers came
while nobody listened are dropped once a later answer is seen, and the queue is bounded
by the connection's in-flight limit, so it never grows.
"""

from __future__ import annotations

import time
from collections import deque
from datetime import timedelta
from typing import Any, Final

from pykaf._telemetry._bus import EventBus
from pykaf._telemetry._events import (
    ConnectionClosed,
    ConnectionFailed,
    ConnectionOpened,
    RequestAnswered,
    Throttled,
)
from pykaf.protocol._apis import api_spec
from pykaf.protocol._framing import Response

__all__ = ["ConnectionEvents"]

_CORRELATION_MODULUS: Final = 2**31  # correlation ids wrap at 2**31 - 1
_HALF: Final = _CORRELATION_MODULUS // 2


def _older(correlation_id: int, than: int) -> bool:
    """Was ``correlation_id`` assigned before ``than`` (ids wrap around)?"""
    return 0 < (than - correlation_id) % _CORRELATION_MODULUS < _HALF


def throttle_seconds(response: Any) -> float:
    """The throttle time a decoded response carries (kio: ``throttle_time`` as a
    timedelta; plain answers: ``throttle_time_ms``), 0.0 if none."""
    value = getattr(response, "throttle_time", None)
    if isinstance(value, timedelta):
        return value.total_seconds()
    millis = getattr(response, "throttle_time_ms", None)
    if isinstance(millis, int) and not isinstance(millis, bool):
        return millis / 1000.0
    return 0.0


class ConnectionEvents:
    """One connection's emitter; ``node_id`` is read at each event (Metadata may name a
    bootstrap connection's broker later)."""

    __slots__ = ("_client_id", "_sent", "address", "bus")

    def __init__(
        self, bus: EventBus, address: str, client_id: str | None, max_in_flight: int
    ) -> None:
        self.bus = bus
        self.address = address
        self._client_id = client_id
        # (correlation id, api key, version, request bytes, monotonic time written)
        self._sent: deque[tuple[int, int, int, int, float]] = deque(maxlen=max_in_flight)

    def sent(self, correlation_id: int, api_key: int, version: int, size: int) -> None:
        self._sent.append((correlation_id, api_key, version, size, time.monotonic()))

    def answered(self, response: Response, size: int, node_id: int | None) -> None:
        now = time.monotonic()
        sent = self._sent
        note = None
        while sent:
            head = sent[0][0]
            if head == response.correlation_id:
                note = sent.popleft()
                break
            if not _older(head, response.correlation_id):
                break  # written while nobody listened: no note for this answer
            sent.popleft()  # answered while nobody listened
        bus, client_id = self.bus, self._client_id
        api = api_spec(response.api_key).name
        wall = time.time()
        if note is not None:
            bus.emit(
                RequestAnswered(
                    time=wall,
                    client_id=client_id,
                    broker=node_id,
                    api=api,
                    version=note[2],
                    request_bytes=note[3],
                    response_bytes=size,
                    latency=now - note[4],
                )
            )
        throttle = throttle_seconds(response.response)
        if throttle > 0:
            bus.emit(
                Throttled(
                    time=wall, client_id=client_id, broker=node_id, api=api, throttle_time=throttle
                )
            )

    def opened(self, node_id: int | None, purpose: str, time_to_connect: float) -> None:
        self.bus.emit(
            ConnectionOpened(
                time=time.time(),
                client_id=self._client_id,
                broker=node_id,
                address=self.address,
                purpose=purpose,
                time_to_connect=time_to_connect,
            )
        )

    def failed(self, node_id: int | None, error: BaseException) -> None:
        self.bus.emit(
            ConnectionFailed(
                time=time.time(),
                client_id=self._client_id,
                broker=node_id,
                address=self.address,
                error=type(error).__name__,
                reason=str(error),
            )
        )

    def closed(self, node_id: int | None, error: BaseException, on_purpose: bool) -> None:
        self._sent.clear()
        self.bus.emit(
            ConnectionClosed(
                time=time.time(),
                client_id=self._client_id,
                broker=node_id,
                address=self.address,
                reason=str(error),
                error=None if on_purpose else type(error).__name__,
            )
        )
