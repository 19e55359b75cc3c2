"""Third-party clients against the embedded broker: kafka-python, aiokafka, kcat, and
confluent-kafka's idempotent producer through a storm of injected faults.

(confluent-kafka with every codec, acks=0, admin calls: ``test_confluent.py``.)
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from _broker_clients import consume_all, quiet
from confluent_kafka import Producer

from pykaf.broker import BlockingCluster

pytestmark = pytest.mark.peer

NOT_LEADER_OR_FOLLOWER = 6
REQUEST_TIMED_OUT = 7
NOT_ENOUGH_REPLICAS = 19


def check_exactly_once_in_order(per_partition: dict[int, list[int]], count: int) -> None:
    everything: list[int] = []
    for partition, numbers in per_partition.items():
        assert numbers == sorted(numbers), f"partition {partition} out of order"
        everything += numbers
    assert len(everything) == count, f"{len(everything)} consumed, {count} produced"
    assert sorted(everything) == list(range(count))  # none lost, none twice


def wait_until(condition: Callable[[], bool], poll: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        poll()


# -- kafka-python -------------------------------------------------------------------------


def test_kafka_python_produce_and_consume(cluster: BlockingCluster) -> None:
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KafkaTopicPartition

    topic, partitions, count = "kafka-python", 3, 2000
    cluster.create_topic(topic, partitions)
    producer = KafkaProducer(
        bootstrap_servers=cluster.bootstrap,
        acks="all",
        linger_ms=5,
        compression_type="gzip",
        request_timeout_ms=10_000,
    )
    try:
        futures = [
            producer.send(topic, key=str(i % 5).encode(), value=str(i).encode())
            for i in range(count)
        ]
        producer.flush(30)
        acked = [f.get(timeout=10) for f in futures]
    finally:
        producer.close(5)
    consumer = KafkaConsumer(
        bootstrap_servers=cluster.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
    )
    got: dict[int, list[int]] = {p: [] for p in range(partitions)}
    offsets: dict[int, list[int]] = {p: [] for p in range(partitions)}
    try:
        consumer.assign([KafkaTopicPartition(topic, p) for p in range(partitions)])
        consumer.seek_to_beginning()
        deadline = time.monotonic() + 30
        while sum(map(len, got.values())) < count and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    got[record.partition].append(int(record.value))
                    offsets[record.partition].append(record.offset)
    finally:
        consumer.close()
    check_exactly_once_in_order(got, count)
    for partition in range(partitions):
        assert offsets[partition] == list(range(len(offsets[partition])))
        assert sorted(m.offset for m in acked if m.partition == partition) == offsets[partition]


# -- aiokafka -------------------------------------------------------------------------------


async def test_aiokafka_produce_and_consume(cluster: BlockingCluster) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    topic, partitions, count = "aiokafka", 2, 2000
    cluster.create_topic(topic, partitions)
    producer = AIOKafkaProducer(
        bootstrap_servers=cluster.bootstrap,
        enable_idempotence=True,
        linger_ms=5,
        compression_type="gzip",
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=str(i % 3).encode(), value=str(i).encode())
            for i in range(count)
        ]
        for future in futures:
            await future
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=cluster.bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    await consumer.start()
    got: dict[int, list[int]] = {p: [] for p in range(partitions)}
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + 30
        while sum(map(len, got.values())) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    assert record.value is not None
                    got[record.partition].append(int(record.value))
    finally:
        await consumer.stop()
    check_exactly_once_in_order(got, count)


# -- kcat -------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")
def test_kcat_produce_and_consume(cluster: BlockingCluster) -> None:
    kcat = shutil.which("kcat")
    assert kcat is not None
    topic, partitions, count = "kcat", 2, 500
    cluster.create_topic(topic, partitions)
    lines = "".join(f"{i % 4}:{i}\n" for i in range(count))
    produced = subprocess.run(
        [kcat, "-b", cluster.bootstrap, "-P", "-t", topic, "-K:", "-X", "linger.ms=5"],
        input=lines,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert produced.returncode == 0, produced.stderr
    consumed = subprocess.run(
        [
            kcat,
            "-b",
            cluster.bootstrap,
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-f",
            "%p %o %k %s\\n",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert consumed.returncode == 0, consumed.stderr
    got: dict[int, list[int]] = {p: [] for p in range(partitions)}
    keys: dict[int, set[str]] = {p: set() for p in range(partitions)}
    for line in consumed.stdout.splitlines():
        partition, offset, key, value = line.split(" ")
        assert int(offset) == len(got[int(partition)])
        got[int(partition)].append(int(value))
        keys[int(partition)].add(key)
    check_exactly_once_in_order(got, count)
    assert not keys[0] & keys[1]  # one key, one partition


# -- confluent-kafka's idempotent producer through a storm of faults -------------------------


def test_idempotent_producer_through_a_storm_of_faults(cluster: BlockingCluster) -> None:
    topic, partitions, rounds, per_round = "storm", 3, 12, 500
    count = rounds * per_round
    cluster.create_topic(topic, partitions)
    faults = cluster.faults
    producer = Producer(
        quiet(
            **{
                "bootstrap.servers": cluster.bootstrap,
                "enable.idempotence": True,
                "linger.ms": 1,
                "batch.num.messages": 100,
                "retry.backoff.ms": 10,
                "retry.backoff.max.ms": 50,
                "message.timeout.ms": 60_000,
            }
        )
    )
    errors: list[Any] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    storm: list[Callable[[], None]] = [
        lambda: faults.push_errors("Produce", [NOT_LEADER_OR_FOLLOWER] * 3),
        lambda: faults.push_errors("Produce", [REQUEST_TIMED_OUT, 0, REQUEST_TIMED_OUT]),
        lambda: faults.push_errors("Produce", [NOT_ENOUGH_REPLICAS] * 2),
        # Appended, never acknowledged: the retry must be recognised as a duplicate.
        lambda: faults.drop_connection_after("Produce", count=2, before_response=True),
        lambda: faults.drop_connection_after("Produce", before_response=False),
        lambda: faults.push_errors(
            "Produce", [NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS]
        ),
    ]
    for round_ in range(rounds):
        storm[round_ % len(storm)]()
        base = round_ * per_round
        for i in range(base, base + per_round):
            producer.produce(
                topic, str(i).encode(), key=str(i % 11).encode(), on_delivery=delivered
            )
            producer.poll(0)
        # Every injected fault is met by a real request before the next round.
        wait_until(
            lambda: faults.pending_errors() == 0 and not faults.summary()["drops"],
            lambda: producer.poll(0.01),
            f"round {round_}'s faults to be used",
        )
    assert producer.flush(60) == 0
    assert errors == []
    faults.push_errors("Fetch", [NOT_LEADER_OR_FOLLOWER, 0, NOT_LEADER_OR_FOLLOWER])
    got = consume_all(cluster.bootstrap, topic, partitions, count)
    assert faults.pending_errors() == 0
    check_exactly_once_in_order(
        {p: [int(m.value()) for m in msgs] for p, msgs in got.items()}, count
    )
    for msgs in got.values():
        assert [m.offset() for m in msgs] == list(range(len(msgs)))  # no gap, nothing extra
