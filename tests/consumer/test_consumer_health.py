"""Nothing a consumer meets in the background passes silently: a failing episode (topics
that cannot be looked up, a group that cannot be joined, a fetch never answered) is
logged once at WARNING with its cause, repeats are only counted, the recovery is logged
at INFO, and ``on_error`` hears of what the application must know. Faults come from the
embedded broker (``cluster.faults``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from consumer_helpers import data_batch, produce_raw, values

from pykaf._client._async_client import AsyncClient
from pykaf._consumer._async_consumer import AsyncConsumer
from pykaf._consumer._records import TopicPartition
from pykaf._consumer.group import _session as session_module
from pykaf._errors import ConsumerStartError, GroupJoinError
from pykaf._kafka_errors import TopicAuthorizationFailedError
from pykaf.broker import Cluster

LIMIT = 30.0
FAST = {"request_timeout": 1.0, "fetch_max_wait": 0.1, "retry_backoff": 0.05}
GROUP = {"session_timeout": 6.0, "heartbeat_interval": 0.5, "rebalance_timeout": 1.0}
COORDINATOR_NOT_AVAILABLE = 15
LOGGER = "pykaf.consumer"


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with Cluster(brokers=1) as running:
        await running.create_topic("h", 1)
        async with AsyncClient(running.bootstrap) as client:
            await produce_raw(client, "h", 0, data_batch(values("h", 5)))
        yield running


def messages(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno == level and text in r.getMessage()
    ]


async def poll_until(consumer: AsyncConsumer, done: Callable[[], bool]) -> int:
    """Poll until ``done()``; the number of records read meanwhile."""
    read = 0
    async with asyncio.timeout(LIMIT):
        while not done():
            read += len(await consumer.poll(timeout=0.2))
    return read


def group_member(cluster: Cluster, group: str, **options: Any) -> AsyncConsumer:
    """A consumer of "h" in ``group``, with the short bounds of these tests."""
    return AsyncConsumer(
        cluster.bootstrap,
        group_id=group,
        topics=["h"],
        auto_offset_reset="earliest",
        **FAST,
        **GROUP,
        **options,
    )


def failures(consumer: AsyncConsumer, key: str) -> int:
    return consumer._health.failures(key)


async def test_unanswered_fetches_warn_once_naming_the_broker_and_fetching_resumes(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    hold = cluster.faults.hold_responses("Fetch")
    consumer = AsyncConsumer(cluster.bootstrap, auto_offset_reset="earliest", **FAST)
    try:
        await consumer.assign([TopicPartition("h", 0)])
        # Three fetches held: the first two timed out (a new connection each time).
        assert await poll_until(consumer, lambda: hold.total >= 3) == 0
        warned = messages(caplog, logging.WARNING, "fetch from broker 1 failed")
        assert len(warned) == 1, warned
        assert "no answer within the timeout" in warned[0]
        assert "fetching resumes" in warned[0]
        hold.release()
        read = 0

        def all_read() -> bool:
            return read >= 5

        async with asyncio.timeout(LIMIT):
            while not all_read():
                read += len(await consumer.poll(timeout=0.2))
        assert messages(caplog, logging.INFO, "fetches from broker 1 answered again")
        assert len(messages(caplog, logging.WARNING, "fetch from broker")) == 1
    finally:
        hold.release()
        await consumer.close()


async def test_a_retriable_partition_error_is_retried_and_told_once_not_raised(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    # Fetches answered REQUEST_TIMED_OUT for the partition (retriable): before, poll raised
    # the first one to the application, whose loop a transient broker error then ended
    # (the consumer fault sweep, test_consumer_fault_sweep.py, failed 2 of 3 seeds so).
    caplog.set_level(logging.INFO, logger=LOGGER)
    cluster.faults.push_errors("Fetch", [7, 7, 7])
    async with AsyncConsumer(cluster.bootstrap, auto_offset_reset="earliest", **FAST) as consumer:
        await consumer.assign([TopicPartition("h", 0)])
        read = 0
        async with asyncio.timeout(LIMIT):
            while read < 5:
                read += len(await consumer.poll(timeout=0.2))
    assert cluster.faults.pending_errors("Fetch") == 0  # all three were met
    warned = messages(caplog, logging.WARNING, "fetching h-0 failed")
    assert len(warned) == 1, warned
    assert "REQUEST_TIMED_OUT" in warned[0]
    assert messages(caplog, logging.INFO, "fetching h-0 from broker 1 works again")


async def test_a_partition_error_retrying_cannot_mend_is_raised_by_poll(cluster: Cluster) -> None:
    cluster.faults.push_errors("Fetch", 29)  # TOPIC_AUTHORIZATION_FAILED
    async with AsyncConsumer(cluster.bootstrap, auto_offset_reset="earliest", **FAST) as consumer:
        await consumer.assign([TopicPartition("h", 0)])

        async def poll_empty_until_raised() -> None:
            async with asyncio.timeout(LIMIT):
                while True:
                    assert await consumer.poll(timeout=0.2) == []

        with pytest.raises(TopicAuthorizationFailedError):
            await poll_empty_until_raised()
        read = 0  # raised once: the partition is fetched again
        async with asyncio.timeout(LIMIT):
            while read < 5:
                read += len(await consumer.poll(timeout=0.2))


async def test_topics_not_looked_up_are_reported_once_then_read_when_a_broker_is_back(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    errors: list[BaseException] = []
    await cluster.faults.broker_down(1)
    consumer = AsyncConsumer(
        cluster.bootstrap,
        topics=["h"],
        auto_offset_reset="earliest",
        on_error=errors.append,
        **FAST,
    )
    try:
        await poll_until(consumer, lambda: failures(consumer, "start") >= 2)
        assert len(errors) == 1
        assert isinstance(errors[0], ConsumerStartError)
        assert len(messages(caplog, logging.WARNING, "could not be looked up")) == 1
        await cluster.faults.broker_up(1)
        assert await poll_until(consumer, lambda: failures(consumer, "start") == 0) >= 0
        assert consumer.assignment() == {TopicPartition("h", 0)}
        assert messages(caplog, logging.INFO, "topics looked up")
        assert len(errors) == 1
    finally:
        await consumer.close()


async def test_a_group_not_joined_within_its_rebalance_timeout_goes_to_on_error(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    errors: list[BaseException] = []
    cluster.faults.push_errors("JoinGroup", [COORDINATOR_NOT_AVAILABLE] * 1000)
    consumer = group_member(cluster, "health", on_error=errors.append)
    try:
        # Two budgets ran out: one report, one warning of each kind.
        await poll_until(consumer, lambda: failures(consumer, "join budget") >= 2)
        assert [type(e) for e in errors] == [GroupJoinError]
        assert "COORDINATOR_NOT_AVAILABLE" in str(errors[0])
        assert len(messages(caplog, logging.WARNING, "joining failed")) == 1
        assert len(messages(caplog, logging.WARNING, "could not be joined within")) == 1
        cluster.faults.clear()
        read = await poll_until(consumer, lambda: bool(consumer.assignment()))
        read += await poll_until(consumer, lambda: failures(consumer, "join budget") == 0)
        assert messages(caplog, logging.INFO, "joined again")
        assert len(errors) == 1
    finally:
        await consumer.close()


async def test_a_bug_that_ends_the_heartbeats_is_said_and_the_member_joins_again(
    cluster: Cluster, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, an exception the heartbeat loop does not handle (a bug: the client's own
    # errors are handled) ended its task in silence; the coordinator evicted the member
    # a session timeout later, and nothing said why.
    caplog.set_level(logging.INFO, logger=LOGGER)
    real_build = session_module.build_request
    armed = {"left": 0}

    def build(name: str, *args: object, **kwargs: object) -> object:
        if name == "Heartbeat" and armed["left"] > 0:
            armed["left"] -= 1
            raise RuntimeError("a bug in the heartbeat loop")
        return real_build(name, *args, **kwargs)

    monkeypatch.setattr(session_module, "build_request", build)
    consumer = group_member(cluster, "beats")
    try:
        assert await poll_until(consumer, lambda: bool(consumer.assignment())) >= 0
        driver = consumer._assignment.membership
        first = driver.generation.generation_id
        armed["left"] = 1
        await poll_until(consumer, lambda: driver.generation.generation_id > first)
        said = messages(caplog, logging.ERROR, "heartbeat task stopped on an unexpected error")
        assert len(said) == 1
        assert "a bug in the heartbeat loop" in said[0]
        assert any(r.exc_info for r in caplog.records if r.levelno == logging.ERROR)
        # The new generation beats: the member stays in its group beyond a session.
        beats = driver._heartbeat_task
        assert beats is not None
        assert not beats.done()
    finally:
        await consumer.close()


async def test_a_bug_that_ends_the_metadata_watch_is_said_and_the_watch_goes_on(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    consumer = group_member(cluster, "watch", metadata_max_age=0.1)
    try:
        await poll_until(consumer, lambda: bool(consumer.assignment()))
        driver = consumer._assignment.membership
        watch = driver._topics
        real_check = watch._check
        checks = {"bugs": 1, "after": 0}

        async def check() -> None:
            if checks["bugs"]:
                checks["bugs"] -= 1
                raise KeyError("a bug in the metadata watch")
            checks["after"] += 1
            await real_check()

        watch._check = check
        await poll_until(consumer, lambda: checks["after"] >= 2)  # the watch went on
        said = messages(caplog, logging.ERROR, "metadata task stopped on an unexpected error")
        assert len(said) == 1
        assert "a bug in the metadata watch" in said[0]
    finally:
        await consumer.close()
