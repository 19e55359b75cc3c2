"""The cluster: brokers, controller, cluster id; API versions per broker; log dirs.

DescribeCluster (Kafka 2.8+) where the broker has it, Metadata otherwise; ApiVersions as
negotiated on each broker's connection; DescribeLogDirs of each broker asked (a broker
without it fails alone, with UNSUPPORTED_VERSION).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from pykaf._admin._calls import send
from pykaf._admin._cluster_versions import has_api, require_api
from pykaf._admin._outcomes import Outcomes
from pykaf._admin._topics_controller import item_error
from pykaf._client._async_client import AsyncClient
from pykaf._client._metadata import BrokerInfo
from pykaf._client._targets import Target
from pykaf._client._versions import BrokerApiVersions
from pykaf._errors import BrokerError, PykafError
from pykaf.protocol._messages import build_request

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
    """The brokers that are up, the controller's node id (None: none known) and the
    cluster id (None from a broker too old to say)."""

    cluster_id: str | None
    controller_id: int | None
    brokers: tuple[BrokerInfo, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class LogDirPartition:
    """A partition replica in a log dir: its size in bytes and how far it lags behind the
    leader (0 on the leader)."""

    topic: str
    partition: int
    size: int
    offset_lag: int
    is_future: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class LogDirDescription:
    """A broker's log directory; disk sizes are None where the broker does not say
    (before DescribeLogDirs v4, or -1). ``error``: the directory's own error (an offline
    disk), the others still described."""

    path: str
    partitions: tuple[LogDirPartition, ...]
    total_bytes: int | None
    usable_bytes: int | None
    error: BrokerError | None = field(default=None, compare=False)


_BROKERS_ENDPOINT: Final = 1
_K = TypeVar("_K")
_V = TypeVar("_V")


def _broker(entry: Any) -> BrokerInfo:
    return BrokerInfo(
        node_id=int(entry.broker_id),
        host=str(entry.host),
        port=int(entry.port),
        rack=entry.rack,
    )


async def describe_cluster(client: AsyncClient, *, timeout: float | None) -> ClusterDescription:
    versions = await client.api_versions(timeout=timeout)
    if has_api(versions, "DescribeCluster"):
        to: Target = versions.node_id if versions.node_id is not None else "any"
        _version, response = await send(
            client,
            "DescribeCluster",
            lambda v: build_request(
                "DescribeCluster",
                v,
                include_cluster_authorized_operations=False,
                endpoint_type=_BROKERS_ENDPOINT,
                include_fenced_brokers=False,
            ),
            to=to,
            timeout=timeout,
        )
        if int(response.error_code):
            raise item_error(response.error_code, response.error_message, "DescribeCluster")
        controller = int(response.controller_id)
        return ClusterDescription(
            cluster_id=str(response.cluster_id),
            controller_id=controller if controller >= 0 else None,
            brokers=tuple(sorted(map(_broker, response.brokers), key=lambda b: b.node_id)),
        )
    view = await client.metadata([], timeout=timeout)
    return ClusterDescription(
        cluster_id=view.cluster_id,
        controller_id=view.controller_id,
        brokers=tuple(view.brokers[n] for n in sorted(view.brokers)),
    )


async def _each(keys: Iterable[_K], call: Callable[[_K], Awaitable[_V]]) -> Outcomes[_K, _V]:
    """``call(key)`` for every key side by side; a key whose call fails with a pykaf
    error maps to that error, the others to their results."""
    listed = list(keys)
    results = await asyncio.gather(*(call(k) for k in listed), return_exceptions=True)
    ok: dict[_K, _V] = {}
    errors: dict[_K, PykafError] = {}
    for key, result in zip(listed, results, strict=True):
        if isinstance(result, PykafError):
            errors[key] = result
        elif isinstance(result, BaseException):
            raise result
        else:
            ok[key] = result
    return Outcomes(ok, errors)


async def _node_ids(client: AsyncClient, timeout: float | None) -> list[int]:
    view = await client.metadata([], timeout=timeout)
    return sorted(view.brokers)


async def api_versions(
    client: AsyncClient, *, timeout: float | None
) -> Outcomes[int, BrokerApiVersions]:
    async def one(node_id: int) -> BrokerApiVersions:
        return await client.api_versions(node_id, timeout=timeout)

    return await _each(await _node_ids(client, timeout), one)


def _check_brokers(brokers: Iterable[int]) -> list[int]:
    if isinstance(brokers, int | str | bytes):
        raise TypeError("brokers is a list of node ids; wrap a single one in a list")
    listed = list(brokers)
    for node_id in listed:
        if type(node_id) is not int or node_id < 0:
            raise ValueError(f"a broker is named by its node id, an int >= 0; not {node_id!r}")
    repeated = sorted({n for n in listed if listed.count(n) > 1})
    if repeated:
        raise ValueError(f"each broker may be named once; repeated: {repeated}")
    return listed


def _size(value: Any) -> int | None:
    number = int(value)
    return number if number >= 0 else None


def _log_dir(node_id: int, entry: Any) -> LogDirDescription:
    code = int(entry.error_code)
    return LogDirDescription(
        path=str(entry.log_dir),
        partitions=tuple(
            LogDirPartition(
                topic=str(t.name),
                partition=int(p.partition_index),
                size=int(p.partition_size),
                offset_lag=int(p.offset_lag),
                is_future=bool(p.is_future_key),
            )
            for t in entry.topics
            for p in t.partitions
        ),
        total_bytes=_size(getattr(entry, "total_bytes", -1)),
        usable_bytes=_size(getattr(entry, "usable_bytes", -1)),
        error=item_error(code, None, f"broker {node_id} log dir {entry.log_dir}") if code else None,
    )


async def describe_log_dirs(
    client: AsyncClient, brokers: Iterable[int] | None, *, timeout: float | None
) -> Outcomes[int, tuple[LogDirDescription, ...]]:
    node_ids = await _node_ids(client, timeout) if brokers is None else _check_brokers(brokers)

    async def one(node_id: int) -> tuple[LogDirDescription, ...]:
        await require_api(client, "DescribeLogDirs", node_id, timeout=timeout)
        _version, response = await send(
            client,
            "DescribeLogDirs",
            lambda v: build_request("DescribeLogDirs", v, topics=None),
            to=node_id,
            timeout=timeout,
        )
        code = int(getattr(response, "error_code", 0))
        if code:
            raise item_error(code, None, f"broker {node_id}")
        return tuple(_log_dir(node_id, entry) for entry in response.results)

    return await _each(node_ids, one)
