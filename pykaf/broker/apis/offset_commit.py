"""OffsetCommit (8): store consumed positions, checked against the group's generation.

Unknown topics or partitions are answered per partition before the group is asked (as
Kafka's request handler does); the group check (coordinator, member, generation,
rebalance) then applies to the rest. v10 names topics by id (KIP-848 era).

v0 and v1 (below Kafka 4's floor, served for old clients): v0 carries no generation or
member id, so it commits as a simple consumer would (generation -1); v1 gives each
partition a commit timestamp, -1 meaning the broker's time, as Kafka 3.x stored it.
"""

from __future__ import annotations

from typing import Any, Final

from pykaf.broker._group_model import NONE
from pykaf.broker._group_offsets import CommittedOffset
from pykaf.broker._groups import coordinator_error, group_coordinator
from pykaf.broker._registry import RequestContext, handles
from pykaf.broker._state import TopicState
from pykaf.broker.apis._common import UNKNOWN_TOPIC_ID, UNKNOWN_TOPIC_OR_PARTITION, now_ms
from pykaf.protocol._messages import Payload

__all__: list[str] = []

OFFSET_METADATA_TOO_LARGE: Final = 12


def _commit_time(part: Any, now: int) -> int:
    stamp = getattr(part, "commit_timestamp", -1)  # v1 only
    return int(stamp) if stamp >= 0 else now


@handles("OffsetCommit")
async def offset_commit(ctx: RequestContext, request: Any) -> Payload:
    state = ctx.state
    coordinator = group_coordinator(state)
    by_id = ctx.api_version >= 10
    group_id = request.group_id
    # (response partition entry, topic, requested partition): known partitions to commit
    todo: list[tuple[dict[str, Any], TopicState, Any]] = []
    topics_out = []
    for requested in request.topics:
        topic = (
            state.topics_by_id.get(requested.topic_id)
            if by_id
            else state.topics.get(requested.name)
        )
        partitions_out = []
        for part in requested.partitions:
            entry = {"partition_index": part.partition_index, "error_code": NONE}
            partitions_out.append(entry)
            if topic is None:
                entry["error_code"] = UNKNOWN_TOPIC_ID if by_id else UNKNOWN_TOPIC_OR_PARTITION
            elif not 0 <= part.partition_index < len(topic.partitions):
                entry["error_code"] = UNKNOWN_TOPIC_OR_PARTITION
            else:
                todo.append((entry, topic, part))
        topics_out.append(
            {
                "name": getattr(requested, "name", ""),
                "topic_id": getattr(requested, "topic_id", None),
                "partitions": partitions_out,
            }
        )
    if todo:
        error = coordinator_error(state, group_id, ctx.node_id)
        if error == NONE:
            error = coordinator.validate_commit(
                group_id=group_id,
                generation=getattr(request, "generation_id_or_member_epoch", -1),
                member_id=getattr(request, "member_id", ""),
                instance_id=getattr(request, "group_instance_id", None),
                version=ctx.api_version,
            )
        commits = []
        now = now_ms()
        max_metadata = coordinator.settings.max_metadata_size
        for entry, topic, part in todo:
            metadata = part.committed_metadata or ""
            if error != NONE:
                entry["error_code"] = error
            elif len(metadata) > max_metadata:
                entry["error_code"] = OFFSET_METADATA_TOO_LARGE
            else:
                value = CommittedOffset(
                    offset=part.committed_offset,
                    leader_epoch=getattr(part, "committed_leader_epoch", -1),
                    metadata=metadata,
                    commit_time_ms=_commit_time(part, now),
                    topic_id=str(topic.topic_id),
                )
                commits.append((topic.name, part.partition_index, value))
        coordinator.offsets.commit(group_id, commits)
    return ctx.respond(throttle_time=0, topics=topics_out)
