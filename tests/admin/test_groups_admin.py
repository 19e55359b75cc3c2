"""``AsyncAdmin``'s consumer-group calls against the embedded broker.

Per-item outcomes (one bad group or partition does not hide the others), coordinator
moves retried (bounded in count), a group of another protocol type, ListGroups without
states (an old broker) filled in by DescribeGroups, confluent-kafka's AdminClient on the
same groups, and bad input refused before anything is sent.
"""

from __future__ import annotations

import asyncio
from typing import Any

import confluent_kafka
import pytest
from confluent_kafka.admin import AdminClient

from pykaf import AsyncAdmin, AsyncClient, AsyncProducer
from pykaf._admin import _groups
from pykaf._admin._item_retries import MAX_ATTEMPTS
from pykaf._client._targets import Coordinator
from pykaf._consumer._records import TopicPartition
from pykaf.admin import OffsetSpec
from pykaf.broker import Cluster
from pykaf.errors import (
    GroupIdNotFoundError,
    GroupSubscribedToTopicError,
    NotCoordinatorError,
    UnknownTopicOrPartitionError,
)
from pykaf.protocol._messages import build_request

LIMIT = 20.0
FAST = {"retry_backoff": 0.01, "request_timeout": 5.0}
NOT_COORDINATOR = 16
COORDINATOR_LOAD_IN_PROGRESS = 14


def tp(partition: int, topic: str = "events") -> TopicPartition:
    return TopicPartition(topic, partition)


async def commit_simple(
    client: AsyncClient, group: str, offsets: dict[TopicPartition, int]
) -> None:
    """What a consumer without a group membership commits (generation -1)."""
    request = build_request(
        "OffsetCommit",
        8,
        group_id=group,
        generation_id_or_member_epoch=-1,
        member_id="",
        group_instance_id=None,
        topics=[
            {
                "name": t.topic,
                "partitions": [
                    {
                        "partition_index": t.partition,
                        "committed_offset": o,
                        "committed_leader_epoch": -1,
                        "committed_metadata": "",
                    }
                ],
            }
            for t, o in offsets.items()
        ],
    )
    response = await client.request(request, to=Coordinator(group))
    assert all(p.error_code == 0 for t in response.topics for p in t.partitions)


async def fill(cluster: Cluster, counts: dict[int, int], topic: str = "events") -> None:
    await cluster.create_topic(topic, len(counts), replication_factor=3)
    async with AsyncProducer(cluster.bootstrap) as producer:
        for partition, count in counts.items():
            for i in range(count):
                await producer.produce(topic, b"x", partition=partition, timestamp=1_000 + i)
        assert await producer.flush(LIMIT) == 0


async def test_group_offsets_with_lag_and_per_item_errors(kafka_cluster: Cluster) -> None:
    await fill(kafka_cluster, {0: 10, 1: 4})
    async with asyncio.timeout(LIMIT), AsyncAdmin(kafka_cluster.bootstrap, **FAST) as admin:
        assert dict(await admin.alter_group_offsets("g", {tp(0): 3, tp(1): "latest"})) == {
            tp(0): 3,
            tp(1): 4,
        }
        offsets = await admin.list_group_offsets("g", [tp(0), tp(1), tp(7), tp(0, "nope")])
        assert (offsets[tp(0)].committed, offsets[tp(0)].end_offset, offsets[tp(0)].lag) == (
            3,
            10,
            7,
        )
        assert offsets[tp(1)].lag == 0
        for missing in (tp(7), tp(0, "nope")):
            with pytest.raises(UnknownTopicOrPartitionError):
                offsets[missing]
        partly = await admin.alter_group_offsets("g", {tp(0): "earliest", tp(9): 1})
        assert partly.ok == {tp(0): 0}
        assert isinstance(partly.errors[tp(9)], UnknownTopicOrPartitionError)
        assert str(tp(9)) in str(partly.errors[tp(9)])
        # A time after the last record resolves to the end, as kafka-consumer-groups does.
        at_end = await admin.alter_group_offsets("g", topics=["events"], to=OffsetSpec.at(10**12))
        assert dict(at_end) == {tp(0): 10, tp(1): 4}
        with pytest.raises(UnknownTopicOrPartitionError, match="nope"):
            await admin.alter_group_offsets("g", topics=["nope"], to="earliest")

        gone = await admin.delete_group_offsets("g", [tp(0), tp(8)])
        assert gone.ok == {tp(0): None}
        assert isinstance(gone.errors[tp(8)], UnknownTopicOrPartitionError)
        assert set(await admin.list_group_offsets("g")) == {tp(1)}
        with pytest.raises(GroupIdNotFoundError):
            (await admin.delete_group_offsets("absent", [tp(0)]))[tp(0)]


async def test_confluent_admin_and_pykaf_agree_on_the_same_group(kafka_cluster: Cluster) -> None:
    await fill(kafka_cluster, {0: 6, 1: 6, 2: 6})
    theirs = AdminClient({"bootstrap.servers": kafka_cluster.bootstrap})
    request = confluent_kafka.ConsumerGroupTopicPartitions(
        "shared", [confluent_kafka.TopicPartition("events", 0, 2)]
    )

    def confluent_side() -> dict[int, int]:
        for future in theirs.alter_consumer_group_offsets([request]).values():
            future.result(LIMIT)
        listed = theirs.list_consumer_group_offsets(
            [confluent_kafka.ConsumerGroupTopicPartitions("shared")]
        )
        [future] = listed.values()
        return {t.partition: t.offset for t in future.result(LIMIT).topic_partitions}

    async with asyncio.timeout(LIMIT), AsyncAdmin(kafka_cluster.bootstrap, **FAST) as admin:
        assert await asyncio.to_thread(confluent_side) == {0: 2}
        await admin.alter_group_offsets("shared", {tp(1): 5, tp(2): "latest"})
        assert await asyncio.to_thread(confluent_side) == {0: 2, 1: 5, 2: 6}
        ours = await admin.list_group_offsets("shared")
        assert {t.partition: (o.committed, o.lag) for t, o in ours.items()} == {
            0: (2, 4),
            1: (5, 1),
            2: (6, 0),
        }
        [listed] = await admin.list_groups()
        assert (listed.group_id, listed.state, listed.type) == ("shared", "Empty", "classic")

        def confluent_delete() -> None:
            for future in theirs.delete_consumer_groups(["shared"]).values():
                future.result(LIMIT)

        await asyncio.to_thread(confluent_delete)
        assert await admin.list_groups() == []


async def test_coordinator_moves_are_retried_and_bounded(kafka_cluster: Cluster) -> None:
    await fill(kafka_cluster, {0: 3})
    faults = kafka_cluster.faults
    async with asyncio.timeout(LIMIT), AsyncAdmin(kafka_cluster.bootstrap, **FAST) as admin:
        faults.push_errors("OffsetCommit", [NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS])
        assert dict(await admin.alter_group_offsets("g", {tp(0): 1})) == {tp(0): 1}
        faults.push_errors("OffsetFetch", [COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR])
        assert (await admin.list_group_offsets("g"))[tp(0)].committed == 1
        faults.push_errors("DescribeGroups", [NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS])
        assert (await admin.describe_groups(["g"]))["g"].state == "Empty"
        faults.push_errors("OffsetDelete", [NOT_COORDINATOR])
        assert dict(await admin.delete_group_offsets("g", [tp(0)])) == {tp(0): None}
        faults.push_errors("DeleteGroups", [COORDINATOR_LOAD_IN_PROGRESS])
        assert dict(await admin.delete_groups(["g"])) == {"g": None}
        assert faults.pending_errors() == 0

        # A coordinator that never settles: the item fails after MAX_ATTEMPTS, typed.
        faults.push_errors("DescribeGroups", [NOT_COORDINATOR] * (MAX_ATTEMPTS + 5))
        failed = await admin.describe_groups(["g"])
        with pytest.raises(NotCoordinatorError, match="'g'"):
            failed["g"]
        assert faults.pending_errors("DescribeGroups") == 5
        faults.clear()


async def _join_raw(client: AsyncClient, group: str, protocol_type: str) -> str:
    """One member of a group of ``protocol_type`` (JoinGroup v3: no member id round)."""
    joined = await client.request(
        build_request(
            "JoinGroup",
            3,
            group_id=group,
            session_timeout=30_000,
            rebalance_timeout=30_000,
            member_id="",
            protocol_type=protocol_type,
            protocols=[{"name": "sessions", "metadata": b"their-metadata"}],
        ),
        to=Coordinator(group),
    )
    assert joined.error_code == 0
    synced = await client.request(
        build_request(
            "SyncGroup",
            2,
            group_id=group,
            generation_id=joined.generation_id,
            member_id=joined.member_id,
            assignments=[{"member_id": joined.member_id, "assignment": b"their-assignment"}],
        ),
        to=Coordinator(group),
    )
    assert synced.error_code == 0
    return str(joined.member_id)


async def test_a_group_of_another_protocol_keeps_its_raw_bytes(kafka_cluster: Cluster) -> None:
    await fill(kafka_cluster, {0: 3})
    async with (
        asyncio.timeout(LIMIT),
        AsyncClient(kafka_cluster.bootstrap) as client,
        AsyncAdmin(kafka_cluster.bootstrap, **FAST) as admin,
    ):
        member_id = await _join_raw(client, "workers", "connect")
        group = (await admin.describe_groups(["workers"]))["workers"]
        assert (group.state, group.protocol_type, group.protocol) == (
            "Stable",
            "connect",
            "sessions",
        )
        [member] = group.members
        assert member.member_id == member_id
        assert member.assignment == ()
        assert member.subscription == ()
        assert member.raw_assignment == b"their-assignment"
        assert member.raw_metadata == b"their-metadata"
        [listed] = await admin.list_groups()
        assert (listed.protocol_type, listed.state) == ("connect", "Stable")


async def test_offset_delete_keeps_offsets_when_a_subscription_cannot_be_read(
    kafka_cluster: Cluster,
) -> None:
    """Kafka's ``isSubscribedToTopic``: a consumer group whose member subscription cannot
    be read counts as subscribed to every topic, so its offsets stay (the broker used to
    drop them)."""
    await fill(kafka_cluster, {0: 3})
    async with (
        asyncio.timeout(LIMIT),
        AsyncClient(kafka_cluster.bootstrap) as client,
        AsyncAdmin(kafka_cluster.bootstrap, **FAST) as admin,
    ):
        await admin.alter_group_offsets("idle", {tp(0): 1})
        assert await _join_raw(client, "idle", "consumer")  # b"their-metadata": unreadable
        with pytest.raises(GroupSubscribedToTopicError, match="stop them"):
            (await admin.delete_group_offsets("idle", [tp(0)]))[tp(0)]
        assert (await admin.list_group_offsets("idle"))[tp(0)].committed == 1


async def test_list_groups_on_a_broker_without_states_asks_describe_groups(
    kafka_cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ListGroups below v4 carries no state: the broker that listed the groups (their
    coordinator) describes them, and the states filter applies here."""
    await fill(kafka_cluster, {0: 3})
    real_send = _groups.send

    async def send_v3(client: Any, api: str, build: Any, **kw: Any) -> Any:
        if api == "ListGroups":
            kw["max_version"] = 3
        return await real_send(client, api, build, **kw)

    monkeypatch.setattr(_groups, "send", send_v3)
    async with asyncio.timeout(LIMIT), AsyncAdmin(kafka_cluster.bootstrap, **FAST) as admin:
        for group in ("a", "b"):
            await admin.alter_group_offsets(group, {tp(0): 1})
        listed = await admin.list_groups()
        assert [(g.group_id, g.state, g.type) for g in listed] == [
            ("a", "Empty", None),
            ("b", "Empty", None),
        ]
        assert await admin.list_groups(states=["stable"]) == []
        assert len(await admin.list_groups(states=["EMPTY"], types=["classic"])) == 2


@pytest.fixture
def offline_admin() -> AsyncAdmin:
    # Nothing listens there: bad input must fail before anything is sent.
    return AsyncAdmin("127.0.0.1:1", connect_timeout=0.2)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda a: a.describe_groups("g"), TypeError, "wrap a single id"),
        (lambda a: a.describe_groups(["g", ""]), ValueError, "non-empty str"),
        (lambda a: a.delete_groups([3]), ValueError, "non-empty str"),
        (lambda a: a.list_groups(states=["stabel"]), ValueError, "states"),
        (lambda a: a.list_groups(types="classic"), TypeError, "wrap a single"),
        (lambda a: a.list_group_offsets(""), ValueError, "group id"),
        (lambda a: a.list_group_offsets("g", [("t", 0)]), TypeError, "TopicPartition"),
        (lambda a: a.alter_group_offsets("g"), ValueError, "either offsets"),
        (
            lambda a: a.alter_group_offsets("g", {tp(0): 1}, topics=["t"], to="latest"),
            ValueError,
            "either offsets",
        ),
        (lambda a: a.alter_group_offsets("g", topics=["t"]), ValueError, "needs to="),
        (lambda a: a.alter_group_offsets("g", {tp(0): 1}, to="latest"), ValueError, "to= goes"),
        (lambda a: a.alter_group_offsets("g", {tp(0): -4}), ValueError, ">= 0"),
        (lambda a: a.alter_group_offsets("g", {tp(0): "soon"}), ValueError, "offset spec"),
        (lambda a: a.alter_group_offsets("g", {tp(0): 1.5}), TypeError, "an int >= 0"),
        (lambda a: a.delete_group_offsets("g", tp(0)), TypeError, "iterable of"),
        (lambda a: a.describe_groups(["g"], timeout=0), ValueError, "timeout"),
    ],
)
async def test_bad_input_is_refused_before_sending(
    offline_admin: AsyncAdmin, call: Any, error: type[Exception], match: str
) -> None:
    async with asyncio.timeout(LIMIT), offline_admin:
        with pytest.raises(error, match=match):
            await call(offline_admin)
