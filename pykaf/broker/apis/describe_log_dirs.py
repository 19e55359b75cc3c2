"""DescribeLogDirs (35): the one log directory of each broker and the sizes of the
partitions it holds a replica of. A broker persisting to disk reports its data directory
and the disk's total and usable bytes; an in-memory one reports a ``memory:`` path and -1
(Kafka's "unknown") for the disk sizes."""

from __future__ import annotations

import os
import shutil
from typing import Any, Final

from pykaf.broker._registry import RequestContext, handles
from pykaf.broker.apis._common import NONE
from pykaf.protocol._messages import Payload

__all__: list[str] = []

_UNKNOWN: Final = -1
KAFKA_STORAGE_ERROR: Final = 56


@handles("DescribeLogDirs")
async def describe_log_dirs(ctx: RequestContext, request: Any) -> Payload:
    state = ctx.state
    wanted: dict[str, set[int]] | None = None
    if request.topics is not None:
        wanted = {}
        for t in request.topics:
            wanted.setdefault(t.topic, set()).update(int(p) for p in t.partitions)
    topics = []
    for topic in state.topics.values():
        if wanted is not None and topic.name not in wanted:
            continue
        partitions = [
            {
                "partition_index": p.index,
                "partition_size": p.log.bytes_available(p.log.log_start_offset),
                "offset_lag": 0,  # every replica shares the leader's log
                "is_future_key": False,
            }
            for p in topic.partitions
            if ctx.node_id in p.replicas and (wanted is None or p.index in wanted[topic.name])
        ]
        if partitions:
            topics.append({"name": topic.name, "partitions": partitions})
    error, total, usable = NONE, _UNKNOWN, _UNKNOWN
    if state.data_dir is None:
        path = f"memory:broker-{ctx.node_id}"
    else:
        path = os.fspath(state.data_dir.resolve())
        try:
            usage = shutil.disk_usage(state.data_dir)
            total, usable = usage.total, usage.free
        except OSError:
            error = KAFKA_STORAGE_ERROR
    result = {
        "error_code": error,
        "log_dir": path,
        "topics": topics,
        "total_bytes": total,
        "usable_bytes": usable,
    }
    return ctx.respond(throttle_time=0, error_code=NONE, results=[result])
