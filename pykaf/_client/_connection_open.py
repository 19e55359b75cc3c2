"""How a ``BrokerConnection`` opens: TCP (and TLS), ApiVersions, SASL, the authenticate
hook, within ``connect_timeout`` and the caller's deadline; its failures mapped once, as
the connection's own are (``_broker_errors``). A mixin of ``BrokerConnection``, apart so
that neither module passes DESIGN.md's size."""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import Callable
from typing import Any, Final

from pykaf._client._address import Address
from pykaf._client._broker_errors import map_os_error
from pykaf._client._connection_events import ConnectionEvents
from pykaf._client._sasl import authenticate_sasl
from pykaf._client._sasl_settings import SASL_PROTOCOLS
from pykaf._client._settings import ClientSettings
from pykaf._client._targets import Purpose
from pykaf._client._versions import BrokerApiVersions
from pykaf._error_codes import error_for_code
from pykaf._errors import (
    BrokerConnectionError,
    ClientClosedError,
    KafkaTimeoutError,
    PykafError,
)
from pykaf._telemetry._bus import EventBus
from pykaf.protocol._apis import api_spec
from pykaf.protocol._messages import API_VERSIONS_KEY, Payload, build_request
from pykaf.protocol._negotiation import api_versions_retry_version, negotiate

__all__ = ["Opening"]

_API_VERSIONS_MAX: Final = api_spec(API_VERSIONS_KEY).max_version
# KIP-368: a connection is replaced after 85% to 95% of its SASL session lifetime.
_REAUTH_AT: Final = 0.85
_REAUTH_SPREAD: Final = 0.10


class Opening(asyncio.Protocol):
    """What ``BrokerConnection.open`` does once it made the connection (see the module
    doc)."""

    # The connection's, set by ``BrokerConnection.__init__``.
    address: Address
    node_id: int | None
    versions: BrokerApiVersions | None
    session_lifetime: float | None
    _session_ends: float | None
    _settings: ClientSettings
    _loop: asyncio.AbstractEventLoop
    _transport: asyncio.Transport | None
    _on_lost: Callable[[Any, PykafError], None] | None
    _opened: bool
    _bus: EventBus
    _events: ConnectionEvents

    def describe(self) -> str:
        raise NotImplementedError  # BrokerConnection's

    def abort(self, error: PykafError) -> None:
        raise NotImplementedError  # BrokerConnection's

    async def send(
        self, request: Payload, *, deadline: float | None = None, check_version: bool = True
    ) -> Any:
        raise NotImplementedError  # BrokerConnection's

    async def _open(
        self,
        *,
        purpose: Purpose,
        deadline: float,
        api_versions_version: int | None,
        on_lost: Callable[[Any, PykafError], None] | None,
    ) -> None:
        """``BrokerConnection.open``'s work on the connection it made: connect,
        negotiate versions, authenticate, within ``connect_timeout`` and ``deadline``
        (the caller's, on the loop's clock), whichever comes first; a failure mapped
        once and raised."""
        address, node_id, settings = self.address, self.node_id, self._settings
        loop = asyncio.get_running_loop()
        started = loop.time()
        remaining = deadline - started
        budget = min(settings.connect_timeout, remaining)
        version = _API_VERSIONS_MAX if api_versions_version is None else api_versions_version
        try:
            async with asyncio.timeout(max(0.0, budget)):
                await self._connect(version)
        except PykafError as exc:
            self._connect_failed(exc)
            raise
        except TimeoutError as exc:
            if remaining < settings.connect_timeout:
                error: PykafError = KafkaTimeoutError(
                    f"{self.describe()}: not connected within the request timeout",
                    address=str(address),
                )
            else:
                error = BrokerConnectionError(
                    f"{self.describe()}: no connection within connect_timeout"
                    f" ({settings.connect_timeout:g}s); is the host reachable?",
                    address=str(address),
                    node_id=node_id,
                )
            self._connect_failed(error)
            raise error from exc  # the cause says "timeout" to the outage log
        except (OSError, ssl.SSLError) as exc:
            # No transport yet with TLS on: the TCP connect worked, the handshake failed.
            handshaking = settings.tls is not None and self._transport is None
            error = map_os_error(exc, address, node_id, tls_handshake=handshaking)
            self._connect_failed(error)
            raise error from exc
        except BaseException:
            self.abort(ClientClosedError(f"{self.describe()}: connecting was cancelled"))
            raise
        self._on_lost = on_lost
        self._opened = True
        if self._bus.active:
            self._events.opened(node_id, purpose, loop.time() - started)

    def _connect_failed(self, error: PykafError) -> None:
        if isinstance(error, BrokerConnectionError):
            error.never_sent = True  # nothing is written before the connection opens
        self.abort(error)
        if self._bus.active:
            self._events.failed(self.node_id, error)

    async def _connect(self, api_versions_version: int) -> None:
        address, settings = self.address, self._settings
        tls = settings.tls
        await self._loop.create_connection(
            lambda: self,
            address.host,
            address.port,
            ssl=tls,
            server_hostname=address.host if tls is not None else None,
        )
        await self._handshake(api_versions_version)
        if settings.security_protocol in SASL_PROTOCOLS:
            lifetime = await authenticate_sasl(self, settings)
            self.session_lifetime = lifetime
            if lifetime is not None:
                # KIP-368 by replacement: new requests go to a fresh, freshly authenticated
                # connection before the broker ends this session; this one closes once its
                # requests are answered. At 85-95% of the lifetime, as Kafka's clients
                # re-authenticate, spread so a pool's connections do not all turn at once.
                fraction = _REAUTH_AT + _REAUTH_SPREAD * random.random()
                self._session_ends = self._loop.time() + lifetime * fraction
        if settings.authenticate is not None:
            await settings.authenticate(self)

    async def _handshake(self, version: int) -> None:
        # Bounded: each retry goes to a strictly lower version (api_versions_retry_version).
        for _ in range(_API_VERSIONS_MAX + 1):
            request = build_request(
                API_VERSIONS_KEY,
                version,
                client_software_name=self._settings.client_software_name,
                client_software_version=self._settings.client_software_version,
            )
            response = await self.send(request, check_version=False)
            retry = api_versions_retry_version(response, sent_version=version)
            if retry is None:
                break
            version = retry
        code = int(response.error_code)
        if code:
            raise error_for_code(code, f"(ApiVersions from {self.describe()})")
        self.versions = BrokerApiVersions.from_negotiated(
            negotiate(response), node_id=self.node_id, address=str(self.address)
        )
