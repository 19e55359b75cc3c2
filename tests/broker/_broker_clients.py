"""confluent-kafka helpers shared by the broker tests: produce and consume everything."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition


def quiet(**conf: Any) -> dict[str, Any]:
    # log_level 3: only errors from librdkafka on stderr; no group: assign() only.
    return {"log_level": 3, **conf}


def produce_all(
    bootstrap: str, topic: str, count: int, *, key_space: int = 0, **conf: Any
) -> list[Any]:
    """Produce ``count`` values "i"; return every delivery error (none expected)."""
    producer = Producer(quiet(**{"bootstrap.servers": bootstrap, "linger.ms": 5, **conf}))
    errors: list[Any] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    for i in range(count):
        key = str(i % key_space).encode() if key_space else None
        while True:
            try:
                producer.produce(topic, value=str(i).encode(), key=key, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
    remaining = producer.flush(30)
    assert remaining == 0, f"{remaining} messages not delivered in 30 s"
    return errors


def consume_all(
    bootstrap: str, topic: str, partitions: int, count: int, **conf: Any
) -> dict[int, list[Any]]:
    """Every message of the topic from the beginning, per partition (bounded: 30 s)."""
    consumer = Consumer(
        quiet(
            **{
                "bootstrap.servers": bootstrap,
                "group.id": "unused",  # librdkafka wants one; assign() never joins it
                "enable.auto.commit": False,
                "fetch.queue.backoff.ms": 10,
                **conf,
            }
        )
    )
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        got: dict[int, list[Any]] = {p: [] for p in range(partitions)}
        seen = 0
        deadline = time.monotonic() + 30
        while seen < count and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.2):
                assert msg.error() is None, msg.error()
                got[msg.partition()].append(msg)
                seen += 1
        return got
    finally:
        consumer.close()
