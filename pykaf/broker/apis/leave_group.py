"""LeaveGroup (13): members leave (v3+: a batch, also by group instance id, KIP-345)."""

from __future__ import annotations

from typing import Any

from pykaf.broker._group_model import NONE
from pykaf.broker._groups import coordinator_error, group_coordinator
from pykaf.broker._registry import RequestContext, handles
from pykaf.protocol._messages import Payload

__all__: list[str] = []


@handles("LeaveGroup")
async def leave_group(ctx: RequestContext, request: Any) -> Payload:
    if ctx.api_version >= 3:
        leaving = [(m.member_id, m.group_instance_id) for m in request.members]
    else:
        leaving = [(request.member_id, None)]
    error = coordinator_error(ctx.state, request.group_id, ctx.node_id)
    errors: list[int] = []
    if error == NONE:
        error, errors = group_coordinator(ctx.state).leave(
            group_id=request.group_id, members=leaving
        )
    if ctx.api_version < 3:
        # One member, one error: before v3 it is the top-level error code.
        if error == NONE and errors:
            error = errors[0]
        return ctx.respond(throttle_time=0, error_code=error)
    members = [
        {"member_id": member_id, "group_instance_id": instance_id, "error_code": code}
        for (member_id, instance_id), code in zip(leaving, errors, strict=False)
    ]
    return ctx.respond(throttle_time=0, error_code=error, members=members)
