"""Consumer groups made of confluent-kafka consumers, for the admin group tests.

Everything blocking (librdkafka's calls): run from a test's thread, with a BlockingCluster.
Every wait is bounded in count and time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import confluent_kafka

LIMIT = 20.0  # seconds: far above what any wait here needs


def wait_for(condition: Callable[[], bool], what: str, *, timeout: float = LIMIT) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def produce(bootstrap: str, topic: str, counts: dict[int, int], *, ts: int = 1_000) -> None:
    """``counts[p]`` records into partition ``p``; record i of each has timestamp ts + i."""
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for partition, count in counts.items():
        for i in range(count):
            producer.produce(
                topic, b"%d-%d" % (partition, i), partition=partition, timestamp=ts + i
            )
    assert producer.flush(LIMIT) == 0


def group_consumer(bootstrap: str, group_id: str, client_id: str, **extra: Any) -> Any:
    return confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group_id,
            "client.id": client_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 200,
            **extra,
        }
    )


def join(consumers: Iterable[Any], topic: str, partitions: int) -> None:
    """Subscribe every consumer and poll until their assignments cover ``partitions``."""
    members = list(consumers)
    for consumer in members:
        consumer.subscribe([topic])

    def covered() -> bool:
        for consumer in members:
            consumer.poll(0.05)
        owned = [tp.partition for c in members for tp in c.assignment()]
        return sorted(owned) == list(range(partitions)) and all(c.assignment() for c in members)

    wait_for(covered, f"{len(members)} consumers to share {partitions} partitions")


def commit(consumer: Any, topic: str, offsets: dict[int, int]) -> None:
    if not offsets:
        return
    consumer.commit(
        offsets=[confluent_kafka.TopicPartition(topic, p, o) for p, o in offsets.items()],
        asynchronous=False,
    )


def first_offsets(bootstrap: str, group_id: str, topic: str, partitions: int) -> dict[int, int]:
    """Where a new member of ``group_id`` resumes: the first offset it reads per partition."""
    consumer = group_consumer(bootstrap, group_id, "resumer", **{"auto.offset.reset": "latest"})
    first: dict[int, int] = {}
    try:
        consumer.subscribe([topic])

        def read_all() -> bool:
            message = consumer.poll(0.05)
            if message is not None and message.error() is None:
                first.setdefault(message.partition(), message.offset())
            return len(first) == partitions

        wait_for(read_all, f"a record from each of {partitions} partitions")
    finally:
        consumer.close()
    return first
