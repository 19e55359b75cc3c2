"""ListOffsets (2): earliest (-2), latest (-1), max timestamp (-3), by timestamp."""

from __future__ import annotations

from typing import Any, Final

from pykaf.broker._registry import RequestContext, handles
from pykaf.broker._state import PartitionState
from pykaf.broker.apis._common import NONE, UNKNOWN_TOPIC_OR_PARTITION, leader_error
from pykaf.protocol._messages import Payload

__all__: list[str] = []

LATEST: Final = -1
EARLIEST: Final = -2
MAX_TIMESTAMP: Final = -3  # v7+ (KIP-734)
EARLIEST_LOCAL: Final = -4  # v8+ (KIP-405): no tiered storage here, so the earliest
EARLIEST_PENDING_UPLOAD: Final = -5  # v9+ (KIP-1023): nothing is ever uploaded


def _lookup(partition: PartitionState, timestamp: int) -> tuple[int, int]:
    """``(offset, timestamp)`` for a ListOffsets timestamp; ``(-1, -1)`` when none."""
    log = partition.log
    if timestamp == LATEST:
        return log.high_watermark, -1
    if timestamp in (EARLIEST, EARLIEST_LOCAL):
        return log.log_start_offset, -1
    if timestamp == EARLIEST_PENDING_UPLOAD:
        return -1, -1
    if timestamp == MAX_TIMESTAMP:
        found = log.max_timestamp_offset()
    else:
        found = log.offset_for_timestamp(timestamp)
    return found if found is not None else (-1, -1)


@handles("ListOffsets")
async def list_offsets(ctx: RequestContext, request: Any) -> Payload:
    state = ctx.state
    topics = []
    for lt in request.topics:
        partitions = []
        for lp in lt.partitions:
            entry: dict[str, Any] = {
                "partition_index": lp.partition_index,
                "error_code": NONE,
                "timestamp": -1,
                "offset": -1,
                "leader_epoch": -1,
            }
            partition = state.partition(lt.name, lp.partition_index)
            if partition is None:
                entry["error_code"] = UNKNOWN_TOPIC_OR_PARTITION
            else:
                error = leader_error(ctx, partition, getattr(lp, "current_leader_epoch", -1))
                if error != NONE:
                    entry["error_code"] = error
                else:
                    entry["offset"], entry["timestamp"] = _lookup(partition, lp.timestamp)
                    entry["leader_epoch"] = partition.leader_epoch
            partitions.append(entry)
        topics.append({"name": lt.name, "partitions": partitions})
    return ctx.respond(throttle_time=0, topics=topics)
