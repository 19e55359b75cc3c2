"""The cluster: brokers, controller, cluster id; API versions per broker; log dirs.
(Stub: issue 14, helper H1.)"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pykaf._admin._outcomes import Outcomes
from pykaf._client._async_client import AsyncClient
from pykaf._client._metadata import BrokerInfo
from pykaf._client._versions import BrokerApiVersions

__all__ = [
    "ClusterDescription",
    "LogDirDescription",
    "LogDirPartition",
    "api_versions",
    "describe_cluster",
    "describe_log_dirs",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterDescription:
    cluster_id: str | None
    controller_id: int | None
    brokers: tuple[BrokerInfo, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class LogDirPartition:
    topic: str
    partition: int
    size: int
    offset_lag: int
    is_future: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class LogDirDescription:
    path: str
    partitions: tuple[LogDirPartition, ...]
    total_bytes: int | None
    usable_bytes: int | None


async def describe_cluster(client: AsyncClient, *, timeout: float | None) -> ClusterDescription:
    raise NotImplementedError


async def api_versions(
    client: AsyncClient, *, timeout: float | None
) -> Outcomes[int, BrokerApiVersions]:
    raise NotImplementedError


async def describe_log_dirs(
    client: AsyncClient, brokers: Iterable[int] | None, *, timeout: float | None
) -> Outcomes[int, tuple[LogDirDescription, ...]]:
    raise NotImplementedError
