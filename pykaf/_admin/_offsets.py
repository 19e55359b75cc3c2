"""Offsets and records: ListOffsets (earliest, latest, by time, max timestamp) and
DeleteRecords, each sent to the partitions' leaders. (Stub: issue 14, helper H2.)"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pykaf._admin._outcomes import Outcomes
from pykaf._admin._specs import OffsetSpec
from pykaf._client._async_client import AsyncClient
from pykaf._consumer._records import TopicPartition

__all__ = ["ListedOffset", "delete_records", "list_offsets"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ListedOffset:
    topic: str
    partition: int
    offset: int
    timestamp: int | None
    leader_epoch: int | None


async def list_offsets(
    client: AsyncClient,
    queries: Mapping[TopicPartition, OffsetSpec | str],
    *,
    isolation: str,
    timeout: float | None,
) -> Outcomes[TopicPartition, ListedOffset]:
    raise NotImplementedError


async def delete_records(
    client: AsyncClient,
    before: Mapping[TopicPartition, int],
    *,
    timeout: float | None,
) -> Outcomes[TopicPartition, int]:
    raise NotImplementedError
