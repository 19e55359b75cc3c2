"""SaslAuthenticate (36): one step of the connection's SASL exchange (see ``_sasl_auth``).

The session lifetime is 0 (no end), except for an OAUTHBEARER token that says when it
expires: then the time left (KIP-368; see ``_sasl_auth``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pykaf.broker._registry import CloseConnection, RequestContext, handles
from pykaf.broker._sasl_auth import ILLEGAL_SASL_STATE, SaslOutOfOrder
from pykaf.protocol._messages import Payload

__all__: list[str] = []


@handles("SaslAuthenticate")
async def sasl_authenticate(ctx: RequestContext, request: Any) -> Payload:
    session = ctx.connection.sasl
    message: str | None
    lifetime_ms = 0
    if session is None:
        error_code, message, reply = (
            ILLEGAL_SASL_STATE,
            "SaslAuthenticate on a listener without SASL",
            b"",
        )
    else:
        try:
            error_code, message, reply = session.authenticate(request.auth_bytes)
        except SaslOutOfOrder as exc:
            raise CloseConnection(str(exc)) from None
        lifetime_ms = session.lifetime_ms if error_code == 0 else 0
    return ctx.respond(
        error_code=error_code,
        error_message=message,
        auth_bytes=reply,
        session_lifetime=timedelta(milliseconds=lifetime_ms),
    )
