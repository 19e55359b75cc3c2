"""DescribeGroups (15): state, protocol and members of classic groups.

Member metadata and assignments are reported only for a Stable group (as Kafka does);
an unknown group is "Dead", with GROUP_ID_NOT_FOUND from v6 (KIP-1043).
"""

from __future__ import annotations

from typing import Any, Final

from pykaf.broker._group_model import GROUP_ID_NOT_FOUND, NONE, GroupState
from pykaf.broker._groups import coordinator_error, group_coordinator
from pykaf.broker._registry import RequestContext, handles
from pykaf.protocol._messages import Payload

__all__: list[str] = []

# "Not requested / unknown" for authorized_operations (no authorizer here).
_NO_OPERATIONS: Final = -(2**31)


def _described(group_id: str, error: int, state: str, message: str | None = None) -> dict[str, Any]:
    return {
        "error_code": error,
        "error_message": message,
        "group_id": group_id,
        "group_state": state,
        "protocol_type": "",
        "protocol_data": "",
        "members": [],
        "authorized_operations": _NO_OPERATIONS,
    }


@handles("DescribeGroups")
async def describe_groups(ctx: RequestContext, request: Any) -> Payload:
    coordinator = group_coordinator(ctx.state)
    out = []
    for group_id in request.groups:
        error = coordinator_error(ctx.state, group_id, ctx.node_id)
        group = coordinator.groups.get(group_id)
        if error != NONE:
            out.append(_described(group_id, error, ""))
            continue
        if group is None:
            if ctx.api_version >= 6:
                message = f"Group {group_id} not found."
                out.append(_described(group_id, GROUP_ID_NOT_FOUND, "Dead", message))
            else:
                out.append(_described(group_id, NONE, "Dead"))
            continue
        stable = group.state is GroupState.STABLE
        entry = _described(group_id, NONE, group.state.value)
        entry["protocol_type"] = group.protocol_type or ""
        entry["protocol_data"] = (group.protocol_name or "") if stable else ""
        entry["members"] = [
            {
                "member_id": m.member_id,
                "group_instance_id": m.instance_id,
                "client_id": m.client_id,
                "client_host": m.client_host,
                "member_metadata": m.metadata(group.protocol_name) if stable else b"",
                "member_assignment": m.assignment if stable else b"",
            }
            for m in group.members.values()
        ]
        out.append(entry)
    return ctx.respond(throttle_time=0, groups=out)
