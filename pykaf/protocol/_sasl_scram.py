"""SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), both sides, as bytes in, bytes out.

The client verifies the server's signature (a server that does not hold our credentials is
refused), checks that the server nonce extends ours and refuses iteration counts outside
``MIN_SCRAM_ITERATIONS`` .. ``MAX_SCRAM_ITERATIONS`` (too few is a downgrade, too many a way
to burn our CPU). The server keeps only salted credentials (``ScramCredentials``, as Kafka
stores them), never a password. No channel binding (Kafka has none).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from pykaf._errors import (
    LocalProtocolError,
    SaslAuthenticationError,
    SaslConfigurationError,
    SaslProtocolError,
    SaslServerSignatureError,
)
from pykaf.protocol._sasl_prep import escape_username, saslprep, unescape_username

__all__ = [
    "MAX_SCRAM_ITERATIONS",
    "MIN_SCRAM_ITERATIONS",
    "SCRAM_MECHANISMS",
    "ScramClient",
    "ScramCredentials",
    "ScramServer",
    "scram_credentials",
    "scram_salted_password",
]

# RFC 7677 asks for at least 4096; Kafka refuses fewer too. The ceiling keeps a hostile
# server from making us run PBKDF2 for minutes (10**6 rounds of SHA-512: about a second).
MIN_SCRAM_ITERATIONS = 4096
MAX_SCRAM_ITERATIONS = 1_000_000

# Mechanism name -> hashlib name.
SCRAM_MECHANISMS = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}

_NONCE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")  # printable ASCII but ','
_DIGITS = re.compile(r"[0-9]{1,10}")
_CLIENT_KEY = b"Client Key"
_SERVER_KEY = b"Server Key"
# Salts for unknown users derive from this key, so a stranger's salt is as stable as a
# real user's and the first server message does not tell which users exist.
_UNKNOWN_USER_KEY = secrets.token_bytes(32)


def _hash_name(mechanism: str) -> str:
    try:
        return SCRAM_MECHANISMS[mechanism]
    except KeyError:
        raise SaslConfigurationError(
            f"unknown SCRAM mechanism {mechanism!r}; use one of {', '.join(SCRAM_MECHANISMS)}"
        ) from None


def _hmac(key: bytes, message: bytes, hash_name: str) -> bytes:
    return hmac.new(key, message, hash_name).digest()


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


def _password_bytes(password: str, prepare: bool) -> bytes:
    return (saslprep(password) if prepare else password).encode("utf-8")


def scram_salted_password(
    mechanism: str, password: str, salt: bytes, iterations: int, *, saslprep: bool = True
) -> bytes:
    """RFC 5802 ``SaltedPassword``: PBKDF2-HMAC (``Hi``) of the prepared password."""
    return hashlib.pbkdf2_hmac(
        _hash_name(mechanism), _password_bytes(password, saslprep), salt, iterations
    )


@dataclass(frozen=True)
class ScramCredentials:
    """What a broker stores for one user and one SCRAM mechanism (never the password)."""

    mechanism: str
    salt: bytes
    iterations: int
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)


def scram_credentials(
    mechanism: str,
    password: str,
    iterations: int = MIN_SCRAM_ITERATIONS,
    *,
    salt: bytes | None = None,
    saslprep: bool = True,
) -> ScramCredentials:
    """Salted credentials for ``password`` (a fresh random salt unless one is given)."""
    hash_name = _hash_name(mechanism)
    _check_iterations(iterations, SaslConfigurationError)
    salt = secrets.token_bytes(32) if salt is None else salt
    salted = scram_salted_password(mechanism, password, salt, iterations, saslprep=saslprep)
    client_key = _hmac(salted, _CLIENT_KEY, hash_name)
    return ScramCredentials(
        mechanism=mechanism,
        salt=salt,
        iterations=iterations,
        stored_key=hashlib.new(hash_name, client_key).digest(),
        server_key=_hmac(salted, _SERVER_KEY, hash_name),
    )


def _check_iterations(iterations: int, error: type[Exception]) -> None:
    if not MIN_SCRAM_ITERATIONS <= iterations <= MAX_SCRAM_ITERATIONS:
        raise error(
            f"SCRAM iteration count {iterations} is outside {MIN_SCRAM_ITERATIONS}.."
            f"{MAX_SCRAM_ITERATIONS} (MIN_SCRAM_ITERATIONS..MAX_SCRAM_ITERATIONS): fewer"
            " weakens the stored credentials, more costs every login seconds of CPU;"
            " store the credentials again with an iteration count in range"
        )


def _decode(message: bytes, what: str) -> str:
    try:
        return message.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslProtocolError(f"the SCRAM {what} is not UTF-8") from None


def _attributes(text: str, what: str) -> list[tuple[str, str]]:
    """``a=value,b=value`` as pairs; each name a single ASCII letter (RFC 5802 section 5)."""
    pairs = []
    for part in text.split(","):
        if len(part) < 2 or part[1] != "=" or not ("a" <= part[0].lower() <= "z"):
            raise SaslProtocolError(
                f"the SCRAM {what} holds {len(part)} characters that are not an attribute"
                " (RFC 5802: letter=value, separated by commas)"
            )
        pairs.append((part[0], part[2:]))
    return pairs


def _b64decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise SaslProtocolError(f"the SCRAM {what} is not base64") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class ScramClient:
    """The client side: ``initial()``, then ``step()`` with each server message.

    ``step(server_first)`` returns client-final; ``step(server_final)`` verifies the
    server's signature and returns None (``done`` is then True). ``nonce`` is for tests.
    """

    def __init__(
        self,
        mechanism: str,
        username: str,
        password: str,
        *,
        nonce: str | None = None,
        saslprep: bool = True,
    ) -> None:
        self.mechanism = mechanism
        self._hash_name = _hash_name(mechanism)
        if not username:
            raise SaslConfigurationError(f"{mechanism} needs a username (sasl_username)")
        if not password:
            raise SaslConfigurationError(f"{mechanism} needs a password (sasl_password)")
        self.username = username
        self._password = _password_bytes(password, saslprep)
        self._nonce = secrets.token_urlsafe(24) if nonce is None else nonce
        if not _NONCE.fullmatch(self._nonce):
            raise SaslConfigurationError("a SCRAM nonce is printable ASCII without ','")
        self._client_first_bare = f"n={escape_username(username)},r={self._nonce}"
        self._server_signature = b""
        self._state = "new"
        self.done = False

    def __repr__(self) -> str:
        return f"<ScramClient {self.mechanism} user={self.username!r} state={self._state}>"

    def initial(self) -> bytes:
        if self._state != "new":
            raise LocalProtocolError("initial() was already called on this SCRAM exchange")
        self._state = "sent client-first"
        return ("n,," + self._client_first_bare).encode("utf-8")

    def step(self, server_bytes: bytes) -> bytes | None:
        state, self._state = self._state, "failed"  # until this step succeeds
        if state == "sent client-first":
            reply = self._client_final(_decode(server_bytes, "server-first message"))
            self._state = "sent client-final"
            return reply
        if state == "sent client-final":
            self._verify_server_final(_decode(server_bytes, "server-final message"))
            self._state = "done"
            self.done = True
            return None
        self._state = state
        raise LocalProtocolError(f"step() called on a SCRAM exchange in state {state!r}")

    def _client_final(self, server_first: str) -> bytes:
        attributes = _attributes(server_first, "server-first message")
        if attributes[0][0] == "e":
            raise SaslAuthenticationError(
                f"the broker refused {self.mechanism}: {_printable(attributes[0][1])}"
            )
        if attributes[0][0] == "m":
            raise SaslProtocolError("the SCRAM server asks for a mandatory extension (m=)")
        if len(attributes) < 3 or [name for name, _ in attributes[:3]] != ["r", "s", "i"]:
            raise SaslProtocolError("the SCRAM server-first message is not r=...,s=...,i=...")
        (_, nonce), (_, salt_b64), (_, iterations_text) = attributes[:3]
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise SaslProtocolError(
                "the SCRAM server nonce does not extend the client nonce (RFC 5802): a"
                " replayed or forged server-first message"
            )
        if not _NONCE.fullmatch(nonce):
            raise SaslProtocolError("the SCRAM server nonce holds characters RFC 5802 forbids")
        salt = _b64decode(salt_b64, "salt")
        if not salt:
            raise SaslProtocolError("the SCRAM server sent an empty salt")
        if not _DIGITS.fullmatch(iterations_text):
            raise SaslProtocolError("the SCRAM iteration count is not a decimal number")
        iterations = int(iterations_text)
        _check_iterations(iterations, SaslProtocolError)
        salted = hashlib.pbkdf2_hmac(self._hash_name, self._password, salt, iterations)
        self._password = b""  # no longer needed: do not keep it around
        without_proof = f"c={_b64(b'n,,')},r={nonce}"
        auth_message = f"{self._client_first_bare},{server_first},{without_proof}".encode()
        client_key = _hmac(salted, _CLIENT_KEY, self._hash_name)
        stored_key = hashlib.new(self._hash_name, client_key).digest()
        proof = _xor(client_key, _hmac(stored_key, auth_message, self._hash_name))
        server_key = _hmac(salted, _SERVER_KEY, self._hash_name)
        self._server_signature = _hmac(server_key, auth_message, self._hash_name)
        return f"{without_proof},p={_b64(proof)}".encode("ascii")

    def _verify_server_final(self, server_final: str) -> None:
        name, value = _attributes(server_final, "server-final message")[0]
        if name == "e":
            raise SaslAuthenticationError(
                f"the broker refused the {self.mechanism} credentials ({_printable(value)});"
                " check sasl_username and sasl_password"
            )
        if name != "v":
            raise SaslProtocolError("the SCRAM server-final message is neither v= nor e=")
        signature = _b64decode(value, "server signature")
        if not hmac.compare_digest(signature, self._server_signature):
            raise SaslServerSignatureError(
                f"the broker's {self.mechanism} server signature is wrong: it does not hold"
                " these credentials; the connection is not trusted"
            )


def _printable(text: str) -> str:
    """A peer's error text, cut short and stripped to printable ASCII for our messages."""
    return "".join(ch for ch in text[:200] if " " <= ch <= "~") or "no reason given"


CredentialLookup = Callable[[str], "ScramCredentials | None"]


class ScramServer:
    """The broker side: ``step(client_first)`` returns server-first, ``step(client_final)``
    checks the proof and returns server-final; then ``done`` is True and ``username`` names
    the authenticated user. ``credentials(username)`` gives the user's stored credentials
    for this mechanism (None: unknown user, refused like a wrong password).
    """

    def __init__(
        self, mechanism: str, credentials: CredentialLookup, *, nonce: str | None = None
    ) -> None:
        self.mechanism = mechanism
        self._hash_name = _hash_name(mechanism)
        self._lookup = credentials
        self._server_nonce = secrets.token_urlsafe(24) if nonce is None else nonce
        self._state = "new"
        self._credentials: ScramCredentials | None = None
        self._gs2_header = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self._claimed_user = ""
        self.username: str | None = None
        self.done = False

    def __repr__(self) -> str:
        return f"<ScramServer {self.mechanism} user={self.username!r} state={self._state}>"

    def step(self, client_bytes: bytes) -> bytes:
        state, self._state = self._state, "failed"
        if state == "new":
            reply = self._server_first_message(_decode(client_bytes, "client-first message"))
            self._state = "sent server-first"
            return reply
        if state == "sent server-first":
            reply = self._server_final_message(_decode(client_bytes, "client-final message"))
            self._state = "done"
            self.done = True
            return reply
        self._state = state
        raise LocalProtocolError(f"step() called on a SCRAM exchange in state {state!r}")

    def _server_first_message(self, client_first: str) -> bytes:
        parts = client_first.split(",", 2)
        if len(parts) != 3 or parts[0] not in ("n", "y"):
            raise SaslProtocolError(
                "the SCRAM client-first message does not start with a GS2 header 'n,,'"
                " (channel binding, 'p=', is not supported)"
            )
        authzid = parts[1]
        attributes = _attributes(parts[2], "client-first message")
        if len(attributes) < 2 or [name for name, _ in attributes[:2]] != ["n", "r"]:
            raise SaslProtocolError("the SCRAM client-first message is not n=...,r=...")
        username = unescape_username(attributes[0][1])
        if authzid and authzid != f"a={attributes[0][1]}":
            raise SaslAuthenticationError(
                "SCRAM authorization identity differs from the username; pykaf's broker"
                " only lets a user act as itself"
            )
        client_nonce = attributes[1][1]
        if not username or not _NONCE.fullmatch(client_nonce):
            raise SaslProtocolError("the SCRAM client-first message has no username or nonce")
        self._claimed_user = username
        found = self._lookup(username)
        if found is None or found.mechanism != self.mechanism:
            found = self._unknown_user_credentials(username)
        self._credentials = found
        self._gs2_header = f"{parts[0]},{authzid},"
        self._client_first_bare = parts[2]
        self._nonce = client_nonce + self._server_nonce
        self._server_first = f"r={self._nonce},s={_b64(found.salt)},i={found.iterations}"
        return self._server_first.encode("ascii")

    def _unknown_user_credentials(self, username: str) -> ScramCredentials:
        # A salt as stable as a real user's; keys that no proof can match (empty).
        salt = _hmac(_UNKNOWN_USER_KEY, username.encode(), "sha256")[:16]
        return ScramCredentials(self.mechanism, salt, MIN_SCRAM_ITERATIONS, b"", b"")

    def _server_final_message(self, client_final: str) -> bytes:
        without_proof, separator, proof_b64 = client_final.rpartition(",p=")
        if not separator:
            raise SaslProtocolError("the SCRAM client-final message has no proof (p=)")
        attributes = _attributes(without_proof, "client-final message")
        if len(attributes) < 2 or [name for name, _ in attributes[:2]] != ["c", "r"]:
            raise SaslProtocolError("the SCRAM client-final message is not c=...,r=...,p=...")
        if _b64decode(attributes[0][1], "channel binding") != self._gs2_header.encode():
            raise SaslProtocolError("the SCRAM channel binding (c=) is not the GS2 header sent")
        if attributes[1][1] != self._nonce:
            raise SaslProtocolError("the SCRAM client-final nonce is not the one agreed")
        proof = _b64decode(proof_b64, "client proof")
        credentials = self._credentials
        assert credentials is not None  # set by the first step
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}"
        signature = _hmac(credentials.stored_key, auth_message.encode(), self._hash_name)
        if len(proof) != len(signature) or not hmac.compare_digest(
            hashlib.new(self._hash_name, _xor(proof, signature)).digest(),
            credentials.stored_key,
        ):
            raise SaslAuthenticationError(
                f"authentication failed: invalid credentials for {self.mechanism} (check the"
                " username and password)"
            )
        self.username = self._claimed_user
        server_signature = _hmac(credentials.server_key, auth_message.encode(), self._hash_name)
        return f"v={_b64(server_signature)}".encode("ascii")
