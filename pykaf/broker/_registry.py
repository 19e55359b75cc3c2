"""Which API the embedded broker answers, with which versions, and by which handler.

One module per API under ``pykaf.broker.apis`` registers an async handler with
``@handles("Metadata")``. The version range defaults to what ``pykaf.protocol`` speaks
(the KIP-896 floor up to kio's newest schema); ApiVersions answers are derived from this
registry, so a client is never offered an API the broker cannot answer.

A handler receives a ``RequestContext`` and the decoded kio request, and returns the kio
response (``ctx.respond(**fields)`` builds it for the request's own version), or None when
no response is due (Produce with acks=0).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from pykaf.protocol._apis import ApiSpec, api_spec
from pykaf.protocol._messages import Payload, build_response

if TYPE_CHECKING:
    from pykaf.broker._sasl_auth import SaslSession
    from pykaf.broker._state import BrokerNode, ClusterState

__all__ = [
    "CloseConnection",
    "ConnectionInfo",
    "Handler",
    "HandlerFunc",
    "RequestContext",
    "handler_for",
    "handles",
    "registered_handlers",
]


class CloseConnection(Exception):
    """Raised by a handler or an interceptor: close this connection without a response.

    Not part of pykaf's error tree on purpose: it never leaves the broker; the listener
    catches it, logs ``reason`` and closes the one connection it came from.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionInfo:
    """The client connection a request arrived on."""

    connection_id: int
    peer: str
    #: The listener it came in on, by name; None: the broker's main listener.
    listener: str | None = None
    #: Its SASL authentication on a SASL listener (None: the listener has no SASL).
    sasl: SaslSession | None = None


class _BrokerLike(Protocol):
    """What a handler may use of the listener that received its request."""

    @property
    def node(self) -> BrokerNode: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestContext:
    """Everything a handler needs besides the request itself."""

    broker: _BrokerLike
    state: ClusterState
    connection: ConnectionInfo
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None

    @property
    def node_id(self) -> int:
        """The id of the broker that received the request."""
        return self.broker.node.node_id

    def respond(self, **fields: object) -> Payload:
        """The kio response of this request's API and version, built from plain values
        (fields this version lacks are dropped; see ``build_response``)."""
        return build_response(self.api_key, self.api_version, **fields)


HandlerFunc = Callable[[RequestContext, Any], Awaitable[Payload | None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Handler:
    spec: ApiSpec
    min_version: int
    max_version: int
    func: HandlerFunc

    def supports(self, version: int) -> bool:
        return self.min_version <= version <= self.max_version


_HANDLERS: Final[dict[int, Handler]] = {}


def handles(
    api: int | str, *, min_version: int | None = None, max_version: int | None = None
) -> Callable[[HandlerFunc], HandlerFunc]:
    """Register the decorated coroutine function as the handler of ``api``.

    The range may only narrow what ``pykaf.protocol`` decodes; registering an API twice is
    a programming error (two modules claiming one key).
    """
    spec = api_spec(api)
    # oldest_version: the group and offset APIs reach below the client's floor, for old
    # clients (see BELOW_FLOOR_FOR_OLD_CLIENTS in pykaf.protocol._apis).
    low = spec.oldest_version if min_version is None else min_version
    high = spec.max_version if max_version is None else max_version
    if not spec.oldest_version <= low <= high <= spec.max_version:
        raise ValueError(
            f"{spec.name}: v{low}..v{high} is outside what pykaf.protocol speaks"
            f" (v{spec.oldest_version}..v{spec.max_version})"
        )

    def register(func: HandlerFunc) -> HandlerFunc:
        existing = _HANDLERS.get(spec.key)
        if existing is not None and existing.func is not func:
            raise ValueError(f"{spec.name} already has a handler: {existing.func.__qualname__}")
        _HANDLERS[spec.key] = Handler(spec=spec, min_version=low, max_version=high, func=func)
        return func

    return register


def handler_for(api_key: int, api_version: int) -> Handler | None:
    """The handler for this API key and version, or None if the broker cannot answer."""
    handler = _HANDLERS.get(api_key)
    if handler is None or not handler.supports(api_version):
        return None
    return handler


def registered_handlers() -> Iterator[Handler]:
    """Every registered handler, by API key."""
    return iter(sorted(_HANDLERS.values(), key=lambda h: h.spec.key))
