"""FindCoordinator (10): which broker coordinates a group or a transactional id.

v0-v3 ask for one key, v4+ for a batch (KIP-699). The coordinator is a stable hash of the
key over the brokers that are up (``ClusterState.coordinator_for``), as Kafka's partition
of ``__consumer_offsets`` / ``__transaction_state`` and its leader would be.
"""

from __future__ import annotations

from typing import Any, Final

from pykaf.broker._group_model import COORDINATOR_NOT_AVAILABLE, NONE
from pykaf.broker._registry import RequestContext, handles
from pykaf.broker._state import ClusterState
from pykaf.broker.apis._common import INVALID_REQUEST
from pykaf.protocol._messages import Payload

__all__: list[str] = []

_GROUP: Final = 0
_TRANSACTION: Final = 1  # share groups (2) are not modelled


def _lookup(state: ClusterState, key: str, key_type: int, listener: str | None) -> dict[str, Any]:
    if key_type not in (_GROUP, _TRANSACTION):
        return _failed(key, INVALID_REQUEST, f"unsupported coordinator key type {key_type}")
    node = state.coordinator_for(key)
    if node is None or not node.up:
        return _failed(key, COORDINATOR_NOT_AVAILABLE, "The coordinator is not available.")
    return {
        "key": key,
        "node_id": node.node_id,
        "host": node.host,
        "port": node.port_on(listener),
        "error_code": NONE,
        "error_message": None,
    }


def _failed(key: str, error: int, message: str) -> dict[str, Any]:
    return {
        "key": key,
        "node_id": -1,
        "host": "",
        "port": -1,
        "error_code": error,
        "error_message": message,
    }


@handles("FindCoordinator")
async def find_coordinator(ctx: RequestContext, request: Any) -> Payload:
    key_type = getattr(request, "key_type", _GROUP)
    if ctx.api_version >= 4:
        listener = ctx.connection.listener
        coordinators = [
            _lookup(ctx.state, key, key_type, listener) for key in request.coordinator_keys
        ]
        return ctx.respond(throttle_time=0, coordinators=coordinators)
    answer = _lookup(ctx.state, request.key, key_type, ctx.connection.listener)
    del answer["key"]
    return ctx.respond(throttle_time=0, **answer)
