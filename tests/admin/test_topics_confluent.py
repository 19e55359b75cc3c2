"""pykaf's Admin beside confluent-kafka's AdminClient on one embedded cluster: the same
topics, partitions, leaders, replicas and ISR, topic ids, brokers, controller and cluster
id, whichever of the two created the topics."""

from __future__ import annotations

import base64
from typing import Any, Final

import pytest
from confluent_kafka import TopicCollection
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin import NewTopic as ConfluentNewTopic

from pykaf import Admin
from pykaf.admin import NewTopic
from pykaf.broker import BlockingCluster

pytestmark = pytest.mark.peer

_LIMIT: Final = 20.0


def _confluent(cluster: BlockingCluster) -> AdminClient:
    return AdminClient({"bootstrap.servers": cluster.bootstrap, "log_level": 3})


def _result(future: Any) -> Any:
    return future.result(timeout=_LIMIT)


def test_same_topics_partitions_and_leaders(kafka_cluster_sync: BlockingCluster) -> None:
    confluent = _confluent(kafka_cluster_sync)
    made = confluent.create_topics(
        [ConfluentNewTopic("by-confluent", num_partitions=4, replication_factor=2)],
        operation_timeout=_LIMIT,
    )
    _result(made["by-confluent"])
    with Admin(kafka_cluster_sync.bootstrap, request_timeout=_LIMIT) as admin:
        admin.create_topics([NewTopic(name="by-pykaf", partitions=3)]).raise_for_errors()
        listed = admin.list_topics()
        described = admin.describe_topics(sorted(listed))
        cluster = admin.describe_cluster()

    theirs = confluent.list_topics(timeout=_LIMIT)
    assert set(listed) == set(theirs.topics) == {"by-confluent", "by-pykaf"}
    for name, topic in theirs.topics.items():
        ours = described[name]
        assert [(p.partition, p.leader, p.replicas, p.isr) for p in ours.partitions] == [
            (p.id, p.leader, tuple(p.replicas), tuple(p.isrs))
            for p in sorted(topic.partitions.values(), key=lambda p: p.id)
        ]
    assert {b.node_id: (b.host, b.port) for b in cluster.brokers} == {
        b.id: (b.host, b.port) for b in theirs.brokers.values()
    }
    assert cluster.cluster_id == theirs.cluster_id
    assert cluster.controller_id == theirs.controller_id

    # DescribeTopics' ids (Metadata v10+) and DescribeCluster, both asked by confluent.
    theirs_described = confluent.describe_topics(TopicCollection(sorted(listed)))
    for name, future in theirs_described.items():
        description = _result(future)
        ours_id = described[name].topic_id
        assert ours_id is not None
        # librdkafka prints ids in base64 (standard alphabet), unpadded.
        assert base64.b64encode(ours_id.bytes).decode().rstrip("=") == str(description.topic_id)
    theirs_cluster = _result(confluent.describe_cluster(request_timeout=_LIMIT))
    assert theirs_cluster.cluster_id == cluster.cluster_id
    assert theirs_cluster.controller.id == cluster.controller_id


def test_topics_pykaf_deletes_are_gone_for_confluent(kafka_cluster_sync: BlockingCluster) -> None:
    kafka_cluster_sync.create_topic("doomed", 2)
    kafka_cluster_sync.create_topic("kept", 1)
    with Admin(kafka_cluster_sync.bootstrap, request_timeout=_LIMIT) as admin:
        assert admin.delete_topics(["doomed"]).errors == {}
        assert admin.create_partitions({"kept": 3}).errors == {}
    theirs = _confluent(kafka_cluster_sync).list_topics(timeout=_LIMIT)
    assert set(theirs.topics) == {"kept"}
    assert len(theirs.topics["kept"].partitions) == 3
