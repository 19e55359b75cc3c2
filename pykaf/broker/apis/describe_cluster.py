"""DescribeCluster (60): cluster id, controller, the brokers that are up."""

from __future__ import annotations

from typing import Any, Final

from pykaf.broker._registry import RequestContext, handles
from pykaf.broker.apis._common import NONE
from pykaf.protocol._messages import Payload

__all__: list[str] = []

_NOT_REQUESTED: Final = -(2**31)
_BROKERS_ENDPOINT: Final = 1
UNSUPPORTED_ENDPOINT_TYPE: Final = 115


@handles("DescribeCluster")
async def describe_cluster(ctx: RequestContext, request: Any) -> Payload:
    state = ctx.state
    endpoint_type = getattr(request, "endpoint_type", _BROKERS_ENDPOINT)
    if endpoint_type != _BROKERS_ENDPOINT:
        return ctx.respond(
            throttle_time=0,
            error_code=UNSUPPORTED_ENDPOINT_TYPE,
            error_message="only broker endpoints are served",
            endpoint_type=endpoint_type,
            cluster_id=state.cluster_id,
            brokers=[],
        )
    return ctx.respond(
        throttle_time=0,
        error_code=NONE,
        error_message=None,
        endpoint_type=endpoint_type,
        cluster_id=state.cluster_id,
        controller_id=state.controller_id,
        brokers=[
            {
                "broker_id": n.node_id,
                "host": n.host,
                "port": n.port_on(ctx.connection.listener),
                "rack": n.rack,
                "is_fenced": False,
            }
            for n in state.up_brokers()
        ],
        cluster_authorized_operations=_NOT_REQUESTED,
    )
