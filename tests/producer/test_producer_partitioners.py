"""Every partition strategy through the Producer (accumulator and all), not only the
partitioner object on its own: the accumulator must ask the strategy once per record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _produce_readback import read_topic

from pykaf._producer._partitioner import PARTITIONER_NAMES
from pykaf._producer._producer import Producer
from pykaf.broker import BlockingCluster

PARTITIONS = 8
RECORDS = 400
# batch_size so small that every record opens a new batch: the path that re-asked.
SETTINGS = {"request_timeout": 5.0, "delivery_timeout": 20.0, "max_block": 10.0, "batch_size": 1}


@pytest.fixture(scope="module")
def cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=1) as running:
        yield running


def written_per_partition(cluster: BlockingCluster, topic: str) -> Counter[int]:
    return Counter({p: len(records) for p, records in read_topic(cluster.bootstrap, topic).items()})


@pytest.mark.parametrize("strategy", PARTITIONER_NAMES)
def test_keyless_records_reach_every_partition(cluster: BlockingCluster, strategy: str) -> None:
    topic = f"spread-{strategy}"
    cluster.create_topic(topic, PARTITIONS)
    with Producer(cluster.bootstrap, partitioner=strategy, linger=0, **SETTINGS) as p:
        for i in range(RECORDS):
            p.produce(topic, b"v%d" % i)
        assert p.flush(30) == 0
    counts = written_per_partition(cluster, topic)
    assert sum(counts.values()) == RECORDS
    # One record per batch: every strategy moves on often enough to touch them all.
    assert set(counts) == set(range(PARTITIONS)), counts


def test_strict_round_robin_takes_each_partition_in_turn(cluster: BlockingCluster) -> None:
    topic = "strict-turns"
    cluster.create_topic(topic, PARTITIONS)
    with Producer(cluster.bootstrap, partitioner="strict_round_robin", **SETTINGS) as p:
        futures = [p.send(topic, b"v%d" % i) for i in range(RECORDS)]
        partitions = [f.result(30).partition for f in futures]
    first = partitions[0]
    assert partitions == [(first + i) % PARTITIONS for i in range(RECORDS)]


@pytest.mark.parametrize("custody", ["memory", "journal"])
@pytest.mark.parametrize("batch_size", [1, 16384])
def test_a_custom_partitioner_is_called_once_per_record(
    cluster: BlockingCluster, batch_size: int, custody: str, tmp_path: Path
) -> None:
    # The journal's hot path asks the partitioner for a keyed record and, when the
    # record takes the general path after all (batch_size 1: a new batch each time),
    # hands its choice on rather than asking again.
    topic = f"custom-{batch_size}-{custody}"
    cluster.create_topic(topic, PARTITIONS)
    calls: list[bytes | None] = []

    def by_turn(topic: str, key: bytes | None, count: int) -> int:
        calls.append(key)
        return len(calls) % count

    settings: dict[str, Any] = {**SETTINGS, "batch_size": batch_size, "custody": custody}
    if custody != "memory":
        settings["journal_dir"] = tmp_path
    with Producer(cluster.bootstrap, partitioner=by_turn, **settings) as p:
        futures = [p.send(topic, b"v%d" % i, key=b"k%d" % i) for i in range(RECORDS)]
        partitions = [f.result(30).partition for f in futures]
    assert calls == [b"k%d" % i for i in range(RECORDS)]
    assert partitions == [(i + 1) % PARTITIONS for i in range(RECORDS)]
