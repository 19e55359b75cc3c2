"""The embedded broker's SASL: its users, and one authentication per connection.

``BrokerUsers`` turns the passwords it is given into salted SCRAM credentials at once and
keeps only those (as Kafka stores them in its metadata): a password never stays in memory
past the constructor, and no repr shows more than the user names. PLAIN is checked against
the same credentials (see ``PlainServer``).

``SaslSession`` is one connection's state on a SASL listener, as Kafka's
SaslServerAuthenticator: before authentication only ApiVersions, SaslHandshake (which picks
the mechanism) and SaslAuthenticate are served, and frames are limited to 512 KiB; a
failed authentication is answered (SASL_AUTHENTICATION_FAILED with a message holding no
secret) and then the connection is closed.

OAUTHBEARER asks ``BrokerUsers``' token validator (``_oauth``; Kafka's unsecured JWT
validator by default). A token that says when it expires makes a session that ends then:
SaslAuthenticate grants the remaining time as ``session_lifetime_ms``, the client must
re-authenticate before it (KIP-368: in-band on the same connection, or on a new one), and a
request past it closes the connection, as Kafka does with ``connections.max.reauth.ms``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Final

from pykaf._errors import LocalProtocolError, SaslAuthenticationError, SaslProtocolError
from pykaf.broker._oauth import OAuthValidator, UnsecuredJwtValidator
from pykaf.protocol._messages import API_VERSIONS_KEY
from pykaf.protocol._sasl import SaslServer, sasl_server
from pykaf.protocol._sasl_scram import (
    MIN_SCRAM_ITERATIONS,
    SCRAM_MECHANISMS,
    ScramCredentials,
    scram_credentials,
)

__all__ = [
    "BROKER_SASL_MECHANISMS",
    "DEFAULT_SASL_MECHANISMS",
    "ILLEGAL_SASL_STATE",
    "SASL_AUTHENTICATION_FAILED",
    "SASL_AUTHENTICATE_KEY",
    "SASL_HANDSHAKE_KEY",
    "UNSUPPORTED_SASL_MECHANISM",
    "BrokerUsers",
    "SaslOutOfOrder",
    "SaslSession",
]

UNSUPPORTED_SASL_MECHANISM: Final = 33
ILLEGAL_SASL_STATE: Final = 34
SASL_AUTHENTICATION_FAILED: Final = 58
SASL_HANDSHAKE_KEY: Final = 17
SASL_AUTHENTICATE_KEY: Final = 36

BROKER_SASL_MECHANISMS: Final = ("PLAIN", *SCRAM_MECHANISMS, "OAUTHBEARER")
# OAUTHBEARER is asked for by name: its default validator accepts unsigned tokens.
DEFAULT_SASL_MECHANISMS: Final = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
_PASSWORD_MECHANISMS: Final = ("PLAIN", *SCRAM_MECHANISMS)
_PRE_AUTH_APIS: Final = frozenset({API_VERSIONS_KEY, SASL_HANDSHAKE_KEY, SASL_AUTHENTICATE_KEY})
_SASL_APIS: Final = frozenset({SASL_HANDSHAKE_KEY, SASL_AUTHENTICATE_KEY})

_log = logging.getLogger("pykaf.broker")


class SaslOutOfOrder(Exception):
    """A SASL request out of sequence: Kafka closes such a connection (the handlers raise
    ``CloseConnection`` with this reason)."""


class BrokerUsers:
    """Users and the SASL mechanisms enabled for them; passwords are salted on arrival.

    ``users`` maps a name to its password; ``mechanisms`` are the names the handshake
    accepts (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER). OAUTHBEARER asks
    ``oauth_validator`` (default: Kafka's unsecured JWT validator, for tests and
    development) and needs no users. ValueError says what to fix.
    """

    def __init__(
        self,
        users: Mapping[str, str] | None,
        mechanisms: Iterable[str] = DEFAULT_SASL_MECHANISMS,
        *,
        iterations: int = MIN_SCRAM_ITERATIONS,
        oauth_validator: OAuthValidator | None = None,
    ) -> None:
        enabled = tuple(dict.fromkeys(str(m).upper() for m in mechanisms))
        unknown = [m for m in enabled if m not in BROKER_SASL_MECHANISMS]
        if unknown or not enabled:
            raise ValueError(
                f"sasl_mechanisms {list(mechanisms)!r}: the embedded broker serves"
                f" {', '.join(BROKER_SASL_MECHANISMS)} (one or more)"
            )
        passwords = [m for m in enabled if m in _PASSWORD_MECHANISMS]
        users = {} if users is None else users
        if not isinstance(users, Mapping) or (passwords and not users):
            raise ValueError(
                f"SASL mechanism {passwords[0] if passwords else '?'} needs users:"
                " users={'alice': 'secret'} (--user alice:secret)"
            )
        if oauth_validator is not None and not callable(oauth_validator):
            raise ValueError("oauth_validator is a callable (token, extensions) -> principal")
        if oauth_validator is not None and "OAUTHBEARER" not in enabled:
            raise ValueError("oauth_validator given without OAUTHBEARER in sasl_mechanisms")
        self.mechanisms = enabled
        self.oauth_validator: OAuthValidator | None = None
        if "OAUTHBEARER" in enabled:
            self.oauth_validator = oauth_validator or UnsecuredJwtValidator()
        # PLAIN alone still checks against SCRAM credentials: no password is kept.
        stored = [m for m in enabled if m in SCRAM_MECHANISMS] or ["SCRAM-SHA-512"]
        self._credentials: dict[tuple[str, str], ScramCredentials] = {}
        for name, password in users.items():
            if not isinstance(name, str) or not name or not isinstance(password, str):
                raise ValueError(
                    f"user {name!r}: users maps a non-empty user name to its password (str)"
                )
            if not password:
                raise ValueError(f"user {name!r} has an empty password")
            for mechanism in stored:
                self._credentials[name, mechanism] = scram_credentials(
                    mechanism, password, iterations
                )

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for name, _ in self._credentials))

    def __repr__(self) -> str:
        return f"<BrokerUsers {list(self.names)!r} mechanisms={list(self.mechanisms)!r}>"

    def credentials_for(self, mechanism: str, username: str) -> ScramCredentials | None:
        """The stored credentials of ``username`` for ``mechanism`` (PLAIN: any)."""
        if mechanism == "PLAIN":
            return next((c for (name, _), c in self._credentials.items() if name == username), None)
        return self._credentials.get((username, mechanism))

    def session(self) -> SaslSession:
        """The state of one new connection on a SASL listener."""
        return SaslSession(self)


class SaslSession:
    """One connection's authentication (see the module doc). The SaslHandshake and
    SaslAuthenticate handlers drive it; the listener asks ``refusal`` before each request
    and closes the connection when ``failure`` is set."""

    __slots__ = (
        "_ends_at",
        "_mechanism",
        "_server",
        "_token_expiry",
        "_token_refusal",
        "_users",
        "failure",
        "lifetime_ms",
        "principal",
    )

    def __init__(self, users: BrokerUsers) -> None:
        self._users = users
        self._server: SaslServer | None = None
        self._mechanism: str | None = None
        self.principal: str | None = None
        #: Why authentication failed (no secret in it): the listener closes the connection
        #: after the answer.
        self.failure: str | None = None
        #: The session lifetime the last SaslAuthenticate granted (0: no end).
        self.lifetime_ms = 0
        # When the session ends (time.monotonic()), for a token that expires.
        self._ends_at: float | None = None
        self._token_expiry: float | None = None
        self._token_refusal: str | None = None

    def __repr__(self) -> str:
        return f"<SaslSession principal={self.principal!r} failure={self.failure!r}>"

    @property
    def authenticated(self) -> bool:
        return self.principal is not None

    @property
    def mechanisms(self) -> tuple[str, ...]:
        return self._users.mechanisms

    def refusal(self, api_key: int, api_name: str) -> str | None:
        """Why a request is not allowed now (Kafka logs it and disconnects), or None."""
        if self.authenticated:
            if self._ends_at is None or api_key in _SASL_APIS:
                return None
            if time.monotonic() < self._ends_at:
                return None
            return (
                f"{api_name} after the SASL session of {self.principal!r} expired (its"
                " OAUTHBEARER token did): the client must re-authenticate before"
                " session_lifetime_ms (KIP-368)"
            )
        if api_key in _PRE_AUTH_APIS:
            return None
        return (
            f"{api_name} before SASL authentication (only ApiVersions, SaslHandshake and"
            " SaslAuthenticate are served before)"
        )

    def handshake(self, mechanism: str) -> int:
        """Choose ``mechanism``; the error code of the answer (0: go on)."""
        if self.authenticated and (self._ends_at is None or self._server is not None):
            # Kafka's answer after authentication when the session does not end: there
            # is nothing to re-authenticate (KIP-368 applies to sessions that end).
            return ILLEGAL_SASL_STATE
        if self._server is not None:
            raise SaslOutOfOrder("a second SaslHandshake before authentication")
        if mechanism not in self._users.mechanisms:
            return UNSUPPORTED_SASL_MECHANISM
        if self.authenticated and mechanism != self._mechanism:
            self.failure = (
                f"re-authentication with {mechanism}, not {self._mechanism} as the session"
                " began (KIP-368)"
            )
            return ILLEGAL_SASL_STATE
        self._mechanism = mechanism
        if mechanism == "OAUTHBEARER":
            self._server = sasl_server(mechanism, validate_token=self._check_token)
            return 0
        users = self._users
        self._server = sasl_server(
            mechanism, credentials=lambda name: users.credentials_for(mechanism, name)
        )
        return 0

    def _check_token(self, token: str, extensions: Mapping[str, str]) -> str | None:
        validator = self._users.oauth_validator
        assert validator is not None  # OAUTHBEARER is enabled only with one
        self._token_expiry = self._token_refusal = None
        try:
            verdict = validator(token, extensions)
        except Exception as exc:  # a user's validator must not end the connection's task
            _log.warning("the OAUTHBEARER token validator raised %s", type(exc).__name__)
            verdict = None
        principal: str | None
        if isinstance(verdict, tuple):
            principal, expires_at = verdict
            self._token_expiry = float(expires_at)
        else:
            principal = verdict
        if not isinstance(principal, str) or not principal:
            self._token_refusal = getattr(validator, "last_refusal", None)
            return None
        return principal

    def authenticate(self, auth_bytes: bytes) -> tuple[int, str | None, bytes]:
        """One SaslAuthenticate step: (error code, error message, reply bytes)."""
        server = self._server
        if server is None:
            if self.authenticated:
                return ILLEGAL_SASL_STATE, "already authenticated on this connection", b""
            raise SaslOutOfOrder("SaslAuthenticate before SaslHandshake")
        try:
            reply = server.step(bytes(auth_bytes))
        except (SaslAuthenticationError, SaslProtocolError) as exc:
            why = f": {self._token_refusal}" if self._token_refusal else ""
            self.failure = f"{exc}{why}"
            return SASL_AUTHENTICATION_FAILED, self.failure, b""
        except LocalProtocolError as exc:
            self.failure = str(exc)
            return ILLEGAL_SASL_STATE, self.failure, b""
        if server.done:
            return self._begin_session(server.username, reply)
        return 0, None, reply

    def _begin_session(self, username: str | None, reply: bytes) -> tuple[int, str | None, bytes]:
        self._server = None
        if self.principal is not None and username != self.principal:
            self.failure = (
                f"re-authentication as {username!r}, not {self.principal!r} as the session"
                " began (KIP-368)"
            )
            return SASL_AUTHENTICATION_FAILED, self.failure, b""
        self.principal = username
        self.lifetime_ms, self._ends_at = 0, None
        if self._token_expiry is not None:
            remaining = self._token_expiry - time.time()
            self.lifetime_ms = max(1, int(remaining * 1000))
            self._ends_at = time.monotonic() + self.lifetime_ms / 1000
        return 0, None, reply
