"""kafka-python and aiokafka through a secured listener: produce ``count`` records, then
read them back in a group; what the TLS and SASL third-party tests share (they differ
only in the security settings)."""

from __future__ import annotations

import time
from typing import Any


def kafka_python_round_trip(bootstrap: str, topic: str, count: int, **security: Any) -> list[int]:
    """The values read back (produced as 0..count-1), by a group consumer."""
    from kafka import KafkaConsumer, KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", **security)
    try:
        futures = [producer.send(topic, str(i).encode()) for i in range(count)]
        producer.flush(30)
        for future in futures:
            future.get(timeout=10)
    finally:
        producer.close(5)
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"{topic}-group",
        auto_offset_reset="earliest",
        consumer_timeout_ms=1000,
        **security,
    )
    got: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < count and time.monotonic() < deadline:
            got += [int(m.value) for m in consumer]
    finally:
        consumer.close()
    return got


async def aiokafka_round_trip(bootstrap: str, topic: str, count: int, **security: Any) -> list[int]:
    """The same with aiokafka (the caller bounds the time)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **security)
    await producer.start()
    try:
        for i in range(count):
            await producer.send(topic, str(i).encode())
        await producer.flush()
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"{topic}-group",
        auto_offset_reset="earliest",
        **security,
    )
    await consumer.start()
    got: list[int] = []
    try:
        while len(got) < count:
            batch = await consumer.getmany(timeout_ms=1000)
            got += [int(m.value) for msgs in batch.values() for m in msgs]
    finally:
        await consumer.stop()
    return got
