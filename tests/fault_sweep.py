"""What the fault sweeps share (``test_receipt_faults``, ``test_consumer_fault_sweep``,
``test_group_fault_sweep``): a 3-broker embedded cluster whose topic has a replica on
every broker (so a leader can move anywhere and any one broker can go down), and the
faults every sweep throws besides its own. A sweep throws one fault per round, chosen by
a seeded ``random.Random``; a broker it took down comes back before the next fault."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pykaf.broker import Cluster

__all__ = [
    "bring_back",
    "move_a_leader",
    "next_fault",
    "swept_cluster",
    "take_a_broker_down",
]

BROKERS = (1, 2, 3)


@asynccontextmanager
async def swept_cluster(topic: str, partitions: int) -> AsyncIterator[Cluster]:
    async with Cluster(brokers=len(BROKERS)) as running:
        await running.create_topic(topic, partitions, replication_factor=len(BROKERS))
        yield running


async def bring_back(cluster: Cluster, down: list[int]) -> None:
    """Every broker in ``down`` up again (``down`` emptied)."""
    while down:
        await cluster.faults.broker_up(down.pop())


async def next_fault(
    cluster: Cluster, rng: random.Random, down: list[int], kinds: list[str]
) -> str:
    """The brokers the last fault took down up again, and the kind of the next fault."""
    await bring_back(cluster, down)
    return rng.choice(kinds)


def move_a_leader(cluster: Cluster, rng: random.Random, topic: str, partitions: int) -> None:
    partition = rng.randrange(partitions)
    leader = cluster.state.partition(topic, partition).leader  # type: ignore[union-attr]
    cluster.faults.move_leader(topic, partition, rng.choice([n for n in BROKERS if n != leader]))


async def take_a_broker_down(cluster: Cluster, node: int, down: list[int]) -> None:
    """``node`` down until ``bring_back``."""
    await cluster.faults.broker_down(node)
    down.append(node)
