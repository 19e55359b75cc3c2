"""What several API handlers share: error codes, durations, the partition-leader check."""

from __future__ import annotations

import datetime
import time
import uuid
from typing import Any, Final

from pykaf.broker._registry import RequestContext
from pykaf.broker._state import ClusterState, PartitionState

__all__ = [
    "CORRUPT_MESSAGE",
    "FENCED_LEADER_EPOCH",
    "INVALID_CONFIG",
    "INVALID_PARTITIONS",
    "INVALID_RECORD",
    "INVALID_REPLICA_ASSIGNMENT",
    "INVALID_REQUEST",
    "INVALID_REQUIRED_ACKS",
    "INVALID_TOPIC_EXCEPTION",
    "LEADER_NOT_AVAILABLE",
    "MESSAGE_TOO_LARGE",
    "NONE",
    "NOT_LEADER_OR_FOLLOWER",
    "OFFSET_OUT_OF_RANGE",
    "UNKNOWN_LEADER_EPOCH",
    "UNKNOWN_TOPIC_ID",
    "UNKNOWN_TOPIC_OR_PARTITION",
    "ZERO_UUID",
    "leader_error",
    "millis",
    "node_endpoints",
    "now_ms",
]

# Kafka error codes (org.apache.kafka.common.protocol.Errors) the handlers return.
NONE: Final = 0
OFFSET_OUT_OF_RANGE: Final = 1
CORRUPT_MESSAGE: Final = 2
UNKNOWN_TOPIC_OR_PARTITION: Final = 3
LEADER_NOT_AVAILABLE: Final = 5
NOT_LEADER_OR_FOLLOWER: Final = 6
MESSAGE_TOO_LARGE: Final = 10
INVALID_TOPIC_EXCEPTION: Final = 17
INVALID_REQUIRED_ACKS: Final = 21
INVALID_PARTITIONS: Final = 37
INVALID_REPLICA_ASSIGNMENT: Final = 39
INVALID_CONFIG: Final = 40
INVALID_REQUEST: Final = 42
FENCED_LEADER_EPOCH: Final = 74
UNKNOWN_LEADER_EPOCH: Final = 75
INVALID_RECORD: Final = 87
UNKNOWN_TOPIC_ID: Final = 100

ZERO_UUID: Final = uuid.UUID(int=0)


def millis(value: datetime.timedelta | int) -> int:
    """kio decodes durations as timedeltas; the broker works in whole milliseconds."""
    if isinstance(value, datetime.timedelta):
        return (value.days * 86_400 + value.seconds) * 1000 + value.microseconds // 1000
    return int(value)


def now_ms() -> int:
    return int(time.time() * 1000)


def leader_error(ctx: RequestContext, partition: PartitionState, current_leader_epoch: int) -> int:
    """The error for a request that must reach the partition leader, or NONE.

    ``current_leader_epoch`` is what the client believes (-1: unknown, skip the check):
    older than ours is FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH (KIP-320).
    """
    if partition.leader != ctx.node_id:
        return NOT_LEADER_OR_FOLLOWER
    if current_leader_epoch not in (-1, partition.leader_epoch):
        if current_leader_epoch < partition.leader_epoch:
            return FENCED_LEADER_EPOCH
        return UNKNOWN_LEADER_EPOCH
    return NONE


def node_endpoints(
    state: ClusterState, leaders: set[int], listener: str | None = None
) -> list[dict[str, Any]]:
    """``node_endpoints`` (KIP-951) for the leaders named in NOT_LEADER answers, on the
    listener the request came in on."""
    out = []
    for node_id in sorted(leaders):
        node = state.brokers.get(node_id)
        if node is not None and node.up:
            port = node.port_on(listener)
            out.append(
                {"node_id": node.node_id, "host": node.host, "port": port, "rack": node.rack}
            )
    return out
