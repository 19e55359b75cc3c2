"""Reading a topic back with confluent-kafka (librdkafka, not our code), for tests that
check what a real peer holds: ``read_back`` and the ``Log`` it returns."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

__all__ = ["READ_BOUND", "Log", "read_back"]

READ_BOUND = 60.0  # seconds a read-back may take, far above what a healthy run needs


@dataclass(kw_only=True)
class Log:
    """What a consumer read: ``partition -> [(offset, key, value)]`` in offset order,
    plus each partition's (low, high) watermarks where the broker's can be trusted."""

    records: dict[int, list[tuple[int, bytes | None, bytes | None]]]
    watermarks: dict[int, tuple[int, int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(len(r) for r in self.records.values())

    def offsets_by_value(self) -> dict[bytes, tuple[int, int]]:
        """``value -> (partition, offset)`` (the last one seen, if duplicated)."""
        return {
            value: (partition, offset)
            for partition, rows in self.records.items()
            for offset, _key, value in rows
            if value is not None
        }


def read_back(
    bootstrap: str,
    topic: str,
    partitions: int,
    expected: int,
    *,
    trust_watermarks: bool = True,
    bound: float = READ_BOUND,
) -> Log:
    """Read every partition of ``topic`` from its beginning with confluent-kafka.

    Reads until ``expected`` records arrived and one more poll brings nothing (so a
    surplus, i.e. duplicates, shows), or until ``bound`` seconds passed (then the check
    reports what is missing). ``trust_watermarks=False`` for tansu, whose high watermarks
    can be too low."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"pykaf-readback-{topic}",
            "enable.auto.commit": False,
            "fetch.queue.backoff.ms": 1,
            # Short long-polls: a watermark query waits behind a fetch on the connection.
            "fetch.wait.max.ms": 20,
            "log_level": 3,
        }
    )
    records: dict[int, list[tuple[int, bytes | None, bytes | None]]] = {
        p: [] for p in range(partitions)
    }
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        count = 0
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            batch = consumer.consume(10_000, 0.5)
            for message in batch:
                error = message.error()
                if error is not None:
                    raise AssertionError(f"read-back of {topic}: {error}")
                records[message.partition()].append(
                    (message.offset(), message.key(), message.value())
                )
            count += len(batch)
            if count >= expected and not batch:
                break
        watermarks: dict[int, tuple[int, int]] = {}
        if trust_watermarks:
            for p in range(partitions):
                watermarks[p] = _watermarks(consumer, topic, p)
    finally:
        consumer.close()
    return Log(records=records, watermarks=watermarks)


def _watermarks(consumer: Consumer, topic: str, partition: int) -> tuple[int, int]:
    # After leader moves the consumer's metadata may be stale: NOT_LEADER makes it
    # refresh, so ask again (a few times, bounded).
    for attempt in range(20):
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10.0, cached=False
            )
            return int(low), int(high)
        except KafkaException:
            if attempt == 19:
                raise
            time.sleep(0.1)
    raise AssertionError("unreachable")
