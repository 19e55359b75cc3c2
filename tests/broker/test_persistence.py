"""A data directory survives a restart; a torn tail is cut and the rest survives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _broker_clients import consume_all, produce_all, quiet
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from pykaf.broker import BlockingCluster

pytestmark = pytest.mark.peer


def test_restart_keeps_every_acknowledged_message(tmp_path: Path) -> None:
    with BlockingCluster(brokers=3, data_dir=tmp_path) as cluster:
        topic = cluster.create_topic("keep", 3, configs={"max.message.bytes": "50000"})
        topic_id = topic.topic_id
        errors = produce_all(
            cluster.bootstrap, "keep", 3000, key_space=50, **{"enable.idempotence": True}
        )
        assert errors == []
        admin = AdminClient(quiet(**{"bootstrap.servers": cluster.bootstrap}))
        tp = TopicPartition("keep", 0, 2)
        assert admin.delete_records([tp])[tp].result(10).low_watermark == 2
        before = {p.index: p.log.high_watermark for p in topic.partitions}

    with BlockingCluster(brokers=3, data_dir=tmp_path) as cluster:
        topic = cluster.state.topics["keep"]
        assert topic.topic_id == topic_id
        assert topic.configs == {"max.message.bytes": "50000"}
        assert {p.index: p.log.high_watermark for p in topic.partitions} == before
        assert topic.partitions[0].log.log_start_offset == 2
        got = consume_all(cluster.bootstrap, "keep", 3, 3000 - 2)
        values = sorted(int(m.value()) for msgs in got.values() for m in msgs)
        assert len(values) == 3000 - 2
        assert next(m.offset() for m in got[0]) == 2
        # The log goes on where it stopped, with producer ids that do not repeat.
        assert produce_all(cluster.bootstrap, "keep", 10, **{"enable.idempotence": True}) == []
        assert sum(p.log.high_watermark for p in topic.partitions) == sum(before.values()) + 10


def test_torn_tail_is_cut_at_restart(tmp_path: Path) -> None:
    with BlockingCluster(brokers=1, data_dir=tmp_path) as cluster:
        cluster.create_topic("torn", 1)
        for _ in range(5):  # five flushes: five batches of 100
            assert produce_all(cluster.bootstrap, "torn", 100) == []
    (segment,) = (tmp_path / "torn-0").glob("*.log")
    os.truncate(segment, segment.stat().st_size - 10)  # a crash mid-write of the last batch

    with BlockingCluster(brokers=1, data_dir=tmp_path) as cluster:
        log = cluster.state.topics["torn"].partitions[0].log
        assert log.high_watermark == 400
        got = consume_all(cluster.bootstrap, "torn", 1, 400)[0]
        assert [int(m.value()) for m in got] == list(range(100)) * 4
        assert produce_all(cluster.bootstrap, "torn", 1) == []
        assert log.high_watermark == 401
