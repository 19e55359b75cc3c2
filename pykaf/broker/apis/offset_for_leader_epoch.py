"""OffsetForLeaderEpoch (23): the end offset of a leader epoch (KIP-101/KIP-320).

Consumers ask it after a leader change to check that their position is still valid.
"""

from __future__ import annotations

from typing import Any

from pykaf.broker._registry import RequestContext, handles
from pykaf.broker.apis._common import NONE, UNKNOWN_TOPIC_OR_PARTITION, leader_error
from pykaf.protocol._messages import Payload

__all__: list[str] = []


@handles("OffsetForLeaderEpoch")
async def offset_for_leader_epoch(ctx: RequestContext, request: Any) -> Payload:
    state = ctx.state
    topics = []
    for ot in request.topics:
        partitions = []
        for op in ot.partitions:
            entry: dict[str, Any] = {
                "error_code": NONE,
                "partition": op.partition,
                "leader_epoch": -1,
                "end_offset": -1,
            }
            partitions.append(entry)
            partition = state.partition(ot.topic, op.partition)
            if partition is None:
                entry["error_code"] = UNKNOWN_TOPIC_OR_PARTITION
                continue
            error = leader_error(ctx, partition, op.current_leader_epoch)
            if error != NONE:
                entry["error_code"] = error
                continue
            entry["leader_epoch"], entry["end_offset"] = partition.log.end_offset_for_epoch(
                op.leader_epoch
            )
        topics.append({"topic": ot.topic, "partitions": partitions})
    return ctx.respond(throttle_time=0, topics=topics)
