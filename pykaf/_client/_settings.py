"""Client settings: one frozen value, validated once, durations in seconds."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from pykaf._client._sasl_settings import TokenProvider, check_sasl
from pykaf._telemetry._events import Event
from pykaf._version import __version__
from pykaf.protocol._framing import DEFAULT_MAX_FRAME_SIZE
from pykaf.protocol._messages import Payload

__all__ = ["Authenticate", "ClientSettings", "Handshake", "TokenProvider"]


class Handshake(Protocol):
    """What an ``authenticate`` hook sees of a fresh connection: it sends requests and
    awaits their answers (the SASL steps). ``BrokerConnection`` is one; naming only this
    keeps the settings free of the connection module (and of asyncio)."""

    async def send(
        self, request: Payload, *, deadline: float | None = None, check_version: bool = True
    ) -> Any: ...


# Called once per connection after ApiVersions (and SASL) and before any other request:
# a seam for custom authentication. It may send requests on the connection it is given.
Authenticate = Callable[[Handshake], Awaitable[None]]

# What ``on_event`` takes (the bus's EventCallback; named here again because the bus
# module holds a lock, and settings import no threads).
EventCallback = Callable[[Event], object]

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
    #: "PLAINTEXT", "SSL", "SASL_PLAINTEXT" or "SASL_SSL" (Kafka's security.protocol).
    #: Left unset: "SSL" when any ``ssl_*`` setting is given, else "PLAINTEXT" (SASL is
    #: never guessed: name it).
    security_protocol: str | None = None
    #: A ready TLS context (trust, client certificate, ciphers: all yours). Or build one
    #: from the files below; not both.
    ssl_context: ssl.SSLContext | None = None
    #: CA certificates (PEM) to trust for the brokers' certificates; default: the system's.
    ssl_cafile: str | Path | None = None
    #: The client certificate (PEM; the chain may follow) for brokers that require one...
    ssl_certfile: str | Path | None = None
    #: ...and its private key (PEM; default: inside ``ssl_certfile``)...
    ssl_keyfile: str | Path | None = None
    #: ...and the key's password, when it is encrypted. Never shown in repr().
    ssl_password: str | None = field(default=None, repr=False)
    #: Check that the broker's certificate is for the host connected to (its advertised
    #: listener). Turn off only for brokers whose certificates name other hosts.
    ssl_check_hostname: bool = True
    #: With SASL_PLAINTEXT / SASL_SSL: "PLAIN" (Kafka's default), "SCRAM-SHA-256",
    #: "SCRAM-SHA-512" or "OAUTHBEARER".
    sasl_mechanism: str = "PLAIN"
    #: The user (PLAIN, SCRAM)...
    sasl_username: str | None = None
    #: ...and its password. Never shown in repr(), logs or errors.
    sasl_password: str | None = field(default=None, repr=False)
    #: OAUTHBEARER: called (and awaited, if it returns an awaitable) for each new
    #: connection; returns ``(token, expires_at)``, ``expires_at`` in seconds since the
    #: epoch (``time.time()``'s clock), as confluent-kafka's ``oauth_cb``.
    sasl_oauth_token_provider: TokenProvider | None = field(default=None, repr=False)
    #: Per-connection hook after ApiVersions and SASL, see ``Authenticate``.
    authenticate: Authenticate | None = None
    #: Ask brokers to create topics named in Metadata requests (if they allow it). Off for
    #: raw clients; the producer turns it on, as Kafka's Java producer does.
    allow_auto_topic_creation: bool = False
    #: ApiVersions v3+ client software name and version (KIP-511).
    client_software_name: str = "pykaf"
    client_software_version: str = __version__
    #: Telemetry: a callable(event), or a list of them, hearing every event of
    #: ``pykaf.events`` this client (producer, consumer, admin) emits; kept as a tuple.
    #: More can subscribe later through ``client.events.subscribe``.
    on_event: EventCallback | Iterable[EventCallback] | None = field(
        default=None, repr=False, compare=False
    )
    #: Telemetry: push a ``pykaf.telemetry.Stats`` snapshot to ``on_stats(stats)`` every
    #: ``stats_interval`` seconds (librdkafka's ``statistics.interval.ms`` and stats
    #: callback), on a thread of its own; counting starts with the client. Both or neither.
    stats_interval: float | None = None
    on_stats: Callable[[Any], object] | None = field(default=None, repr=False, compare=False)
    #: The TLS context connections use (``ssl_context``, or the one built from the files
    #: once, here); None for PLAINTEXT.
    tls: ssl.SSLContext | None = field(init=False, repr=False, compare=False, default=None)

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
        _check_security(self)
        object.__setattr__(self, "security_protocol", _security_protocol(self))
        check_sasl(self)
        object.__setattr__(self, "tls", _tls_context(self))
        if self.authenticate is not None and not callable(self.authenticate):
            raise ValueError("authenticate must be an async callable taking the connection")
        object.__setattr__(self, "on_event", _event_callbacks(self.on_event))
        _check_stats(self.stats_interval, self.on_stats)
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
        known = [f.name for f in dataclasses.fields(cls) if f.init]
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


def _check_stats(interval: float | None, callback: object) -> None:
    if interval is None and callback is None:
        return
    if interval is None or callback is None:
        raise ValueError(
            "stats_interval and on_stats go together: stats_interval=10.0,"
            " on_stats=callable(stats) (or neither; stats() works without them)"
        )
    if isinstance(interval, bool) or not isinstance(interval, int | float) or not interval > 0:
        raise ValueError(f"stats_interval must be a positive number of seconds, not {interval!r}")
    if not callable(callback):
        raise ValueError(f"on_stats must be a callable(stats), not {callback!r}")


def _event_callbacks(
    value: EventCallback | Iterable[EventCallback] | None,
) -> tuple[EventCallback, ...] | None:
    """``on_event`` as a tuple of callables (a list may be given once, as a generator)."""
    if value is None:
        return None
    if callable(value):
        return (value,)
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(
            "on_event must be a callable(event) or a list of them (see pykaf.events),"
            f" not {value!r}"
        )
    callbacks = tuple(value)
    for index, callback in enumerate(callbacks):
        if not callable(callback):
            raise TypeError(f"on_event[{index}] must be a callable(event), not {callback!r}")
    return callbacks


SECURITY_PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SSL_FILES: Final = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")
_NO_TLS: Final = ("PLAINTEXT", "SASL_PLAINTEXT")


def _check_security(settings: ClientSettings) -> None:
    protocol = settings.security_protocol
    if protocol is not None and (
        not isinstance(protocol, str) or protocol.upper() not in SECURITY_PROTOCOLS
    ):
        raise ValueError(
            f"security_protocol must be one of {', '.join(SECURITY_PROTOCOLS)}, not {protocol!r}"
        )
    context = settings.ssl_context
    if context is not None and not isinstance(context, ssl.SSLContext):
        raise ValueError(f"ssl_context must be an ssl.SSLContext, not {context!r}")
    for name in _SSL_FILES:
        value = getattr(settings, name)
        if value is not None and not isinstance(value, str | Path):
            raise ValueError(f"{name} must be a path (str or Path), not {value!r}")
        if value is not None and not Path(value).is_file():
            raise ValueError(f"{name}: no such file: {str(value)!r}")
    if settings.ssl_password is not None and not isinstance(settings.ssl_password, str):
        raise ValueError("ssl_password must be a str (it is not shown here)")
    if not isinstance(settings.ssl_check_hostname, bool):
        raise ValueError(
            f"ssl_check_hostname must be True or False, not {settings.ssl_check_hostname!r}"
        )
    files = [name for name in (*_SSL_FILES, "ssl_password") if getattr(settings, name) is not None]
    if context is not None and (files or not settings.ssl_check_hostname):
        given = files or ["ssl_check_hostname=False"]
        raise ValueError(
            f"ssl_context and {', '.join(given)} were both given: put the files into the"
            " context (load_verify_locations, load_cert_chain, check_hostname) or drop"
            " ssl_context and let pykaf build it from the files"
        )
    if settings.ssl_keyfile is not None and settings.ssl_certfile is None:
        raise ValueError("ssl_keyfile needs ssl_certfile (the client certificate it belongs to)")
    if settings.ssl_password is not None and settings.ssl_certfile is None:
        raise ValueError("ssl_password needs ssl_certfile/ssl_keyfile (the key it unlocks)")
    if protocol is not None and protocol.upper() in _NO_TLS and (files or context):
        wanted = "SASL_SSL" if protocol.upper() == "SASL_PLAINTEXT" else "SSL"
        raise ValueError(
            f"security_protocol={protocol.upper()!r} with"
            f" {', '.join(files or ['ssl_context'])}: TLS settings need"
            f" security_protocol={wanted!r} (or drop them)"
        )


def _security_protocol(settings: ClientSettings) -> str:
    if settings.security_protocol is not None:
        return settings.security_protocol.upper()
    uses_tls = settings.ssl_context is not None or any(
        getattr(settings, name) is not None for name in _SSL_FILES
    )
    return "SSL" if uses_tls else "PLAINTEXT"


def _tls_context(settings: ClientSettings) -> ssl.SSLContext | None:
    """The context every connection shares, built once (reading the files now: a bad file
    is refused here, not at the first connection)."""
    if settings.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    if settings.ssl_context is not None:
        return settings.ssl_context
    cafile = None if settings.ssl_cafile is None else str(settings.ssl_cafile)
    try:
        context = ssl.create_default_context(cafile=cafile)
    except ssl.SSLError as exc:
        raise ValueError(f"ssl_cafile {cafile!r} holds no usable CA certificate: {exc}") from None
    context.check_hostname = settings.ssl_check_hostname
    if settings.ssl_certfile is not None:
        try:
            context.load_cert_chain(
                str(settings.ssl_certfile),
                None if settings.ssl_keyfile is None else str(settings.ssl_keyfile),
                settings.ssl_password,
            )
        except ssl.SSLError as exc:
            # The reason only: never the password, and OpenSSL's text names no secret.
            raise ValueError(
                f"ssl_certfile/ssl_keyfile cannot be loaded ({exc.reason or exc}): the"
                " certificate and key must be PEM and belong together, and an encrypted key"
                " needs its ssl_password"
            ) from None
    return context
