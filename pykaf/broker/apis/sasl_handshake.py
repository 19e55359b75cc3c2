"""SaslHandshake (17): choose the SASL mechanism of this connection (see ``_sasl_auth``).

v1 only: after v0 a client sends raw SASL tokens without Kafka framing, which no client
of a broker speaking SaslAuthenticate (Kafka 1.0+) does.
"""

from __future__ import annotations

from typing import Any

from pykaf.broker._registry import CloseConnection, RequestContext, handles
from pykaf.broker._sasl_auth import ILLEGAL_SASL_STATE, SaslOutOfOrder
from pykaf.protocol._messages import Payload

__all__: list[str] = []


@handles("SaslHandshake", min_version=1)
async def sasl_handshake(ctx: RequestContext, request: Any) -> Payload:
    session = ctx.connection.sasl
    if session is None:  # a listener without SASL, as Kafka answers there
        return ctx.respond(error_code=ILLEGAL_SASL_STATE, mechanisms=[])
    try:
        error_code = session.handshake(request.mechanism)
    except SaslOutOfOrder as exc:
        raise CloseConnection(str(exc)) from None
    return ctx.respond(error_code=error_code, mechanisms=list(session.mechanisms))
