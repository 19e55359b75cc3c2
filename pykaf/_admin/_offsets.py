"""Offsets and records: ListOffsets (earliest, latest, by time, max timestamp) and
DeleteRecords, each sent to the partitions' leaders, one request per broker.

A partition whose leader moved (NOT_LEADER_OR_FOLLOWER, a stale epoch, a broker down) is
asked again after a metadata refresh, bounded by ``_item_retries.settle``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pykaf._admin._calls import send
from pykaf._admin._item_retries import Deadline, Failed, settle
from pykaf._admin._outcomes import Outcomes
from pykaf._admin._specs import OffsetSpec
from pykaf._client._async_client import AsyncClient
from pykaf._client._targets import Leader
from pykaf._consumer._offsets import list_offsets as ask_leaders
from pykaf._consumer._records import TopicPartition
from pykaf._error_codes import error_for_code
from pykaf._errors import BrokerConnectionError, PykafError
from pykaf.protocol._messages import build_request

__all__ = [
    "ListedOffset",
    "check_partitions",
    "delete_records",
    "list_offsets",
    "query_offsets",
]

_LIST_OFFSETS: Final = 2
# ListOffsets' max-timestamp query (-3) exists from v7 (KIP-734); an older broker would
# read -3 as a time before the epoch.
_MAX_TIMESTAMP_VERSION: Final = 7
_UNSUPPORTED_VERSION: Final = 35
_ISOLATION: Final = {"read_uncommitted": 0, "read_committed": 1}
# DeleteRecords' offset -1: "up to the high watermark".
_HIGH_WATERMARK: Final = -1

# (offset, timestamp, leader epoch) as the consumer's ListOffsets helper reports it.
Found = tuple[int, int, int | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class ListedOffset:
    """A ListOffsets answer. ``offset`` is -1 when no record matches (a time after the
    last record's); ``timestamp`` is that record's (None for earliest / latest)."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None
    leader_epoch: int | None


def check_partitions(partitions: object, what: str) -> list[TopicPartition]:
    """``partitions`` as a list of TopicPartition, or the TypeError that says what to fix."""
    if isinstance(partitions, str | bytes | TopicPartition) or not isinstance(partitions, Iterable):
        raise TypeError(f"{what} is an iterable of TopicPartition, not {partitions!r}")
    out = list(partitions)
    bad = [tp for tp in out if not isinstance(tp, TopicPartition)]
    if bad:
        raise TypeError(f"{what}: use TopicPartition(topic, partition), not {bad[:3]!r}")
    return list(dict.fromkeys(out))


def _check_mapping(values: object, what: str) -> Mapping[Any, Any]:
    if not isinstance(values, Mapping):
        raise TypeError(f"{what} is a mapping of TopicPartition to a value, not {values!r}")
    check_partitions(list(values), what)
    return values


def _topics(tps: Iterable[TopicPartition]) -> list[str]:
    return sorted({tp.topic for tp in tps})


async def query_offsets(
    client: AsyncClient,
    queries: Mapping[TopicPartition, int],
    *,
    isolation_level: int,
    deadline: Deadline,
) -> Outcomes[TopicPartition, Found]:
    """ListOffsets for ``{tp: timestamp}`` (-2 earliest, -1 latest, -3 max timestamp,
    else ms) at each leader; what failed for good keeps its own error."""

    async def attempt(pending: list[TopicPartition]) -> dict[TopicPartition, Found | Failed]:
        out: dict[TopicPartition, Found | Failed] = {}
        asked = {}
        for tp in pending:
            if queries[tp] == OffsetSpec.MAX_TIMESTAMP.timestamp:
                refused = await _refuses_max_timestamp(client, tp, deadline)
                if refused is not None:
                    out[tp] = refused
                    continue
            asked[tp] = queries[tp]
        answers = await ask_leaders(
            client, asked, isolation_level=isolation_level, timeout=deadline.request_timeout()
        )
        for tp, answer in answers.items():
            if isinstance(answer, PykafError):
                out[tp] = Failed(answer)
            elif answer is None:  # the leader was not reached: asked again
                out[tp] = Failed(
                    BrokerConnectionError(f"the leader of {tp} did not answer (connection lost)")
                )
            else:
                out[tp] = answer
        return out

    return await settle(
        client, queries, attempt, deadline, what=str, before_retry=_refresh(client, deadline)
    )


def _refresh(client: AsyncClient, deadline: Deadline) -> Any:
    async def refresh(pending: list[TopicPartition]) -> None:
        await client.metadata(_topics(pending), timeout=deadline.request_timeout())

    return refresh


async def _refuses_max_timestamp(
    client: AsyncClient, tp: TopicPartition, deadline: Deadline
) -> Failed | None:
    try:
        versions = await client.api_versions(
            Leader(tp.topic, tp.partition), timeout=deadline.request_timeout()
        )
    except PykafError:
        return None  # the query itself will meet (and report) what is wrong
    if versions.version(_LIST_OFFSETS) >= _MAX_TIMESTAMP_VERSION:
        return None
    said = versions.unsupported(_LIST_OFFSETS, _MAX_TIMESTAMP_VERSION).message
    return Failed(
        error_for_code(
            _UNSUPPORTED_VERSION, f"({tp}: max_timestamp needs ListOffsets v7, Kafka 3.0+) {said}"
        )
    )


async def list_offsets(
    client: AsyncClient,
    queries: Mapping[TopicPartition, OffsetSpec | str],
    *,
    isolation: str,
    timeout: float | None,
) -> Outcomes[TopicPartition, ListedOffset]:
    """Each partition's offset for its spec, asked of its leader (one request per
    broker). ``max_timestamp`` on a broker below ListOffsets v7 fails with
    ``UnsupportedVersionError`` for that partition alone."""
    specs = {tp: OffsetSpec.parse(spec) for tp, spec in _check_mapping(queries, "queries").items()}
    if isolation not in _ISOLATION:
        raise ValueError(f"isolation is one of {sorted(_ISOLATION)}, not {isolation!r}")
    deadline = Deadline(client, timeout)
    found = await query_offsets(
        client,
        {tp: spec.timestamp for tp, spec in specs.items()},
        isolation_level=_ISOLATION[isolation],
        deadline=deadline,
    )
    listed = {
        tp: ListedOffset(
            topic=tp.topic,
            partition=tp.partition,
            offset=offset,
            timestamp=None if timestamp < 0 else timestamp,
            leader_epoch=epoch,
        )
        for tp, (offset, timestamp, epoch) in found.ok.items()
    }
    return Outcomes(listed, found.errors)


async def _by_leader(
    client: AsyncClient, tps: list[TopicPartition], deadline: Deadline
) -> tuple[dict[int, list[TopicPartition]], dict[TopicPartition, Failed]]:
    """``tps`` grouped by their leaders' node ids (metadata refreshed where due), and
    the partitions without a known leader with the reason."""
    cache = client._cluster.cache
    now = asyncio.get_running_loop().time()
    if any(cache.refresh_due(t, now) for t in _topics(tps)):
        await client.metadata(_topics(tps), timeout=deadline.request_timeout())
    nodes: dict[int, list[TopicPartition]] = {}
    failed: dict[TopicPartition, Failed] = {}
    for tp in tps:
        try:
            nodes.setdefault(cache.leader(tp.topic, tp.partition).leader, []).append(tp)
        except PykafError as exc:
            failed[tp] = Failed(exc)
    return nodes, failed


async def delete_records(
    client: AsyncClient,
    before: Mapping[TopicPartition, int],
    *,
    timeout: float | None,
) -> Outcomes[TopicPartition, int]:
    """Delete each partition's records below its offset (-1: up to the high watermark);
    each partition maps to its new low watermark (log start offset)."""
    offsets = dict(_check_mapping(before, "before"))
    bad = {
        str(tp): o
        for tp, o in offsets.items()
        if type(o) is not int or (o < 0 and o != _HIGH_WATERMARK)
    }
    if bad:
        raise ValueError(
            f"delete_records takes an offset >= 0 (or -1: the high watermark) per"
            f" partition (bad: {bad!r})"
        )
    deadline = Deadline(client, timeout)

    async def on_node(node: int, tps: list[TopicPartition]) -> dict[TopicPartition, int | Failed]:
        grouped: dict[str, list[dict[str, int]]] = {}
        for tp in tps:
            grouped.setdefault(tp.topic, []).append(
                {"partition_index": tp.partition, "offset": offsets[tp]}
            )
        request_ms = int(deadline.request_timeout() * 1000)

        def build(version: int) -> Any:
            return build_request(
                "DeleteRecords",
                version,
                topics=[{"name": t, "partitions": ps} for t, ps in grouped.items()],
                timeout=request_ms,
            )

        try:
            _, response = await send(
                client, "DeleteRecords", build, to=node, timeout=deadline.request_timeout()
            )
        except PykafError as exc:
            return {tp: Failed(exc) for tp in tps}
        out: dict[TopicPartition, int | Failed] = {}
        for topic in response.topics:
            for part in topic.partitions:
                tp = TopicPartition(str(topic.name), int(part.partition_index))
                if tp not in offsets:
                    continue
                code = int(part.error_code)
                out[tp] = (
                    Failed(error_for_code(code, f"(DeleteRecords of {tp} below {offsets[tp]})"))
                    if code
                    else int(part.low_watermark)
                )
        return out

    async def attempt(pending: list[TopicPartition]) -> dict[TopicPartition, int | Failed]:
        nodes, out = await _by_leader(client, pending, deadline)
        results: dict[TopicPartition, int | Failed] = dict(out)
        for answer in await asyncio.gather(*(on_node(n, tps) for n, tps in nodes.items())):
            results.update(answer)
        return results

    return await settle(
        client, offsets, attempt, deadline, what=str, before_retry=_refresh(client, deadline)
    )
