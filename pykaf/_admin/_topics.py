"""Topics: create, delete, list, describe, add partitions. (Stub: issue 14, helper H1.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pykaf._admin._outcomes import Outcomes
from pykaf._admin._specs import NewTopic
from pykaf._client._async_client import AsyncClient

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


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicCreated:
    """A created topic as the broker reports it (CreateTopics v5+ returns the configs)."""

    name: str
    topic_id: uuid.UUID | None
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicListing:
    name: str
    topic_id: uuid.UUID | None
    internal: bool
    partitions: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionDescription:
    partition: int
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    offline_replicas: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicDescription:
    name: str
    topic_id: uuid.UUID | None
    internal: bool
    partitions: tuple[PartitionDescription, ...]


async def create_topics(
    client: AsyncClient,
    topics: Iterable[NewTopic | str],
    *,
    validate_only: bool,
    timeout: float | None,
) -> Outcomes[str, TopicCreated]:
    raise NotImplementedError


async def delete_topics(
    client: AsyncClient, names: Iterable[str], *, timeout: float | None
) -> Outcomes[str, uuid.UUID | None]:
    raise NotImplementedError


async def list_topics(
    client: AsyncClient, *, internal: bool, timeout: float | None
) -> dict[str, TopicListing]:
    raise NotImplementedError


async def describe_topics(
    client: AsyncClient, names: Iterable[str], *, timeout: float | None
) -> Outcomes[str, TopicDescription]:
    raise NotImplementedError


async def create_partitions(
    client: AsyncClient,
    totals: Mapping[str, int],
    *,
    validate_only: bool,
    timeout: float | None,
) -> Outcomes[str, int]:
    raise NotImplementedError
