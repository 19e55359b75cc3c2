"""DeleteRecords (21): move a partition's log start offset forward."""

from __future__ import annotations

from typing import Any

from pykaf.broker._registry import RequestContext, handles
from pykaf.broker.apis._common import (
    NONE,
    OFFSET_OUT_OF_RANGE,
    UNKNOWN_TOPIC_OR_PARTITION,
    leader_error,
)
from pykaf.protocol._messages import Payload

__all__: list[str] = []

_HIGH_WATERMARK = -1  # "delete everything up to the high watermark"


@handles("DeleteRecords")
async def delete_records(ctx: RequestContext, request: Any) -> Payload:
    state = ctx.state
    topics = []
    moved = False
    for dt in request.topics:
        partitions = []
        for dp in dt.partitions:
            entry: dict[str, Any] = {
                "partition_index": dp.partition_index,
                "low_watermark": -1,
                "error_code": NONE,
            }
            partitions.append(entry)
            partition = state.partition(dt.name, dp.partition_index)
            if partition is None:
                entry["error_code"] = UNKNOWN_TOPIC_OR_PARTITION
                continue
            error = leader_error(ctx, partition, -1)
            log = partition.log
            offset = log.high_watermark if dp.offset == _HIGH_WATERMARK else dp.offset
            if error == NONE and not 0 <= offset <= log.high_watermark:
                error = OFFSET_OUT_OF_RANGE
            if error != NONE:
                entry["error_code"] = error
                continue
            before = log.log_start_offset
            entry["low_watermark"] = log.delete_records(offset)
            moved = moved or log.log_start_offset != before
        topics.append({"name": dt.name, "partitions": partitions})
    if moved:
        state.save()  # log start offsets live in the metadata document
    return ctx.respond(throttle_time=0, topics=topics)
