"""Client settings: one frozen value, validated once, durations in seconds."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from pykaf._version import __version__
from pykaf.protocol._framing import DEFAULT_MAX_FRAME_SIZE
from pykaf.protocol._messages import Payload

__all__ = ["Authenticate", "ClientSettings", "Handshake"]


class Handshake(Protocol):
    """What an ``authenticate`` hook sees of a fresh connection: it sends requests and
    awaits their answers (the SASL steps). ``BrokerConnection`` is one; naming only this
    keeps the settings free of the connection module (and of asyncio)."""

    async def send(
        self, request: Payload, *, deadline: float | None = None, check_version: bool = True
    ) -> Any: ...


# Called once per connection after ApiVersions and before any other request: the seam
# for SASL (a later issue). It may send requests on the connection it is given.
Authenticate = Callable[[Handshake], Awaitable[None]]

# KIP-511: what a broker accepts as client software name and version.
_SOFTWARE_RE: Final = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?")


def _positive(name: str, value: object, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (value > 0 or (allow_zero and value == 0)):  # type: ignore[operator]
        return
    want = ">= 0" if allow_zero else "> 0"
    raise ValueError(f"{name} must be a finite number of seconds {want}, not {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSettings:
    """How the client connects, waits and refreshes. Durations are seconds (floats)."""

    #: Sent in every request header; brokers log it and quota by it.
    client_id: str | None = "pykaf"
    #: Default bound on one ``request()`` call, end to end: finding the broker,
    #: connecting, waiting for an in-flight slot, and the answer.
    request_timeout: float = 30.0
    #: Bound on one TCP (and TLS) connect plus the ApiVersions handshake.
    connect_timeout: float = 10.0
    #: Cached topic metadata older than this is refreshed before use.
    metadata_max_age: float = 300.0
    #: First delay before reconnecting to a broker that failed; doubles per failure...
    reconnect_backoff: float = 0.05
    #: ...up to this bound (jitter stays within it).
    reconnect_backoff_max: float = 1.0
    #: Least time between two metadata refreshes of one topic triggered by stale errors,
    #: and between two rounds over every broker when none is reachable.
    retry_backoff: float = 0.1
    #: Requests written on one connection before an answer comes back (pipelining).
    max_in_flight_per_connection: int = 5
    #: Largest response frame accepted (a bigger length prefix closes the connection).
    max_response_size: int = DEFAULT_MAX_FRAME_SIZE
    #: Bound on ``close()``: connections still open after it are aborted.
    close_timeout: float = 2.0
    #: TLS for every connection when set (the seam for the security issue).
    ssl_context: ssl.SSLContext | None = None
    #: Per-connection hook after ApiVersions (the seam for SASL), see ``Authenticate``.
    authenticate: Authenticate | None = None
    #: Ask brokers to create topics named in Metadata requests (if they allow it). Off for
    #: raw clients; the producer turns it on, as Kafka's Java producer does.
    allow_auto_topic_creation: bool = False
    #: ApiVersions v3+ client software name and version (KIP-511).
    client_software_name: str = "pykaf"
    client_software_version: str = __version__

    def __post_init__(self) -> None:
        if self.client_id is not None and not isinstance(self.client_id, str):
            raise ValueError(f"client_id must be a str or None, not {self.client_id!r}")
        if self.client_id is not None and len(self.client_id.encode()) > 32767:
            raise ValueError("client_id must be at most 32767 bytes of UTF-8")
        for name in ("request_timeout", "connect_timeout", "metadata_max_age", "close_timeout"):
            _positive(name, getattr(self, name))
        for name in ("reconnect_backoff", "reconnect_backoff_max", "retry_backoff"):
            _positive(name, getattr(self, name), allow_zero=True)
        if self.reconnect_backoff_max < self.reconnect_backoff:
            raise ValueError(
                f"reconnect_backoff_max ({self.reconnect_backoff_max}) must be >="
                f" reconnect_backoff ({self.reconnect_backoff})"
            )
        for name in ("max_in_flight_per_connection", "max_response_size"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be an int >= 1, not {value!r}")
        if self.max_response_size > 2**31 - 1:
            raise ValueError("max_response_size must fit a Kafka frame length (2**31 - 1)")
        if self.ssl_context is not None and not isinstance(self.ssl_context, ssl.SSLContext):
            raise ValueError(f"ssl_context must be an ssl.SSLContext, not {self.ssl_context!r}")
        if self.authenticate is not None and not callable(self.authenticate):
            raise ValueError("authenticate must be an async callable taking the connection")
        for name in ("client_software_name", "client_software_version"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _SOFTWARE_RE.fullmatch(value):
                raise ValueError(
                    f"{name} must be letters, digits, '.' and '-' (starting and ending with a"
                    f" letter or digit), not {value!r}"
                )

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ClientSettings:
        """Settings from keyword options; an unknown name is refused with the close ones."""
        known = [f.name for f in dataclasses.fields(cls)]
        for name in options:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
                hint = (
                    f"did you mean {' or '.join(close)}?"
                    if close
                    else f"known settings: {', '.join(known)}"
                )
                raise TypeError(f"unknown client setting {name!r}; {hint}")
        return cls(**options)
