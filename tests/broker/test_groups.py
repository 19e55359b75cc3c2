"""The classic group coordinator at the wire level: joins, syncs, heartbeats, leaves,
timeouts, static members, offsets and the error codes Kafka returns."""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from wire_client import WireClient

from pykaf.broker import BlockingCluster, ClusterState
from pykaf.broker._group_model import GroupSettings, GroupState
from pykaf.broker._groups import configure_groups, coordinator_error, group_coordinator

JOIN_V = 5
SYNC_V = 3
HEARTBEAT_V = 3
LEAVE_V = 3
COMMIT_V = 8
FETCH_V = 7

NONE = 0
UNKNOWN_TOPIC_OR_PARTITION = 3
UNKNOWN_TOPIC_ID = 100
OFFSET_METADATA_TOO_LARGE = 12
NOT_COORDINATOR = 16
ILLEGAL_GENERATION = 22
INCONSISTENT_GROUP_PROTOCOL = 23
INVALID_GROUP_ID = 24
UNKNOWN_MEMBER_ID = 25
INVALID_SESSION_TIMEOUT = 26
REBALANCE_IN_PROGRESS = 27
INVALID_REQUEST = 42
NON_EMPTY_GROUP = 68
GROUP_ID_NOT_FOUND = 69
MEMBER_ID_REQUIRED = 79
FENCED_INSTANCE_ID = 82
GROUP_SUBSCRIBED_TO_TOPIC = 86

FAST = GroupSettings(initial_rebalance_delay=0.05, min_session_timeout=0.05)


def subscription(*topics: str) -> bytes:
    """A ConsumerProtocolSubscription v0: version, [topic], user data (null)."""
    out = struct.pack(">hi", 0, len(topics))
    for topic in topics:
        out += struct.pack(">h", len(topic)) + topic.encode()
    return out + struct.pack(">i", -1)


PROTOCOLS = [{"name": "range", "metadata": subscription("t")}]


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=3) as running:
        running.create_topic("t", 4)
        running.call(lambda: configure_groups(running.state, FAST))
        yield running


def address_of(cluster: BlockingCluster, node_id: int) -> str:
    node = cluster.state.brokers[node_id]
    return f"{node.host}:{node.port}"


def coordinator_of(cluster: BlockingCluster, group: str) -> str:
    with WireClient(cluster.brokers[0].__str__()) as client:
        answer = client.request("FindCoordinator", 3, key=group, key_type=0)
    assert answer.error_code == NONE
    return f"{answer.host}:{answer.port}"


def sibling_of(cluster: BlockingCluster, group: str) -> str:
    """Another group id with the same coordinator as ``group``."""
    target = cluster.state.coordinator_for(group)
    return next(
        f"{group}-{i}"
        for i in range(1000)
        if cluster.state.coordinator_for(f"{group}-{i}") == target
    )


def not_coordinator_of(cluster: BlockingCluster, group: str) -> str:
    node = cluster.state.coordinator_for(group)
    assert node is not None
    other = next(n for n in cluster.state.brokers if n != node.node_id)
    return address_of(cluster, other)


class Member:
    """One group member on its own connection to the coordinator."""

    def __init__(self, cluster: BlockingCluster, group: str, *, instance: str | None = None):
        self.group = group
        self.client = WireClient(coordinator_of(cluster, group), timeout=10.0)
        self.instance = instance
        self.member_id = ""
        self.generation = -1
        self.joined: Any = None

    def send_join(
        self,
        protocols: list[dict[str, Any]] | None = None,
        *,
        session: int = 10_000,
        rebalance: int = 10_000,
        version: int = JOIN_V,
        protocol_type: str = "consumer",
    ) -> None:
        self.client.send(
            "JoinGroup",
            version,
            group_id=self.group,
            session_timeout=session,
            rebalance_timeout=rebalance,
            member_id=self.member_id,
            group_instance_id=self.instance,
            protocol_type=protocol_type,
            protocols=PROTOCOLS if protocols is None else protocols,
        )

    def receive_join(self) -> Any:
        answer = self.client.receive()
        if answer.error_code in (NONE, MEMBER_ID_REQUIRED):
            self.member_id = answer.member_id
        if answer.error_code == NONE:
            self.generation = answer.generation_id
        self.joined = answer
        return answer

    def join(self, **kwargs: Any) -> Any:
        """Join, answering MEMBER_ID_REQUIRED once (held until the join phase ends)."""
        self.send_join(**kwargs)
        answer = self.receive_join()
        if answer.error_code == MEMBER_ID_REQUIRED:
            self.send_join(**kwargs)
            answer = self.receive_join()
        return answer

    def send_sync(self, assignments: dict[str, bytes] | None = None) -> None:
        self.client.send(
            "SyncGroup",
            SYNC_V,
            group_id=self.group,
            generation_id=self.generation,
            member_id=self.member_id,
            group_instance_id=self.instance,
            assignments=[{"member_id": m, "assignment": a} for m, a in (assignments or {}).items()],
        )

    def heartbeat(self, *, generation: int | None = None, member_id: str | None = None) -> int:
        answer = self.client.request(
            "Heartbeat",
            HEARTBEAT_V,
            group_id=self.group,
            generation_id=self.generation if generation is None else generation,
            member_id=self.member_id if member_id is None else member_id,
            group_instance_id=self.instance,
        )
        return int(answer.error_code)

    def leave(self) -> Any:
        return self.client.request(
            "LeaveGroup",
            LEAVE_V,
            group_id=self.group,
            members=[{"member_id": self.member_id, "group_instance_id": self.instance}],
        )

    def commit(self, offsets: dict[int, int], *, topic: str = "t", **fields: Any) -> list[int]:
        request = {
            "group_id": self.group,
            "generation_id_or_member_epoch": self.generation,
            "member_id": self.member_id,
            "group_instance_id": self.instance,
            "topics": [
                {
                    "name": topic,
                    "partitions": [
                        {
                            "partition_index": p,
                            "committed_offset": o,
                            "committed_leader_epoch": -1,
                            "committed_metadata": "m",
                        }
                        for p, o in offsets.items()
                    ],
                }
            ],
        }
        request.update(fields)
        answer = self.client.request("OffsetCommit", COMMIT_V, **request)
        return [p.error_code for p in answer.topics[0].partitions]

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def members(cluster: BlockingCluster) -> Iterator[Callable[..., Member]]:
    made: list[Member] = []

    def make(group: str, **kwargs: Any) -> Member:
        made.append(Member(cluster, group, **kwargs))
        return made[-1]

    yield make
    for member in made:
        member.close()


def wait_for(condition: Callable[[], bool], *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def group_state(cluster: BlockingCluster, group: str) -> GroupState | None:
    found = group_coordinator(cluster.state).groups.get(group)
    return found.state if found is not None else None


def join_two(make: Callable[..., Member], group: str, **join: Any) -> tuple[Member, Member]:
    """Two members in one generation, synced: ``a`` leads with assignments b"A", b"B"."""
    a, b = make(group), make(group)
    for m in (a, b):
        m.send_join(**join)
        if m.receive_join().error_code == MEMBER_ID_REQUIRED:
            m.send_join(**join)
    joined_a, joined_b = a.receive_join(), b.receive_join()
    assert (joined_a.error_code, joined_b.error_code) == (NONE, NONE)
    assert joined_a.generation_id == joined_b.generation_id == 1
    b.send_sync()
    a.send_sync({a.member_id: b"A", b.member_id: b"B"})
    assert a.client.receive().assignment == b"A"
    assert b.client.receive().assignment == b"B"
    return a, b


# -- FindCoordinator ----------------------------------------------------------------------


def test_find_coordinator_single_and_batched(cluster: BlockingCluster) -> None:
    expected = cluster.state.coordinator_for("g1")
    assert expected is not None
    with WireClient(str(cluster.brokers[0])) as client:
        v0 = client.request("FindCoordinator", 0, key="g1")
        assert (v0.error_code, v0.node_id, v0.port) == (NONE, expected.node_id, expected.port)
        batch = client.request("FindCoordinator", 4, key_type=1, coordinator_keys=["g1", "txn-2"])
        assert [c.key for c in batch.coordinators] == ["g1", "txn-2"]
        for c in batch.coordinators:
            node = cluster.state.coordinator_for(c.key)
            assert node is not None
            assert (c.error_code, c.node_id, c.host, c.port) == (
                NONE,
                node.node_id,
                node.host,
                node.port,
            )
        bad = client.request("FindCoordinator", 3, key="g1", key_type=7)
        assert (bad.error_code, bad.node_id) == (INVALID_REQUEST, -1)


def test_coordinator_moves_when_its_broker_is_down() -> None:
    state = ClusterState(node_ids=[1, 2, 3])
    node = state.coordinator_for("g")
    assert node is not None
    assert coordinator_error(state, "g", node.node_id) == NONE
    state.set_broker_up(node.node_id, False)
    assert coordinator_error(state, "g", node.node_id) == NOT_COORDINATOR
    for other in (1, 2, 3):
        state.set_broker_up(other, False)
    assert coordinator_error(state, "g", node.node_id) == 15  # COORDINATOR_NOT_AVAILABLE


def test_group_requests_to_another_broker_get_not_coordinator(cluster: BlockingCluster) -> None:
    with WireClient(not_coordinator_of(cluster, "g")) as client:
        join = client.request(
            "JoinGroup",
            JOIN_V,
            group_id="g",
            session_timeout=10_000,
            rebalance_timeout=10_000,
            member_id="",
            group_instance_id=None,
            protocol_type="consumer",
            protocols=PROTOCOLS,
        )
        assert join.error_code == NOT_COORDINATOR
        beat = client.request(
            "Heartbeat", HEARTBEAT_V, group_id="g", generation_id=1, member_id="m"
        )
        assert beat.error_code == NOT_COORDINATOR
        fetched = client.request(
            "OffsetFetch", FETCH_V, group_id="g", topics=None, require_stable=False
        )
        assert fetched.error_code == NOT_COORDINATOR
        committed = client.request(
            "OffsetCommit",
            COMMIT_V,
            group_id="g",
            generation_id_or_member_epoch=-1,
            member_id="",
            group_instance_id=None,
            topics=[
                {
                    "name": "t",
                    "partitions": [
                        {"partition_index": 0, "committed_offset": 1, "committed_metadata": None}
                    ],
                }
            ],
        )
        assert committed.topics[0].partitions[0].error_code == NOT_COORDINATOR


# -- join, sync, heartbeat, leave ---------------------------------------------------------


def test_two_members_join_sync_and_heartbeat(
    cluster: BlockingCluster, members: Callable[..., Member]
) -> None:
    a = members("g")
    b = members("g")
    # KIP-394: a v4+ join without a member id only gets one.
    a.send_join()
    first = a.receive_join()
    assert first.error_code == MEMBER_ID_REQUIRED
    assert first.member_id
    a.send_join()  # held: the initial rebalance delay lets b join the same generation
    b.send_join([{"name": "roundrobin", "metadata": b"rr"}, *PROTOCOLS])
    assert b.receive_join().error_code == MEMBER_ID_REQUIRED
    b.send_join([{"name": "roundrobin", "metadata": b"rr"}, *PROTOCOLS])
    joined_a, joined_b = a.receive_join(), b.receive_join()
    assert joined_a.error_code == joined_b.error_code == NONE
    assert joined_a.generation_id == joined_b.generation_id == 1
    # One vote each: the tie goes to the leader's preference.
    assert joined_a.protocol_name == joined_b.protocol_name == "range"
    assert joined_a.leader == joined_b.leader == a.member_id
    assert {m.member_id for m in joined_a.members} == {a.member_id, b.member_id}
    assert all(m.metadata == subscription("t") for m in joined_a.members)
    assert joined_b.members == ()

    b.send_sync()  # held until the leader's assignment arrives
    assert group_state(cluster, "g") is GroupState.COMPLETING_REBALANCE
    assert a.heartbeat() == NONE  # heartbeats are fine while syncing
    a.send_sync({a.member_id: b"for-a", b.member_id: b"for-b"})
    assert a.client.receive().assignment == b"for-a"
    assert b.client.receive().assignment == b"for-b"
    assert a.heartbeat() == b.heartbeat() == NONE

    with WireClient(coordinator_of(cluster, "g")) as client:
        described = client.request(
            "DescribeGroups", 5, groups=["g"], include_authorized_operations=False
        )
        (group,) = described.groups
        assert (group.group_state, group.protocol_type, group.protocol_data) == (
            "Stable",
            "consumer",
            "range",
        )
        assignments = {m.member_id: m.member_assignment for m in group.members}
        assert assignments == {a.member_id: b"for-a", b.member_id: b"for-b"}
        assert all(m.client_host == "/127.0.0.1" for m in group.members)
        listed = client.request("ListGroups", 4, states_filter=[])
        assert [(g.group_id, g.group_state) for g in listed.groups] == [("g", "Stable")]
        assert client.request("ListGroups", 4, states_filter=["Empty"]).groups == ()
        missing = client.request(
            "DescribeGroups",
            6,
            groups=[sibling_of(cluster, "g")],
            include_authorized_operations=False,
        )
        assert (missing.groups[0].error_code, missing.groups[0].group_state) == (
            GROUP_ID_NOT_FOUND,
            "Dead",
        )


def test_leave_triggers_a_rebalance(
    cluster: BlockingCluster, members: Callable[..., Member]
) -> None:
    a, b = join_two(members, "g")
    answer = b.leave()
    assert answer.error_code == NONE
    assert answer.members[0].error_code == NONE
    assert a.heartbeat() == REBALANCE_IN_PROGRESS
    rejoined = a.join()  # the only member left: the join completes at once
    assert (rejoined.error_code, rejoined.generation_id) == (NONE, 2)
    assert [m.member_id for m in rejoined.members] == [a.member_id]
    assert b.heartbeat() == UNKNOWN_MEMBER_ID
    a.leave()
    assert group_state(cluster, "g") is GroupState.EMPTY


def test_session_expiry_removes_the_member(
    cluster: BlockingCluster, members: Callable[..., Member]
) -> None:
    a, b = join_two(members, "g")
    # Rejoin both with a short session: a keeps heartbeating, b goes silent.
    assert a.heartbeat() == NONE
    a.send_join(session=300)
    b.send_join(session=300)
    assert a.receive_join().generation_id == b.receive_join().generation_id == 2
    b.send_sync()
    a.send_sync({a.member_id: b"A", b.member_id: b"B"})
    a.client.receive()
    b.client.receive()

    def a_sees_rebalance() -> bool:
        return a.heartbeat() == REBALANCE_IN_PROGRESS

    wait_for(a_sees_rebalance)
    assert b.heartbeat() == UNKNOWN_MEMBER_ID
    rejoined = a.join(session=300)
    assert (rejoined.generation_id, [m.member_id for m in rejoined.members]) == (
        3,
        [a.member_id],
    )


def test_member_missing_the_rebalance_is_removed_at_the_rebalance_timeout(
    cluster: BlockingCluster, members: Callable[..., Member]
) -> None:
    a, b = join_two(members, "g", rebalance=300)  # the group's timeout is its members' max
    c = members("g")
    c.send_join(rebalance=300)
    assert c.receive_join().error_code == MEMBER_ID_REQUIRED
    c.send_join(rebalance=300)  # held; a rejoins, b never does (KIP-62)
    a.send_join(rebalance=300)
    joined_a, joined_c = a.receive_join(), c.receive_join()
    assert joined_a.generation_id == joined_c.generation_id == 2
    assert {m.member_id for m in joined_a.members} == {a.member_id, c.member_id}
    assert b.heartbeat() == UNKNOWN_MEMBER_ID


def test_member_that_never_syncs_is_removed(
    cluster: BlockingCluster, members: Callable[..., Member]
) -> None:
    a, b = members("g"), members("g")
    for m in (a, b):
        m.send_join(rebalance=300)
        assert m.receive_join().error_code == MEMBER_ID_REQUIRED
        m.send_join(rebalance=300)
    a.receive_join()
    b.receive_join()
    leader = a if a.joined.leader == a.member_id else b
    follower = b if leader is a else a
    leader.send_sync({leader.member_id: b"L", follower.member_id: b"F"})
    assert leader.client.receive().error_code == NONE
    # The follower never sends SyncGroup: after the rebalance timeout it is gone.
    wait_for(lambda: leader.heartbeat() == REBALANCE_IN_PROGRESS)
    assert follower.heartbeat() == UNKNOWN_MEMBER_ID


def test_static_member_rejoins_without_rebalance(
    cluster: BlockingCluster, members: Callable[..., Member]
) -> None:
    a = members("g", instance="i-a")
    b = members("g", instance="i-b")
    # Static members skip MEMBER_ID_REQUIRED (KIP-345).
    a.send_join()
    b.send_join()
    assert a.receive_join().error_code == b.receive_join().error_code == NONE
    b.send_sync()
    a.send_sync({a.member_id: b"A", b.member_id: b"B"})
    a.client.receive()
    b.client.receive()
    old_b = b.member_id

    # b restarts: same instance id, no member id, same metadata: no rebalance.
    restarted = members("g", instance="i-b")
    answer = restarted.join()
    assert answer.error_code == NONE
    assert answer.generation_id == 1
    assert restarted.member_id != old_b
    assert answer.leader == a.member_id
    restarted.send_sync()
    assert restarted.client.receive().assignment == b"B"
    assert a.heartbeat() == NONE
    assert restarted.heartbeat() == NONE
    assert group_state(cluster, "g") is GroupState.STABLE
    assert b.heartbeat() == FENCED_INSTANCE_ID  # the old incarnation is fenced

    # A static leader rejoining (v9) learns it leads, with the members, and may skip
    # the assignment (KIP-814).
    leader_again = members("g", instance="i-a")
    answer = leader_again.join(version=9)
    assert (answer.error_code, answer.generation_id, answer.skip_assignment) == (NONE, 1, True)
    assert answer.leader == leader_again.member_id
    assert {m.group_instance_id for m in answer.members} == {"i-a", "i-b"}
    # Admin removal by instance id (LeaveGroup v3+, empty member id).
    with WireClient(coordinator_of(cluster, "g")) as admin:
        left = admin.request(
            "LeaveGroup", 4, group_id="g", members=[{"member_id": "", "group_instance_id": "i-b"}]
        )
    assert left.members[0].error_code == NONE
    assert leader_again.heartbeat() == REBALANCE_IN_PROGRESS


def test_join_error_codes(cluster: BlockingCluster, members: Callable[..., Member]) -> None:
    a, _b = join_two(members, "g")
    other = members("g")
    assert other.join(protocol_type="connect").error_code == INCONSISTENT_GROUP_PROTOCOL
    other.member_id = ""
    no_common = [{"name": "sticky", "metadata": b""}]
    assert other.join(protocols=no_common).error_code == INCONSISTENT_GROUP_PROTOCOL
    assert members("g2").join(session=10).error_code == INVALID_SESSION_TIMEOUT
    assert members("").join().error_code == INVALID_GROUP_ID
    stranger = members("g3")
    stranger.member_id = "made-up"
    assert stranger.join().error_code == UNKNOWN_MEMBER_ID  # no such group
    impostor = members("g")
    impostor.member_id = "made-up"
    assert impostor.join().error_code == UNKNOWN_MEMBER_ID
    assert a.heartbeat(generation=7) == ILLEGAL_GENERATION
    assert a.heartbeat(member_id="made-up") == UNKNOWN_MEMBER_ID
    # v2 (before KIP-394): a new member joins directly; during the rebalance SyncGroup
    # and heartbeats say REBALANCE_IN_PROGRESS.
    late = members("g")
    late.send_join(version=2)
    wait_for(lambda: group_state(cluster, "g") is GroupState.PREPARING_REBALANCE)
    assert a.heartbeat() == REBALANCE_IN_PROGRESS
    a.send_sync()
    assert a.client.receive().error_code == REBALANCE_IN_PROGRESS


def test_commit_rules(cluster: BlockingCluster, members: Callable[..., Member]) -> None:
    a, _b = join_two(members, "g")
    assert a.commit({0: 5, 1: 6}) == [NONE, NONE]
    assert a.commit({9: 1}) == [UNKNOWN_TOPIC_OR_PARTITION]
    assert a.commit({0: 1}, topic="no-such-topic") == [UNKNOWN_TOPIC_OR_PARTITION]
    assert a.commit({0: 1}, generation_id_or_member_epoch=9) == [ILLEGAL_GENERATION]
    assert a.commit({0: 1}, member_id="made-up") == [UNKNOWN_MEMBER_ID]
    # A simple (generation -1) commit is refused while the group has members...
    simple = members("g")
    assert simple.commit({0: 1}) == [UNKNOWN_MEMBER_ID]
    # ...and accepted for a group nobody is in (the group comes into being, Empty).
    lone = members("simple")
    assert lone.commit({2: 42}) == [NONE]
    assert group_state(cluster, "simple") is GroupState.EMPTY
    too_long = "x" * 5000
    big = lone.client.request(
        "OffsetCommit",
        COMMIT_V,
        group_id="simple",
        generation_id_or_member_epoch=-1,
        member_id="",
        group_instance_id=None,
        topics=[
            {
                "name": "t",
                "partitions": [
                    {"partition_index": 0, "committed_offset": 1, "committed_metadata": too_long}
                ],
            }
        ],
    )
    assert big.topics[0].partitions[0].error_code == OFFSET_METADATA_TOO_LARGE
    # A positive generation for a group that does not exist.
    ghost = members("ghost")
    ghost.generation = 3
    assert ghost.commit({0: 1}) == [ILLEGAL_GENERATION]
    request = {
        "group_id": "ghost",
        "generation_id_or_member_epoch": 3,
        "member_id": "m",
        "topics": [
            {
                "name": "t",
                "partitions": [
                    {"partition_index": 0, "committed_offset": 1, "committed_metadata": ""}
                ],
            }
        ],
    }
    v9 = ghost.client.request("OffsetCommit", 9, **request)
    assert v9.topics[0].partitions[0].error_code == GROUP_ID_NOT_FOUND

    # Fetch: one group (v7), several (v8), all topics (null), never-committed is -1.
    fetched = a.client.request(
        "OffsetFetch",
        FETCH_V,
        group_id="g",
        topics=[
            {"name": "t", "partition_indexes": [0, 1, 3]},
            {"name": "zz", "partition_indexes": [0]},
        ],
        require_stable=True,
    )
    assert fetched.error_code == NONE
    got = {
        (t.name, p.partition_index): (p.committed_offset, p.metadata)
        for t in fetched.topics
        for p in t.partitions
    }
    assert got == {("t", 0): (5, "m"), ("t", 1): (6, "m"), ("t", 3): (-1, ""), ("zz", 0): (-1, "")}
    coordinator = cluster.state.coordinator_for("simple")
    assert coordinator is not None
    with WireClient(address_of(cluster, coordinator.node_id)) as client:
        multi = client.request(
            "OffsetFetch",
            8,
            groups=[
                {"group_id": "simple", "topics": None},
                {"group_id": "g", "topics": [{"name": "t", "partition_indexes": [1]}]},
            ],
            require_stable=False,
        )
    by_group = {g.group_id: g for g in multi.groups}
    simple_topics = by_group["simple"].topics
    assert [
        (t.name, [(p.partition_index, p.committed_offset) for p in t.partitions])
        for t in simple_topics
    ] == [("t", [(2, 42)])]
    expected_g = NONE if cluster.state.coordinator_for("g") == coordinator else NOT_COORDINATOR
    assert by_group["g"].error_code == expected_g


def test_commit_during_completing_rebalance_is_refused(
    cluster: BlockingCluster, members: Callable[..., Member]
) -> None:
    a, b = join_two(members, "g")
    a.send_join()
    b.send_join()
    assert a.receive_join().generation_id == b.receive_join().generation_id == 2
    assert a.commit({0: 1}) == [REBALANCE_IN_PROGRESS]
    b.send_sync()
    a.send_sync({a.member_id: b"", b.member_id: b""})
    a.client.receive()
    b.client.receive()
    assert a.commit({0: 1}) == [NONE]


def test_delete_groups_and_offsets(
    cluster: BlockingCluster, members: Callable[..., Member]
) -> None:
    a, _b = join_two(members, "g")
    cluster.create_topic("other", 1)
    assert a.commit({0: 3}) == [NONE]
    assert a.commit({0: 4}, topic="other") == [NONE]
    with WireClient(coordinator_of(cluster, "g")) as admin:
        missing = sibling_of(cluster, "g")
        refused = admin.request("DeleteGroups", 2, groups_names=["g", missing])
        assert [(r.group_id, r.error_code) for r in refused.results] == [
            ("g", NON_EMPTY_GROUP),
            (missing, GROUP_ID_NOT_FOUND),
        ]
        deleted = admin.request(
            "OffsetDelete",
            0,
            group_id="g",
            topics=[
                {"name": "t", "partitions": [{"partition_index": 0}]},
                {"name": "other", "partitions": [{"partition_index": 0}]},
            ],
        )
        codes = {t.name: t.partitions[0].error_code for t in deleted.topics}
        assert codes == {"t": GROUP_SUBSCRIBED_TO_TOPIC, "other": NONE}
    offsets = group_coordinator(cluster.state).offsets
    assert offsets.get("g", "other", 0) is None
    assert offsets.get("g", "t", 0) is not None
    for m in (a, _b):
        m.leave()
    with WireClient(coordinator_of(cluster, "g")) as admin:
        gone = admin.request("DeleteGroups", 2, groups_names=["g"])
        assert gone.results[0].error_code == NONE
    assert group_state(cluster, "g") is None
    assert offsets.get("g", "t", 0) is None


def test_close_with_a_held_join_does_not_hang() -> None:
    cluster = BlockingCluster(brokers=1).start()
    member = Member(cluster, "g")
    try:
        cluster.call(
            lambda: configure_groups(cluster.state, GroupSettings(initial_rebalance_delay=60))
        )
        member.send_join(version=3)  # no MEMBER_ID_REQUIRED: held for the 60 s delay
        wait_for(lambda: group_state(cluster, "g") is GroupState.PREPARING_REBALANCE)
        coordinator = group_coordinator(cluster.state)
    finally:
        cluster.close(timeout=5)
        member.close()
    assert coordinator.closed
    group = coordinator.groups["g"]
    assert group.join_timer is not None
    assert group.join_timer.cancelled()
    assert all(m.timer is None or m.timer.cancelled() for m in group.members.values())


def test_newest_and_oldest_versions(
    cluster: BlockingCluster, members: Callable[..., Member]
) -> None:
    a, _b = join_two(members, "g")
    topic_id = cluster.state.topics["t"].topic_id
    partition = {"partition_index": 1, "committed_offset": 9, "committed_metadata": None}
    committed = a.client.request(
        "OffsetCommit",
        10,
        group_id="g",
        generation_id_or_member_epoch=a.generation,
        member_id=a.member_id,
        group_instance_id=None,
        topics=[
            {"topic_id": topic_id, "partitions": [partition]},
            {"topic_id": uuid.uuid4(), "partitions": [partition]},
        ],
    )
    assert [t.partitions[0].error_code for t in committed.topics] == [NONE, UNKNOWN_TOPIC_ID]
    fetched = a.client.request(
        "OffsetFetch",
        10,
        groups=[{"group_id": "g", "topics": [{"topic_id": topic_id, "partition_indexes": [1]}]}],
        require_stable=False,
    )
    (topic,) = fetched.groups[0].topics
    assert (topic.topic_id, topic.partitions[0].committed_offset) == (topic_id, 9)
    # v1 has no top-level error: a wrong broker answers per partition.
    with WireClient(not_coordinator_of(cluster, "g")) as other:
        old = other.request(
            "OffsetFetch", 1, group_id="g", topics=[{"name": "t", "partition_indexes": [1]}]
        )
        assert old.topics[0].partitions[0].error_code == NOT_COORDINATOR
        left = other.request("LeaveGroup", 0, group_id="g", member_id=a.member_id)
        assert left.error_code == NOT_COORDINATOR
    with WireClient(coordinator_of(cluster, "g")) as client:
        assert (
            client.request("ListGroups", 5, states_filter=[], types_filter=["consumer"]).groups
            == ()
        )
        (listed,) = client.request(
            "ListGroups", 5, states_filter=[], types_filter=["Classic"]
        ).groups
        assert (listed.group_id, listed.group_type, listed.protocol_type) == (
            "g",
            "classic",
            "consumer",
        )
        found = client.request("FindCoordinator", 6, key_type=0, coordinator_keys=["g"])
        assert found.coordinators[0].port == int(coordinator_of(cluster, "g").rsplit(":", 1)[1])
        # LeaveGroup v0: one member, its error is the top-level one.
        assert client.request("LeaveGroup", 0, group_id="g", member_id="who").error_code == (
            UNKNOWN_MEMBER_ID
        )
        assert (
            client.request("LeaveGroup", 0, group_id="g", member_id=a.member_id).error_code == NONE
        )
