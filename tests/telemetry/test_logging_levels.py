"""Logging (issue 15): one logger per component under ``pykaf.``, levels that mean something
(a retry is INFO, a failing broker WARNING once per episode with its cause and an INFO when
it ends, a lost assignment ERROR) and no storms (repeats rate-limited and counted). On the
embedded broker, with its fault injection; every wait is bounded."""

from __future__ import annotations

import ast
import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from _consumer_harness import FAST, FAST_GROUPS, LIMIT, polling, until
from producer._produce_readback import read_topic

import pykaf
from pykaf import AsyncAdmin
from pykaf._consumer._async_consumer import AsyncConsumer
from pykaf._kafka_errors import FencedInstanceIdError
from pykaf._producer._producer import Producer
from pykaf.broker import BlockingCluster, Cluster
from pykaf.broker._groups import configure_groups

NOT_LEADER_OR_FOLLOWER = 6
INVALID_RECORD = 87  # not retriable
COORDINATOR_NOT_AVAILABLE = 15
NOT_COORDINATOR = 16
FENCED_INSTANCE_ID = 82
PACKAGE = Path(pykaf.__file__).parent


def logged(caplog: pytest.LogCaptureFixture, logger: str, level: int, text: str = "") -> list[str]:
    """Messages of ``logger`` (or its children) at exactly ``level`` containing ``text``."""
    return [
        r.getMessage()
        for r in caplog.records
        if (r.name == logger or r.name.startswith(logger + "."))
        and r.levelno == level
        and text in r.getMessage()
    ]


def wait_until(condition: Callable[[], bool], what: str, bound: float = LIMIT) -> None:
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, f"not within {bound}s: {what}"
        time.sleep(0.01)


# -- logger names ------------------------------------------------------------------------------

# Each component's logger: configuring one name covers the whole component.
COMPONENT_LOGGERS = {
    "_client": {"pykaf.client"},
    "_producer": {"pykaf.producer", "pykaf.producer.journal"},
    "_consumer": {"pykaf.consumer"},
    "_admin": {"pykaf.admin"},
    "_telemetry": {"pykaf.telemetry"},
    "broker": {"pykaf.broker"},
}


def logger_names(folder: Path) -> set[str]:
    """Every ``logging.getLogger(NAME)`` in the folder's modules; a name that is not a
    string literal (``__name__`` would give "pykaf._producer._engine") is reported as is."""
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "getLogger"
            ):
                arg = node.args[0] if node.args else None
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    names.add(arg.value)
                else:
                    names.add(f"{path.name}: {ast.unparse(node)}")
    return names


@pytest.mark.parametrize("folder", sorted(COMPONENT_LOGGERS))
def test_one_logger_per_component_under_pykaf(folder: str) -> None:
    assert logger_names(PACKAGE / folder) == COMPONENT_LOGGERS[folder]


# -- the producer ---------------------------------------------------------------------------------


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=1) as running:
        running.create_topic("t", 1)
        running.create_topic("wide", 20)
        yield running


def test_a_retried_produce_batch_is_info_not_warning(
    cluster: BlockingCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pykaf")
    cluster.faults.push_errors("Produce", [NOT_LEADER_OR_FOLLOWER])
    with Producer(cluster.bootstrap, linger=0.0, retry_backoff=0.01) as producer:
        producer.send("t", b"once", partition=0).result(timeout=LIMIT)
    (line,) = logged(caplog, "pykaf.producer", logging.INFO, "retried")
    assert "1 record(s) to t-0 retried after attempt 1 on broker 1" in line
    assert "NOT_LEADER_OR_FOLLOWER" in line or "leader" in line.lower()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert [r.value for r in read_topic(cluster.bootstrap, "t")[0]] == [b"once"]


def test_retries_of_many_batches_are_one_line_and_a_count(
    cluster: BlockingCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pykaf.producer")
    cluster.faults.push_errors("Produce", [NOT_LEADER_OR_FOLLOWER])  # every partition of it
    with Producer(cluster.bootstrap, linger=0.2, retry_backoff=0.01) as producer:
        for partition in range(20):
            producer.produce("wide", b"v", partition=partition)
        assert producer.flush(timeout=LIMIT) == 0
    lines = logged(caplog, "pykaf.producer", logging.INFO)
    assert len(lines) == 2, lines  # the first retry, then the count of the others
    assert "retried after attempt 1" in lines[0]
    assert lines[1].startswith("19 more like it held back, 19 record(s) in all in ")
    assert sum(len(records) for records in read_topic(cluster.bootstrap, "wide").values()) == 20


def test_records_that_fail_in_a_storm_are_one_error_and_a_count(
    cluster: BlockingCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pykaf.producer")
    cluster.faults.push_errors("Produce", [INVALID_RECORD])
    with Producer(cluster.bootstrap, linger=0.2) as producer:
        for partition in range(20):
            producer.produce("wide", b"v", partition=partition)  # no on_error: the log
        producer.flush(timeout=LIMIT)
    errors = logged(caplog, "pykaf.producer", logging.ERROR)
    assert len(errors) == 2, errors
    assert "1 record(s) to wide-" in errors[0]
    assert "not delivered" in errors[0]
    assert errors[1].startswith("19 more like it held back, 19 record(s) in all in ")


# Reconnects many times a second: an outage of a fraction of a second has many attempts.
RECONNECT_FAST = {"reconnect_backoff": 0.01, "reconnect_backoff_max": 0.05, "retry_backoff": 0.01}


def failed_attempts(producer: Producer) -> int:
    broker = producer.stats().brokers.get(1)
    return 0 if broker is None else broker.connections_failed


def test_a_broker_down_for_a_while_is_one_warning_with_its_cause_then_an_end_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pykaf")
    with BlockingCluster(brokers=1) as cluster:
        cluster.create_topic("t", 1)
        with Producer(cluster.bootstrap, linger=0.0, **RECONNECT_FAST) as producer:
            producer.send("t", b"before", partition=0).result(timeout=LIMIT)
            producer.stats()  # counting starts now
            cluster.faults.broker_down(1)
            pending = producer.send("t", b"during", partition=0)
            # Down until the producer has failed to reconnect many times.
            wait_until(
                lambda: failed_attempts(producer) >= 10,
                "ten failed attempts",
            )
            cluster.faults.broker_up(1)
            pending.result(timeout=LIMIT)
        records = [r.value for r in read_topic(cluster.bootstrap, "t")[0]]
    assert records == [b"before", b"during"]
    warnings = logged(caplog, "pykaf", logging.WARNING)
    about_broker = [w for w in warnings if "broker 1" in w]
    assert len(about_broker) == 1, warnings  # once per episode...
    # ...with its cause: refused, or lost with the request in flight when it went down.
    assert re.search(r"is unreachable \((refused|connection lost)\): ", about_broker[0])
    # The whole cluster was down too (its only broker): one more episode, told once.
    assert len([w for w in warnings if "no broker can be reached" in w]) == 1
    assert len(warnings) == 2, warnings
    ended = [m for m in logged(caplog, "pykaf.client", logging.INFO) if m.startswith("broker 1")]
    assert len(ended) == 1, ended
    assert "reachable again after" in ended[0]
    attempts = int(ended[0].rsplit(", ", 1)[-1].split()[0])
    assert attempts >= 10
    assert logged(caplog, "pykaf", logging.ERROR) == []


def test_a_producer_waiting_for_metadata_warns_once_and_says_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pykaf.producer")
    with BlockingCluster(brokers=1) as cluster:
        cluster.create_topic("t", 1)
        cluster.faults.broker_down(1)
        with (
            Producer(cluster.bootstrap, linger=0.0, max_block=LIMIT, **RECONNECT_FAST) as producer,
            ThreadPoolExecutor(1) as caller,
        ):
            # send() blocks its caller until the topic's metadata comes (max_block).
            sending = caller.submit(producer.send, "t", b"late", partition=0)
            wait_until(
                lambda: bool(logged(caplog, "pykaf.producer", logging.WARNING, "no metadata")),
                "the WARNING while waiting",
            )
            cluster.faults.broker_up(1)
            sending.result(timeout=LIMIT).result(timeout=LIMIT)
    (warning,) = logged(caplog, "pykaf.producer", logging.WARNING)
    assert warning.startswith("producer: no metadata for 't'")
    (ended,) = logged(caplog, "pykaf.producer", logging.INFO, "answered again")
    assert re.fullmatch(
        r"producer: metadata answered again after [\d.]+ s, \d+ failed requests?", ended
    )


# -- the admin ---------------------------------------------------------------------------------


async def test_an_admin_retry_is_info(
    kafka_cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pykaf")
    kafka_cluster.faults.push_errors("DescribeGroups", [NOT_COORDINATOR])
    async with asyncio.timeout(LIMIT), AsyncAdmin(kafka_cluster.bootstrap) as admin:
        await admin.describe_groups(["g"])  # no such group: its answer is an error
    (line,) = logged(caplog, "pykaf.admin", logging.INFO)
    assert "retrying 1 item(s)" in line
    assert "'g'" in line
    assert "NOT_COORDINATOR" in line or "coordinator" in line.lower()
    assert logged(caplog, "pykaf", logging.WARNING) == []


# -- the consumer ------------------------------------------------------------------------------


@pytest_asyncio.fixture
async def group_cluster(kafka_cluster: Cluster) -> AsyncIterator[Cluster]:
    configure_groups(kafka_cluster.state, FAST_GROUPS)
    await kafka_cluster.create_topic("t", 4)
    yield kafka_cluster


def member(cluster: Cluster, group: str, **settings: Any) -> AsyncConsumer:
    return AsyncConsumer(cluster.bootstrap, group_id=group, topics=["t"], **{**FAST, **settings})


async def test_a_fenced_member_that_loses_its_assignment_is_an_error(
    group_cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pykaf")
    async with member(group_cluster, "g-fenced", group_instance_id="one") as a:
        async with polling(a):
            await until(lambda: len(a.assignment()) == 4, "joined")
        group_cluster.faults.push_errors("Heartbeat", [FENCED_INSTANCE_ID])
        async with polling(a, tolerate=(FencedInstanceIdError,)):
            await until(
                lambda: bool(logged(caplog, "pykaf.consumer", logging.ERROR)), "the loss logged"
            )
    (error,) = logged(caplog, "pykaf.consumer", logging.ERROR)
    assert "group 'g-fenced': membership lost (fenced)" in error
    assert "t-0" in error  # the partitions it lost, named


async def test_a_member_too_slow_to_poll_loses_its_assignment_as_an_error(
    group_cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pykaf")
    async with member(group_cluster, "g-slow", max_poll_interval=0.3) as a:
        async with polling(a):
            await until(lambda: len(a.assignment()) == 4, "joined")
        # No poll for longer than max_poll_interval: the member leaves, then polls again.
        await until(
            lambda: bool(logged(caplog, "pykaf.consumer", logging.WARNING, "no poll")), "left"
        )
        async with polling(a):
            await until(
                lambda: bool(logged(caplog, "pykaf.consumer", logging.ERROR)), "the loss logged"
            )
    (error,) = logged(caplog, "pykaf.consumer", logging.ERROR)
    assert "membership lost (poll timeout)" in error


async def test_commit_retries_are_info_one_line_and_a_count(
    group_cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pykaf.consumer")
    async with member(group_cluster, "g-commit") as a, polling(a):
        await until(lambda: len(a.assignment()) == 4, "joined")
        group_cluster.faults.push_errors("OffsetCommit", [COORDINATOR_NOT_AVAILABLE] * 5)
        await a.commit(dict.fromkeys(a.assignment(), 1))
    lines = logged(caplog, "pykaf.consumer", logging.INFO, "offset commit retried")
    assert len(lines) == 2, lines  # the first retry, then the count of the others
    assert lines[0].startswith("group 'g-commit': offset commit retried in ")
    (held,) = logged(caplog, "pykaf.consumer", logging.INFO, "held back")
    assert held.startswith("4 more like it held back in ")
    assert "offset commit retried" in held
    assert logged(caplog, "pykaf.consumer", logging.WARNING) == []
