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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from pykaf._errors import LocalProtocolError, SaslAuthenticationError, SaslProtocolError
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

# OAUTHBEARER needs a token validator the broker does not have yet.
BROKER_SASL_MECHANISMS: Final = ("PLAIN", *SCRAM_MECHANISMS)
DEFAULT_SASL_MECHANISMS: Final = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
_PRE_AUTH_APIS: Final = frozenset({API_VERSIONS_KEY, SASL_HANDSHAKE_KEY, SASL_AUTHENTICATE_KEY})


class SaslOutOfOrder(Exception):
    """A SASL request out of sequence: Kafka closes such a connection (the handlers raise
    ``CloseConnection`` with this reason)."""


class BrokerUsers:
    """Users and the SASL mechanisms enabled for them; passwords are salted on arrival.

    ``users`` maps a name to its password; ``mechanisms`` are the names the handshake
    accepts (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512). ValueError says what to fix.
    """

    def __init__(
        self,
        users: Mapping[str, str],
        mechanisms: Iterable[str] = DEFAULT_SASL_MECHANISMS,
        *,
        iterations: int = MIN_SCRAM_ITERATIONS,
    ) -> None:
        enabled = tuple(dict.fromkeys(str(m).upper() for m in mechanisms))
        unknown = [m for m in enabled if m not in BROKER_SASL_MECHANISMS]
        if unknown or not enabled:
            raise ValueError(
                f"sasl_mechanisms {list(mechanisms)!r}: the embedded broker serves"
                f" {', '.join(BROKER_SASL_MECHANISMS)} (one or more)"
            )
        if not isinstance(users, Mapping) or not users:
            raise ValueError(
                "a SASL listener needs users: users={'alice': 'secret'} (--user alice:secret)"
            )
        self.mechanisms = enabled
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
    SaslAuthenticate handlers drive it; the listener asks ``admit`` before each request
    and closes the connection when ``failure`` is set."""

    __slots__ = ("_server", "_users", "failure", "principal")

    def __init__(self, users: BrokerUsers) -> None:
        self._users = users
        self._server: SaslServer | None = None
        self.principal: str | None = None
        #: Why authentication failed (no secret in it): the listener closes the connection
        #: after the answer.
        self.failure: str | None = None

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
        if self.authenticated or api_key in _PRE_AUTH_APIS:
            return None
        return (
            f"{api_name} before SASL authentication (only ApiVersions, SaslHandshake and"
            " SaslAuthenticate are served before)"
        )

    def handshake(self, mechanism: str) -> int:
        """Choose ``mechanism``; the error code of the answer (0: go on)."""
        if self.authenticated:
            return ILLEGAL_SASL_STATE  # Kafka's answer after authentication (no KIP-368)
        if self._server is not None:
            raise SaslOutOfOrder("a second SaslHandshake before authentication")
        if mechanism not in self._users.mechanisms:
            return UNSUPPORTED_SASL_MECHANISM
        users = self._users
        self._server = sasl_server(
            mechanism, credentials=lambda name: users.credentials_for(mechanism, name)
        )
        return 0

    def authenticate(self, auth_bytes: bytes) -> tuple[int, str | None, bytes]:
        """One SaslAuthenticate step: (error code, error message, reply bytes)."""
        server = self._server
        if server is None:
            raise SaslOutOfOrder("SaslAuthenticate before SaslHandshake")
        if self.authenticated:
            return ILLEGAL_SASL_STATE, "already authenticated on this connection", b""
        try:
            reply = server.step(bytes(auth_bytes))
        except (SaslAuthenticationError, SaslProtocolError) as exc:
            self.failure = str(exc)
            return SASL_AUTHENTICATION_FAILED, self.failure, b""
        except LocalProtocolError as exc:
            self.failure = str(exc)
            return ILLEGAL_SASL_STATE, self.failure, b""
        if server.done:
            self.principal = server.username
        return 0, None, reply
