"""Consumer groups: list, describe (assignments decoded), delete; their offsets with lag,
altered and deleted. (Stub: issue 14, helper H2.)"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pykaf._admin._outcomes import Outcomes
from pykaf._admin._specs import OffsetSpec
from pykaf._client._async_client import AsyncClient
from pykaf._consumer._records import TopicPartition

__all__ = [
    "GroupDescription",
    "GroupListing",
    "GroupOffset",
    "MemberDescription",
    "alter_group_offsets",
    "delete_group_offsets",
    "delete_groups",
    "describe_groups",
    "list_group_offsets",
    "list_groups",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupListing:
    group_id: str
    state: str | None
    type: str | None
    protocol_type: str
    coordinator: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberDescription:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    assignment: tuple[TopicPartition, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupDescription:
    group_id: str
    state: str
    protocol_type: str
    protocol: str
    members: tuple[MemberDescription, ...]
    coordinator: int


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupOffset:
    """A group's committed offset on one partition (None: none committed), the
    partition's end offset, and the lag between them (None when either is unknown)."""

    topic: str
    partition: int
    committed: int | None
    metadata: str | None
    leader_epoch: int | None
    end_offset: int | None
    lag: int | None


async def list_groups(
    client: AsyncClient,
    *,
    states: Iterable[str] | None,
    types: Iterable[str] | None,
    timeout: float | None,
) -> list[GroupListing]:
    raise NotImplementedError


async def describe_groups(
    client: AsyncClient, group_ids: Iterable[str], *, timeout: float | None
) -> Outcomes[str, GroupDescription]:
    raise NotImplementedError


async def delete_groups(
    client: AsyncClient, group_ids: Iterable[str], *, timeout: float | None
) -> Outcomes[str, None]:
    raise NotImplementedError


async def list_group_offsets(
    client: AsyncClient,
    group_id: str,
    partitions: Iterable[TopicPartition] | None,
    *,
    timeout: float | None,
) -> Outcomes[TopicPartition, GroupOffset]:
    raise NotImplementedError


async def alter_group_offsets(
    client: AsyncClient,
    group_id: str,
    offsets: Mapping[TopicPartition, int | OffsetSpec | str] | None,
    *,
    topics: Iterable[str] | None,
    to: OffsetSpec | str | None,
    timeout: float | None,
) -> Outcomes[TopicPartition, int]:
    raise NotImplementedError


async def delete_group_offsets(
    client: AsyncClient,
    group_id: str,
    partitions: Iterable[TopicPartition],
    *,
    timeout: float | None,
) -> Outcomes[TopicPartition, None]:
    raise NotImplementedError
