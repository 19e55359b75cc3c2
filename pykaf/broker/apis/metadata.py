"""Metadata (3): brokers that are up, topics with leaders, epochs and ids; auto-creation."""

from __future__ import annotations

from typing import Any, Final

from pykaf.broker._registry import RequestContext, handles
from pykaf.broker._state import ClusterState, TopicState, validate_topic_name
from pykaf.broker.apis._common import (
    INVALID_TOPIC_EXCEPTION,
    LEADER_NOT_AVAILABLE,
    NONE,
    UNKNOWN_TOPIC_ID,
    UNKNOWN_TOPIC_OR_PARTITION,
    ZERO_UUID,
)
from pykaf.protocol._messages import Payload

__all__: list[str] = []

# Metadata's "not requested" marker for authorized operations (Integer.MIN_VALUE).
_NOT_REQUESTED: Final = -(2**31)
# Every topic operation: READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS,
# ALTER_CONFIGS (AclOperation codes 3-8, 10, 11) -- there is no authorization here.
_ALL_TOPIC_OPERATIONS: Final = sum(1 << op for op in (3, 4, 5, 6, 7, 8, 10, 11))


def _topic_entry(state: ClusterState, topic: TopicState, operations: int) -> dict[str, Any]:
    partitions = []
    for p in topic.partitions:
        up = [r for r in p.replicas if state.brokers[r].up]
        partitions.append(
            {
                "error_code": NONE if p.leader >= 0 else LEADER_NOT_AVAILABLE,
                "partition_index": p.index,
                "leader_id": p.leader,
                "leader_epoch": p.leader_epoch,
                "replica_nodes": list(p.replicas),
                "isr_nodes": up,
                "offline_replicas": [r for r in p.replicas if r not in up],
            }
        )
    return {
        "error_code": NONE,
        "name": topic.name,
        "topic_id": topic.topic_id,
        "is_internal": False,
        "partitions": partitions,
        "topic_authorized_operations": operations,
    }


def _missing(name: str | None, code: int, topic_id: Any = ZERO_UUID) -> dict[str, Any]:
    return {
        "error_code": code,
        "name": name,
        "topic_id": topic_id,
        "is_internal": False,
        "partitions": [],
    }


@handles("Metadata")
async def metadata(ctx: RequestContext, request: Any) -> Payload:
    state = ctx.state
    version = ctx.api_version
    wanted_ops = version >= 8 and request.include_topic_authorized_operations
    operations = _ALL_TOPIC_OPERATIONS if wanted_ops else _NOT_REQUESTED
    # v0: an empty list means every topic; v1+: null means every topic.
    everything = request.topics is None or (version == 0 and not request.topics)
    allow_create = state.auto_create_topics and (
        version < 4 or bool(request.allow_auto_topic_creation)
    )
    topics: list[dict[str, Any]] = []
    if everything:
        topics = [_topic_entry(state, t, operations) for t in state.topics.values()]
    else:
        for wanted in request.topics:
            name = wanted.name
            topic_id = getattr(wanted, "topic_id", None)
            if name is None:
                by_id = state.topics_by_id.get(topic_id) if topic_id else None
                if by_id is None:
                    topics.append(_missing(None, UNKNOWN_TOPIC_ID, topic_id or ZERO_UUID))
                else:
                    topics.append(_topic_entry(state, by_id, operations))
                continue
            topic = state.topics.get(name)
            if topic is None:
                if validate_topic_name(name) is not None:
                    topics.append(_missing(name, INVALID_TOPIC_EXCEPTION))
                    continue
                if allow_create:
                    topic = state.auto_create(name)
            if topic is None:
                topics.append(_missing(name, UNKNOWN_TOPIC_OR_PARTITION))
            else:
                topics.append(_topic_entry(state, topic, operations))
    listener = ctx.connection.listener
    brokers = [
        {"node_id": n.node_id, "host": n.host, "port": n.port_on(listener), "rack": n.rack}
        for n in state.up_brokers()
    ]
    return ctx.respond(
        throttle_time=0,
        brokers=brokers,
        cluster_id=state.cluster_id,
        controller_id=state.controller_id,
        topics=topics,
        cluster_authorized_operations=_NOT_REQUESTED,
        error_code=NONE,
    )
