"""GroupMembership against the embedded broker: joins, leaves, cooperative rebalancing,
session expiry, static members, max_poll_interval, commits, faults, coordinator moves."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from group_harness import Member, partitions, until, wait_settled

from pykaf._consumer._records import OffsetAndMetadata
from pykaf._consumer._records import TopicPartition as TP
from pykaf._errors import CommitFailedError, RebalancingCommitError
from pykaf._kafka_errors import FencedInstanceIdError
from pykaf.broker import Cluster
from pykaf.broker._group_model import GroupSettings
from pykaf.broker._groups import configure_groups, group_coordinator

FAST_GROUPS = GroupSettings(initial_rebalance_delay=0.05, min_session_timeout=0.05)
SIX = partitions("t", 6)


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with Cluster(brokers=3) as running:
        configure_groups(running.state, FAST_GROUPS)
        await running.create_topic("t", 6)
        yield running


@pytest_asyncio.fixture
async def members() -> AsyncIterator[list[Member]]:
    """Members a test starts; closed (bounded) at the end whatever happened."""
    started: list[Member] = []
    yield started
    async with asyncio.timeout(10):
        for m in started:
            await m.close()


async def start(started: list[Member], cluster: Cluster, group: str, **kw: object) -> Member:
    kw.setdefault("name", f"m{len(started)}")
    m = Member(cluster.bootstrap, group, kw.pop("topics", ["t"]), **kw)  # type: ignore[arg-type]
    started.append(m)
    return await m.start()


def broker_group(cluster: Cluster, group: str):  # type: ignore[no-untyped-def]
    return group_coordinator(cluster.state).groups[group]


async def test_join_commit_and_committed(cluster: Cluster, members: list[Member]) -> None:
    m = await start(members, cluster, "g-one")
    await wait_settled([m], SIX, "one member owns every partition")
    assert m.kinds("assigned") == [SIX]
    assert m.changes[0].added == SIX
    assert m.group.is_leader
    await m.group.commit({TP("t", 0): 5, TP("t", 1): OffsetAndMetadata(7, "meta", 3)})
    got = await m.group.committed([TP("t", 0), TP("t", 1), TP("t", 2)])
    assert got == {
        TP("t", 0): OffsetAndMetadata(5),
        TP("t", 1): OffsetAndMetadata(7, "meta", 3),
        TP("t", 2): None,
    }
    stored = group_coordinator(cluster.state).offsets.get("g-one", "t", 1)
    assert stored is not None
    assert (stored.offset, stored.metadata) == (7, "meta")


async def test_members_join_and_leave_range(cluster: Cluster, members: list[Member]) -> None:
    trio = [await start(members, cluster, "g-range") for _ in range(3)]
    await wait_settled(trio, SIX, "three members share six partitions")
    assert sorted(len(m.group.assignment) for m in trio) == [2, 2, 2]
    leaver = trio[0]
    owned = leaver.group.assignment
    await leaver.close()
    members.remove(leaver)
    assert leaver.kinds("revoked")[-1] == owned  # given up on close
    await wait_settled(trio[1:], SIX, "two members share six partitions after a leave")
    for m in trio[1:]:
        # Eager: everything revoked before the rejoin, then the new assignment.
        assert m.kinds("revoked")[-1] | m.kinds("assigned")[-1] >= m.group.assignment
        assert len(m.group.assignment) == 3
    assert len(broker_group(cluster, "g-range").members) == 2


async def test_cooperative_rebalance_moves_only_what_moves(
    cluster: Cluster, members: list[Member]
) -> None:
    sticky = {"partition_assignment_strategy": ("cooperative-sticky",)}
    first = [await start(members, cluster, "g-coop", **sticky) for _ in range(2)]
    await wait_settled(first, SIX, "two cooperative members")
    before = {m.name: m.group.assignment for m in first}
    assert not any(m.kinds("revoked") for m in first)
    third = await start(members, cluster, "g-coop", **sticky)
    everyone = [*first, third]
    await wait_settled(everyone, SIX, "three cooperative members")
    assert sorted(len(m.group.assignment) for m in everyone) == [2, 2, 2]
    for m in first:
        revoked = frozenset().union(*m.kinds("revoked"))
        # Only the partitions that moved were revoked, never everything; nothing lost.
        assert revoked == before[m.name] - m.group.assignment
        assert m.group.assignment <= before[m.name]
        assert not m.kinds("lost")
    assert third.group.assignment == frozenset().union(*(m.kinds("revoked")[0] for m in first))
    # The consumer saw the same thing through ensure_active's changes.
    for m in first:
        assert (
            frozenset().union(*(c.revoked for c in m.changes))
            == before[m.name] - m.group.assignment
        )


async def test_session_expiry_of_a_silent_member(cluster: Cluster, members: list[Member]) -> None:
    short = {"session_timeout": 1.0, "heartbeat_interval": 0.1}
    alive = await start(members, cluster, "g-expiry", **short)
    silent = await start(members, cluster, "g-expiry", **short)
    await wait_settled([alive, silent], SIX, "two members")
    await silent.crash()  # no LeaveGroup, no more heartbeats
    members.remove(silent)
    await wait_settled([alive], SIX, "the survivor takes everything after the session expires")
    assert len(broker_group(cluster, "g-expiry").members) == 1


async def test_static_member_rejoins_without_rebalance(
    cluster: Cluster, members: list[Member]
) -> None:
    a = await start(members, cluster, "g-static", group_instance_id="a")
    b = await start(members, cluster, "g-static", group_instance_id="b")
    await wait_settled([a, b], SIX, "two static members")
    generation = b.group.generation.generation_id
    owned, b_events = a.group.assignment, len(b.events)
    await a.close()  # a static member sends no LeaveGroup: its place is kept
    members.remove(a)
    assert len(broker_group(cluster, "g-static").members) == 2
    again = await start(members, cluster, "g-static", group_instance_id="a")
    await wait_settled([again, b], SIX, "the static member is back")
    assert again.group.assignment == owned
    assert again.group.generation.generation_id == generation  # no rebalance
    assert len(b.events) == b_events  # b noticed nothing


async def test_max_poll_interval_leaves_then_rejoins(
    cluster: Cluster, members: list[Member]
) -> None:
    slow = await start(members, cluster, "g-poll", max_poll_interval=1.0)
    other = await start(members, cluster, "g-poll")
    await wait_settled([slow, other], SIX, "two members")
    owned = slow.group.assignment
    slow.polling = False  # the application stops polling
    await until(lambda: not slow.group.generation.valid, "the slow member left the group")
    await wait_settled([other], SIX, "the other member takes everything")
    slow.polling = True
    await wait_settled([slow, other], SIX, "the slow member is back after polling again")
    assert owned in slow.kinds("lost")  # its generation was gone when it noticed


async def test_join_recovers_from_injected_errors(cluster: Cluster, members: list[Member]) -> None:
    cluster.faults.push_errors("JoinGroup", [27, 14, 15, 16])
    cluster.faults.push_errors("SyncGroup", [27])
    m = await start(members, cluster, "g-faults")
    await wait_settled([m], SIX, "joined despite the errors")
    assert cluster.faults.pending_errors() == 0
    assert m.errors == []


async def test_commit_faults(cluster: Cluster, members: list[Member]) -> None:
    m = await start(members, cluster, "g-commit")
    await wait_settled([m], SIX, "joined")
    cluster.faults.push_errors("OffsetCommit", [14, 15, 16])
    await m.group.commit({TP("t", 0): 1})  # retried until it went through
    cluster.faults.push_errors("OffsetCommit", [27])
    with pytest.raises(RebalancingCommitError) as info:
        await m.group.commit({TP("t", 0): 2})
    assert info.value.retriable
    await wait_settled([m], SIX, "rejoined after the commit met a rebalance")
    await m.group.commit({TP("t", 0): 2})
    cluster.faults.push_errors("OffsetCommit", [22])  # ILLEGAL_GENERATION
    with pytest.raises(CommitFailedError) as failed:
        await m.group.commit({TP("t", 0): 3})
    assert not failed.value.retriable
    await wait_settled([m], SIX, "rejoined after the generation ended")
    assert SIX in m.kinds("lost")
    assert (await m.group.committed([TP("t", 0)]))[TP("t", 0)] == OffsetAndMetadata(2)


async def test_a_retried_commit_does_not_write_an_older_offset_over_a_newer_one(
    cluster: Cluster, members: list[Member]
) -> None:
    # Auto-commits run in the background and retry: one that met a retriable error
    # slept, a newer commit (the next auto-commit, or the one before a revoke) went
    # through, and the retry then wrote the older offset over it. After the next
    # rebalance the partition was read again from there (a two-member fault sweep read
    # 30-230 records twice in 4 of 8 runs).
    m = await start(members, cluster, "g-order", client={"retry_backoff": 1.0})
    await wait_settled([m], SIX, "joined")
    cluster.faults.push_errors("OffsetCommit", [15])  # COORDINATOR_NOT_AVAILABLE: retried
    older = asyncio.ensure_future(m.group.commit({TP("t", 0): 10}))
    await until(lambda: cluster.faults.pending_errors("OffsetCommit") == 0, "the error met")
    await m.group.commit({TP("t", 0): 20})  # while the older one waits out its backoff
    await asyncio.wait_for(older, 10)
    assert (await m.group.committed([TP("t", 0)]))[TP("t", 0)] == OffsetAndMetadata(20)


async def test_coordinator_down_and_up(cluster: Cluster, members: list[Member]) -> None:
    m = await start(members, cluster, "g-move", session_timeout=6.0)
    await wait_settled([m], SIX, "joined")
    generation = m.group.generation
    node = cluster.state.coordinator_for("g-move")
    assert node is not None
    await cluster.faults.broker_down(node.node_id)
    await m.group.commit({TP("t", 3): 30})  # finds the new coordinator
    moved = cluster.state.coordinator_for("g-move")
    assert moved is not None
    assert moved.node_id != node.node_id
    await cluster.faults.broker_up(node.node_id)
    await m.group.commit({TP("t", 3): 31})
    assert (await m.group.committed([TP("t", 3)]))[TP("t", 3)] == OffsetAndMetadata(31)
    # Heartbeats reach the coordinator, back on its first broker: three let through there.
    cluster.faults.push_errors("Heartbeat", [0, 0, 0], broker=node.node_id)
    await until(lambda: cluster.faults.pending_errors("Heartbeat") == 0, "three heartbeats")
    assert m.group.generation == generation
    assert m.group._state.stable


async def test_regex_subscription(
    cluster: Cluster, members: list[Member], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="pykaf.consumer"):
        m = await start(
            members,
            cluster,
            "g-regex",
            topics=re.compile(r"news\..*"),
            client={"metadata_max_age": 0.2},
        )
        await until(lambda: bool(m.kinds("assigned")), "a first (empty) assignment")
    assert m.kinds("assigned") == [frozenset()]
    assert "matches no topic" in caplog.text
    await cluster.create_topic("news.sport", 2)
    await cluster.create_topic("newsroom", 2)  # no full match
    await wait_settled([m], partitions("news.sport", 2), "the new matching topic is followed")
    assert m.group.subscription == {"news.sport"}


async def test_bad_input(cluster: Cluster, members: list[Member]) -> None:
    m = Member(cluster.bootstrap, "g-bad", ["t"])
    members.append(m)
    with pytest.raises(TypeError, match="wrap a single name"):
        await m.group.subscribe("t")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="group_id"):
        Member(cluster.bootstrap, "", ["t"])
    await m.group.close()
    with pytest.raises(Exception, match="closed"):
        await m.group.ensure_active()


async def test_leader_follows_new_partitions(cluster: Cluster, members: list[Member]) -> None:
    pair = [
        await start(members, cluster, "g-grow", client={"metadata_max_age": 0.2}) for _ in range(2)
    ]
    await wait_settled(pair, SIX, "two members")
    cluster.state.create_partitions("t", 8)
    await wait_settled(pair, partitions("t", 8), "the leader noticed two new partitions")


async def test_fenced_static_member_fails_for_good(cluster: Cluster, members: list[Member]) -> None:
    first = await start(members, cluster, "g-fenced", group_instance_id="same")
    await wait_settled([first], SIX, "the first static member")
    owned = first.group.assignment
    first.polling = False  # its heartbeats go on; its polls stop, to see the error below
    second = await start(members, cluster, "g-fenced", group_instance_id="same")
    await wait_settled([second], SIX, "the second member took the instance id over")
    await until(lambda: first.group._state.fatal is not None, "the first member is fenced")
    with pytest.raises(FencedInstanceIdError, match="'same'"):
        await first.group.ensure_active(timeout=1)
    with pytest.raises(FencedInstanceIdError):
        await first.group.commit({TP("t", 0): 1})
    await first.close()
    members.remove(first)
    assert first.kinds("lost") == [owned]
    assert not first.kinds("revoked")
    assert second.group.assignment == SIX
