"""Limits on what one client may cost the gateway: body and header sizes, request rate,
concurrent requests, slow clients.

Body size and the slow-body timeout are enforced as the body is read (``Request``); header
size and the slow-header timeout by the HTTP server (``uvicorn_http_protocol``); the rate
and the concurrency cap here, per principal, or per client address for anonymous
requests. Every refusal is counted in ``Limits.rejected`` by reason, for /metrics.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pykaf.gateway._asgi import HttpError, Request
from pykaf.gateway._auth_config import check_number, settings_from_mapping

__all__ = ["Admission", "LimitSettings", "Limits", "RateLimit"]

# Buckets and counters kept at once: a flood from many addresses must not grow memory
# without end. A forgotten bucket comes back full, which costs a client at most one burst.
_MAX_KEYS: Final = 65536
# Which refusals the request itself raises (``Request``): counted when the app sees them.
_REASON_OF_STATUS: Final = {408: "slow_body", 413: "body_too_large"}


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    #: Requests per second, sustained.
    rate: float
    #: Requests allowed at once after a quiet spell (None: ``max(1, rate)``).
    burst: float | None = None

    def __post_init__(self) -> None:
        check_number("rate", self.rate, low=1e-9)
        check_number("burst", self.burst, low=1, optional=True)

    @property
    def capacity(self) -> float:
        return self.burst if self.burst is not None else max(1.0, self.rate)


@dataclass(frozen=True, kw_only=True)
class LimitSettings:
    #: Largest request body accepted (413 past it).
    max_body_bytes: int = 16 * 1024 * 1024
    #: Seconds without body data before a request is dropped with 408 (slow clients).
    body_read_timeout: float | None = 30.0
    #: Largest request head (request line and headers) the server reads (431 past it).
    max_header_bytes: int = 32 * 1024
    #: Seconds a client may take to send a request's head, and an idle new connection to
    #: start one (408 and closed past it, within a quarter of it more); None: no limit.
    header_timeout: float | None = 10.0
    #: Requests per second per principal (per client address when anonymous), with
    #: ``burst`` at once after a quiet spell (None: ``max(1, rate)``); 429 past it. None:
    #: no rate limit.
    rate: float | None = None
    burst: float | None = None
    #: Principal → its own ``RateLimit`` (or ``{"rate": ..., "burst": ...}``), instead of
    #: ``rate``/``burst``.
    principal_rates: Mapping[str, RateLimit] = field(default_factory=dict)
    #: Requests in progress at once per principal (per address when anonymous); 429 past
    #: it. None: no cap.
    max_concurrent: int | None = None
    #: Seconds a streaming request (Confluent v3 records in streaming mode) may go on
    #: sending records; past it the gateway reads no more of it, answers the records it
    #: took, and ends the answer with a 408 error object. None: no limit (a client that
    #: trickles records is then bounded by ``body_read_timeout`` per chunk only).
    stream_timeout: float | None = 300.0

    def __post_init__(self) -> None:
        check_number("max_body_bytes", self.max_body_bytes, low=0, integer=True)
        check_number("body_read_timeout", self.body_read_timeout, low=1e-3, optional=True)
        check_number("max_header_bytes", self.max_header_bytes, low=1024, integer=True)
        check_number("header_timeout", self.header_timeout, low=1e-3, optional=True)
        check_number("rate", self.rate, low=1e-9, optional=True)
        check_number("burst", self.burst, low=1, optional=True)
        check_number("max_concurrent", self.max_concurrent, low=1, optional=True, integer=True)
        check_number("stream_timeout", self.stream_timeout, low=1e-3, optional=True)
        if self.burst is not None and self.rate is None:
            raise ValueError("burst needs rate (requests per second)")
        if not isinstance(self.principal_rates, Mapping):
            raise ValueError("principal_rates must be a table of principal = {rate, burst}")
        rates = {}
        for principal, limit in self.principal_rates.items():
            if isinstance(limit, Mapping):
                unknown = set(limit) - {"rate", "burst"}
                if unknown or "rate" not in limit:
                    raise ValueError(
                        f"principal_rates[{principal!r}] takes rate (required) and burst,"
                        f" not {sorted(map(str, limit))}"
                    )
                try:
                    rates[principal] = RateLimit(**limit)
                except ValueError as exc:
                    raise ValueError(f"principal_rates[{principal!r}]: {exc}") from None
            elif isinstance(limit, RateLimit):
                rates[principal] = limit
            else:
                raise ValueError(
                    f"principal_rates[{principal!r}] must be {{rate, burst}}, not {limit!r}"
                )
        object.__setattr__(self, "principal_rates", rates)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> LimitSettings:
        """From a config file's ``[limits]`` table: unknown keys and bad values raise
        ValueError naming them."""
        return settings_from_mapping(cls, values, "limits")

    @property
    def default_rate(self) -> RateLimit | None:
        return None if self.rate is None else RateLimit(rate=self.rate, burst=self.burst)


class Admission:
    """A concurrency slot held by one request; ``release()`` when the request is done."""

    __slots__ = ("_key", "_limits")

    def __init__(self, limits: Limits, key: str) -> None:
        self._limits = limits
        self._key = key

    def release(self) -> None:
        limits, self._limits = self._limits, None  # type: ignore[assignment]
        if limits is not None:
            limits._release(self._key)


class Limits:
    """Admits a request or raises ``HttpError(429)`` with Retry-After. ``rejected``
    counts refusals by reason ("rate", "concurrency", "body_too_large", "slow_body",
    "header_too_large", "slow_header")."""

    def __init__(
        self, settings: LimitSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._default_rate = settings.default_rate
        self._rated = self._default_rate is not None or bool(settings.principal_rates)
        # key → [tokens, last refill time]
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        self._in_progress: dict[str, int] = {}
        self.rejected: dict[str, int] = dict.fromkeys(
            (
                "rate",
                "concurrency",
                "body_too_large",
                "slow_body",
                "header_too_large",
                "slow_header",
                "invalid_request",
            ),
            0,
        )

    def admit(self, request: Request) -> Admission | None:
        """Count the request against its principal's (or address's) rate and concurrency;
        returns the concurrency slot to release when done (None: no cap configured)."""
        if not self._rated and self.settings.max_concurrent is None:
            return None  # nothing configured: the hot path pays one test
        key = _key_of(request)
        if self._rated:
            self._take_token(key, request.principal)
        cap = self.settings.max_concurrent
        if cap is None:
            return None
        held = self._in_progress.get(key, 0)
        if held >= cap:
            self.rejected["concurrency"] += 1
            raise HttpError(
                429,
                f"{_who(request)} has {held} requests in progress, the gateway's limit;"
                " retry when one of them is answered",
                error_code=42902,
                headers={"retry-after": "1"},
            )
        self._in_progress[key] = held + 1
        return Admission(self, key)

    def _release(self, key: str) -> None:
        held = self._in_progress.get(key, 0) - 1
        if held > 0:
            self._in_progress[key] = held
        else:
            self._in_progress.pop(key, None)

    def _take_token(self, key: str, principal: str | None) -> None:
        limit = self.settings.principal_rates.get(principal or "", self._default_rate)
        if limit is None:
            return
        now = self._clock()
        capacity = limit.capacity
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = [capacity, now]
            if len(self._buckets) > _MAX_KEYS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket[0] = min(capacity, bucket[0] + (now - bucket[1]) * limit.rate)
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return
        self.rejected["rate"] += 1
        wait = max(1, math.ceil((1.0 - bucket[0]) / limit.rate))
        raise HttpError(
            429,
            f"too many requests: {_who_key(key)} may make {limit.rate:g} per second"
            f" (bursts of {capacity:g}); retry after {wait} s",
            error_code=42901,
            headers={"retry-after": str(wait)},
        )

    def observe(self, error: HttpError) -> None:
        """Count a refusal the request raised itself (body too large, body too slow)."""
        reason = _REASON_OF_STATUS.get(error.status)
        if reason is not None:
            self.rejected[reason] += 1


def _key_of(request: Request) -> str:
    # Prefixed: a principal named like an address must not share its bucket.
    if request.principal is not None:
        return "principal:" + request.principal
    client = request.scope.get("client")
    return "address:" + (str(client[0]) if client else "unknown")


def _who_key(key: str) -> str:
    kind, _, name = key.partition(":")
    return f"principal {name!r}" if kind == "principal" else f"address {name}"


def _who(request: Request) -> str:
    return _who_key(_key_of(request))
