"""A consumer reading while the cluster throws faults at it, one after another, with
records produced between them: retriable Fetch errors, connections closed before a
Fetch is read or after it is answered, answers held back a while, leaders moved, a
broker taken down and brought back. It must hand out every record exactly once, in
offset order per partition, with nothing skipped: no gap, no duplicate, no reordering
(assigned partitions, no group: nothing may be read twice)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from consumer_helpers import by_partition
from fault_sweep import (
    bring_back,
    move_a_leader,
    next_fault,
    swept_cluster,
    take_a_broker_down,
)

from pykaf import AsyncConsumer, AsyncProducer, ConsumerRecord, TopicPartition
from pykaf.broker import Cluster

TOPIC = "sweep"
PARTITIONS = 6
ROUNDS = 30
PER_ROUND = 120
NOT_LEADER, UNKNOWN_TOPIC_OR_PARTITION, REQUEST_TIMED_OUT, FENCED_LEADER_EPOCH = 6, 3, 7, 74
KINDS = ["retriable", "dropped unread", "dropped answered", "held", "leader moved", "broker down"]
FAST = {"request_timeout": 3.0, "retry_backoff": 0.02, "fetch_max_wait": 0.05}


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with swept_cluster(TOPIC, PARTITIONS) as running:
        yield running


async def one_fault(cluster: Cluster, rng: random.Random, down: list[int]) -> str:
    kind = await next_fault(cluster, rng, down, KINDS)
    faults = cluster.faults
    if kind == "retriable":
        codes = [NOT_LEADER, UNKNOWN_TOPIC_OR_PARTITION, REQUEST_TIMED_OUT, FENCED_LEADER_EPOCH]
        faults.push_errors("Fetch", rng.choice(codes))
    elif kind == "dropped unread":
        faults.drop_connection_after("Fetch", before_response=False)
    elif kind == "dropped answered":
        faults.drop_connection_after("Fetch", before_response=True)
    elif kind == "held":
        held = faults.hold_responses("Fetch")
        asyncio.get_running_loop().call_later(rng.choice([0.01, 0.1, 0.3]), held.release)
    elif kind == "leader moved":
        move_a_leader(cluster, rng, TOPIC, PARTITIONS)
    else:
        await take_a_broker_down(cluster, rng.choice([1, 2, 3]), down)
    return kind


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_every_record_is_handed_out_once_in_order_through_faults(
    cluster: Cluster, seed: int
) -> None:
    rng = random.Random(seed)
    produced: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    seen: list[ConsumerRecord] = []
    thrown: list[str] = []
    down: list[int] = []
    async with (
        AsyncProducer(cluster.bootstrap, linger=0.002, delivery_timeout=60.0) as producer,
        AsyncConsumer(cluster.bootstrap, auto_offset_reset="earliest", **FAST) as consumer,
    ):
        await consumer.assign([TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
        async with asyncio.timeout(90):
            for round_ in range(ROUNDS):
                values = [b"%02d-%04d" % (round_, i) for i in range(PER_ROUND)]
                sent = [
                    producer.send(TOPIC, value, partition=i % PARTITIONS)
                    for i, value in enumerate(values)
                ]
                for value, future in zip(values, sent, strict=True):
                    produced[(await future).partition].append(value)
                thrown.append(await one_fault(cluster, rng, down))
                seen += await consumer.poll(timeout=rng.choice([0, 0.05, 0.2]))
            await bring_back(cluster, down)
            while len(seen) < ROUNDS * PER_ROUND:
                seen += await consumer.poll(timeout=1)
        assert await consumer.poll(timeout=0.3) == []  # nothing more: no duplicate late
    assert len(set(thrown)) >= 5, thrown
    assert by_partition(seen) == produced
    for partition in range(PARTITIONS):
        offsets = [r.offset for r in seen if r.partition == partition]
        assert offsets == list(range(len(offsets))), f"partition {partition}"
