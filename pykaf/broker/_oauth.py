"""OAUTHBEARER on the embedded broker: who checks a token, and unsecured test tokens.

A broker does not mint tokens; it asks a validator. ``OAuthValidator`` is what the
embedded broker takes: ``validator(token, extensions)`` returns the principal, or
``(principal, expires_at)`` (seconds since the epoch) so the session ends with the token,
or None to refuse it. Its default, ``UnsecuredJwtValidator``, is Kafka's own default for
development (``OAuthBearerUnsecuredValidatorCallbackHandler``): it accepts an unsigned JWT
(``alg`` "none") whose ``sub`` claim is the principal and whose ``exp`` is still ahead,
and refuses everything else. librdkafka (``sasl.oauthbearer.config=principal=alice``)
sends exactly such tokens; ``unsecured_token("alice")`` makes one for other clients.

Unsigned tokens prove nothing: they are for tests and local development only, as in
Kafka. A deployment that needs real tokens passes its own validator.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeAlias

__all__ = ["OAuthValidator", "UnsecuredJwtValidator", "unsecured_token"]

#: ``validator(token, extensions)`` -> principal, ``(principal, expires_at)``, or None.
OAuthValidator: TypeAlias = Callable[[str, Mapping[str, str]], "str | tuple[str, float] | None"]

# A token larger than this is not a JWT anyone meant to send (Kafka's SASL frames are
# already capped at 512 KiB before authentication; this bounds the JSON parsing).
_MAX_TOKEN_CHARS: Final = 64 * 1024


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def unsecured_token(
    principal: str,
    lifetime: float = 3600.0,
    *,
    scope: str | None = None,
    now: float | None = None,
) -> str:
    """An unsigned JWT (``alg`` "none") for ``principal``, valid ``lifetime`` seconds (a
    negative one makes an expired token, for tests); what Kafka's unsecured
    OAUTHBEARER login module and librdkafka's default token refresh send."""
    if not isinstance(principal, str) or not principal:
        raise ValueError(f"principal must be a non-empty str, not {principal!r}")
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {"sub": principal, "iat": int(issued), "exp": issued + lifetime}
    if scope is not None:
        claims["scope"] = scope
    header = _b64url(b'{"alg":"none"}')
    body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    return f"{header}.{body}."


class UnsecuredJwtValidator:
    """Kafka's default development validator (see the module doc): unsigned JWTs with a
    ``sub`` and a future ``exp``; ``clock_skew`` seconds of tolerance, as Kafka's
    ``unsecuredValidatorAllowableClockSkewMs`` (default 0)."""

    def __init__(self, *, clock_skew: float = 0.0, clock: Callable[[], float] = time.time):
        self._skew = clock_skew
        self._clock = clock
        #: Why the last token was refused (no token text in it), for the broker's log.
        self.last_refusal: str | None = None

    def __repr__(self) -> str:
        return f"<UnsecuredJwtValidator clock_skew={self._skew}>"

    def __call__(self, token: str, extensions: Mapping[str, str]) -> tuple[str, float] | None:
        verdict = self.verdict(token)
        if isinstance(verdict, str):
            self.last_refusal = verdict
            return None
        self.last_refusal = None
        return verdict

    def verdict(self, token: str) -> tuple[str, float] | str:
        """``(principal, expires_at)`` for a good token, else why it is refused (the
        reason holds no token text)."""
        claims = _claims(token)
        if isinstance(claims, str):
            return claims
        now = self._clock()
        subject, expires = claims.get("sub"), claims.get("exp")
        if not isinstance(subject, str) or not subject:
            return "the token has no 'sub' claim (the principal)"
        if isinstance(expires, bool) or not isinstance(expires, int | float):
            return "the token has no numeric 'exp' claim"
        if expires + self._skew <= now:
            return f"the token expired {now - expires:.0f}s ago"
        issued = claims.get("iat")
        if isinstance(issued, int | float) and issued - self._skew > now:
            return "the token's 'iat' lies in the future"
        return subject, float(expires)


def _claims(token: str) -> dict[str, Any] | str:
    if len(token) > _MAX_TOKEN_CHARS:
        return f"the token is longer than {_MAX_TOKEN_CHARS} characters"
    parts = token.split(".")
    if len(parts) != 3 or parts[2]:
        return "not an unsigned JWT (header.claims. with no signature)"
    try:
        header = json.loads(_unb64url(parts[0]))
        claims = json.loads(_unb64url(parts[1]))
    except (binascii.Error, ValueError):
        return "the token's header or claims are not base64url JSON"
    if not isinstance(header, dict) or header.get("alg") != "none":
        return "the token's header is not {'alg': 'none'}"
    if not isinstance(claims, dict):
        return "the token's claims are not a JSON object"
    return claims
