"""SaslHandshake (17): choose the SASL mechanism of this connection (see ``_sasl_auth``).

v0..v1 are advertised, as Kafka does (librdkafka looks for v0 to know the broker speaks
SASL at all), but only v1 is served: after v0 a client sends raw SASL tokens without Kafka
framing, which no client does against a broker offering SaslAuthenticate (Kafka 1.0+). A v0
handshake is answered UNSUPPORTED_VERSION and its connection closed.
"""

from __future__ import annotations

from typing import Any, Final

from pykaf.broker._registry import CloseConnection, RequestContext, handles
from pykaf.broker._sasl_auth import ILLEGAL_SASL_STATE, SaslOutOfOrder
from pykaf.protocol._messages import Payload

__all__: list[str] = []

UNSUPPORTED_VERSION: Final = 35


@handles("SaslHandshake")
async def sasl_handshake(ctx: RequestContext, request: Any) -> Payload:
    session = ctx.connection.sasl
    if session is None:  # a listener without SASL, as Kafka answers there
        return ctx.respond(error_code=ILLEGAL_SASL_STATE, mechanisms=[])
    if ctx.api_version == 0:
        session.failure = "SaslHandshake v0 (raw SASL tokens) is not served; use v1"
        return ctx.respond(error_code=UNSUPPORTED_VERSION, mechanisms=list(session.mechanisms))
    try:
        error_code = session.handshake(request.mechanism)
    except SaslOutOfOrder as exc:
        raise CloseConnection(str(exc)) from None
    return ctx.respond(error_code=error_code, mechanisms=list(session.mechanisms))
