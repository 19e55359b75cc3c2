"""``Producer.pending()`` / ``AsyncProducer.pending()``: how many records are produced and
not reported yet (confluent-kafka's ``len(producer)``), without sending anything early:
records held while every broker is down, records whose ``send`` waits for metadata, and
0 once each has its report. The journal's own count (records waiting in the journal
only) is checked in ``test_custody_mock_cluster``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from peers.mock_cluster import MockCluster

from pykaf import AsyncProducer, Producer

pytestmark = pytest.mark.peer

ALL = -1  # every broker of the mock cluster
SETTINGS = {"linger": 0.002, "request_timeout": 2.0, "retry_backoff_max": 0.2}


@pytest.fixture
def mock() -> Iterator[MockCluster]:
    with MockCluster(1) as cluster:
        cluster.create_topic("known", 2)
        cluster.create_topic("later", 2)
        yield cluster


def test_records_held_while_brokers_are_down_are_pending_until_reported(
    mock: MockCluster,
) -> None:
    with Producer(mock.bootstrap, **SETTINGS) as producer:
        producer.send("known", b"warm").result(30)
        assert producer.pending() == 0
        mock.broker_down(ALL)
        for i in range(50):
            producer.produce("known", b"%d" % i)
        assert producer.pending() == 50
        assert producer.flush(0.3) == 50  # nothing can be delivered: all still pending
        assert producer.pending() == 50
        mock.broker_up(ALL)
        assert producer.flush(30) == 0
        assert producer.pending() == 0


def test_async_sends_waiting_for_metadata_are_pending_too(mock: MockCluster) -> None:
    async def main() -> None:
        async with AsyncProducer(mock.bootstrap, **SETTINGS) as producer:
            await producer.send("known", b"warm")
            mock.broker_down(ALL)
            held = [producer.send("known", b"held") for _ in range(3)]
            # "later" was never produced to: its metadata cannot come while brokers are
            # down, so these wait in the backlog, not in a batch.
            waiting = [producer.send("later", b"waiting") for _ in range(4)]
            assert producer.pending() == 7
            mock.broker_up(ALL)
            await asyncio.wait_for(asyncio.gather(*held, *waiting), 30)
            assert producer.pending() == 0

    asyncio.run(main())
