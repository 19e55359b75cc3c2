"""ListGroups (16): the groups this broker coordinates (v4+: filtered by state, v5+ by
type; every group here is "classic")."""

from __future__ import annotations

from typing import Any

from pykaf.broker._group_model import NONE
from pykaf.broker._groups import coordinator_error, group_coordinator
from pykaf.broker._registry import RequestContext, handles
from pykaf.protocol._messages import Payload

__all__: list[str] = []


@handles("ListGroups")
async def list_groups(ctx: RequestContext, request: Any) -> Payload:
    states = {s.lower() for s in getattr(request, "states_filter", ())}
    types = {t.lower() for t in getattr(request, "types_filter", ())}
    groups = []
    if not types or "classic" in types:
        for group_id, group in group_coordinator(ctx.state).groups.items():
            if coordinator_error(ctx.state, group_id, ctx.node_id) != NONE:
                continue
            if states and group.state.value.lower() not in states:
                continue
            groups.append(
                {
                    "group_id": group_id,
                    "protocol_type": group.protocol_type or "",
                    "group_state": group.state.value,
                    "group_type": "classic",
                }
            )
    return ctx.respond(throttle_time=0, error_code=NONE, groups=groups)
