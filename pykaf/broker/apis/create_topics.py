"""CreateTopics (19): partitions, replication factor, explicit assignments, configs."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pykaf._error_codes import error_for_code
from pykaf._errors import BrokerError
from pykaf.broker._configs import TOPIC_CONFIGS, ConfigSource
from pykaf.broker._registry import RequestContext, handles
from pykaf.broker._state import ClusterState, TopicState
from pykaf.broker.apis._common import INVALID_REPLICA_ASSIGNMENT, INVALID_REQUEST, NONE
from pykaf.protocol._messages import Payload

__all__: list[str] = []


def _config_entries(topic: TopicState) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "value": topic.config(name),
            "read_only": False,
            "config_source": ConfigSource.DYNAMIC_TOPIC_CONFIG
            if name in topic.configs
            else ConfigSource.DEFAULT_CONFIG,
            "is_sensitive": False,
        }
        for name in TOPIC_CONFIGS
    ]


def _assignment(state: ClusterState, ct: Any) -> list[tuple[int, ...]] | None:
    """Explicit replica lists, checked as Kafka does; None when the request has none."""
    if not ct.assignments:
        return None
    if ct.num_partitions != -1 or ct.replication_factor != -1:
        raise error_for_code(
            INVALID_REQUEST,
            "Both numPartitions or replicationFactor and replicasAssignments were set.",
        )
    by_index = {a.partition_index: tuple(a.broker_ids) for a in ct.assignments}
    if sorted(by_index) != list(range(len(by_index))):
        raise error_for_code(INVALID_REPLICA_ASSIGNMENT, "Partitions must be numbered 0..n-1.")
    lists = [by_index[i] for i in range(len(by_index))]
    for replicas in lists:
        if not replicas or len(set(replicas)) != len(replicas):
            raise error_for_code(INVALID_REPLICA_ASSIGNMENT, "A replica list is empty or repeats.")
        unknown = [r for r in replicas if r not in state.brokers]
        if unknown:
            raise error_for_code(INVALID_REPLICA_ASSIGNMENT, f"Unknown broker ids {unknown}.")
    return lists


@handles("CreateTopics")
async def create_topics(ctx: RequestContext, request: Any) -> Payload:
    state = ctx.state
    counts = Counter(ct.name for ct in request.topics)
    results = []
    for ct in request.topics:
        result: dict[str, Any] = {
            "name": ct.name,
            "error_code": NONE,
            "error_message": None,
            "num_partitions": -1,
            "replication_factor": -1,
            "configs": [],
        }
        results.append(result)
        if counts[ct.name] > 1:
            result["error_code"] = INVALID_REQUEST
            result["error_message"] = f"Create topics request contains duplicate topic {ct.name}."
            continue
        configs = {c.name: c.value for c in ct.configs}
        try:
            assignment = _assignment(state, ct)
            count = len(assignment) if assignment else ct.num_partitions
            replication = len(assignment[0]) if assignment else ct.replication_factor
            if request.validate_only:
                partitions, replication, _kept = state.check_new_topic(
                    ct.name, count, replication, configs
                )
                result["num_partitions"] = partitions
                result["replication_factor"] = replication
                continue
            topic = state.create_topic(ct.name, count, replication, configs, assignment=assignment)
        except BrokerError as exc:
            result["error_code"] = exc.code
            result["error_message"] = exc.message
            continue
        result["topic_id"] = topic.topic_id
        result["num_partitions"] = len(topic.partitions)
        result["replication_factor"] = len(topic.partitions[0].replicas)
        result["configs"] = _config_entries(topic)
    return ctx.respond(throttle_time=0, topics=results)
