"""OffsetDelete (47, KIP-496): forget committed offsets of topics a group does not use.

An active consumer group keeps the offsets of topics its members subscribe to
(GROUP_SUBSCRIBED_TO_TOPIC; every topic when a member's subscription cannot be read,
as Kafka's ``isSubscribedToTopic`` says); an active group of another protocol type
refuses (NON_EMPTY_GROUP); an Empty group may drop any.
"""

from __future__ import annotations

from typing import Any, Final

from pykaf.broker._group_model import GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP, NONE, GroupState
from pykaf.broker._groups import coordinator_error, group_coordinator
from pykaf.broker._registry import RequestContext, handles
from pykaf.broker.apis._common import UNKNOWN_TOPIC_OR_PARTITION
from pykaf.protocol._messages import Payload

__all__: list[str] = []

GROUP_SUBSCRIBED_TO_TOPIC: Final = 86


@handles("OffsetDelete")
async def offset_delete(ctx: RequestContext, request: Any) -> Payload:
    coordinator = group_coordinator(ctx.state)
    group_id = request.group_id
    error = coordinator_error(ctx.state, group_id, ctx.node_id)
    group = coordinator.groups.get(group_id)
    if error == NONE and (group is None or group.state is GroupState.DEAD):
        error = GROUP_ID_NOT_FOUND
    if error != NONE or group is None:
        return ctx.respond(throttle_time=0, error_code=error, topics=[])
    active = group.state is not GroupState.EMPTY
    if active and group.protocol_type != "consumer":
        return ctx.respond(throttle_time=0, error_code=NON_EMPTY_GROUP, topics=[])
    subscribed = group.subscribed_topics() if active else set()
    topics = []
    for requested in request.topics:
        topic = ctx.state.topics.get(requested.name)
        partitions = []
        for part in requested.partitions:
            index = part.partition_index
            if topic is None or not 0 <= index < len(topic.partitions):
                code = UNKNOWN_TOPIC_OR_PARTITION
            elif subscribed is None or requested.name in subscribed:
                code = GROUP_SUBSCRIBED_TO_TOPIC
            else:
                coordinator.offsets.delete(group_id, requested.name, index)
                code = NONE
            partitions.append({"partition_index": index, "error_code": code})
        topics.append({"name": requested.name, "partitions": partitions})
    return ctx.respond(throttle_time=0, error_code=NONE, topics=topics)
