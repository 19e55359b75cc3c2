"""Stored secrets and their checks: bearer tokens and Basic passwords, plain or hashed.

A config file may hold hashes instead of secrets: a token as ``sha256:<hex>``
(``hash_token``), a password as ``scrypt:...`` or ``pbkdf2:...`` (``hash_password``, salted).
``plain:<secret>`` escapes a plain secret that happens to start like a hash; a value that
starts like a hash but does not parse is an error, never taken as a plain secret (a typo'd
hash must not become a password anyone can read in the file).

Every comparison is constant-time (``hmac.compare_digest`` on equal-length digests), and a
user who does not exist costs what a wrong password costs (a dummy hash of the same kind is
checked), so timing tells neither the password nor which users exist.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections import Counter, OrderedDict
from collections.abc import Mapping
from typing import Final, Literal

__all__ = ["PasswordTable", "TokenTable", "hash_password", "hash_token"]

_SCRYPT_N: Final = 2**14  # about 50 ms and 16 MiB per check: the OWASP minimum
_SCRYPT_R: Final = 8
_SCRYPT_P: Final = 1
_PBKDF2_ITERATIONS: Final = 600_000  # OWASP's figure for PBKDF2-HMAC-SHA256
_KEY_BYTES: Final = 32
# Bounds on stored parameters: a config file must not make one check cost seconds.
_MAX_SCRYPT_N: Final = 2**20
_MAX_PBKDF2_ITERATIONS: Final = 10_000_000
# Verified (user, password) pairs remembered so a client sending Basic credentials on
# every request pays the slow hash once, not per request.
_VERIFIED_CACHE: Final = 1024


def hash_token(token: str) -> str:
    """The form of a bearer token to store in a config file: ``sha256:<hex>``. Tokens are
    long random strings (``secrets.token_urlsafe(32)``), so one unsalted SHA-256 is enough:
    nobody can search a 256-bit space, and a lookup by digest stays O(1)."""
    if not token:
        raise ValueError("a bearer token must not be empty")
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def hash_password(
    password: str,
    *,
    scheme: Literal["scrypt", "pbkdf2"] = "scrypt",
    scrypt_n: int = _SCRYPT_N,
    pbkdf2_iterations: int = _PBKDF2_ITERATIONS,
) -> str:
    """A salted hash of ``password`` to store in a config file instead of the password:
    ``scrypt:N:r:p:<salt>:<hash>`` or ``pbkdf2:sha256:<iterations>:<salt>:<hash>`` (salt and
    hash in base64)."""
    salt = secrets.token_bytes(16)
    if scheme == "scrypt":
        stored = f"scrypt:{scrypt_n}:{_SCRYPT_R}:{_SCRYPT_P}:{_b64(salt)}:"
    elif scheme == "pbkdf2":
        stored = f"pbkdf2:sha256:{pbkdf2_iterations}:{_b64(salt)}:"
    else:
        raise ValueError(f"scheme must be 'scrypt' or 'pbkdf2', not {scheme!r}")
    check = _parse_password(stored + _b64(b"\0" * _KEY_BYTES), "the new hash")
    return stored + _b64(check.derive(password.encode()))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{where}: {text!r} is not base64") from None


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


class _Stored:
    """One stored password: ``derive`` turns a candidate into what ``expected`` holds."""

    kind = "plain"
    slow = False

    def __init__(self, expected: bytes) -> None:
        self.expected = expected

    def derive(self, candidate: bytes) -> bytes:
        # Digests of both sides: equal lengths, so compare_digest leaks no length either.
        return _digest(candidate)

    def matches(self, candidate: bytes) -> bool:
        return hmac.compare_digest(self.derive(candidate), self.expected)

    def dummy(self) -> _Stored:
        """A stored value of the same kind and cost that no password matches."""
        return _Stored(secrets.token_bytes(32))


class _Scrypt(_Stored):
    slow = True

    def __init__(self, n: int, r: int, p: int, salt: bytes, expected: bytes) -> None:
        super().__init__(expected)
        self.kind = f"scrypt:{n}:{r}:{p}"
        self.n, self.r, self.p, self.salt = n, r, p, salt

    def derive(self, candidate: bytes) -> bytes:
        return hashlib.scrypt(
            candidate,
            salt=self.salt,
            n=self.n,
            r=self.r,
            p=self.p,
            dklen=len(self.expected),
            maxmem=128 * self.n * self.r * self.p + 1024 * 1024,
        )

    def dummy(self) -> _Stored:
        return _Scrypt(self.n, self.r, self.p, secrets.token_bytes(16), self.expected)


class _Pbkdf2(_Stored):
    slow = True

    def __init__(self, hash_name: str, iterations: int, salt: bytes, expected: bytes) -> None:
        super().__init__(expected)
        self.kind = f"pbkdf2:{hash_name}:{iterations}"
        self.hash_name, self.iterations, self.salt = hash_name, iterations, salt

    def derive(self, candidate: bytes) -> bytes:
        return hashlib.pbkdf2_hmac(
            self.hash_name, candidate, self.salt, self.iterations, len(self.expected)
        )

    def dummy(self) -> _Stored:
        return _Pbkdf2(self.hash_name, self.iterations, secrets.token_bytes(16), self.expected)


def _whole_number(text: str, name: str, where: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{where}: {name} must be a whole number, not {text!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{where}: {name} must be in {low}..{high}, not {value}")
    return value


def _parse_password(stored: str, where: str) -> _Stored:
    if stored.startswith("plain:"):
        return _Stored(_digest(stored[len("plain:") :].encode()))
    parts = stored.split(":")
    if parts[0] == "scrypt":
        if len(parts) != 6:
            raise ValueError(
                f"{where}: a scrypt hash is 'scrypt:N:r:p:<salt>:<hash>' (from"
                " pykaf.gateway.hash_password); prefix a plain password with 'plain:'"
            )
        n = _whole_number(parts[1], "N", where, 2, _MAX_SCRYPT_N)
        if n & (n - 1):
            raise ValueError(f"{where}: scrypt's N must be a power of 2, not {n}")
        r = _whole_number(parts[2], "r", where, 1, 64)
        p = _whole_number(parts[3], "p", where, 1, 16)
        return _Scrypt(n, r, p, _unb64(parts[4], where), _hash_bytes(parts[5], where))
    if parts[0] == "pbkdf2":
        if len(parts) != 5:
            raise ValueError(
                f"{where}: a pbkdf2 hash is 'pbkdf2:sha256:<iterations>:<salt>:<hash>' (from"
                " pykaf.gateway.hash_password); prefix a plain password with 'plain:'"
            )
        if parts[1] not in ("sha256", "sha512"):
            raise ValueError(f"{where}: pbkdf2's hash must be sha256 or sha512, not {parts[1]!r}")
        iterations = _whole_number(parts[2], "iterations", where, 1, _MAX_PBKDF2_ITERATIONS)
        return _Pbkdf2(parts[1], iterations, _unb64(parts[3], where), _hash_bytes(parts[4], where))
    return _Stored(_digest(stored.encode()))


def _hash_bytes(text: str, where: str) -> bytes:
    raw = _unb64(text, where)
    if not 16 <= len(raw) <= 64:
        raise ValueError(f"{where}: the hash must be 16 to 64 bytes, not {len(raw)}")
    return raw


class TokenTable:
    """Bearer token → principal. Tokens are kept as SHA-256 digests only."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._by_digest: dict[bytes, tuple[bytes, str]] = {}
        for stored, principal in tokens.items():
            where = f"the bearer token of principal {principal!r}"
            if not isinstance(stored, str) or not stored:
                raise ValueError(f"{where} must be a non-empty string")
            if not isinstance(principal, str) or not principal:
                raise ValueError(
                    f"each bearer token needs a non-empty principal, not {principal!r}"
                )
            digest = _token_digest(stored, where)
            self._by_digest[digest] = (digest, principal)

    def __len__(self) -> int:
        return len(self._by_digest)

    def principal(self, token: str) -> str | None:
        # The lookup is by the digest of the presented token: its timing depends on the
        # digest, which says nothing usable about any stored token (SHA-256 has no known
        # preimages); the final compare_digest keeps the equality check constant-time.
        presented = _digest(token.encode())
        found = self._by_digest.get(presented)
        if found is None or not hmac.compare_digest(found[0], presented):
            return None
        return found[1]


def _token_digest(stored: str, where: str) -> bytes:
    if stored.startswith("plain:"):
        return _digest(stored[len("plain:") :].encode())
    if stored.startswith("sha256:"):
        try:
            raw = bytes.fromhex(stored[len("sha256:") :])
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ValueError(
                f"{where}: 'sha256:' must be followed by 64 hex digits (from"
                " pykaf.gateway.hash_token); prefix a plain token with 'plain:'"
            )
        return raw
    return _digest(stored.encode())


class PasswordTable:
    """HTTP Basic users → stored passwords, checked in constant time."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users: dict[str, _Stored] = {}
        for user, stored in users.items():
            if not isinstance(user, str) or not user or ":" in user:
                raise ValueError(f"a Basic user name must be non-empty without ':', not {user!r}")
            if not isinstance(stored, str):
                raise ValueError(f"the password of user {user!r} must be a string")
            self._users[user] = _parse_password(stored, f"the password of user {user!r}")
        # An unknown user is checked against a dummy of the kind most users have, so it
        # costs about what a known user with a wrong password costs.
        kinds = Counter(s.kind for s in self._users.values())
        common = kinds.most_common(1)[0][0] if kinds else "plain"
        model = next((s for s in self._users.values() if s.kind == common), None)
        self._dummy = model.dummy() if model is not None else _Stored(b"")
        self._cache_key = secrets.token_bytes(32)
        self._verified: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._users)

    def _memo(self, user: str, password: str) -> bytes:
        # Keyed with a per-process secret: the cache holds nothing that reveals passwords.
        return hmac.digest(self._cache_key, f"{user}\0{password}".encode(), "sha256")

    def known_good(self, user: str, password: str) -> bool:
        """True when this exact pair was verified recently (no slow hash needed)."""
        memo = self._memo(user, password)
        if memo in self._verified:
            self._verified.move_to_end(memo)
            return True
        return False

    def needs_slow_check(self, user: str) -> bool:
        return self._users.get(user, self._dummy).slow

    def check(self, user: str, password: str) -> bool:
        """Verify (possibly slow: run it off the event loop when ``needs_slow_check``;
        safe in a worker thread: it reads only what ``__init__`` built)."""
        stored = self._users.get(user)
        candidate = password.encode()
        if stored is None:
            self._dummy.matches(candidate)  # the same work, the same "no"
            return False
        return stored.matches(candidate)

    def remember(self, user: str, password: str) -> None:
        """Note a verified pair (on the event loop's thread: the cache is not locked)."""
        self._verified[self._memo(user, password)] = None
        while len(self._verified) > _VERIFIED_CACHE:
            self._verified.popitem(last=False)
