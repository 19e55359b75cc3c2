"""Heartbeat (12): keeps a member's session alive; tells it when to rejoin."""

from __future__ import annotations

from typing import Any

from pykaf.broker._group_model import NONE
from pykaf.broker._groups import coordinator_error, group_coordinator
from pykaf.broker._registry import RequestContext, handles
from pykaf.protocol._messages import Payload

__all__: list[str] = []


@handles("Heartbeat")
async def heartbeat(ctx: RequestContext, request: Any) -> Payload:
    error = coordinator_error(ctx.state, request.group_id, ctx.node_id)
    if error == NONE:
        error = group_coordinator(ctx.state).heartbeat(
            group_id=request.group_id,
            generation=request.generation_id,
            member_id=request.member_id,
            instance_id=getattr(request, "group_instance_id", None),
        )
    return ctx.respond(throttle_time=0, error_code=error)
