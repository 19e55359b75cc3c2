"""SyncGroup (14): the leader hands out the assignment; every member receives its own.

Followers' responses are held until the leader's SyncGroup arrives (see ``_groups``).
"""

from __future__ import annotations

from typing import Any

from pykaf.broker._group_model import NONE, SyncResult
from pykaf.broker._groups import coordinator_error, group_coordinator
from pykaf.broker._registry import RequestContext, handles
from pykaf.protocol._messages import Payload

__all__: list[str] = []


def _response(ctx: RequestContext, result: SyncResult) -> Payload:
    return ctx.respond(
        throttle_time=0,
        error_code=result.error,
        protocol_type=result.protocol_type,
        protocol_name=result.protocol_name,
        assignment=result.assignment,
    )


@handles("SyncGroup")
async def sync_group(ctx: RequestContext, request: Any) -> Payload:
    error = coordinator_error(ctx.state, request.group_id, ctx.node_id)
    if error != NONE:
        return _response(ctx, SyncResult(error=error))
    future = group_coordinator(ctx.state).sync(
        group_id=request.group_id,
        generation=request.generation_id,
        member_id=request.member_id,
        instance_id=getattr(request, "group_instance_id", None),
        protocol_type=getattr(request, "protocol_type", None),
        protocol_name=getattr(request, "protocol_name", None),
        assignments=[(a.member_id, bytes(a.assignment)) for a in request.assignments],
    )
    return _response(ctx, await future)
