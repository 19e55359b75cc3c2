"""Read a topic back over the wire with raw Fetch requests (pykaf's Client), and check
what a producer wrote: nothing lost, nothing duplicated, order per key, murmur2 placement.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from pykaf import Client
from pykaf._producer._partitioner import murmur2_partition
from pykaf.errors import raise_for_code
from pykaf.protocol import Record, build_request, decode_batches

__all__ = ["Check", "create_topic", "read_topic"]

_FETCH_VERSION = 12  # topics by name; every broker we test speaks it


def create_topic(bootstrap: str, topic: str, partitions: int, replication: int = 1) -> None:
    with Client(bootstrap) as client:
        version = client.api_versions().version("CreateTopics")
        response = client.request(
            build_request(
                "CreateTopics",
                version,
                topics=[
                    {
                        "name": topic,
                        "num_partitions": partitions,
                        "replication_factor": replication,
                        "assignments": [],
                        "configs": [],
                    }
                ],
                timeout=10_000,
                validate_only=False,
            ),
            to="controller",
        )
        raise_for_code(int(response.topics[0].error_code), response.topics[0].error_message)


def read_topic(bootstrap: str, topic: str) -> dict[int, list[Record]]:
    """Every record of every partition, from offset 0 to the end."""
    out: dict[int, list[Record]] = {}
    with Client(bootstrap, request_timeout=10) as client:
        info = client.metadata([topic]).topics[topic]
        version = min(_FETCH_VERSION, client.api_versions().version("Fetch"))
        for part in info.partitions:
            records: list[Record] = []
            offset = 0
            while True:
                response = client.request(
                    build_request(
                        "Fetch",
                        version,
                        replica_id=-1,
                        max_wait=0,
                        min_bytes=1,
                        max_bytes=8 << 20,
                        isolation_level=0,
                        session_id=0,
                        session_epoch=-1,
                        topics=[
                            {
                                "topic": topic,
                                "topic_id": info.topic_id,
                                "partitions": [
                                    {
                                        "partition": part.partition,
                                        "fetch_offset": offset,
                                        "partition_max_bytes": 8 << 20,
                                        "current_leader_epoch": -1,
                                        "log_start_offset": -1,
                                        "last_fetched_epoch": -1,
                                    }
                                ],
                            }
                        ],
                        forgotten_topics_data=[],
                        rack_id="",
                    ),
                    to=part.leader,
                )
                answer = response.responses[0].partitions[0]
                raise_for_code(int(answer.error_code))
                fresh = [
                    r
                    for b in decode_batches(answer.records or b"")
                    for r in b.records
                    if r.offset >= offset
                ]
                records.extend(fresh)
                if fresh:
                    offset = fresh[-1].offset + 1
                if offset >= int(answer.high_watermark) or not fresh:
                    break
            out[part.partition] = records
    return out


@dataclass(kw_only=True)
class Check:
    """What was sent: values unique, ``key -> values in send order``."""

    partitions: int
    sent: dict[bytes | None, list[bytes]] = field(default_factory=lambda: defaultdict(list))

    def add(self, key: bytes | None, value: bytes) -> None:
        self.sent[key].append(value)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.sent.values())

    def verify(self, written: dict[int, list[Record]], *, murmur2: bool = True) -> None:
        """None lost, none duplicated, per-key order, keys where murmur2 puts them."""
        seen: dict[bytes | None, list[bytes]] = defaultdict(list)
        values: list[Any] = []
        for partition, records in written.items():
            offsets = [r.offset for r in records]
            assert offsets == sorted(offsets)
            for record in records:
                assert record.value is not None
                values.append(record.value)
                seen[record.key].append(record.value)
                if murmur2 and record.key is not None:
                    assert murmur2_partition(record.key, self.partitions) == partition
        duplicates = len(values) - len(set(values))
        assert duplicates == 0, f"{duplicates} duplicated record(s)"
        lost = self.total - len(values)
        assert lost == 0, f"{lost} lost record(s)"
        for key, sent in self.sent.items():
            assert seen[key] == sent, f"key {key!r}: order or content differs"
