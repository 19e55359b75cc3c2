"""JoinGroup (11): join a classic group; the response is held until the join phase ends.

The state machine is ``pykaf.broker._groups``; this module maps the request onto it.
v4+ clients without a group instance id get MEMBER_ID_REQUIRED first (KIP-394); v9+
leaders may be told to skip the assignment (KIP-814). v0 (below Kafka 4's floor, served for
old clients) has no rebalance timeout: as Kafka did, the session timeout stands in.
"""

from __future__ import annotations

from typing import Any

from pykaf.broker._group_model import NONE, JoinResult, Member
from pykaf.broker._groups import coordinator_error, group_coordinator
from pykaf.broker._registry import RequestContext, handles
from pykaf.broker.apis._common import millis
from pykaf.protocol._messages import Payload

__all__ = ["client_host"]


def client_host(ctx: RequestContext) -> str:
    """The client's address as Kafka reports it (``InetAddress.toString``: "/1.2.3.4")."""
    return "/" + ctx.connection.peer.rsplit(":", 1)[0]


def _response(ctx: RequestContext, result: JoinResult) -> Payload:
    protocol_name = result.protocol_name
    if protocol_name is None and ctx.api_version < 7:
        protocol_name = ""  # nullable from v7 only
    return ctx.respond(
        throttle_time=0,
        error_code=result.error,
        generation_id=result.generation,
        protocol_type=result.protocol_type,
        protocol_name=protocol_name,
        leader=result.leader,
        skip_assignment=result.skip_assignment,
        member_id=result.member_id,
        members=[
            {"member_id": member_id, "group_instance_id": instance_id, "metadata": metadata}
            for member_id, instance_id, metadata in result.members
        ],
    )


@handles("JoinGroup")
async def join_group(ctx: RequestContext, request: Any) -> Payload:
    error = coordinator_error(ctx.state, request.group_id, ctx.node_id)
    if error != NONE:
        return _response(ctx, JoinResult(error=error, member_id=request.member_id))
    instance_id = getattr(request, "group_instance_id", None)
    member = Member(
        request.member_id,
        instance_id=instance_id,
        client_id=ctx.client_id or "",
        client_host=client_host(ctx),
        session_timeout_ms=millis(request.session_timeout),
        rebalance_timeout_ms=millis(
            request.rebalance_timeout if ctx.api_version >= 1 else request.session_timeout
        ),
        protocol_type=request.protocol_type,
        protocols=tuple((p.name, bytes(p.metadata)) for p in request.protocols),
    )
    future = group_coordinator(ctx.state).join(
        request.group_id,
        member,
        require_known_member_id=ctx.api_version >= 4 and instance_id is None,
        supports_skip_assignment=ctx.api_version >= 9,
    )
    return _response(ctx, await future)
