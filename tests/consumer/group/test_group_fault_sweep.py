"""Two members of a group reading while the cluster throws faults at them, one after
another, with records produced between them: commit errors and commits answered into a
closed connection, heartbeats answered REBALANCE_IN_PROGRESS or dropped, JoinGroup and
SyncGroup errors, the coordinator's broker down and back, retriable Fetch errors and
leaders moved. Every record must be handed out, in offset order per partition, none
skipped; none twice unless a commit was said to have failed (at-least-once: what was
handed out after the last commit may be read again); and after both close, a new member
reads nothing: what was handed out was committed."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from fault_sweep import (
    bring_back,
    move_a_leader,
    next_fault,
    swept_cluster,
    take_a_broker_down,
)

from pykaf import AsyncConsumer, AsyncProducer
from pykaf.broker import Cluster
from pykaf.broker._group_model import GroupSettings
from pykaf.broker._groups import configure_groups

TOPIC, GROUP_ID, PARTITIONS, ROUNDS, PER_ROUND = "swept", "sweep", 6, 30, 60
OPTIONS = {
    "session_timeout": 3.0,
    "heartbeat_interval": 0.2,
    "rebalance_timeout": 2.0,
    "auto_commit_interval": 0.05,
    "request_timeout": 2.0,
    "retry_backoff": 0.02,
    "fetch_max_wait": 0.05,
}
KINDS = [
    "commit errors",
    "commit answered into a closed connection",
    "heartbeat rebalance",
    "heartbeat dropped",
    "join errors",
    "sync errors",
    "coordinator down",
    "fetch retriable",
    "leader moved",
]


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with swept_cluster(TOPIC, PARTITIONS) as running:
        configure_groups(
            running.state, GroupSettings(initial_rebalance_delay=0.05, min_session_timeout=0.05)
        )
        yield running


async def one_fault(cluster: Cluster, rng: random.Random, down: list[int]) -> str:
    kind = await next_fault(cluster, rng, down, KINDS)
    faults = cluster.faults
    if kind == "commit errors":
        faults.push_errors("OffsetCommit", rng.choice([[14], [15], [16], [7], [14, 16]]))
    elif kind == "commit answered into a closed connection":
        faults.drop_connection_after("OffsetCommit", before_response=True)
    elif kind == "heartbeat rebalance":
        faults.push_errors("Heartbeat", [27])
    elif kind == "heartbeat dropped":
        faults.drop_connection_after("Heartbeat", before_response=rng.random() < 0.5)
    elif kind == "join errors":
        faults.push_errors("JoinGroup", rng.choice([[14], [15], [16]]))
    elif kind == "sync errors":
        faults.push_errors("SyncGroup", rng.choice([[15], [16], [27]]))
    elif kind == "coordinator down":
        node = cluster.state.coordinator_for(GROUP_ID)
        if node is not None:
            await take_a_broker_down(cluster, node.node_id, down)
    elif kind == "fetch retriable":
        faults.push_errors("Fetch", rng.choice([6, 7, 9]))
    else:
        move_a_leader(cluster, rng, TOPIC, PARTITIONS)
    return kind


def member(cluster: Cluster, errors: list[BaseException]) -> AsyncConsumer:
    return AsyncConsumer(
        cluster.bootstrap,
        group_id=GROUP_ID,
        topics=[TOPIC],
        auto_offset_reset="earliest",
        on_error=errors.append,
        **OPTIONS,
    )


@pytest.mark.parametrize("seed", [4, 8])
async def test_two_members_hand_out_every_record_once_through_faults(
    cluster: Cluster, seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pykaf.consumer")
    rng = random.Random(seed)
    handed: list[tuple[int, int]] = []  # (partition, offset), in hand-out order
    errors: list[BaseException] = []
    thrown: list[str] = []
    down: list[int] = []
    total = ROUNDS * PER_ROUND
    first, second = member(cluster, errors), member(cluster, errors)
    stop = asyncio.Event()

    async def keep_polling(consumer: AsyncConsumer) -> None:
        while not stop.is_set():
            handed.extend((r.partition, r.offset) for r in await consumer.poll(timeout=0.05))

    async with AsyncProducer(cluster.bootstrap, linger=0.002) as producer, first, second:
        other = asyncio.ensure_future(keep_polling(second))
        try:
            async with asyncio.timeout(90):
                for round_ in range(ROUNDS):
                    await asyncio.gather(
                        *(
                            producer.send(TOPIC, b"%02d-%03d" % (round_, i), partition=i % 6)
                            for i in range(PER_ROUND)
                        )
                    )
                    thrown.append(await one_fault(cluster, rng, down))
                    timeout = rng.choice([0.02, 0.1, 0.3])
                    handed.extend((r.partition, r.offset) for r in await first.poll(timeout))
                await bring_back(cluster, down)
                while len(set(handed)) < total:
                    handed.extend((r.partition, r.offset) for r in await first.poll(0.2))
        finally:
            stop.set()
            await other
    assert len(set(thrown)) >= 6, thrown
    assert errors == []
    assert len(set(handed)) == total  # none skipped
    per_partition: dict[int, list[int]] = {}
    for partition, offset in handed:
        per_partition.setdefault(partition, []).append(offset)
    for partition, offsets in per_partition.items():
        # In order: each next offset follows, or starts again from a committed point
        # (after a rebalance); never one that skips.
        assert offsets[0] == 0, partition
        assert all(b == a + 1 or b <= a for a, b in itertools.pairwise(offsets)), partition
    twice = [at for at, n in Counter(handed).items() if n > 1]
    # Read again only where the commit before a revoke failed, or a membership was lost
    # (each said at WARNING or ERROR): a periodic auto-commit that failed does not count,
    # the commit before the revoke carries what it did not.
    excused = [
        r.getMessage()
        for r in caplog.records
        if "before revoking failed" in r.getMessage() or "membership lost" in r.getMessage()
    ]
    if not excused:
        assert twice == [], f"{len(twice)} records handed out twice, no commit said to fail"
    async with member(cluster, errors) as later:
        async with asyncio.timeout(30):
            again = [r for _ in range(10) for r in await later.poll(timeout=0.2)]
    assert again == []  # everything handed out was committed
