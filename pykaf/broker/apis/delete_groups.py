"""DeleteGroups (42): remove Empty groups with their committed offsets."""

from __future__ import annotations

from typing import Any

from pykaf.broker._group_model import NONE
from pykaf.broker._groups import coordinator_error, group_coordinator
from pykaf.broker._registry import RequestContext, handles
from pykaf.protocol._messages import Payload

__all__: list[str] = []


@handles("DeleteGroups")
async def delete_groups(ctx: RequestContext, request: Any) -> Payload:
    coordinator = group_coordinator(ctx.state)
    results = []
    for group_id in request.groups_names:
        error = coordinator_error(ctx.state, group_id, ctx.node_id)
        if error == NONE:
            error = coordinator.delete_group(group_id)
        results.append({"group_id": group_id, "error_code": error})
    return ctx.respond(throttle_time=0, results=results)
