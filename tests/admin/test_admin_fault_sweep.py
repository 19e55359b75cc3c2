"""Admin calls while the cluster throws faults at them, one after another: connections
closed before a request is read or after it is answered, the controller's broker down,
a leader moved. Every call must give its real answer, or a typed per-item error that
says what happened: topic creates reach the next controller, reads are asked again, a
create whose first answer was lost says that an earlier attempt may have made the topic,
and the listed offsets are the real ones."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from fault_sweep import move_a_leader, next_fault, swept_cluster, take_a_broker_down

from pykaf import AsyncAdmin, AsyncProducer, TopicPartition
from pykaf.admin import ConfigResource
from pykaf.broker import Cluster
from pykaf.errors import TopicAlreadyExistsError

TOPIC, PARTITIONS, ROUNDS, PER_PARTITION = "base", 3, 30, 10
READS = ["Metadata", "ListOffsets", "DescribeConfigs", "DescribeCluster"]
KINDS = ["read dropped", "read answered, dropped", "create dropped", "create answered, dropped"]
KINDS += ["controller down", "leader moved", "none"]


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with swept_cluster(TOPIC, PARTITIONS) as running:
        async with AsyncProducer(running.bootstrap) as producer:
            for i in range(PARTITIONS * PER_PARTITION):
                await producer.send(TOPIC, b"%d" % i, partition=i % PARTITIONS)
        yield running


async def one_fault(
    cluster: Cluster, admin: AsyncAdmin, rng: random.Random, down: list[int]
) -> str:
    kind = await next_fault(cluster, rng, down, KINDS)
    faults = cluster.faults
    if kind.startswith("read"):
        faults.drop_connection_after(rng.choice(READS), before_response="answered" in kind)
    elif kind.startswith("create"):
        faults.drop_connection_after("CreateTopics", before_response="answered" in kind)
    elif kind == "controller down":
        await take_a_broker_down(cluster, (await admin.describe_cluster()).controller_id, down)
    elif kind == "leader moved":
        move_a_leader(cluster, rng, TOPIC, PARTITIONS)
    return kind


@pytest.mark.parametrize("seed", [1, 2])
async def test_admin_calls_answer_through_faults(cluster: Cluster, seed: int) -> None:
    rng = random.Random(seed)
    thrown: list[str] = []
    down: list[int] = []
    refused_as_existing = 0
    async with AsyncAdmin(cluster.bootstrap, request_timeout=3.0, retry_backoff=0.02) as admin:
        async with asyncio.timeout(90):
            for round_ in range(ROUNDS):
                thrown.append(await one_fault(cluster, admin, rng, down))
                name = f"made-{round_}"
                created = await admin.create_topics([name])
                if created.errors:
                    # Only where the first answer was lost: the topic is there all the same.
                    error = created.errors[name]
                    assert isinstance(error, TopicAlreadyExistsError), error
                    assert "may have done it" in str(error)
                    refused_as_existing += 1
                latest = await admin.list_offsets(
                    {TopicPartition(TOPIC, p): "latest" for p in range(PARTITIONS)}
                )
                assert latest.errors == {}
                assert {v.offset for v in latest.values()} == {PER_PARTITION}
                configs = await admin.describe_configs([ConfigResource("topic", TOPIC)])
                assert configs.errors == {}
                assert (await admin.describe_cluster()).cluster_id == cluster.state.cluster_id
        listed = await admin.list_topics()
    counts = Counter(thrown)
    assert len(counts) >= 5, counts
    assert counts["controller down"] > 0
    assert {f"made-{r}" for r in range(ROUNDS)} <= set(listed)  # every create made its topic
    assert refused_as_existing <= counts["create answered, dropped"]
