"""Shared by the consumer tests: raw batches (data and control) and raw produce."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any

from pykaf._client._async_client import AsyncClient
from pykaf._client._targets import Leader
from pykaf.protocol import ControlType, encode_batch
from pykaf.protocol._messages import build_request

__all__ = [
    "by_partition",
    "control_batch",
    "data_batch",
    "produce_raw",
    "values",
]

TS = 1_700_000_000_000


def values(prefix: str, count: int) -> list[bytes]:
    return [f"{prefix}-{i}".encode() for i in range(count)]


def data_batch(
    vals: Sequence[bytes],
    *,
    base_offset: int = 0,
    producer_id: int = -1,
    base_sequence: int = -1,
    transactional: bool = False,
    compression: str = "none",
    ts: int = TS,
) -> bytes:
    return encode_batch(
        [(b"k", v, [("h", b"x")], ts + i) for i, v in enumerate(vals)],
        base_offset=base_offset,
        producer_id=producer_id,
        producer_epoch=0 if producer_id >= 0 else -1,
        base_sequence=base_sequence,
        transactional=transactional,
        compression=compression,
    )


def control_batch(
    kind: ControlType, *, base_offset: int, producer_id: int, base_sequence: int = -1
) -> bytes:
    key = struct.pack(">hh", 0, int(kind))
    value = struct.pack(">hi", 0, 0)
    return encode_batch(
        [(key, value, [], TS)],
        base_offset=base_offset,
        producer_id=producer_id,
        producer_epoch=0,
        base_sequence=base_sequence,
        transactional=True,
        control=True,
    )


async def produce_raw(client: AsyncClient, topic: str, partition: int, batch: bytes) -> int:
    """Raw Produce of one batch to the partition's leader; the base offset it got."""
    info = (await client.metadata([topic])).topics[topic]
    versions = await client.api_versions()
    request = build_request(
        "Produce",
        versions.version("Produce"),
        transactional_id=None,
        acks=-1,
        timeout=5000,
        topic_data=[
            {
                "name": topic,
                "topic_id": info.topic_id,
                "partition_data": [{"index": partition, "records": batch}],
            }
        ],
    )
    answer = await client.request(request, to=Leader(topic, partition), purpose="produce")
    part = answer.responses[0].partition_responses[0]
    assert int(part.error_code) == 0, f"produce to {topic}-{partition}: {part.error_code}"
    return int(part.base_offset)


def by_partition(records: Iterable[Any]) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {}
    for r in records:
        out.setdefault(r.partition, []).append(r.value)
    return out
