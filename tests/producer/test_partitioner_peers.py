"""Interop: a key lands in the same partition with pykaf as with librdkafka (and so Java).

confluent-kafka's ``murmur2_random`` partitioner is librdkafka's Java-compatible one:
``(murmur2(key) & 0x7fffffff) % partition_count`` for every key that is not NULL, and a
random (sticky) partition for NULL keys. An empty key ``b""`` is not NULL there: its
sticky/random path is taken only for a NULL key (or an empty one with the
``consistent_random`` partitioner), so with ``murmur2_random`` an empty key is hashed
(librdkafka's own unit test expects murmur2("") == 0x106e08d9), as Java hashes an empty
byte[]; only a missing key (None) is keyless. This test shows it end to end: every b""
message lands in partition 9 (0x106e08d9 % 12), and reads back as ``b""``, not None.
"""

from __future__ import annotations

import random
import time
import uuid

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from peers import MockCluster

from pykaf._producer._partitioner import murmur2_partition

pytestmark = pytest.mark.peer

_PARTITIONS = 12
_MESSAGES = 2000
# Several, and with librdkafka's stickiness off (below): were b"" treated as no key, each
# would go to a random partition, and all 25 in partition 9 would be a 12**-24 fluke.
_EMPTY_KEYS = 25


def _keys(rng: random.Random) -> list[bytes]:
    keys = [b""] * _EMPTY_KEYS
    # Every length 1..64 (all four murmur2 tail cases many times), then longer ones.
    while len(keys) < _MESSAGES:
        length = rng.choice((rng.randrange(1, 65), rng.randrange(65, 600)))
        keys.append(rng.randbytes(length))
    rng.shuffle(keys)
    return keys


def _produce(bootstrap: str, topic: str, keys: list[bytes]) -> None:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "partitioner": "murmur2_random",
            "sticky.partitioning.linger.ms": 0,  # keyless (NULL) records: random each
            "linger.ms": 5,
        }
    )
    errors: list[KafkaError] = []

    def report(error: KafkaError | None, _message: object) -> None:
        if error is not None:
            errors.append(error)

    for index, key in enumerate(keys):
        # The value carries the key's index, so the check does not depend on how the
        # key itself comes back.
        producer.produce(topic, str(index).encode(), key=key, on_delivery=report)
        producer.poll(0)
    assert producer.flush(20.0) == 0, "messages still in flight after 20 s"
    assert errors == []


def _consume(bootstrap: str, topic: str, count: int) -> dict[int, tuple[int, bytes | None]]:
    """index -> (partition, key as read back)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "pykaf-partitioner-peer",  # required; assign() joins no group
            "enable.auto.commit": False,
            "fetch.queue.backoff.ms": 10,
        }
    )
    seen: dict[int, tuple[int, bytes | None]] = {}
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(_PARTITIONS)])
        deadline = time.monotonic() + 30.0
        for _ in range(400):  # bounded in count as well as in time
            if len(seen) >= count or time.monotonic() > deadline:
                break
            for message in consumer.consume(num_messages=500, timeout=0.5):
                assert message.error() is None, message.error()
                value = message.value()
                assert value is not None
                index = int(value)
                assert index not in seen, f"message {index} read twice"
                partition = message.partition()
                assert partition is not None
                seen[index] = (partition, message.key())
    finally:
        consumer.close()
    return seen


def test_keys_land_where_librdkafka_murmur2_puts_them(mock_cluster: MockCluster) -> None:
    topic = f"partitioner-{uuid.uuid4().hex[:12]}"
    mock_cluster.create_topic(topic, _PARTITIONS)
    keys = _keys(random.Random(20240601))

    _produce(mock_cluster.bootstrap, topic, keys)
    seen = _consume(mock_cluster.bootstrap, topic, len(keys))

    assert len(seen) == len(keys), f"read back {len(seen)} of {len(keys)}"
    wrong = {
        i: (partition, murmur2_partition(keys[i], _PARTITIONS))
        for i, (partition, _key) in seen.items()
        if partition != murmur2_partition(keys[i], _PARTITIONS)
    }
    assert wrong == {}, (
        f"{len(wrong)} keys elsewhere (librdkafka, pykaf): {list(wrong.items())[:5]}"
    )
    assert {seen[i][1] for i, key in enumerate(keys) if key == b""} == {b""}
    assert all(seen[i][1] == key for i, key in enumerate(keys))
    # Every partition got keys, so the check above compared all twelve.
    assert {partition for partition, _ in seen.values()} == set(range(_PARTITIONS))
    assert murmur2_partition(b"", _PARTITIONS) == 9
