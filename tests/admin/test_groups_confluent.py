"""The blocking ``Admin`` on a group of confluent-kafka consumers (embedded broker).

What pykaf says about the group (listing, members and assignments, committed offsets and
lag) is what the consumers themselves and confluent-kafka's AdminClient say; offsets
cannot be moved or the group deleted while they are members; once they leave, altered
offsets are where a new member resumes.
"""

from __future__ import annotations

from typing import Any

import confluent_kafka
import pytest
from confluent_kafka import ConsumerGroupState, ConsumerGroupType
from confluent_kafka.admin import AdminClient
from groups_admin_helpers import (
    LIMIT,
    commit,
    first_offsets,
    group_consumer,
    join,
    produce,
    wait_for,
)

from pykaf import Admin
from pykaf._consumer._records import TopicPartition
from pykaf.admin import OffsetSpec
from pykaf.broker import BlockingCluster
from pykaf.errors import GroupIdNotFoundError, NonEmptyGroupError

TOPIC = "orders"
GROUP = "billing"
COUNTS = {0: 10, 1: 7, 2: 5}


@pytest.fixture
def confluent_admin(kafka_cluster_sync: BlockingCluster) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_cluster_sync.bootstrap})


def _confluent_committed(admin: AdminClient, group: str) -> dict[int, int]:
    request = confluent_kafka.ConsumerGroupTopicPartitions(group)
    [future] = admin.list_consumer_group_offsets([request], request_timeout=LIMIT).values()
    answer = future.result(LIMIT)
    return {tp.partition: tp.offset for tp in answer.topic_partitions if tp.offset >= 0}


def _confluent_state(admin: AdminClient, group: str) -> str:
    [future] = admin.describe_consumer_groups([group], request_timeout=LIMIT).values()
    return str(future.result(LIMIT).state.name)


def test_admin_sees_a_confluent_group_as_confluent_does_and_moves_its_offsets(
    kafka_cluster_sync: BlockingCluster, confluent_admin: AdminClient
) -> None:
    bootstrap = kafka_cluster_sync.bootstrap
    kafka_cluster_sync.create_topic(TOPIC, 3, replication_factor=3)
    produce(bootstrap, TOPIC, COUNTS)
    members = [group_consumer(bootstrap, GROUP, f"c{i}") for i in (1, 2)]
    closed = False
    try:
        join(members, TOPIC, 3)
        wanted = {0: 4, 1: 7}  # partition 2: nothing committed
        for member in members:
            owned = {tp.partition for tp in member.assignment()}
            commit(member, TOPIC, {p: o for p, o in wanted.items() if p in owned})
        with Admin(bootstrap) as admin:
            _while_members(admin, confluent_admin, members)
            for member in members:
                member.close()
            closed = True
            wait_for(lambda: _confluent_state(confluent_admin, GROUP) == "EMPTY", "Empty")
            _after_members(admin, confluent_admin, bootstrap)
    finally:
        if not closed:
            for member in members:
                member.close()


def _while_members(admin: Admin, confluent_admin: AdminClient, members: list[Any]) -> None:
    [listing] = [g for g in admin.list_groups() if g.group_id == GROUP]
    assert (listing.state, listing.type, listing.protocol_type) == ("Stable", "classic", "consumer")
    theirs = confluent_admin.list_consumer_groups(request_timeout=LIMIT).result(LIMIT)
    assert [g.group_id for g in theirs.valid] == [GROUP]
    assert theirs.valid[0].state.name == "STABLE"
    assert [g.group_id for g in admin.list_groups(states=["empty"])] == []
    # confluent's filters reach the broker (ListGroups v4 states, v5 types) and work there.
    for states, types, expected in (
        ({ConsumerGroupState.EMPTY}, set(), []),
        ({ConsumerGroupState.STABLE}, {ConsumerGroupType.CLASSIC}, [GROUP]),
        (set(), {ConsumerGroupType.CONSUMER}, []),
    ):
        filtered = confluent_admin.list_consumer_groups(
            states=states, types=types, request_timeout=LIMIT
        ).result(LIMIT)
        assert [g.group_id for g in filtered.valid] == expected
    assert [g.group_id for g in admin.list_groups(states=["Stable"], types=["classic"])] == [GROUP]
    assert admin.list_groups(types=["consumer"]) == []  # KIP-848 groups: none here

    described = admin.describe_groups([GROUP, "absent"])
    with pytest.raises(GroupIdNotFoundError, match="absent"):
        described["absent"]
    group = described[GROUP]
    assert (group.state, group.protocol_type) == ("Stable", "consumer")
    [future] = confluent_admin.describe_consumer_groups([GROUP], request_timeout=LIMIT).values()
    theirs_group = future.result(LIMIT)
    assert group.protocol == theirs_group.partition_assignor
    assert group.coordinator == theirs_group.coordinator.id
    ours = {m.member_id: (m.client_id, set(m.assignment)) for m in group.members}
    confluent_view = {
        m.member_id: (
            m.client_id,
            {TopicPartition(tp.topic, tp.partition) for tp in m.assignment.topic_partitions},
        )
        for m in theirs_group.members
    }
    assert ours == confluent_view
    own_view = {
        member.memberid(): {TopicPartition(tp.topic, tp.partition) for tp in member.assignment()}
        for member in members
    }
    assert {m: parts for m, (_, parts) in ours.items()} == own_view
    assert all(m.subscription == (TOPIC,) for m in group.members)

    offsets = admin.list_group_offsets(GROUP)
    assert set(offsets) == {TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)}
    lags = {tp.partition: (o.committed, o.end_offset, o.lag) for tp, o in offsets.items()}
    assert lags == {0: (4, 10, 6), 1: (7, 7, 0)}
    assert _confluent_committed(confluent_admin, GROUP) == {0: 4, 1: 7}
    for tp, o in offsets.items():  # the end offsets the consumers see
        _, high = members[0].get_watermark_offsets(
            confluent_kafka.TopicPartition(TOPIC, tp.partition), timeout=LIMIT
        )
        assert o.end_offset == high
    [p2] = admin.list_group_offsets(GROUP, [TopicPartition(TOPIC, 2)]).values()
    assert (p2.committed, p2.end_offset, p2.lag) == (None, 5, None)

    refused = admin.alter_group_offsets(GROUP, topics=[TOPIC], to="earliest")
    assert set(refused.errors) == {TopicPartition(TOPIC, p) for p in range(3)}
    with pytest.raises(NonEmptyGroupError, match="stop its consumers"):
        refused[TopicPartition(TOPIC, 0)]
    with pytest.raises(NonEmptyGroupError, match="stop its consumers"):
        admin.delete_groups([GROUP])[GROUP]
    assert _confluent_committed(confluent_admin, GROUP) == {0: 4, 1: 7}  # unchanged


def _after_members(admin: Admin, confluent_admin: AdminClient, bootstrap: str) -> None:
    moved = admin.alter_group_offsets(
        GROUP,
        {
            TopicPartition(TOPIC, 0): 2,
            TopicPartition(TOPIC, 1): "earliest",
            TopicPartition(TOPIC, 2): OffsetSpec.at(1_003),
        },
    )
    assert {tp.partition: o for tp, o in moved.items()} == {0: 2, 1: 0, 2: 3}
    assert _confluent_committed(confluent_admin, GROUP) == {0: 2, 1: 0, 2: 3}
    assert first_offsets(bootstrap, GROUP, TOPIC, 3) == {0: 2, 1: 0, 2: 3}

    to_end = admin.alter_group_offsets(GROUP, topics=[TOPIC], to="latest")
    assert {tp.partition: o for tp, o in to_end.items()} == COUNTS
    assert all(o.lag == 0 for o in admin.list_group_offsets(GROUP).values())

    assert dict(admin.delete_group_offsets(GROUP, [TopicPartition(TOPIC, 0)])) == {
        TopicPartition(TOPIC, 0): None
    }
    assert _confluent_committed(confluent_admin, GROUP) == {1: 7, 2: 5}

    deleted = admin.delete_groups([GROUP, "absent"])
    assert deleted.ok == {GROUP: None}
    assert isinstance(deleted.errors["absent"], GroupIdNotFoundError)
    theirs = confluent_admin.list_consumer_groups(request_timeout=LIMIT).result(LIMIT)
    assert [g.group_id for g in theirs.valid] == []
