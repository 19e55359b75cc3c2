"""Batches written by librdkafka decode correctly in pykaf.

confluent-kafka produces into librdkafka's mock cluster with each codec; pykaf's protocol
layer fetches the stored batches raw over a plain socket (negotiating versions with the
broker) and decodes them. librdkafka is an independent writer: its own varints, CRCs,
xerial-or-raw snappy, lz4 frames and zstd frames.
"""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from wire_client import WireClient

from pykaf.protocol import Compression, decode_batches

N = 300

pytestmark = pytest.mark.peer


def _produce_with_librdkafka(bootstrap: str, topic: str, codec: str) -> list[tuple[bytes, bytes]]:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "compression.type": codec,
            "linger.ms": 50,
            "enable.idempotence": True,
        }
    )
    sent = []
    failures: list[object] = []
    for i in range(N):
        key, value = b"key-%d" % i, (b"value-%d-" % i) * (1 + i % 7)
        sent.append((key, value))
        producer.produce(
            topic,
            value,
            key,
            partition=0,
            timestamp=1_700_000_000_000 + i,
            headers=[("n", str(i).encode()), ("empty", None)],
            on_delivery=lambda err, _msg: failures.append(err) if err else None,
        )
    assert producer.flush(15) == 0, "librdkafka did not deliver everything in time"
    assert failures == []
    return sent


def _leader_address(client: WireClient, topic: str) -> str:
    metadata = client.call(
        "Metadata",
        topics=[{"name": topic}],
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=False,
    )
    (topic_md,) = metadata.topics
    leader = topic_md.partitions[0].leader_id
    broker = next(b for b in metadata.brokers if b.node_id == leader)
    return f"{broker.host}:{broker.port}"


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_librdkafka_batches_decode_in_pykaf(mock_cluster, codec: str) -> None:
    topic = f"librdkafka-{codec}"
    mock_cluster.create_topic(topic, 1)
    sent = _produce_with_librdkafka(mock_cluster.bootstrap, topic, codec)

    with WireClient(mock_cluster.bootstrap.split(",")[0]) as bootstrap_client:
        bootstrap_client.negotiate()
        leader = _leader_address(bootstrap_client, topic)
    records = []
    batches = []
    with WireClient(leader) as client:
        client.negotiate()
        offset = 0
        for _ in range(50):  # bounded: each fetch returns at least one batch
            response = client.call(
                "Fetch",
                replica_id=-1,
                max_wait=100,
                min_bytes=1,
                max_bytes=1 << 20,
                isolation_level=0,
                session_id=0,
                session_epoch=-1,
                forgotten_topics_data=[],
                rack_id="",
                topics=[
                    {
                        "topic": topic,
                        "topic_id": _topic_id(client, topic),
                        "partitions": [
                            {"partition": 0, "fetch_offset": offset, "partition_max_bytes": 65536}
                        ],
                    }
                ],
            )
            (partition,) = response.responses[0].partitions
            assert partition.error_code == 0
            for batch in decode_batches(partition.records or b""):
                batches.append(batch)
                records.extend(r for r in batch.records if r.offset >= offset)
            if records:
                offset = records[-1].offset + 1
            if offset >= N:
                break

    assert len(records) == N
    expected_codec = Compression.parse(codec)
    assert {b.compression for b in batches} == {expected_codec}
    assert all(b.producer_id >= 0 for b in batches), "idempotent batches carry a producer id"
    for i, record in enumerate(records):
        assert record.offset == i
        assert (record.key, record.value) == sent[i]
        assert record.timestamp == 1_700_000_000_000 + i
        assert record.headers == (("n", str(i).encode()), ("empty", None))


_TOPIC_IDS: dict[str, object] = {}


def _topic_id(client: WireClient, topic: str) -> object:
    """Fetch v13+ names topics by id; older versions ignore the field."""
    if topic not in _TOPIC_IDS:
        metadata = client.call(
            "Metadata",
            topics=[{"name": topic}],
            allow_auto_topic_creation=False,
            include_topic_authorized_operations=False,
        )
        _TOPIC_IDS[topic] = metadata.topics[0].topic_id
    return _TOPIC_IDS[topic]
