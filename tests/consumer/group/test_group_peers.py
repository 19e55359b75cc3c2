"""GroupMembership with real peers: confluent-kafka (librdkafka) members in the same group
on the embedded broker, and librdkafka's mock cluster with injected errors and a moved
coordinator."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from confluent_kafka import Consumer
from group_harness import Member, partitions, until, wait_settled
from peers import MockCluster

from pykaf._consumer._records import OffsetAndMetadata
from pykaf._consumer._records import TopicPartition as TP
from pykaf._errors import RebalancingCommitError
from pykaf.broker import BlockingCluster
from pykaf.broker._group_model import GroupSettings
from pykaf.broker._groups import configure_groups

pytestmark = pytest.mark.peer

JOIN_GROUP, SYNC_GROUP, OFFSET_COMMIT, HEARTBEAT, LEAVE_GROUP = 11, 14, 8, 12, 13
TWELVE = partitions("t", 12)


@pytest_asyncio.fixture
async def members() -> AsyncIterator[list[Member]]:
    started: list[Member] = []
    yield started
    async with asyncio.timeout(10):
        for m in started:
            await m.close()


# -- confluent-kafka members in the same group ------------------------------------------


class Confluent:
    """A librdkafka group member polled in its own thread (it blocks)."""

    def __init__(self, bootstrap: str, group: str, assignor: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "partition.assignment.strategy": assignor,
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 100,
                "enable.auto.commit": False,
                "log_level": 3,
            }
        )
        self.assignment: set[TP] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Confluent:
        self.consumer.subscribe(["t"])
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.consumer.poll(0.05)
            self.assignment = {TP(p.topic, p.partition) for p in self.consumer.assignment()}
        self.consumer.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


@pytest.fixture
def blocking_cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=3) as running:
        running.create_topic("t", 12)
        running.call(
            lambda: configure_groups(running.state, GroupSettings(initial_rebalance_delay=0.3))
        )
        yield running


def covered(ours: Member, theirs: list[Confluent]) -> bool:
    owned = [ours.group.assignment, *(c.assignment for c in theirs)]
    flat = [tp for parts in owned for tp in parts]
    return (
        ours.group._state.stable
        and not ours.group.rejoin_needed
        and len(flat) == len(set(flat))
        and set(flat) == TWELVE
        and all(owned)
    )


@pytest.mark.parametrize(
    ("assignor", "pykaf_first"),
    [("range", True), ("roundrobin", False), ("cooperative-sticky", True),
     ("cooperative-sticky", False)],
)  # fmt: skip
async def test_shares_partitions_with_confluent_members(
    blocking_cluster: BlockingCluster, members: list[Member], assignor: str, pykaf_first: bool
) -> None:
    group = f"interop-{assignor}-{pykaf_first}"
    theirs = [Confluent(blocking_cluster.bootstrap, group, assignor) for _ in range(2)]
    ours = Member(
        blocking_cluster.bootstrap, group, ["t"], partition_assignment_strategy=(assignor,)
    )
    members.append(ours)
    try:
        if pykaf_first:
            await ours.start()
            await until(lambda: ours.group._state.stable, "pykaf joined first")
            for c in theirs:
                c.start()
        else:
            theirs[0].start()
            await until(lambda: bool(theirs[0].assignment), "confluent joined first")
            await ours.start()
            theirs[1].start()
        await until(lambda: covered(ours, theirs), f"{assignor}: 3 members cover 12 partitions")
        assert ours.group.is_leader == pykaf_first
        assert ours.errors == []
        # One confluent member leaves: the other two take its partitions.
        theirs[0].stop()
        await until(lambda: covered(ours, theirs[1:]), f"{assignor}: 2 members after a leave")
    finally:
        for c in theirs:
            c.stop()


# -- librdkafka's mock cluster: faults and a moved coordinator ---------------------------


# The mock cluster holds a rebalance for about the members' session timeout.
MOCK_MEMBER = {"session_timeout": 2.0}


@pytest.fixture
def mock(mock_cluster: MockCluster) -> MockCluster:
    mock_cluster.create_topic("t", 12)
    # The mock (librdkafka 2.16) offers JoinGroup v6, SyncGroup v4 and LeaveGroup v3+ but
    # reads their arrays as the older, non-flexible ones (and LeaveGroup v3's member
    # list not at all) and drops the connection; librdkafka itself never sends those.
    mock_cluster.set_apiversion(JOIN_GROUP, 0, 5)
    mock_cluster.set_apiversion(SYNC_GROUP, 0, 3)
    mock_cluster.set_apiversion(LEAVE_GROUP, 0, 2)
    return mock_cluster


async def test_mock_join_survives_injected_errors(mock: MockCluster, members: list[Member]) -> None:
    mock.push_request_errors(JOIN_GROUP, [27, 14, 15, 16])
    mock.push_request_errors(SYNC_GROUP, [27])
    m = Member(mock.bootstrap, "mock-join", ["t"], **MOCK_MEMBER)
    members.append(m)
    await m.start()
    await wait_settled([m], TWELVE, "joined the mock cluster's group despite the errors")
    assert m.errors == []


async def test_mock_commit_faults_and_committed(mock: MockCluster, members: list[Member]) -> None:
    m = Member(mock.bootstrap, "mock-commit", ["t"], **MOCK_MEMBER)
    members.append(m)
    await m.start()
    await wait_settled([m], TWELVE, "joined")
    mock.push_request_errors(OFFSET_COMMIT, [14, 15])
    await m.group.commit({TP("t", 0): 10, TP("t", 5): OffsetAndMetadata(50, "five")})
    mock.push_request_errors(OFFSET_COMMIT, [27])
    with pytest.raises(RebalancingCommitError):
        await m.group.commit({TP("t", 0): 11})
    await wait_settled([m], TWELVE, "rejoined after REBALANCE_IN_PROGRESS on commit")
    await m.group.commit({TP("t", 0): 11})
    got = await m.group.committed([TP("t", 0), TP("t", 5), TP("t", 6)])
    assert got[TP("t", 0)] is not None
    assert got[TP("t", 0)].offset == 11  # type: ignore[union-attr]
    assert got[TP("t", 5)] is not None
    assert (got[TP("t", 5)].offset, got[TP("t", 5)].metadata) == (50, "five")  # type: ignore[union-attr]
    assert got[TP("t", 6)] is None


async def test_mock_coordinator_moved(mock: MockCluster, members: list[Member]) -> None:
    pair = [Member(mock.bootstrap, "mock-move", ["t"], **MOCK_MEMBER) for _ in range(2)]
    members.extend(pair)
    for m in pair:
        await m.start()
    await wait_settled(pair, TWELVE, "two members")
    mock.set_coordinator("group", "mock-move", 3)
    mock.push_request_errors(HEARTBEAT, [16])  # the next heartbeat meets NOT_COORDINATOR
    await pair[0].group.commit({TP("t", 1): 5})  # finds the new coordinator
    mock.set_coordinator("group", "mock-move", 2)
    await wait_settled(pair, TWELVE, "the group goes on with the coordinator moved twice")
    await pair[1].group.commit({TP("t", 1): 6})
    got = (await pair[0].group.committed([TP("t", 1)]))[TP("t", 1)]
    assert got is not None
    assert got.offset == 6  # (the mock answers leader epoch 0 for a commit without one)
    assert all(m.errors == [] for m in pair)
