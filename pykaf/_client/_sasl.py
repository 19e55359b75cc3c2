"""SASL on a fresh connection: SaslHandshake v1, then SaslAuthenticate until the mechanism's
state machine (``pykaf.protocol``'s ``sasl_client``) is done.

Runs inside ``BrokerConnection.open``, after ApiVersions and within ``connect_timeout``, so
a connection is handed out authenticated or not at all. Every failure is a ``SaslError``,
not retriable (``retriable`` is unset): a wrong password does not fix itself, so a producer
or consumer surfaces it at once instead of retrying until its timeout, as Kafka's clients
do with SaslAuthenticationException. Messages name the user and the mechanism, never the
password or the token.

KIP-368 (a broker with ``connections.max.reauth.ms`` ends sessions) is met by replacement,
not in-band re-authentication: ``BrokerConnection`` stops taking new requests at 85-95% of
the session lifetime the broker granted (SaslAuthenticate v1+), the pool opens a freshly
authenticated connection (a fresh OAUTHBEARER token too) and the old one closes once its
requests are answered.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, Final, Protocol

from pykaf._client._settings import ClientSettings
from pykaf._client._versions import BrokerApiVersions
from pykaf._error_codes import error_for_code
from pykaf._errors import (
    SaslAuthenticationError,
    SaslConfigurationError,
    SaslError,
    SaslProtocolError,
)
from pykaf.protocol._messages import Payload, build_request
from pykaf.protocol._sasl import SaslClient, sasl_client

__all__ = ["authenticate_sasl"]

_SASL_HANDSHAKE_KEY: Final = 17
_SASL_AUTHENTICATE_KEY: Final = 36
_UNSUPPORTED_SASL_MECHANISM: Final = 33
_SASL_AUTHENTICATION_FAILED: Final = 58
# SCRAM takes two rounds, PLAIN and OAUTHBEARER one (two when a token is refused): a
# broker that keeps asking for more is not following any mechanism pykaf speaks.
_MAX_ROUNDS: Final = 8


class _Connection(Protocol):
    versions: BrokerApiVersions | None

    def describe(self) -> str: ...

    async def send(
        self, request: Payload, *, deadline: float | None = None, check_version: bool = True
    ) -> Any: ...


async def authenticate_sasl(conn: _Connection, settings: ClientSettings) -> float | None:
    """Authenticate ``conn`` as ``settings`` say; returns the session lifetime the broker
    granted (seconds; None when it sets none). Raises a ``SaslError`` subclass."""
    where = conn.describe()
    mechanism = settings.sasl_mechanism
    versions = conn.versions
    if versions is None or _SASL_AUTHENTICATE_KEY not in versions.negotiated:
        # SaslHandshake v0 (raw SASL bytes after it) is Kafka < 1.0 only: not spoken.
        raise SaslProtocolError(
            f"{where} offers no SaslAuthenticate (Kafka >= 1.0): is this a SASL listener"
            " of a broker pykaf supports? check security_protocol and the port"
        )
    await _handshake(conn, where, mechanism)
    client = await _client(settings, where)
    version = versions.version(_SASL_AUTHENTICATE_KEY)
    message: bytes | None = client.initial()
    for _ in range(_MAX_ROUNDS):
        assert message is not None
        response = await conn.send(
            build_request(_SASL_AUTHENTICATE_KEY, version, auth_bytes=message)
        )
        code = int(response.error_code)
        if code:
            raise _refused(code, response, where, settings, client)
        try:
            message = client.step(bytes(response.auth_bytes))
        except SaslError as exc:
            # The state machine cannot know the broker: name it (same class, no secret).
            raise type(exc)(f"{where}: {exc}") from exc
        if message is None:
            lifetime = getattr(response, "session_lifetime", None)  # v1+: a timedelta
            seconds = lifetime.total_seconds() if isinstance(lifetime, timedelta) else 0.0
            return seconds if seconds > 0 else None
    raise SaslProtocolError(
        f"{where}: {mechanism} authentication still unfinished after {_MAX_ROUNDS} rounds"
    )


async def _handshake(conn: _Connection, where: str, mechanism: str) -> None:
    response = await conn.send(build_request(_SASL_HANDSHAKE_KEY, 1, mechanism=mechanism))
    code = int(response.error_code)
    if code == _UNSUPPORTED_SASL_MECHANISM:
        enabled = ", ".join(_printable(str(m)) for m in response.mechanisms) or "none"
        error = SaslConfigurationError(
            f"{where} does not enable SASL mechanism {mechanism!r}; it enables: {enabled}."
            " Set sasl_mechanism to one of them"
        )
        raise error from error_for_code(code, "(SaslHandshake)")
    if code:
        raise SaslProtocolError(
            f"{where} refused the SaslHandshake for {mechanism!r}"
        ) from error_for_code(code, "(SaslHandshake)")


async def _client(settings: ClientSettings, where: str) -> SaslClient:
    if settings.sasl_mechanism != "OAUTHBEARER":
        # saslprep=False: Kafka's own clients (Java, librdkafka) send SCRAM passwords as
        # UTF-8 without SASLprep (RFC 4013), and brokers store them that way; preparing
        # ours would refuse passwords that work with every other client.
        return sasl_client(
            settings.sasl_mechanism,
            username=settings.sasl_username,
            password=settings.sasl_password,
            saslprep=False,
        )
    return sasl_client("OAUTHBEARER", token=await _fetch_token(settings, where))


async def _fetch_token(settings: ClientSettings, where: str) -> str:
    provider = settings.sasl_oauth_token_provider
    assert provider is not None  # checked by the settings
    name = getattr(provider, "__qualname__", type(provider).__name__)
    try:
        result = provider()
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:
        # Its type only: the provider's own message may hold a secret (a client secret,
        # a token). The cause keeps it for whoever debugs it.
        raise SaslAuthenticationError(
            f"{where}: sasl_oauth_token_provider {name} raised {type(exc).__name__}"
        ) from exc
    assert not isinstance(result, Awaitable)
    if (
        not isinstance(result, tuple)
        or len(result) != 2
        or not isinstance(result[0], str)
        or not isinstance(result[1], int | float)
        or isinstance(result[1], bool)
        or not math.isfinite(result[1])
    ):
        raise SaslConfigurationError(
            f"sasl_oauth_token_provider {name} must return (token: str, expires_at: seconds"
            f" since the epoch), not a {type(result).__name__}"
        )
    token, expires_at = result
    if expires_at <= time.time():
        raise SaslAuthenticationError(
            f"{where}: sasl_oauth_token_provider {name} returned a token that expired"
            f" {time.time() - expires_at:.0f}s ago; it must return a fresh one"
            " (expires_at is seconds since the epoch)"
        )
    return token


def _refused(
    code: int, response: Any, where: str, settings: ClientSettings, client: SaslClient
) -> SaslError:
    # The broker's own text goes in the cause only, cut and printable: it is the
    # broker's wording (Kafka's names no secret), not ours to vouch for.
    text = _printable(str(getattr(response, "error_message", None) or ""))
    cause = error_for_code(code, f"({text})" if text else "(SaslAuthenticate)")
    mechanism = settings.sasl_mechanism
    if code != _SASL_AUTHENTICATION_FAILED:
        error: SaslError = SaslProtocolError(
            f"{where}: {mechanism} authentication failed ({type(cause).__name__})"
        )
    elif mechanism == "OAUTHBEARER":
        status = getattr(client, "server_error", None)
        detail = f" ({status})" if status else ""
        error = SaslAuthenticationError(
            f"{where}: the OAUTHBEARER token was refused{detail}: expired, or not from an"
            " issuer the broker trusts; check sasl_oauth_token_provider"
        )
    else:
        error = SaslAuthenticationError(
            f"{where}: {mechanism} authentication as {settings.sasl_username!r} failed:"
            " wrong password or unknown user (check sasl_username, sasl_password and"
            " sasl_mechanism)"
        )
    error.__cause__ = cause
    return error


def _printable(text: str, limit: int = 200) -> str:
    return "".join(ch for ch in text[:limit] if " " <= ch <= "~")
