"""send()/produce() to a topic that waiting cannot fix fails at once with a typed error
naming the topic and what to fix; a wait that can end (no broker reachable yet) goes on
up to max_block and says so at WARNING once.

max_block stays at its default (60 s) where the point is "at once": a call still running
after a generous bound (a thread join, well below 60 s) is the failure, not a timing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from pykaf._errors import KafkaTimeoutError
from pykaf._kafka_errors import InvalidTopicError, TopicAuthorizationFailedError
from pykaf._producer._async_producer import AsyncProducer
from pykaf._producer._producer import Producer
from pykaf.broker import BlockingCluster, Cluster

BOUND = 30.0  # far below max_block (60 s): a call still blocked by then waited for it

INVALID_TOPIC_EXCEPTION = 17
TOPIC_AUTHORIZATION_FAILED = 29


@pytest.fixture(scope="module")
def cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=1) as running:
        yield running


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (bound once by us, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def raised_within(call: Callable[[], object], bound: float = BOUND) -> BaseException:
    """What ``call`` raised, given it ended within ``bound`` seconds."""
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(bound)
    assert not thread.is_alive(), f"still blocked after {bound:g}s: it waited for max_block"
    assert outcome, "it did not raise"
    return outcome[0]


@pytest.mark.parametrize("name", ["bad topic name!", "x" * 250, ".", "..", "tópico"])
def test_an_illegal_topic_name_is_refused_at_once(cluster: BlockingCluster, name: str) -> None:
    with Producer(cluster.bootstrap) as p:
        error = raised_within(lambda: p.produce(name, b"v"))
        assert isinstance(error, InvalidTopicError)
        assert repr(name) in str(error)
        assert "ASCII letters, digits" in str(error)
        error = raised_within(lambda: p.send(name, b"v"))
        assert isinstance(error, InvalidTopicError)


async def test_an_illegal_topic_name_is_refused_at_once_async() -> None:
    async with Cluster(brokers=1) as running, AsyncProducer(running.bootstrap) as p:
        with pytest.raises(InvalidTopicError, match="bad topic name!"):
            await p.send("bad topic name!", b"v")
        with pytest.raises(InvalidTopicError, match=r"'\.\.'"):
            await p.produce("..", b"v")


@pytest.mark.parametrize(
    ("code", "error_type", "hint"),
    [
        (INVALID_TOPIC_EXCEPTION, InvalidTopicError, "ASCII letters"),
        (TOPIC_AUTHORIZATION_FAILED, TopicAuthorizationFailedError, "grant its principal"),
    ],
)
def test_a_non_retriable_metadata_answer_fails_at_once(
    cluster: BlockingCluster, code: int, error_type: type[BaseException], hint: str
) -> None:
    topic = f"refused-{code}"

    async def refuse(ctx: Any, request: Any, call_next: Any) -> Any:
        response = await call_next(ctx, request)
        if ctx.api_key != 3:  # Metadata: this topic gets the error code
            return response
        topics = [
            dataclasses.replace(entry, error_code=ErrorCode(code), partitions=())
            if entry.name == topic
            else entry
            for entry in response.topics
        ]
        return dataclasses.replace(response, topics=tuple(topics))

    cluster.set_interceptor(refuse)
    try:
        with Producer(cluster.bootstrap) as p:
            error = raised_within(lambda: p.produce(topic, b"v"))
    finally:
        cluster.set_interceptor(None)
    assert isinstance(error, error_type)
    assert repr(topic) in str(error)
    assert hint in str(error)


def test_an_unreachable_bootstrap_waits_max_block_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="pykaf")
    with Producer(f"127.0.0.1:{closed_port()}", max_block=3.0, retry_backoff_max=0.2) as p:
        error = raised_within(lambda: p.produce("nowhere", b"v"))
        assert isinstance(error, KafkaTimeoutError)
        assert "max_block" in str(error)
    warned = [r for r in caplog.records if "wait up to max_block" in r.getMessage()]
    assert len(warned) == 1, caplog.text
    assert "'nowhere'" in warned[0].getMessage()


def test_partitions_for_fetches_a_topic_once_and_names_its_partitions(
    cluster: BlockingCluster,
) -> None:
    cluster.create_topic("p4", 4)
    with Producer(cluster.bootstrap) as producer:
        assert producer.partitions_for("p4") == [0, 1, 2, 3]
    with Producer(f"127.0.0.1:{closed_port()}", max_block=0.2) as nowhere:
        error = raised_within(lambda: nowhere.partitions_for("p4"))
        assert isinstance(error, KafkaTimeoutError)
        assert "'p4'" in str(error)


def test_a_journal_producer_that_knows_a_topic_takes_its_records_while_kafka_is_down(
    tmp_path: Any,
) -> None:
    # The gateway's warm-up: a topic known before the outage can be journaled during it.
    with BlockingCluster(brokers=1) as kafka:
        kafka.create_topic("warm", 2)

        async def main() -> None:
            async with AsyncProducer(
                kafka.bootstrap, custody="journal", journal_dir=tmp_path, max_block=0.2
            ) as producer:
                assert await producer.partitions_for("warm") == [0, 1]
                kafka.faults.broker_down(1)
                for i in range(20):
                    await producer.produce("warm", b"%d" % i)  # taken: no wait, no error
                with pytest.raises(KafkaTimeoutError):  # never known: cannot be placed
                    await producer.produce("cold", b"x")
                kafka.faults.broker_up(1)
                assert await producer.flush(30) == 0

        asyncio.run(main())
