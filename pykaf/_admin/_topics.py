"""Topics: create, delete, list, describe, add partitions.

Creating, deleting and growing go to the controller (CreateTopics, DeleteTopics,
CreatePartitions), retried there when it moved; listing and describing read Metadata.
Each topic's answer is its own: one refused topic never hides the others.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, TypeVar

from pykaf._admin._outcomes import Outcomes
from pykaf._admin._specs import NewTopic
from pykaf._admin._topics_controller import (
    check_names,
    item_error,
    request_timeout_ms,
    to_controller,
)
from pykaf._client._async_client import AsyncClient
from pykaf._client._metadata import TopicInfo
from pykaf._errors import PykafError
from pykaf.protocol._messages import Payload, build_request

__all__ = [
    "PartitionDescription",
    "TopicCreated",
    "TopicDescription",
    "TopicListing",
    "create_partitions",
    "create_topics",
    "delete_topics",
    "describe_topics",
    "list_topics",
]


_UNKNOWN_SERVER_ERROR: Final = -1
_UNANSWERED: Final = "the broker's answer did not mention it"
_V = TypeVar("_V")


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicCreated:
    """A created topic as the broker reports it (CreateTopics v5+ returns the counts and
    the configs; before v5, the counts asked for, -1 for the broker's default, and no
    configs). With ``validate_only`` nothing was created and ``topic_id`` is None."""

    name: str
    topic_id: uuid.UUID | None
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicListing:
    """A topic in ``list_topics``."""

    name: str
    topic_id: uuid.UUID | None
    internal: bool
    partitions: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionDescription:
    """One partition: its leader (-1: none right now), the leader's epoch (-1: the broker
    did not say), replicas, in-sync replicas, replicas offline."""

    partition: int
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    offline_replicas: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicDescription:
    """A topic in ``describe_topics``; ``partitions[i].partition == i``."""

    name: str
    topic_id: uuid.UUID | None
    internal: bool
    partitions: tuple[PartitionDescription, ...]


def _per_topic(
    names: Iterable[str], answers: Mapping[str, Any], result: Callable[[str, Any], _V]
) -> Outcomes[str, _V]:
    """Each asked-for topic's outcome: ``result(name, entry)`` for an entry without an
    error code, else that topic's typed error (a topic the answer left out included)."""
    ok: dict[str, _V] = {}
    errors: dict[str, PykafError] = {}
    for name in names:
        entry = answers.get(name)
        if entry is None:
            errors[name] = item_error(_UNKNOWN_SERVER_ERROR, _UNANSWERED, f"topic {name!r}")
        elif int(entry.error_code):
            message = getattr(entry, "error_message", None)
            errors[name] = item_error(entry.error_code, message, f"topic {name!r}")
        else:
            ok[name] = result(name, entry)
    return Outcomes(ok, errors)


def _new_topics(topics: Iterable[NewTopic | str]) -> list[NewTopic]:
    if isinstance(topics, str | bytes | NewTopic):
        raise TypeError("topics is a list of NewTopic or names; wrap a single one in a list")
    wanted: list[NewTopic] = []
    for given in topics:
        if isinstance(given, str):
            wanted.append(NewTopic(name=given))
        elif isinstance(given, NewTopic):
            wanted.append(given)
        else:
            raise TypeError(f"a topic to create is a NewTopic or a name, not {given!r}")
    check_names([t.name for t in wanted], "topic")
    return wanted


def _creatable(topic: NewTopic) -> dict[str, Any]:
    return {
        "name": topic.name,
        "num_partitions": topic.partitions,
        "replication_factor": topic.replication_factor,
        "assignments": [
            {"partition_index": p, "broker_ids": list(replicas)}
            for p, replicas in sorted((topic.assignments or {}).items())
        ],
        "configs": [{"name": k, "value": v} for k, v in topic.configs.items()],
    }


def _zero_to_none(topic_id: Any) -> uuid.UUID | None:
    # Kafka sends the all-zero UUID for "no id" (and versions without ids send nothing).
    return topic_id if isinstance(topic_id, uuid.UUID) and topic_id.int else None


def _created(topic: NewTopic, entry: Any) -> TopicCreated:
    partitions = int(getattr(entry, "num_partitions", -1))
    replication = int(getattr(entry, "replication_factor", -1))
    if topic.assignments is not None:
        asked_partitions = len(topic.assignments)
        asked_replication = len(next(iter(topic.assignments.values()), ()))
    else:
        asked_partitions, asked_replication = topic.partitions, topic.replication_factor
    configs = {str(c.name): c.value for c in getattr(entry, "configs", None) or ()}
    return TopicCreated(
        name=topic.name,
        topic_id=_zero_to_none(getattr(entry, "topic_id", None)),
        partitions=partitions if partitions >= 0 else asked_partitions,
        replication_factor=replication if replication >= 0 else asked_replication,
        configs=MappingProxyType(
            {k: v for k, v in configs.items() if v is not None} if configs else dict(topic.configs)
        ),
    )


async def create_topics(
    client: AsyncClient,
    topics: Iterable[NewTopic | str],
    *,
    validate_only: bool,
    timeout: float | None,
) -> Outcomes[str, TopicCreated]:
    wanted = {t.name: t for t in _new_topics(topics)}
    if not wanted:
        return Outcomes({}, {})
    timeout_ms = request_timeout_ms(client, timeout)

    def build(version: int, names: Sequence[str]) -> Payload:
        return build_request(
            "CreateTopics",
            version,
            topics=[_creatable(wanted[n]) for n in names],
            timeout=timeout_ms,
            validate_only=validate_only,
        )

    answers = await to_controller(
        client,
        "CreateTopics",
        list(wanted),
        build,
        lambda r: ((str(t.name), t) for t in r.topics),
        timeout=timeout,
    )
    return _per_topic(wanted, answers, lambda name, entry: _created(wanted[name], entry))


async def delete_topics(
    client: AsyncClient, names: Iterable[str], *, timeout: float | None
) -> Outcomes[str, uuid.UUID | None]:
    wanted = check_names(names, "topic")
    if not wanted:
        return Outcomes({}, {})
    timeout_ms = request_timeout_ms(client, timeout)

    def build(version: int, asked: Sequence[str]) -> Payload:
        # v6 (KIP-516) names topics in entries that may carry an id instead; before, a
        # plain list of names.
        return build_request(
            "DeleteTopics",
            version,
            topics=[{"name": n} for n in asked],
            topic_names=list(asked),
            timeout=timeout_ms,
        )

    answers = await to_controller(
        client,
        "DeleteTopics",
        wanted,
        build,
        lambda r: ((str(t.name), t) for t in r.responses if t.name is not None),
        timeout=timeout,
    )
    return _per_topic(
        wanted, answers, lambda _, entry: _zero_to_none(getattr(entry, "topic_id", None))
    )


def _listing(info: TopicInfo) -> TopicListing:
    return TopicListing(
        name=info.name,
        topic_id=info.topic_id,
        internal=info.internal,
        partitions=len(info.partitions),
    )


async def list_topics(
    client: AsyncClient, *, internal: bool, timeout: float | None
) -> dict[str, TopicListing]:
    if not isinstance(internal, bool):
        raise TypeError(f"internal is a bool, not {internal!r}")
    view = await client.metadata(None, timeout=timeout)
    return {
        name: _listing(info)
        for name, info in sorted(view.topics.items())
        if info.error_code == 0 and (internal or not info.internal)
    }


def _description(info: TopicInfo) -> TopicDescription:
    return TopicDescription(
        name=info.name,
        topic_id=info.topic_id,
        internal=info.internal,
        partitions=tuple(
            PartitionDescription(
                partition=p.partition,
                leader=p.leader,
                leader_epoch=p.leader_epoch,
                replicas=p.replicas,
                isr=p.isr,
                offline_replicas=p.offline_replicas,
            )
            for p in info.partitions
        ),
    )


async def describe_topics(
    client: AsyncClient, names: Iterable[str], *, timeout: float | None
) -> Outcomes[str, TopicDescription]:
    wanted = check_names(names, "topic")
    if not wanted:
        return Outcomes({}, {})
    view = await client.metadata(wanted, timeout=timeout)
    return _per_topic(wanted, view.topics, lambda _, info: _description(info))


def _check_totals(totals: Mapping[str, int]) -> dict[str, int]:
    if not isinstance(totals, Mapping):
        raise TypeError(
            f"totals maps topic names to partition counts, like {{'orders': 6}};"
            f" not {type(totals).__name__}"
        )
    check_names(list(totals), "topic")
    for name, count in totals.items():
        if type(count) is not int or count < 1:
            raise ValueError(
                f"topic {name!r}: the new partition count is a total >= 1, not {count!r}"
            )
    return dict(totals)


async def create_partitions(
    client: AsyncClient,
    totals: Mapping[str, int],
    *,
    validate_only: bool,
    timeout: float | None,
) -> Outcomes[str, int]:
    wanted = _check_totals(totals)
    if not wanted:
        return Outcomes({}, {})
    timeout_ms = request_timeout_ms(client, timeout)

    def build(version: int, names: Sequence[str]) -> Payload:
        return build_request(
            "CreatePartitions",
            version,
            topics=[{"name": n, "count": wanted[n], "assignments": None} for n in names],
            timeout=timeout_ms,
            validate_only=validate_only,
        )

    answers = await to_controller(
        client,
        "CreatePartitions",
        list(wanted),
        build,
        lambda r: ((str(t.name), t) for t in r.results),
        timeout=timeout,
    )
    return _per_topic(wanted, answers, lambda name, _: wanted[name])
