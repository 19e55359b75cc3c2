"""Request builders shared by the asyncio client tests (plain values in, kio requests out)."""

from __future__ import annotations

import uuid
from typing import Any

from pykaf.protocol._messages import build_request


def produce(
    version: int, topic: str, topic_id: uuid.UUID | None, partition: int, batch: bytes
) -> Any:
    return build_request(
        "Produce",
        version,
        transactional_id=None,
        acks=-1,
        timeout=5000,
        topic_data=[
            {
                "name": topic,
                "topic_id": topic_id,
                "partition_data": [{"index": partition, "records": batch}],
            }
        ],
    )


def fetch(
    version: int,
    topic: str,
    topic_id: uuid.UUID | None,
    partition: int,
    offset: int = 0,
    max_wait_ms: int = 100,
) -> Any:
    return build_request(
        "Fetch",
        version,
        cluster_id=None,
        replica_id=-1,
        replica_state={"replica_id": -1, "replica_epoch": -1},
        max_wait=max_wait_ms,
        min_bytes=1,
        max_bytes=1 << 20,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=[
            {
                "topic": topic,
                "topic_id": topic_id,
                "partitions": [
                    {
                        "partition": partition,
                        "current_leader_epoch": -1,
                        "fetch_offset": offset,
                        "last_fetched_epoch": -1,
                        "log_start_offset": -1,
                        "partition_max_bytes": 1 << 20,
                        "replica_directory_id": None,
                    }
                ],
            }
        ],
        forgotten_topics_data=[],
        rack_id="",
    )


def list_offsets(version: int, topic: str, partition: int, timestamp: int) -> Any:
    return build_request(
        "ListOffsets",
        version,
        replica_id=-1,
        isolation_level=0,
        timeout_ms=5000,
        timeout=5000,
        topics=[
            {
                "name": topic,
                "partitions": [
                    {
                        "partition_index": partition,
                        "timestamp": timestamp,
                        "current_leader_epoch": -1,
                    }
                ],
            }
        ],
    )


def metadata(version: int, topics: list[str] | None) -> Any:
    return build_request(
        "Metadata",
        version,
        topics=None if topics is None else [{"name": t, "topic_id": None} for t in topics],
        allow_auto_topic_creation=False,
        include_cluster_authorized_operations=False,
        include_topic_authorized_operations=False,
    )


def create_topics(version: int, names: list[str], partitions: int = 1) -> Any:
    return build_request(
        "CreateTopics",
        version,
        topics=[
            {
                "name": name,
                "num_partitions": partitions,
                "replication_factor": 1,
                "assignments": [],
                "configs": [],
            }
            for name in names
        ],
        timeout=10_000,
        validate_only=False,
    )
