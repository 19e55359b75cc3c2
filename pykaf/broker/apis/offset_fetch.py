"""OffsetFetch (9): committed offsets of a group (v8+: of several groups at once).

A partition without a committed offset answers -1 without an error, as Kafka does, and
so does an unknown topic named by name; ``topics`` null (v2+) means every committed
offset of the group. ``require_stable`` needs no waiting here: there are no pending
transactional commits. v10 names topics by id.
"""

from __future__ import annotations

from typing import Any

from pykaf.broker._group_model import NONE
from pykaf.broker._groups import GroupCoordinator, coordinator_error, group_coordinator
from pykaf.broker._registry import RequestContext, handles
from pykaf.broker.apis._common import UNKNOWN_TOPIC_ID, ZERO_UUID
from pykaf.protocol._messages import Payload

__all__: list[str] = []


def _entry(partition: int, offset: int, epoch: int, metadata: str, error: int) -> dict[str, Any]:
    return {
        "partition_index": partition,
        "committed_offset": offset,
        "committed_leader_epoch": epoch,
        "metadata": metadata,
        "error_code": error,
    }


def _group_topics(
    ctx: RequestContext, coordinator: GroupCoordinator, group_id: str, requested: Any
) -> list[dict[str, Any]]:
    state = ctx.state
    store = coordinator.offsets
    out: list[dict[str, Any]] = []
    if requested is None:
        for name, partitions in sorted(store.all_for(group_id).items()):
            topic = state.topics[name]
            out.append(
                {
                    "name": name,
                    "topic_id": topic.topic_id,
                    "partitions": [
                        _entry(p, v.offset, v.leader_epoch, v.metadata, NONE)
                        for p, v in sorted(partitions.items())
                    ],
                }
            )
        return out
    by_id = ctx.api_version >= 10
    for wanted in requested:
        topic_name: str | None = wanted.name if not by_id else None
        if by_id:
            found = state.topics_by_id.get(wanted.topic_id)
            topic_name = found.name if found is not None else None
        entries = []
        for index in wanted.partition_indexes:
            value = store.get(group_id, topic_name, index) if topic_name is not None else None
            if value is None:
                error = UNKNOWN_TOPIC_ID if topic_name is None else NONE
                entries.append(_entry(index, -1, -1, "", error))
            else:
                entries.append(
                    _entry(index, value.offset, value.leader_epoch, value.metadata, NONE)
                )
        out.append(
            {
                "name": topic_name or "",
                "topic_id": getattr(wanted, "topic_id", ZERO_UUID),
                "partitions": entries,
            }
        )
    return out


@handles("OffsetFetch")
async def offset_fetch(ctx: RequestContext, request: Any) -> Payload:
    coordinator = group_coordinator(ctx.state)
    if ctx.api_version >= 8:
        groups = []
        for group in request.groups:
            error = coordinator_error(ctx.state, group.group_id, ctx.node_id)
            topics = (
                _group_topics(ctx, coordinator, group.group_id, group.topics)
                if error == NONE
                else []
            )
            groups.append({"group_id": group.group_id, "topics": topics, "error_code": error})
        return ctx.respond(throttle_time=0, groups=groups)
    error = coordinator_error(ctx.state, request.group_id, ctx.node_id)
    if error == NONE:
        topics = _group_topics(ctx, coordinator, request.group_id, request.topics)
    elif ctx.api_version < 2:
        # No top-level error code before v2: every requested partition carries it.
        topics = [
            {
                "name": t.name,
                "partitions": [_entry(p, -1, -1, "", error) for p in t.partition_indexes],
            }
            for t in request.topics or ()
        ]
    else:
        topics = []
    return ctx.respond(throttle_time=0, topics=topics, error_code=error)
