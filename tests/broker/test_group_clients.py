"""Consumer groups of third-party clients against the embedded broker: confluent-kafka
(librdkafka), kafka-python and aiokafka; committed offsets across a restart."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from _broker_clients import produce_all, quiet
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from pykaf.broker import BlockingCluster, Cluster
from pykaf.broker._group_model import GroupState
from pykaf.broker._groups import group_coordinator

pytestmark = [
    pytest.mark.peer,
    # kafka-python loads its schemas through importlib.resources' legacy functions.
    pytest.mark.filterwarnings("ignore:.*Use files\\(\\) instead:DeprecationWarning"),
]

PARTITIONS = 12
FIRST = 3000
SECOND = 1500
RETRY_COMMIT = (KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS)


def group_consumer(bootstrap: str, group: str, assignor: str) -> Consumer:
    return Consumer(
        quiet(
            **{
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 500,
                "max.poll.interval.ms": 10000,
                "partition.assignment.strategy": assignor,
                "fetch.queue.backoff.ms": 10,
            }
        )
    )


class Tracked:
    """A consumer that commits synchronously after every processed batch."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.records: list[tuple[int, int]] = []  # (partition, offset) processed
        self.retried_commits = 0

    def step(self) -> None:
        batch = self.consumer.consume(500, 0.05)
        ends: dict[tuple[str, int], int] = {}
        for msg in batch:
            assert msg.error() is None, msg.error()
            self.records.append((msg.partition(), msg.offset()))
            ends[(msg.topic(), msg.partition())] = msg.offset() + 1
        if ends:
            self.commit([TopicPartition(t, p, o) for (t, p), o in ends.items()])

    def commit(self, offsets: list[TopicPartition]) -> None:
        # A commit sent while this member's JoinGroup is parked waits behind it on the
        # coordinator connection and then carries the previous generation: Kafka (and we)
        # answer ILLEGAL_GENERATION, or REBALANCE_IN_PROGRESS until the group is stable.
        # With cooperative-sticky the member keeps these partitions, so it commits again
        # (before consuming more, so no partition can have moved meanwhile).
        deadline = time.monotonic() + 10
        while True:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
                return
            except KafkaException as exc:
                code = exc.args[0].code()
                if code not in RETRY_COMMIT or time.monotonic() > deadline:
                    raise
                self.retried_commits += 1
                time.sleep(0.05)

    def assigned(self) -> int:
        return len(self.consumer.assignment())


def run_until(consumers: list[Tracked], done: Any, *, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "consumers did not get there in time"
        for consumer in consumers:
            consumer.step()


@pytest.mark.parametrize("assignor", ["range,roundrobin", "cooperative-sticky"])
def test_group_of_three_with_a_member_leaving(cluster: BlockingCluster, assignor: str) -> None:
    topic = f"grp-{assignor.split(',', maxsplit=1)[0]}"
    cluster.create_topic(topic, PARTITIONS)
    trio = [Tracked(group_consumer(cluster.bootstrap, topic, assignor)) for _ in range(3)]
    try:
        for t in trio:
            t.consumer.subscribe([topic])
        # Wait for one stable generation in which all three share the partitions.
        run_until(
            trio,
            lambda: (
                all(t.assigned() for t in trio) and sum(t.assigned() for t in trio) == PARTITIONS
            ),
        )
        # Keys spread the records over every partition (keyless ones stick to a few).
        assert produce_all(cluster.bootstrap, topic, FIRST, key_space=97) == []
        run_until(trio, lambda: sum(len(t.records) for t in trio) >= FIRST)
        assert all(t.records for t in trio)  # everyone had a share

        # One member leaves: its partitions move to the other two; commits after each
        # processed batch mean nothing is lost and nothing is read twice.
        leaving, *staying = trio
        leaving.consumer.close()
        assert produce_all(cluster.bootstrap, topic, SECOND, key_space=97) == []
        run_until(
            staying,
            lambda: (
                sum(len(t.records) for t in trio) >= FIRST + SECOND
                and sum(t.assigned() for t in staying) == PARTITIONS
            ),
        )
        processed = Counter(r for t in trio for r in t.records)
        logs = cluster.state.topics[topic].partitions
        produced = Counter((p.index, o) for p in logs for o in range(p.log.high_watermark))
        assert sum(produced.values()) == FIRST + SECOND
        assert all(p.log.high_watermark for p in logs)
        assert processed == produced  # every record exactly once
    finally:
        for t in trio[1:]:
            t.consumer.close()
    group = group_coordinator(cluster.state).groups[topic]
    offsets = group_coordinator(cluster.state).offsets
    for partition in cluster.state.topics[topic].partitions:
        committed = offsets.get(topic, topic, partition.index)
        assert committed is not None
        assert committed.offset == partition.log.high_watermark
    assert group.members == {}  # everyone left


def test_kafka_python_group_consume_with_commit(cluster: BlockingCluster) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    cluster.create_topic("kp", 3)
    producer = KafkaProducer(bootstrap_servers=cluster.bootstrap)
    for i in range(300):
        producer.send("kp", str(i).encode())
    producer.flush(10)
    producer.close()

    def consumer() -> Any:
        return KafkaConsumer(
            "kp",
            bootstrap_servers=cluster.bootstrap,
            group_id="kp-group",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
        )

    first = consumer()
    seen: list[int] = []
    deadline = time.monotonic() + 30
    while len(seen) < 300 and time.monotonic() < deadline:
        for records in first.poll(timeout_ms=200).values():
            seen += [int(r.value) for r in records]
    first.commit()
    first.close()
    assert sorted(seen) == list(range(300))

    # The same group resumes after the commit: nothing is read again.
    again = consumer()
    leftovers: list[Any] = []
    deadline = time.monotonic() + 30
    while not again.assignment() and time.monotonic() < deadline:
        leftovers += [r for rs in again.poll(timeout_ms=200).values() for r in rs]
    leftovers += [r for rs in again.poll(timeout_ms=300).values() for r in rs]
    assert len(again.assignment()) == 3
    assert leftovers == []
    assert {tp.partition: again.committed(tp) for tp in again.assignment()} == {
        p.index: p.log.high_watermark for p in cluster.state.topics["kp"].partitions
    }
    again.close()


async def test_aiokafka_produce_and_group_consume() -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    async with Cluster(brokers=3) as cluster:
        await cluster.create_topic("aio", 3)
        producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap)
        await producer.start()
        try:
            for i in range(300):
                await producer.send("aio", str(i).encode())
            await producer.flush()
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            "aio",
            bootstrap_servers=cluster.bootstrap,
            group_id="aio-group",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
        )
        await consumer.start()
        try:
            seen: list[int] = []

            async def consume() -> None:
                while len(seen) < 300:
                    batches = await consumer.getmany(timeout_ms=200)
                    for records in batches.values():
                        seen.extend(int(r.value) for r in records)  # type: ignore[arg-type]
                    await consumer.commit()

            await asyncio.wait_for(consume(), 30)
            assert sorted(seen) == list(range(300))
        finally:
            await consumer.stop()
        offsets = group_coordinator(cluster.state).offsets
        for partition in cluster.state.topics["aio"].partitions:
            committed = offsets.get("aio-group", "aio", partition.index)
            assert committed is not None
            assert committed.offset == partition.log.high_watermark


def test_committed_offsets_survive_a_restart(tmp_path: Path) -> None:
    settings = {"bootstrap.servers": "", "group.id": "keep", "enable.auto.commit": False}
    with BlockingCluster(brokers=3, data_dir=tmp_path) as cluster:
        cluster.create_topic("kept", 2)
        assert produce_all(cluster.bootstrap, "kept", 100) == []
        consumer = Consumer(quiet(**{**settings, "bootstrap.servers": cluster.bootstrap}))
        wanted = [TopicPartition("kept", 0, 7), TopicPartition("kept", 1, 11)]
        consumer.commit(offsets=wanted, asynchronous=False)  # a simple (generation -1) commit
        consumer.close()

    with BlockingCluster(brokers=3, data_dir=tmp_path) as cluster:
        consumer = Consumer(quiet(**{**settings, "bootstrap.servers": cluster.bootstrap}))
        try:
            got = consumer.committed([TopicPartition("kept", 0), TopicPartition("kept", 1)], 10)
        finally:
            consumer.close()
        assert [(tp.partition, tp.offset) for tp in got] == [(0, 7), (1, 11)]
        # The group itself is back too, Empty, as Kafka loads it from its offsets.
        assert group_coordinator(cluster.state).groups["keep"].state is GroupState.EMPTY
