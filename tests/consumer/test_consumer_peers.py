"""The consumer against real peers: librdkafka's mock cluster (written by confluent-kafka,
every codec, transactions' control batches, leaders moved, brokers down and up) and tansu.

Quirks of the mock cluster met here: its transaction markers carry a CRC of 0 (so they are
read with ``check_crcs=False``) and its Fetch answers name no aborted transactions (so it
cannot tell read_committed from read_uncommitted; the embedded-broker test covers that).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from confluent_kafka import Producer
from consumer_helpers import by_partition
from peers import MockCluster, Tansu

from pykaf._consumer._async_consumer import AsyncConsumer
from pykaf._consumer._consumer import Consumer
from pykaf._consumer._records import ConsumerRecord, TopicPartition

pytestmark = pytest.mark.peer

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
FAST = {"retry_backoff": 0.02, "reconnect_backoff": 0.02, "reconnect_backoff_max": 0.2}
LIMIT = 30.0


def produce(bootstrap: str, topic: str, items: list[tuple[int, bytes]], **config: object) -> None:
    """confluent-kafka produces ``(partition, value)`` in order and waits for every ack."""
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 3, "linger.ms": 2, **config})
    failed: list[object] = []
    for partition, value in items:
        producer.produce(
            topic,
            value,
            key=b"k",
            partition=partition,
            on_delivery=lambda err, _msg: failed.append(err) if err else None,
        )
    assert producer.flush(20) == 0
    assert not failed, failed


def check_offsets(records: list[ConsumerRecord]) -> None:
    last: dict[int, int] = {}
    for r in records:
        if r.partition in last:
            assert r.offset > last[r.partition]
        last[r.partition] = r.offset


async def test_every_codec_from_confluent_12_partitions(mock_cluster: MockCluster) -> None:
    mock_cluster.create_topic("codecs", 12)
    expected: dict[int, list[bytes]] = {}
    for codec in CODECS:
        items = [(p, f"{codec}-{p}-{i}".encode()) for p in range(12) for i in range(30)]
        await asyncio.to_thread(
            produce, mock_cluster.bootstrap, "codecs", items, **{"compression.type": codec}
        )
        for p, v in items:
            expected.setdefault(p, []).append(v)
    async with AsyncConsumer(
        mock_cluster.bootstrap, topics=["codecs"], auto_offset_reset="earliest", stop_at_end=True
    ) as consumer:
        async with asyncio.timeout(LIMIT):
            got = [r async for r in consumer]
        assert by_partition(got) == expected
        check_offsets(got)

    def blocking() -> list[ConsumerRecord]:
        with Consumer(
            mock_cluster.bootstrap,
            topics=["codecs"],
            auto_offset_reset="earliest",
            stop_at_end=True,
        ) as sync:
            out: list[ConsumerRecord] = []
            while batch := sync.poll(10, 1000):
                out += batch
            return out

    assert by_partition(await asyncio.wait_for(asyncio.to_thread(blocking), LIMIT)) == expected


async def test_control_batches_from_confluent_transactions(mock_cluster: MockCluster) -> None:
    mock_cluster.create_topic("txn", 2)

    def transactions() -> None:
        producer = Producer(
            {"bootstrap.servers": mock_cluster.bootstrap, "transactional.id": "tx", "log_level": 3}
        )
        producer.init_transactions(10)
        for kind in ("commit", "abort", "commit"):
            producer.begin_transaction()
            for p in range(2):
                for i in range(3):
                    producer.produce("txn", f"{kind}-{p}-{i}".encode(), partition=p)
            producer.flush(10)
            if kind == "commit":
                producer.commit_transaction(10)
            else:
                producer.abort_transaction(10)

    await asyncio.to_thread(transactions)
    async with AsyncConsumer(
        mock_cluster.bootstrap,
        topics=["txn"],
        auto_offset_reset="earliest",
        stop_at_end=True,
        check_crcs=False,  # the mock's markers carry no CRC
    ) as consumer:
        async with asyncio.timeout(LIMIT):
            got = [r async for r in consumer]
        values = by_partition(got)
        for p in range(2):
            # Every data record (the mock reports no aborted transactions), no marker.
            kinds = ("commit", "abort", "commit")
            assert values[p] == [f"{kind}-{p}-{i}".encode() for kind in kinds for i in range(3)]
            # Three markers were skipped: the position is past the last one.
            assert await consumer.position(TopicPartition("txn", p)) == 12


async def test_leader_moves_and_broker_down_up(mock_cluster: MockCluster) -> None:
    mock_cluster.create_topic("faults", 4)
    for p in range(4):
        mock_cluster.set_leader("faults", p, 1)
    expected: dict[int, list[bytes]] = {}
    seen: list[ConsumerRecord] = []

    async def write(tag: str) -> None:
        items = [(p, f"{tag}-{p}-{i}".encode()) for p in range(4) for i in range(25)]
        await asyncio.to_thread(produce, mock_cluster.bootstrap, "faults", items)
        for p, v in items:
            expected.setdefault(p, []).append(v)

    async def read_all(consumer: AsyncConsumer) -> None:
        want = sum(map(len, expected.values()))
        while len(seen) < want:
            seen.extend(await consumer.poll(timeout=5))

    steps: list[tuple[str, Callable[[], None]]] = [
        ("moved to 2", lambda: [mock_cluster.set_leader("faults", p, 2) for p in range(4)]),
        ("moved to 3", lambda: [mock_cluster.set_leader("faults", p, 3) for p in range(4)]),
        ("3 down", lambda: mock_cluster.broker_down(3)),
        ("3 up", lambda: mock_cluster.broker_up(3)),
        ("moved to 1", lambda: [mock_cluster.set_leader("faults", p, 1) for p in range(4)]),
    ]
    mock_cluster.start_request_tracking()
    async with AsyncConsumer(
        mock_cluster.bootstrap, auto_offset_reset="earliest", **FAST
    ) as consumer:
        await consumer.assign([TopicPartition("faults", p) for p in range(4)])
        async with asyncio.timeout(LIMIT):
            await write("start")
            await read_all(consumer)
            for name, fault in steps:
                fault()
                if name != "3 down":  # nobody can write to partitions led by a down broker
                    await write(name)
                await read_all(consumer)
            assert await consumer.poll(timeout=0.3) == []
    assert by_partition(seen) == expected
    check_offsets(seen)
    # The consumer followed the leader to every broker.
    fetched_from = {r.broker_id for r in mock_cluster.get_requests() if r.api_key == 1}
    assert fetched_from == {1, 2, 3}


async def test_tansu_both_stream_modes(tansu: Tansu) -> None:
    tansu.create_topic("t", 3)
    items = [(p, f"{p}-{i}".encode()) for p in range(3) for i in range(200)]
    await asyncio.to_thread(produce, tansu.bootstrap, "t", items, **{"compression.type": "lz4"})
    expected: dict[int, list[bytes]] = {}
    for p, v in items:
        expected.setdefault(p, []).append(v)
    async with AsyncConsumer(
        tansu.bootstrap, topics=["t"], auto_offset_reset="earliest", stop_at_end=True
    ) as consumer:
        async with asyncio.timeout(LIMIT):
            assert by_partition([r async for r in consumer]) == expected

    def blocking() -> dict[int, list[bytes]]:
        with Consumer(tansu.bootstrap, topics=["t"], auto_offset_reset="earliest") as sync:
            out: list[ConsumerRecord] = []
            for record in sync:  # blocks at the end: stop once everything is read
                out.append(record)
                if len(out) == len(items):
                    break
            return by_partition(out)

    assert await asyncio.wait_for(asyncio.to_thread(blocking), LIMIT) == expected
