"""The SASL client settings checked together: each mistake refused with what to fix.

Apart from ``_settings`` so the settings module stays about connections in general; the
names are Kafka's (sasl.mechanism, sasl.username...) in snake case.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, Protocol

from pykaf.protocol._sasl import SASL_MECHANISMS

__all__ = ["SASL_PROTOCOLS", "SaslFields", "TokenProvider", "check_sasl"]

SASL_PROTOCOLS: Final = ("SASL_PLAINTEXT", "SASL_SSL")

# Returns (token, expires_at): expires_at in seconds since the epoch (time.time()'s clock),
# the shape of confluent-kafka's oauth_cb; sync or async.
TokenProvider = Callable[[], "tuple[str, float] | Awaitable[tuple[str, float]]"]

_PASSWORD_MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class SaslFields(Protocol):
    """What the check reads of ``ClientSettings`` (named here: that module imports this)."""

    @property
    def security_protocol(self) -> str | None: ...
    @property
    def sasl_mechanism(self) -> str: ...
    @property
    def sasl_username(self) -> str | None: ...
    @property
    def sasl_password(self) -> str | None: ...
    @property
    def sasl_oauth_token_provider(self) -> TokenProvider | None: ...


def check_sasl(settings: SaslFields) -> None:
    """Refuse SASL settings that cannot work; messages never show the password."""
    mechanism = settings.sasl_mechanism
    if not isinstance(mechanism, str) or mechanism not in SASL_MECHANISMS:
        close = [
            m for m in SASL_MECHANISMS if isinstance(mechanism, str) and m == mechanism.upper()
        ]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"sasl_mechanism must be one of {', '.join(SASL_MECHANISMS)}, not {mechanism!r}{hint}"
        )
    username, password = settings.sasl_username, settings.sasl_password
    provider = settings.sasl_oauth_token_provider
    if username is not None and (not isinstance(username, str) or not username):
        raise ValueError(f"sasl_username must be a non-empty str, not {username!r}")
    if password is not None and (not isinstance(password, str) or not password):
        raise ValueError("sasl_password must be a non-empty str (it is not shown here)")
    if provider is not None and not callable(provider):
        raise ValueError(
            "sasl_oauth_token_provider must be a callable (sync or async) returning"
            " (token, expires_at)"
        )
    given = [
        name
        for name in ("sasl_username", "sasl_password", "sasl_oauth_token_provider")
        if getattr(settings, name) is not None
    ]
    protocol = settings.security_protocol
    if protocol not in SASL_PROTOCOLS:
        if given:
            wanted = "'SASL_SSL'" if protocol == "SSL" else "'SASL_SSL' (or 'SASL_PLAINTEXT')"
            raise ValueError(
                f"{', '.join(given)} given with security_protocol={protocol!r}: SASL needs"
                f" security_protocol={wanted}"
            )
        return
    if mechanism in _PASSWORD_MECHANISMS:
        missing = [n for n in ("sasl_username", "sasl_password") if getattr(settings, n) is None]
        if missing:
            raise ValueError(
                f"security_protocol={protocol!r} with sasl_mechanism={mechanism!r} needs"
                f" {' and '.join(missing)}"
            )
        if provider is not None:
            raise ValueError(
                "sasl_oauth_token_provider is for sasl_mechanism='OAUTHBEARER', not"
                f" {mechanism!r}: drop it or change the mechanism"
            )
        return
    if provider is None:
        raise ValueError(
            "sasl_mechanism='OAUTHBEARER' needs sasl_oauth_token_provider (a callable"
            " returning (token, expires_at))"
        )
    if username is not None or password is not None:
        raise ValueError(
            "sasl_mechanism='OAUTHBEARER' authenticates with the token alone: drop"
            " sasl_username and sasl_password"
        )
