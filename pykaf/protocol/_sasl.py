"""SASL mechanisms as sans-I/O state machines: PLAIN, SCRAM-SHA-256/512, OAUTHBEARER.

A connection drives a ``SaslClient`` through Kafka's SaslHandshake (the mechanism name) and
SaslAuthenticate requests: ``auth_bytes = client.initial()``, then for each response
``reply = client.step(response.auth_bytes)`` until it returns None (``client.done``). The
broker drives a ``SaslServer`` the other way: ``reply = server.step(request.auth_bytes)``
until ``server.done``; a raised ``SaslAuthenticationError`` becomes the response's
SASL_AUTHENTICATION_FAILED (58) with ``str(error)`` as its message (it holds no secret).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Protocol

from pykaf._errors import (
    LocalProtocolError,
    SaslAuthenticationError,
    SaslConfigurationError,
    SaslProtocolError,
)
from pykaf.protocol._sasl_scram import (
    MIN_SCRAM_ITERATIONS,
    SCRAM_MECHANISMS,
    CredentialLookup,
    ScramClient,
    ScramCredentials,
    ScramServer,
    scram_salted_password,
)

__all__ = [
    "SASL_MECHANISMS",
    "OAuthBearerClient",
    "OAuthBearerServer",
    "PlainClient",
    "PlainServer",
    "SaslClient",
    "SaslServer",
    "TokenValidator",
    "sasl_client",
    "sasl_server",
]

SASL_MECHANISMS = ("PLAIN", *SCRAM_MECHANISMS, "OAUTHBEARER")

# RFC 6750 b64token; RFC 7628 section 3.1 extension keys and values.
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_EXTENSION_KEY = re.compile(r"[A-Za-z]+")
_EXTENSION_VALUE = re.compile(r"[\x21-\x7e \t\r\n]+")
_KVSEP = "\x01"

# Returns the principal for a valid token and its extensions, or None to refuse it.
TokenValidator = Callable[[str, Mapping[str, str]], "str | None"]


class SaslClient(Protocol):
    """One authentication, client side. ``initial()`` once, then ``step()`` per reply."""

    mechanism: str
    done: bool

    def initial(self) -> bytes: ...

    def step(self, server_bytes: bytes) -> bytes | None: ...


class SaslServer(Protocol):
    """One authentication, broker side: ``step()`` per client message; ``username`` once
    ``done``."""

    mechanism: str
    done: bool
    username: str | None

    def step(self, client_bytes: bytes) -> bytes: ...


class _OneMessageClient:
    """A mechanism whose client speaks once and expects an empty reply (PLAIN, bearer)."""

    mechanism = ""

    def __init__(self, message: bytes, username: str | None) -> None:
        self._message = message
        self.username = username
        self._state = "new"
        self.done = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} user={self.username!r} state={self._state}>"

    def initial(self) -> bytes:
        if self._state != "new":
            raise LocalProtocolError(f"initial() was already called on this {self.mechanism}")
        self._state, message, self._message = "sent", self._message, b""
        return message

    def step(self, server_bytes: bytes) -> bytes | None:
        if self._state != "sent":
            raise LocalProtocolError(f"step() called on a {self.mechanism} in {self._state!r}")
        if server_bytes:
            return self._refused(server_bytes)
        self._state, self.done = "done", True
        return None

    def _refused(self, server_bytes: bytes) -> bytes | None:
        self._state = "failed"
        raise SaslProtocolError(f"{self.mechanism} expects an empty reply from the broker")


class PlainClient(_OneMessageClient):
    """RFC 4616: ``authzid NUL authcid NUL passwd`` (authzid empty, as Kafka's clients)."""

    mechanism = "PLAIN"

    def __init__(self, username: str, password: str) -> None:
        if not username or not password:
            raise SaslConfigurationError("PLAIN needs sasl_username and sasl_password")
        if "\0" in username or "\0" in password:
            raise SaslConfigurationError("a PLAIN username or password cannot hold NUL")
        super().__init__(f"\0{username}\0{password}".encode(), username)


class OAuthBearerClient(_OneMessageClient):
    """RFC 7628 / KIP-255 client initial response: ``n,,\\x01auth=Bearer <token>\\x01
    [key=value\\x01...]\\x01``. A broker that refuses the token answers with an error
    document instead of nothing: we send the ``\\x01`` RFC 7628 asks for, and the broker
    then fails the exchange (SASL_AUTHENTICATION_FAILED); ``server_error`` keeps the
    document's ``status`` (e.g. ``invalid_token``)."""

    mechanism = "OAUTHBEARER"

    def __init__(self, token: str, extensions: Mapping[str, str] | None = None) -> None:
        if not token:
            raise SaslConfigurationError("OAUTHBEARER needs a token (sasl_oauth_token_provider)")
        if not _BEARER_TOKEN.fullmatch(token):
            raise SaslConfigurationError(
                "the OAUTHBEARER token is not an RFC 6750 bearer token (letters, digits and"
                " -._~+/ then optional '=' padding); is it the whole token, unquoted?"
            )
        fields = [f"auth=Bearer {token}"]
        for key, value in (extensions or {}).items():
            if not _EXTENSION_KEY.fullmatch(key) or key == "auth":
                raise SaslConfigurationError(
                    f"OAUTHBEARER extension key {key!r} must be ASCII letters other than 'auth'"
                )
            if not _EXTENSION_VALUE.fullmatch(value):
                raise SaslConfigurationError(
                    f"OAUTHBEARER extension {key!r} has a value with characters RFC 7628"
                    " forbids (printable ASCII, space, tab, CR, LF only)"
                )
            fields.append(f"{key}={value}")
        super().__init__(f"n,,{_KVSEP}{_KVSEP.join(fields)}{_KVSEP}{_KVSEP}".encode(), None)
        self.server_error: str | None = None

    def step(self, server_bytes: bytes) -> bytes | None:
        if self.server_error is not None and self._state == "sent":
            self._state = "failed"  # whatever follows an error document, it is no success
            raise SaslAuthenticationError(
                f"the broker refused the OAUTHBEARER token ({self.server_error}): expired,"
                " or not from an issuer it trusts; fetch a fresh token"
            )
        return super().step(server_bytes)

    def _refused(self, server_bytes: bytes) -> bytes | None:
        self.server_error = _error_status(server_bytes)
        return _KVSEP.encode()


def _error_status(document: bytes) -> str:
    """The ``status`` of an RFC 7628 error document, and only that: a server may echo
    anything (our token too) in the rest."""
    try:
        status = json.loads(document).get("status")
    except (ValueError, AttributeError, RecursionError):  # not JSON, not an object, too deep
        return "status unreadable"
    if not isinstance(status, str):
        return "status unreadable"
    return "".join(ch for ch in status[:100] if " " <= ch <= "~")


def sasl_client(
    mechanism: str,
    *,
    username: str | None = None,
    password: str | None = None,
    token: str | None = None,
    extensions: Mapping[str, str] | None = None,
    saslprep: bool = True,
) -> SaslClient:
    """A fresh client state machine for one authentication with ``mechanism``.

    PLAIN and SCRAM take ``username`` and ``password``; OAUTHBEARER takes ``token`` (and
    optional KIP-342 ``extensions``). ``saslprep=False`` sends a SCRAM password unprepared,
    as Kafka's own clients do. Settings that cannot work raise SaslConfigurationError.
    """
    if mechanism == "PLAIN":
        return PlainClient(username or "", password or "")
    if mechanism in SCRAM_MECHANISMS:
        return ScramClient(mechanism, username or "", password or "", saslprep=saslprep)
    if mechanism == "OAUTHBEARER":
        return OAuthBearerClient(token or "", extensions)
    raise SaslConfigurationError(
        f"unknown SASL mechanism {mechanism!r}; pykaf speaks {', '.join(SASL_MECHANISMS)}"
    )


def _refuse(mechanism: str) -> SaslAuthenticationError:
    return SaslAuthenticationError(
        f"authentication failed: invalid credentials for {mechanism} (check the username"
        " and password)"
    )


class PlainServer:
    """PLAIN verified against stored SCRAM credentials (any SCRAM mechanism's: PBKDF2 of
    the given password with the stored salt must give the stored key), so a broker keeps
    no password even for PLAIN."""

    mechanism = "PLAIN"

    def __init__(self, credentials: CredentialLookup, *, saslprep: bool = True) -> None:
        self._lookup = credentials
        self._saslprep = saslprep
        self.username: str | None = None
        self.done = False
        self._state = "new"

    def __repr__(self) -> str:
        return f"<PlainServer user={self.username!r} state={self._state}>"

    def step(self, client_bytes: bytes) -> bytes:
        if self._state != "new":
            raise LocalProtocolError(f"step() called on a PLAIN exchange in {self._state!r}")
        self._state = "failed"
        try:
            authzid, username, password = client_bytes.decode("utf-8").split("\0")
        except (UnicodeDecodeError, ValueError):
            raise SaslProtocolError(
                "the PLAIN message is not UTF-8 'authzid NUL username NUL password'"
            ) from None
        if not username or not password:
            raise SaslProtocolError("the PLAIN message has an empty username or password")
        if authzid and authzid != username:
            raise SaslAuthenticationError(
                "PLAIN authorization identity differs from the username; pykaf's broker"
                " only lets a user act as itself"
            )
        found = self._lookup(username)
        # An unknown user costs the same key derivation as a known one (against decoy
        # credentials): answering faster would tell an attacker which users exist.
        matches = _password_matches(found or _decoy(), password, self._saslprep)
        if found is None or not matches:
            raise _refuse("PLAIN")
        self.username, self.done, self._state = username, True, "done"
        return b""


_DECOYS: list[ScramCredentials] = []


def _decoy() -> ScramCredentials:
    if not _DECOYS:  # made once, on the first unknown user; random, so nothing matches it
        _DECOYS.append(
            ScramCredentials(
                mechanism="SCRAM-SHA-512",
                salt=secrets.token_bytes(32),
                iterations=MIN_SCRAM_ITERATIONS,
                stored_key=secrets.token_bytes(64),
                server_key=secrets.token_bytes(64),
            )
        )
    return _DECOYS[0]


def _password_matches(credentials: ScramCredentials, password: str, prepare: bool) -> bool:
    hash_name = SCRAM_MECHANISMS[credentials.mechanism]
    try:
        salted = scram_salted_password(
            credentials.mechanism,
            password,
            credentials.salt,
            credentials.iterations,
            saslprep=prepare,
        )
    except SaslConfigurationError:  # a password SASLprep refuses was never stored
        return False
    client_key = hmac.new(salted, b"Client Key", hash_name).digest()
    return hmac.compare_digest(hashlib.new(hash_name, client_key).digest(), credentials.stored_key)


class OAuthBearerServer:
    """The broker side of OAUTHBEARER: parses the client's message and asks ``validate``
    (which checks signature and expiry with its own clock) for the principal. A refused
    token gets RFC 7628's error document; the client's ``\\x01`` then fails the exchange."""

    mechanism = "OAUTHBEARER"

    def __init__(self, validate: TokenValidator) -> None:
        self._validate = validate
        self.username: str | None = None
        self.extensions: dict[str, str] = {}
        self.done = False
        self._state = "new"

    def __repr__(self) -> str:
        return f"<OAuthBearerServer user={self.username!r} state={self._state}>"

    def step(self, client_bytes: bytes) -> bytes:
        state, self._state = self._state, "failed"
        if state == "sent error":
            raise _refuse_token()
        if state != "new":
            self._state = state
            raise LocalProtocolError(f"step() called on an OAUTHBEARER exchange in {state!r}")
        token, extensions = _parse_bearer(client_bytes)
        principal = self._validate(token, extensions)
        if not principal:
            self._state = "sent error"
            return b'{"status":"invalid_token"}'
        self.username, self.extensions = principal, extensions
        self.done, self._state = True, "done"
        return b""


def _refuse_token() -> SaslAuthenticationError:
    return SaslAuthenticationError(
        "authentication failed: the OAUTHBEARER token was refused (expired, or not signed"
        " by a trusted issuer?); fetch a fresh token"
    )


def _parse_bearer(message: bytes) -> tuple[str, dict[str, str]]:
    malformed = SaslProtocolError(
        "the OAUTHBEARER message is not 'n,,\\x01auth=Bearer <token>\\x01[key=value\\x01]\\x01'"
        " (RFC 7628)"
    )
    try:
        text = message.decode("ascii")
    except UnicodeDecodeError:
        raise malformed from None
    header, separator, rest = text.partition(_KVSEP)
    if not separator or not header.startswith(("n,", "y,")) or not rest.endswith(_KVSEP * 2):
        raise malformed
    token = ""
    extensions: dict[str, str] = {}
    for field in rest[:-2].split(_KVSEP):
        key, _, value = field.partition("=")
        if key == "auth" and value.startswith("Bearer ") and not token:
            token = value[len("Bearer ") :]
        elif key != "auth" and _EXTENSION_KEY.fullmatch(key) and _EXTENSION_VALUE.fullmatch(value):
            extensions[key] = value
        else:
            raise malformed
    if not _BEARER_TOKEN.fullmatch(token):
        raise malformed
    return token, extensions


def sasl_server(
    mechanism: str,
    *,
    credentials: CredentialLookup | None = None,
    validate_token: TokenValidator | None = None,
    saslprep: bool = True,
) -> SaslServer:
    """A fresh broker-side state machine for one authentication with ``mechanism``.

    SCRAM-SHA-256/512: ``credentials(username)`` returns that user's ``ScramCredentials``
    for this mechanism, or None. PLAIN: the same lookup, returning the user's credentials
    of either SCRAM mechanism. OAUTHBEARER: ``validate_token(token, extensions)`` returns
    the principal or None.
    """
    if mechanism in SCRAM_MECHANISMS or mechanism == "PLAIN":
        if credentials is None:
            raise SaslConfigurationError(f"a {mechanism} server needs a credentials lookup")
        if mechanism == "PLAIN":
            return PlainServer(credentials, saslprep=saslprep)
        return ScramServer(mechanism, credentials)
    if mechanism == "OAUTHBEARER":
        if validate_token is None:
            raise SaslConfigurationError("an OAUTHBEARER server needs validate_token")
        return OAuthBearerServer(validate_token)
    raise SaslConfigurationError(
        f"unknown SASL mechanism {mechanism!r}; pykaf speaks {', '.join(SASL_MECHANISMS)}"
    )
