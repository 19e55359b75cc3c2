"""confluent-kafka (librdkafka) against the embedded broker: a real third-party client."""

from __future__ import annotations

import time
from typing import Any

import pytest
from _broker_clients import consume_all, produce_all, quiet
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    ConfigResource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
)

from pykaf.broker import BlockingCluster

pytestmark = pytest.mark.peer

COUNT = 10_000


@pytest.fixture
def admin(cluster: BlockingCluster) -> AdminClient:
    return AdminClient(quiet(**{"bootstrap.servers": cluster.bootstrap}))


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_idempotent_produce_and_consume_every_codec(cluster: BlockingCluster, codec: str) -> None:
    topic = f"codec-{codec}"
    cluster.create_topic(topic, 3)
    errors = produce_all(
        cluster.bootstrap,
        topic,
        COUNT,
        key_space=7,
        **{"enable.idempotence": True, "compression.type": codec},
    )
    assert errors == []
    got = consume_all(cluster.bootstrap, topic, 3, COUNT)
    everything = []
    for partition, msgs in got.items():
        numbers = [int(m.value()) for m in msgs]
        assert numbers == sorted(numbers), f"partition {partition} out of order"
        assert [m.offset() for m in msgs] == list(range(len(msgs)))
        everything += numbers
    assert sorted(everything) == list(range(COUNT))  # none missing, none twice


def test_acks_zero(cluster: BlockingCluster) -> None:
    cluster.create_topic("acks0", 1)
    assert produce_all(cluster.bootstrap, "acks0", 2000, acks=0) == []
    got = consume_all(cluster.bootstrap, "acks0", 1, 2000)
    assert [int(m.value()) for m in got[0]] == list(range(2000))


def test_auto_created_topic_is_usable(cluster: BlockingCluster) -> None:
    assert produce_all(cluster.bootstrap, "made-on-first-use", 10) == []
    assert "made-on-first-use" in cluster.state.topics
    assert len(consume_all(cluster.bootstrap, "made-on-first-use", 1, 10)[0]) == 10


def test_log_append_time_topic(cluster: BlockingCluster) -> None:
    cluster.create_topic("lat", 1, configs={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    producer = Producer(quiet(**{"bootstrap.servers": cluster.bootstrap}))
    producer.produce("lat", value=b"v", timestamp=1)
    assert producer.flush(10) == 0
    (msg,) = consume_all(cluster.bootstrap, "lat", 1, 1)[0]
    kind, stamp = msg.timestamp()
    assert kind == 2  # TIMESTAMP_LOG_APPEND_TIME
    assert stamp >= before


def test_message_too_large(cluster: BlockingCluster) -> None:
    cluster.create_topic("tiny", 1, configs={"max.message.bytes": "2000"})
    producer = Producer(quiet(**{"bootstrap.servers": cluster.bootstrap}))
    results: list[Any] = []
    producer.produce("tiny", value=b"x" * 5000, on_delivery=lambda err, msg: results.append(err))
    assert producer.flush(10) == 0
    assert results[0] is not None
    assert results[0].code() == KafkaError.MSG_SIZE_TOO_LARGE


def test_admin_create_partitions_and_delete(admin: AdminClient, cluster: BlockingCluster) -> None:
    futures = admin.create_topics(
        [
            NewTopic("admin-a", num_partitions=2, replication_factor=3),
            NewTopic("admin-b", num_partitions=1, config={"retention.ms": "1000"}),
        ]
    )
    for future in futures.values():
        future.result(10)
    with pytest.raises(KafkaException) as exists:
        admin.create_topics([NewTopic("admin-a", 1)])["admin-a"].result(10)
    assert exists.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    with pytest.raises(KafkaException) as bad:
        admin.create_topics([NewTopic("admin-c", 1, config={"no.such": "x"})])["admin-c"].result(10)
    assert bad.value.args[0].code() == KafkaError.INVALID_CONFIG
    validate = admin.create_topics([NewTopic("admin-v", 4)], validate_only=True)
    validate["admin-v"].result(10)
    assert "admin-v" not in cluster.state.topics

    admin.create_partitions([NewPartitions("admin-a", 5)])["admin-a"].result(10)
    assert len(cluster.state.topics["admin-a"].partitions) == 5
    with pytest.raises(KafkaException) as fewer:
        admin.create_partitions([NewPartitions("admin-a", 3)])["admin-a"].result(10)
    assert fewer.value.args[0].code() == KafkaError.INVALID_PARTITIONS
    metadata = admin.list_topics(timeout=10)
    assert len(metadata.topics["admin-a"].partitions) == 5
    assert len(metadata.topics["admin-a"].partitions[0].replicas) == 3

    admin.delete_topics(["admin-a", "admin-b"])["admin-a"].result(10)
    assert "admin-a" not in cluster.state.topics
    with pytest.raises(KafkaException) as unknown:
        admin.delete_topics(["admin-a"])["admin-a"].result(10)
    assert unknown.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_describe_configs(admin: AdminClient, cluster: BlockingCluster) -> None:
    cluster.create_topic("conf", 1, configs={"max.message.bytes": "4096"})
    topic = ConfigResource(ConfigResource.Type.TOPIC, "conf")
    broker = ConfigResource(ConfigResource.Type.BROKER, "1")
    results = admin.describe_configs([topic, broker])
    topic_configs = results[topic].result(10)
    assert topic_configs["max.message.bytes"].value == "4096"
    assert not topic_configs["max.message.bytes"].is_default
    assert topic_configs["message.timestamp.type"].value == "CreateTime"
    assert topic_configs["message.timestamp.type"].is_default
    assert topic_configs["cleanup.policy"].value == "delete"
    broker_configs = results[broker].result(10)
    assert broker_configs["num.partitions"].value == "1"
    assert broker_configs["broker.id"].value == "1"


def test_list_offsets_and_delete_records(admin: AdminClient, cluster: BlockingCluster) -> None:
    cluster.create_topic("offs", 1)
    producer = Producer(quiet(**{"bootstrap.servers": cluster.bootstrap}))
    for i in range(10):
        producer.produce("offs", value=b"%d" % i, timestamp=1_000 + i * 100)
        producer.flush(10)  # one batch per record: timestamps land in separate batches
    tp = TopicPartition("offs", 0)

    def offset(spec: OffsetSpec) -> int:
        return int(admin.list_offsets({tp: spec})[tp].result(10).offset)

    assert offset(OffsetSpec.earliest()) == 0
    assert offset(OffsetSpec.latest()) == 10
    assert offset(OffsetSpec.for_timestamp(1_450)) == 5
    assert offset(OffsetSpec.max_timestamp()) == 9

    consumer = Consumer(quiet(**{"bootstrap.servers": cluster.bootstrap, "group.id": "unused"}))
    try:
        assert consumer.get_watermark_offsets(tp, timeout=10) == (0, 10)
        (found,) = consumer.offsets_for_times([TopicPartition("offs", 0, 1_250)], timeout=10)
        assert found.offset == 3
    finally:
        consumer.close()

    result = admin.delete_records([TopicPartition("offs", 0, 4)])[tp].result(10)
    assert result.low_watermark == 4
    assert offset(OffsetSpec.earliest()) == 4
    got = consume_all(cluster.bootstrap, "offs", 1, 6)[0]
    assert [m.offset() for m in got] == list(range(4, 10))
