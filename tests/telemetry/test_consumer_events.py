"""The consumer's telemetry events (issue 15) with real values, on the embedded broker:
group joined / rebalanced on every member, lost (session timeout, coordinator gone,
fenced), commits done and failed, fetch answers whose records add up to what was read and
whose lag ends at 0; and with nobody subscribed, no fetch event is even built."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest
import pytest_asyncio
from _consumer_harness import FAST, FAST_GROUPS, LIMIT, polling, until

import pykaf._consumer._fetcher as fetcher_module
from pykaf._consumer._async_consumer import AsyncConsumer
from pykaf._consumer._consumer import Consumer
from pykaf._consumer._fetch_events import count_records
from pykaf._consumer._records import TopicPartition
from pykaf._errors import CommitFailedError
from pykaf._kafka_errors import FencedInstanceIdError
from pykaf._producer._async_producer import AsyncProducer
from pykaf.broker import BlockingCluster, Cluster
from pykaf.broker._groups import configure_groups, group_coordinator
from pykaf.events import (
    CommitDone,
    CommitFailed,
    Event,
    FetchDone,
    GroupJoined,
    GroupLost,
    GroupRebalanced,
)
from pykaf.protocol import encode_batch

E = TypeVar("E", bound=Event)


@pytest_asyncio.fixture
async def cluster(kafka_cluster: Cluster) -> AsyncIterator[Cluster]:
    configure_groups(kafka_cluster.state, FAST_GROUPS)
    await kafka_cluster.create_topic("t", 4)
    yield kafka_cluster


def of(kind: type[E], events: list[Event]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


def pairs(*partitions: int) -> tuple[tuple[str, int], ...]:
    return tuple(("t", p) for p in partitions)


def assignment(consumer: AsyncConsumer) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((tp.topic, tp.partition) for tp in consumer.assignment()))


def member(cluster: Cluster, group: str, events: list[Event], **settings: Any) -> AsyncConsumer:
    options = {**FAST, **settings}
    return AsyncConsumer(
        cluster.bootstrap, group_id=group, topics=["t"], on_event=events.append, **options
    )


# -- joins and rebalances ------------------------------------------------------------------


async def test_a_second_member_rebalances_both(cluster: Cluster) -> None:
    a_events: list[Event] = []
    b_events: list[Event] = []
    async with member(cluster, "g-two", a_events) as a:
        async with polling(a):
            await until(lambda: assignment(a) == pairs(0, 1, 2, 3), "a owns everything")
        first = of(GroupJoined, a_events)
        assert [(j.assignment, j.group_id) for j in first] == [(pairs(0, 1, 2, 3), "g-two")]
        assert first[0].member_id
        assert first[0].generation >= 1
        assert first[0].duration > 0
        assert [(r.revoked, r.assigned) for r in of(GroupRebalanced, a_events)] == [
            ((), pairs(0, 1, 2, 3))
        ]
        async with member(cluster, "g-two", b_events) as b, polling(a, b):
            await until(
                lambda: len(of(GroupJoined, a_events)) == 2 and len(of(GroupJoined, b_events)) == 1,
                "both members joined the new generation",
            )
            a_joined, b_joined = of(GroupJoined, a_events)[1], of(GroupJoined, b_events)[0]
            # range: the first member id in order takes 0-1, the other 2-3.
            assert {a_joined.assignment, b_joined.assignment} == {pairs(0, 1), pairs(2, 3)}
            assert a_joined.generation == b_joined.generation > first[0].generation
            assert a_joined.member_id == first[0].member_id != b_joined.member_id
            a_again = of(GroupRebalanced, a_events)[1]
            # Eager: a gave everything up before the join, and got its half back.
            assert (a_again.revoked, a_again.assigned) == (pairs(0, 1, 2, 3), a_joined.assignment)
            (b_rebalance,) = of(GroupRebalanced, b_events)
            assert (b_rebalance.revoked, b_rebalance.assigned) == ((), b_joined.assignment)
            assert a_again.duration > 0
            assert b_rebalance.duration > 0
            assert {e.client_id for e in a_events + b_events} == {"pykaf"}
            assert not of(GroupLost, a_events + b_events)
        # b left: everything it had revoked, nothing assigned.
        left = of(GroupRebalanced, b_events)[-1]
        assert (left.revoked, left.assigned) == (b_joined.assignment, ())


async def test_a_cooperative_member_revokes_only_what_moves(cluster: Cluster) -> None:
    sticky = {"partition_assignment_strategy": ("cooperative-sticky",)}
    a_events: list[Event] = []
    b_events: list[Event] = []
    async with member(cluster, "g-coop", a_events, **sticky) as a:
        async with polling(a):
            await until(lambda: assignment(a) == pairs(0, 1, 2, 3), "a owns everything")
        async with member(cluster, "g-coop", b_events, **sticky) as b, polling(a, b):
            await until(
                lambda: len(assignment(a)) == 2 and len(assignment(b)) == 2,
                "two members, two partitions each",
            )
            await until(lambda: len(of(GroupRebalanced, b_events)) >= 2, "b got its share")
            revoked = {p for r in of(GroupRebalanced, a_events) for p in r.revoked}
            assigned_b = {p for r in of(GroupRebalanced, b_events) for p in r.assigned}
            assert revoked == assigned_b == set(assignment(b))
            assert set(assignment(a)) == set(pairs(0, 1, 2, 3)) - revoked


# -- commits ----------------------------------------------------------------------------------


async def test_commits_done_and_refused(cluster: Cluster) -> None:
    events: list[Event] = []
    async with member(cluster, "g-commit", events) as a:
        async with polling(a):
            await until(lambda: len(assignment(a)) == 4, "joined")
        await a.commit({TopicPartition("t", p): 1 for p in range(4)})
        await a.commit({TopicPartition("t", 0): 2})
        done = of(CommitDone, events)
        assert [(c.group_id, c.partitions) for c in done] == [("g-commit", 4), ("g-commit", 1)]
        assert all(c.latency > 0 for c in done)
        cluster.faults.push_errors("OffsetCommit", [22])  # ILLEGAL_GENERATION: generation over
        with pytest.raises(CommitFailedError):
            await a.commit({TopicPartition("t", 0): 3})
        assert [(c.group_id, c.error) for c in of(CommitFailed, events)] == [
            ("g-commit", "CommitFailedError")
        ]
        assert len(of(CommitDone, events)) == 2
        async with polling(a):
            await until(lambda: bool(of(GroupLost, events)), "the loss is told")
            await until(lambda: len(of(GroupJoined, events)) == 2, "rejoined")
        (lost,) = of(GroupLost, events)
        assert (lost.reason, lost.lost) == ("generation over", pairs(0, 1, 2, 3))


async def test_a_fenced_member_fails_its_commit_and_loses_everything(cluster: Cluster) -> None:
    events: list[Event] = []
    async with member(cluster, "g-fenced", events, group_instance_id="one") as a:
        async with polling(a):
            await until(lambda: len(assignment(a)) == 4, "joined")
        cluster.faults.push_errors("OffsetCommit", [82])  # FENCED_INSTANCE_ID
        with pytest.raises(FencedInstanceIdError):
            await a.commit({TopicPartition("t", 0): 1})
        assert [c.error for c in of(CommitFailed, events)] == ["FencedInstanceIdError"]
        for _ in range(2):  # told once, however often the application polls
            with pytest.raises(FencedInstanceIdError):
                await a.poll(timeout=0.1)
        assert [(e.reason, e.lost) for e in of(GroupLost, events)] == [
            ("fenced", pairs(0, 1, 2, 3))
        ]


# -- lost memberships -----------------------------------------------------------------------


async def test_a_session_that_expires_is_lost_and_logged_once(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pykaf.consumer")
    events: list[Event] = []
    async with member(cluster, "g-expiry", events, session_timeout=1.0) as a:
        async with polling(a):
            await until(lambda: len(assignment(a)) == 4, "joined")
            generation = of(GroupJoined, events)[0].generation
            # Heartbeats reach the coordinator only after the session is over.
            cluster.faults.set_latency(3.0, api="Heartbeat")
            groups = group_coordinator(cluster.state).groups
            await until(lambda: not groups["g-expiry"].members, "the coordinator expired a")
            cluster.faults.set_latency(0, api="Heartbeat")
            await until(lambda: len(of(GroupJoined, events)) == 2, "a rejoined")
        (lost,) = of(GroupLost, events)
        assert (lost.group_id, lost.reason, lost.lost) == (
            "g-expiry",
            "session timeout",
            pairs(0, 1, 2, 3),
        )
        assert of(GroupJoined, events)[1].generation > generation
        assert of(GroupJoined, events)[1].assignment == pairs(0, 1, 2, 3)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "membership lost (session timeout)" in errors[0]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warned if "heartbeat failed" in w]) == 1  # once per episode


async def test_forgotten_while_the_coordinator_was_away(cluster: Cluster) -> None:
    events: list[Event] = []
    async with member(cluster, "g-away", events, session_timeout=1.0) as a, polling(a):
        await until(lambda: len(assignment(a)) == 4, "joined")
        # COORDINATOR_NOT_AVAILABLE, then a coordinator that does not know the member.
        cluster.faults.push_errors("Heartbeat", [15, 25])
        await until(lambda: len(of(GroupJoined, events)) == 2, "a rejoined")
    (lost,) = of(GroupLost, events)
    assert (lost.reason, lost.lost) == ("coordinator gone", pairs(0, 1, 2, 3))


async def test_no_poll_for_max_poll_interval_loses_the_assignment(cluster: Cluster) -> None:
    events: list[Event] = []
    slow = {"max_poll_interval": 0.5, "rebalance_timeout": 5.0}
    async with member(cluster, "g-slow", events, **slow) as a:
        async with polling(a):
            await until(lambda: len(assignment(a)) == 4, "joined")
        groups = group_coordinator(cluster.state).groups
        await until(lambda: not groups["g-slow"].members, "a left for not polling")
        async with polling(a):
            await until(lambda: len(of(GroupJoined, events)) == 2, "a rejoined once it polled")
    (lost,) = of(GroupLost, events)
    assert (lost.reason, lost.lost) == ("poll timeout", pairs(0, 1, 2, 3))


# -- fetches ----------------------------------------------------------------------------------


async def fill(cluster: Cluster, count: int) -> None:
    async with AsyncProducer(cluster.bootstrap, linger=0.005, batch_size=1024) as producer:
        for i in range(count):
            await producer.produce("t", f"v{i}".encode(), partition=i % 4)
        await producer.flush()


async def test_fetch_answers_add_up_to_what_was_read(cluster: Cluster) -> None:
    await fill(cluster, 2000)
    events: list[Event] = []
    async with AsyncConsumer(
        cluster.bootstrap,
        topics=["t"],
        stop_at_end=True,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4096,  # many answers, several per partition
        on_event=events.append,
    ) as consumer:
        read = 0
        async with asyncio.timeout(LIMIT):
            async for _ in consumer:
                read += 1
    fetches = of(FetchDone, events)
    assert read == 2000
    assert sum(f.records for f in fetches) == 2000
    assert len([f for f in fetches if f.records]) > 4
    assert all(f.bytes > 0 for f in fetches if f.records)
    leaders = {b.node_id for b in cluster.brokers}
    assert {f.broker for f in fetches} <= leaders
    last_lag: dict[tuple[str, int], int] = {}
    lags_seen: list[int] = []
    for f in fetches:
        for topic, partition, lag in f.lag:
            last_lag[(topic, partition)] = lag
            lags_seen.append(lag)
    assert last_lag == {("t", p): 0 for p in range(4)}
    assert max(lags_seen) > 0  # behind at first


async def test_no_fetch_event_is_built_with_nobody_subscribed(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fill(cluster, 100)
    built: list[object] = []
    monkeypatch.setattr(fetcher_module, "emit_fetch_done", lambda *a, **k: built.append(a))
    async with AsyncConsumer(
        cluster.bootstrap, topics=["t"], stop_at_end=True, auto_offset_reset="earliest"
    ) as consumer:
        read = 0
        async with asyncio.timeout(LIMIT):
            async for _ in consumer:
                read += 1
        assert read == 100
        assert built == []
        seen: list[Event] = []
        unsubscribe = consumer.events.subscribe(seen.append)
        await consumer.seek_to_beginning()
        async with asyncio.timeout(LIMIT):
            async for _ in consumer:
                pass
        unsubscribe()
    assert built  # subscribing later switches the events on


def test_record_counts_come_from_batch_headers() -> None:
    first = encode_batch([(None, b"a", [], 0)] * 3, base_offset=10)
    second = encode_batch([(None, b"b", [], 0)] * 5, base_offset=13)
    data = first + second
    assert count_records(data, 10) == 8
    assert count_records(data, 12) == 6  # a fetch from the middle of the first batch
    assert count_records(data, 13) == 5
    assert count_records(data + second[:20], 10) == 8  # a truncated batch is not counted
    assert count_records(b"", 0) == 0


# -- log levels ---------------------------------------------------------------------------


def logged(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and text in r.getMessage()]


async def test_a_failing_auto_commit_warns_once_per_episode_and_a_retry_is_info(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pykaf.consumer")
    events: list[Event] = []
    auto = {"enable_auto_commit": True, "auto_commit_interval": 0.05}
    async with member(cluster, "g-auto", events, **auto) as a, polling(a):
        await until(lambda: len(of(CommitDone, events)) >= 1, "auto-commits go through")
        cluster.faults.push_errors("OffsetCommit", [30] * 4)  # GROUP_AUTHORIZATION_FAILED
        await until(lambda: len(of(CommitFailed, events)) == 4, "four auto-commits refused")
        done = len(of(CommitDone, events))
        await until(lambda: len(of(CommitDone, events)) > done, "auto-commits go through again")
        cluster.faults.push_errors("OffsetCommit", [15])  # COORDINATOR_NOT_AVAILABLE: retried
        await until(lambda: bool(logged(caplog, logging.INFO, "offset commit retried")), "retry")
    assert {e.error for e in of(CommitFailed, events)} == {"GroupAuthorizationFailedError"}
    assert len(logged(caplog, logging.WARNING, "auto-commit failed")) == 1
    assert len(logged(caplog, logging.DEBUG, "auto-commit failed")) == 3  # counted
    assert logged(caplog, logging.INFO, "auto-commit works again")
    assert not logged(caplog, logging.WARNING, "offset commit retried")


# -- the blocking consumer ----------------------------------------------------------------


def test_the_blocking_consumer_hears_the_same_events(
    kafka_cluster_sync: BlockingCluster,
) -> None:
    cluster = kafka_cluster_sync
    cluster.call(lambda: configure_groups(cluster.state, FAST_GROUPS))
    cluster.create_topic("b", 2)
    events: list[Event] = []
    with Consumer(
        cluster.bootstrap, group_id="g-sync", topics=["b"], on_event=events.append, **FAST
    ) as consumer:
        for _ in range(200):  # bounded: 200 polls of at most 0.1 s
            if len(consumer.assignment()) == 2:
                break
            consumer.poll(timeout=0.1)
        consumer.commit({TopicPartition("b", p): 1 for p in range(2)})
    both = (("b", 0), ("b", 1))
    assert [j.assignment for j in of(GroupJoined, events)] == [both]
    assert [c.partitions for c in of(CommitDone, events)] == [2]
    assert [(r.revoked, r.assigned) for r in of(GroupRebalanced, events)] == [
        ((), both),
        (both, ()),  # closing left the group
    ]
