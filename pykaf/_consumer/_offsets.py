"""Offset lookups (ListOffsets): earliest, latest, by timestamp, at each leader's version.

``list_offsets`` asks once (one request per leader, in parallel) and reports per partition;
``lookup_offsets`` retries what can be retried (a leader that moved or is not reachable:
the metadata is refreshed) up to a deadline, and raises what cannot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

from pykaf._client._async_client import AsyncClient
from pykaf._consumer._records import TopicPartition
from pykaf._error_codes import error_for_code
from pykaf._errors import BrokerConnectionError, KafkaTimeoutError, PykafError
from pykaf.protocol._messages import build_request

__all__ = ["ListOffsetsAnswer", "list_offsets", "lookup_offsets"]

_LIST_OFFSETS: Final = 2

ListOffsetsAnswer = tuple[int, int, int | None] | PykafError | None


async def list_offsets(
    client: AsyncClient,
    queries: dict[TopicPartition, int],
    *,
    isolation_level: int = 0,
    timeout: float | None = None,
) -> dict[TopicPartition, ListOffsetsAnswer]:
    """ListOffsets for ``{tp: target}`` (target: -2 earliest, -1 latest, or a timestamp
    in ms), one request per leader, at the version each leader speaks.

    Each answer is ``(offset, timestamp, leader_epoch)`` (offset -1: no record at or after
    that timestamp), or the partition's ``BrokerError`` (retriable ones mean "ask again
    after a metadata refresh"), or None when its leader could not be asked.
    """
    cache = client._cluster.cache
    topics = sorted({tp.topic for tp in queries})
    loop = asyncio.get_running_loop()
    if any(cache.refresh_due(t, loop.time()) for t in topics):
        await client.metadata(topics, timeout=timeout)
    by_node: dict[int, list[TopicPartition]] = {}
    out: dict[TopicPartition, ListOffsetsAnswer] = {}
    for tp in queries:
        try:
            part = cache.leader(tp.topic, tp.partition)
        except PykafError as exc:
            out[tp] = exc
            continue
        by_node.setdefault(part.leader, []).append(tp)

    async def ask(node: int, tps: list[TopicPartition]) -> None:
        try:
            versions = await client.api_versions(node, timeout=timeout)
            grouped: dict[str, list[dict[str, Any]]] = {}
            for tp in tps:
                info = cache.topic(tp.topic)
                epoch = -1
                if info is not None and tp.partition < len(info.partitions):
                    epoch = info.partitions[tp.partition].leader_epoch
                grouped.setdefault(tp.topic, []).append(
                    {
                        "partition_index": tp.partition,
                        "current_leader_epoch": epoch,
                        "timestamp": queries[tp],
                    }
                )
            request = build_request(
                _LIST_OFFSETS,
                versions.version(_LIST_OFFSETS),
                replica_id=-1,
                isolation_level=isolation_level,
                timeout_ms=30000,
                timeout=30000,
                topics=[{"name": n, "partitions": ps} for n, ps in grouped.items()],
            )
            response = await client.request(request, to=node, timeout=timeout)
        except (BrokerConnectionError, KafkaTimeoutError):
            for tp in tps:
                out[tp] = None
            return
        wanted = set(tps)
        for topic in response.topics:
            for part in topic.partitions:
                tp = TopicPartition(topic.name, int(part.partition_index))
                if tp not in wanted:
                    continue
                wanted.discard(tp)
                code = int(part.error_code)
                if code:
                    out[tp] = error_for_code(code, f"(ListOffsets for {tp} at {queries[tp]})")
                else:
                    epoch = int(getattr(part, "leader_epoch", -1))
                    out[tp] = (int(part.offset), int(part.timestamp), epoch if epoch >= 0 else None)
        for tp in wanted:
            out[tp] = None

    await asyncio.gather(*(ask(node, tps) for node, tps in by_node.items()))
    return out


async def lookup_offsets(
    client: AsyncClient,
    queries: Mapping[TopicPartition, int],
    *,
    isolation_level: int,
    timeout: float,
    retry_backoff: float,
) -> dict[TopicPartition, tuple[int, int, int | None]]:
    """``list_offsets`` until every partition is answered: retriable failures are asked
    again after ``retry_backoff`` and a metadata refresh, up to ``timeout`` seconds
    (then ``KafkaTimeoutError`` naming the last error); others are raised."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = dict(queries)
    out: dict[TopicPartition, tuple[int, int, int | None]] = {}
    last: PykafError | None = None
    while pending:
        answers = await list_offsets(
            client,
            pending,
            isolation_level=isolation_level,
            timeout=max(0.001, deadline - loop.time()),
        )
        for tp, answer in answers.items():
            if isinstance(answer, tuple):
                out[tp] = answer
                del pending[tp]
            elif isinstance(answer, PykafError):
                last = answer
                if not getattr(answer, "retriable", False):
                    raise answer
        if pending:
            if loop.time() + retry_backoff >= deadline:
                raise KafkaTimeoutError(
                    f"no offsets for {', '.join(map(str, pending))} within the timeout"
                    + (f" (last error: {last})" if last is not None else "")
                )
            await asyncio.sleep(retry_backoff)
            await client.metadata(sorted({tp.topic for tp in pending}))
    return out
