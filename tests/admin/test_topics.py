"""Topics through AsyncAdmin and Admin against the embedded broker: create (counts,
assignments, configs, validate_only), delete, list, describe, add partitions; one bad
topic among good ones; bad input refused before anything is sent; the controller moving
mid-call."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any, Final

import pytest

from pykaf import Admin, AsyncAdmin
from pykaf.admin import NewTopic, Outcomes
from pykaf.broker import BlockingCluster, CallNext, Cluster, RequestContext
from pykaf.errors import (
    AdminItemsError,
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

_LIMIT = 20.0  # seconds: a bound on each test's admin work, far above what it needs
METADATA: Final = 3


async def test_create_describe_list_grow_delete(kafka_cluster: Cluster) -> None:
    async with asyncio.timeout(_LIMIT), AsyncAdmin(kafka_cluster.bootstrap) as admin:
        created = await admin.create_topics(
            [
                NewTopic(name="orders", partitions=3, replication_factor=2),
                NewTopic(name="audit", configs={"cleanup.policy": "compact"}),
                NewTopic(name="placed", assignments={0: (2, 3), 1: (3, 1)}),
                "plain",
            ]
        )
        assert created.errors == {}
        orders = created["orders"]
        assert (orders.partitions, orders.replication_factor) == (3, 2)
        assert isinstance(orders.topic_id, uuid.UUID)
        assert created["audit"].configs["cleanup.policy"] == "compact"
        assert created["plain"].partitions == 1  # the broker's default

        listed = await admin.list_topics()
        assert set(listed) == {"orders", "audit", "placed", "plain"}
        assert listed["orders"].partitions == 3
        assert listed["orders"].topic_id == orders.topic_id

        described = await admin.describe_topics(["orders", "placed"])
        state = kafka_cluster.state.topics["orders"]
        assert [
            (p.partition, p.leader, p.leader_epoch, p.replicas, p.isr)
            for p in described["orders"].partitions
        ] == [(p.index, p.leader, p.leader_epoch, p.replicas, p.replicas) for p in state.partitions]
        assert [p.replicas for p in described["placed"].partitions] == [(2, 3), (3, 1)]
        assert described["orders"].topic_id == orders.topic_id

        grown = await admin.create_partitions({"orders": 5})
        assert grown["orders"] == 5
        assert len(kafka_cluster.state.topics["orders"].partitions) == 5

        deleted = await admin.delete_topics(["orders", "plain"])
        assert deleted["orders"] == orders.topic_id
        assert set(await admin.list_topics()) == {"audit", "placed"}


async def test_one_bad_topic_among_good_ones(kafka_cluster: Cluster) -> None:
    await kafka_cluster.create_topic("exists", 1)
    async with asyncio.timeout(_LIMIT), AsyncAdmin(kafka_cluster.bootstrap) as admin:
        created = await admin.create_topics(
            [
                "good-1",
                NewTopic(name="bad-config", configs={"retention.ms": "soon"}),
                "exists",
                NewTopic(name="too-many-replicas", replication_factor=4),
                "good-2",
            ]
        )
        assert set(created.ok) == {"good-1", "good-2"}
        assert isinstance(created.errors["bad-config"], InvalidConfigError)
        assert "bad-config" in str(created.errors["bad-config"])
        assert "retention.ms" in str(created.errors["bad-config"])
        assert isinstance(created.errors["exists"], TopicAlreadyExistsError)
        assert isinstance(created.errors["too-many-replicas"], InvalidReplicationFactorError)
        with pytest.raises(InvalidConfigError):
            created["bad-config"]
        with pytest.raises(AdminItemsError) as caught:
            created.raise_for_errors()
        assert set(caught.value.errors) == {"bad-config", "exists", "too-many-replicas"}
        assert set(kafka_cluster.state.topics) == {"exists", "good-1", "good-2"}

        described = await admin.describe_topics(["good-1", "missing"])
        assert described["good-1"].partitions[0].leader in (1, 2, 3)
        assert isinstance(described.errors["missing"], UnknownTopicOrPartitionError)
        assert "'missing'" in str(described.errors["missing"])

        grown = await admin.create_partitions({"good-1": 2, "good-2": 1, "missing": 3})
        assert grown.ok == {"good-1": 2}
        assert isinstance(grown.errors["good-2"], InvalidPartitionsError)
        assert isinstance(grown.errors["missing"], UnknownTopicOrPartitionError)

        deleted = await admin.delete_topics(["good-2", "missing"])
        assert list(deleted.ok) == ["good-2"]
        assert isinstance(deleted.errors["missing"], UnknownTopicOrPartitionError)


async def test_validate_only_changes_nothing(kafka_cluster: Cluster) -> None:
    await kafka_cluster.create_topic("small", 1)
    async with asyncio.timeout(_LIMIT), AsyncAdmin(kafka_cluster.bootstrap) as admin:
        checked = await admin.create_topics(
            [NewTopic(name="maybe", partitions=4), NewTopic(name="nope", configs={"x": "1"})],
            validate_only=True,
        )
        assert checked["maybe"].partitions == 4
        assert checked["maybe"].topic_id is None
        assert isinstance(checked.errors["nope"], InvalidConfigError)
        grown = await admin.create_partitions({"small": 3}, validate_only=True)
        assert grown["small"] == 3
    assert set(kafka_cluster.state.topics) == {"small"}
    assert len(kafka_cluster.state.topics["small"].partitions) == 1


async def test_not_controller_is_retried_on_the_new_controller(kafka_cluster: Cluster) -> None:
    not_controller = 41
    kafka_cluster.faults.push_errors("CreateTopics", [not_controller, not_controller])
    async with asyncio.timeout(_LIMIT), AsyncAdmin(kafka_cluster.bootstrap) as admin:
        created = await admin.create_topics(["moved"])
    assert created.errors == {}
    assert "moved" in kafka_cluster.state.topics
    assert kafka_cluster.faults.pending_errors("CreateTopics") == 0


async def test_not_controller_retries_are_bounded(kafka_cluster: Cluster) -> None:
    kafka_cluster.faults.push_errors("DeleteTopics", [41] * 10)
    await kafka_cluster.create_topic("stays", 1)
    async with asyncio.timeout(_LIMIT), AsyncAdmin(kafka_cluster.bootstrap) as admin:
        deleted = await admin.delete_topics(["stays"])
    assert "NotControllerError" in repr(deleted)
    assert "stays" in kafka_cluster.state.topics
    assert kafka_cluster.faults.pending_errors("DeleteTopics") == 6  # 4 tries, then it says so


async def test_the_controller_down_is_retried_on_the_next_one(kafka_cluster: Cluster) -> None:
    # Before: BrokerConnectionError at once (connection refused), no other controller
    # asked (a sweep of admin calls: 10 of 10 creates failed while the controller was down).
    async with asyncio.timeout(_LIMIT), AsyncAdmin(kafka_cluster.bootstrap) as admin:
        assert (await admin.create_topics(["before"])).errors == {}  # connected to it
        controller = (await admin.describe_cluster()).controller_id
        await kafka_cluster.faults.broker_down(controller)
        created = await admin.create_topics(["while-down"])
        assert created.errors == {}
        assert (await admin.describe_cluster()).controller_id != controller
    assert "while-down" in kafka_cluster.state.topics


async def test_an_attempt_refused_at_connect_is_not_said_to_have_maybe_done_it(
    kafka_cluster: Cluster,
) -> None:
    # The first attempt went to a controller that refused the connection: nothing was
    # written, so the answer of the next one is given as it is. Before, its message said
    # "an earlier attempt of this call went unanswered and may have done it".
    async with asyncio.timeout(_LIMIT), AsyncAdmin(kafka_cluster.bootstrap) as admin:
        assert (await admin.create_topics(["exists"])).errors == {}
        controller = (await admin.describe_cluster()).controller_id
        await kafka_cluster.faults.broker_down(controller)
        created = await admin.create_topics(["exists"])
    error = created.errors["exists"]
    assert isinstance(error, TopicAlreadyExistsError)
    assert "may have done it" not in str(error)


@pytest.mark.parametrize("processed", [False, True])
async def test_a_create_whose_answer_was_lost_is_asked_again(
    kafka_cluster: Cluster, processed: bool
) -> None:
    # The controller closed the connection before answering: unread (sent again, made
    # now) or made and unanswered (sent again: TOPIC_ALREADY_EXISTS, which says an
    # earlier attempt of this very call may have made it).
    kafka_cluster.faults.drop_connection_after("CreateTopics", before_response=processed)
    async with asyncio.timeout(_LIMIT), AsyncAdmin(kafka_cluster.bootstrap) as admin:
        created = await admin.create_topics(["lost"])
    assert "lost" in kafka_cluster.state.topics
    if not processed:
        assert created.errors == {}
        return
    error = created.errors["lost"]
    assert isinstance(error, TopicAlreadyExistsError)
    assert "an earlier attempt of this call went unanswered and may have done it" in str(error)


async def test_internal_topics_only_when_asked(kafka_cluster: Cluster) -> None:
    # The embedded broker has no internal topics: one is made so in its Metadata answers.
    async def mark_internal(ctx: RequestContext, request: Any, call_next: CallNext) -> Any:
        response = await call_next(ctx, request)
        if ctx.api_key != METADATA:
            return response
        topics = tuple(
            dataclasses.replace(t, is_internal=t.name == "__inside") for t in response.topics
        )
        return dataclasses.replace(response, topics=topics)

    await kafka_cluster.create_topic("__inside", 1)
    await kafka_cluster.create_topic("visible", 1)
    kafka_cluster.set_interceptor(mark_internal)
    async with asyncio.timeout(_LIMIT), AsyncAdmin(kafka_cluster.bootstrap) as admin:
        plain = await admin.list_topics()
        everything = await admin.list_topics(internal=True)
        described = await admin.describe_topics(["__inside"])
    assert set(plain) == {"visible"}
    assert set(everything) == {"visible", "__inside"}
    assert everything["__inside"].internal
    assert described["__inside"].internal


@pytest.mark.parametrize(
    ("call", "error", "says"),
    [
        (lambda a: a.create_topics("orders"), TypeError, "wrap a single"),
        (lambda a: a.create_topics(["a", "a"]), ValueError, "repeated: ['a']"),
        (lambda a: a.create_topics([3]), TypeError, "NewTopic or a name"),
        (lambda a: a.delete_topics(["ok", ""]), ValueError, "must not be empty"),
        (lambda a: a.delete_topics([b"x"]), TypeError, "is a str"),
        (lambda a: a.describe_topics("orders"), TypeError, "wrap a single"),
        (lambda a: a.create_partitions({"t": 0}), ValueError, "total >= 1"),
        (lambda a: a.create_partitions(["t"]), TypeError, "maps topic names"),
        (lambda a: a.list_topics(internal="yes"), TypeError, "bool"),
    ],
)
async def test_bad_input_is_refused_before_sending(call, error, says) -> None:  # type: ignore[no-untyped-def]
    # No broker at this address: the call must fail on its input, not on the network.
    async with AsyncAdmin("127.0.0.1:1", request_timeout=1) as admin:
        with pytest.raises(error) as caught:
            await call(admin)
    assert says in str(caught.value)


def test_the_blocking_admin(kafka_cluster_sync: BlockingCluster) -> None:
    with Admin(kafka_cluster_sync.bootstrap, request_timeout=_LIMIT) as admin:
        created = admin.create_topics([NewTopic(name="sync", partitions=2), "bad name!"])
        assert isinstance(created, Outcomes)
        assert created["sync"].partitions == 2
        assert "bad name!" in created.errors
        assert admin.list_topics()["sync"].partitions == 2
        assert len(admin.describe_topics(["sync"])["sync"].partitions) == 2
        assert admin.create_partitions({"sync": 3})["sync"] == 3
        assert admin.delete_topics(["sync"])["sync"] is not None
        assert admin.list_topics() == {}
