"""``stats()`` on every client role, and ``stats_interval`` pushing snapshots (librdkafka's
statistics callback): counting starts at the first ``stats()`` call, or with the client
when pushes are asked for; nothing listens otherwise."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import pykaf
from pykaf.broker import BlockingCluster
from pykaf.telemetry import Stats

LIMIT = 20.0


@pytest.fixture(scope="module")
def cluster() -> Any:
    with BlockingCluster(1) as running:
        running.create_topic("counted", 2)
        yield running


def test_every_blocking_role_has_stats_and_counting_starts_at_the_first_call(
    cluster: BlockingCluster,
) -> None:
    with pykaf.Producer(cluster.bootstrap) as producer:
        assert not producer.events.active  # nobody listens before stats() is asked
        producer.send("counted", b"before").result(LIMIT)
        first = producer.stats()
        assert isinstance(first, Stats)
        assert first.counters["records_acknowledged"] == 0  # counting starts now
        for i in range(10):
            producer.send("counted", b"%d" % i, partition=i % 2).result(LIMIT)
        assert producer.stats().counters["records_acknowledged"] == 10
    with pykaf.Consumer(cluster.bootstrap, stop_at_end=True, auto_offset_reset="earliest") as c:
        c.stats()
        c.assign([pykaf.TopicPartition("counted", 0), pykaf.TopicPartition("counted", 1)])
        assert sum(1 for _ in c) == 11
        assert c.stats().counters["records_fetched"] == 11
    with pykaf.Admin(cluster.bootstrap) as admin, pykaf.Client(cluster.bootstrap) as client:
        admin.stats()
        client.stats()
        admin.describe_cluster()
        client.metadata()
        assert admin.stats().counters["connections_opened"] >= 1
        assert client.stats().requests_per_api.get("Metadata", 0) >= 1


async def test_every_async_role_has_stats(cluster: BlockingCluster) -> None:
    async with pykaf.AsyncProducer(cluster.bootstrap) as producer:
        producer.stats()
        await producer.send("counted", b"async")
        assert producer.stats().counters["records_acknowledged"] == 1
    async with pykaf.AsyncAdmin(cluster.bootstrap) as admin:
        admin.stats()
        await admin.list_topics()
        assert admin.stats().counters["connections_opened"] >= 1
    async with pykaf.AsyncConsumer(cluster.bootstrap) as consumer:
        assert isinstance(consumer.stats(), Stats)


def test_stats_interval_pushes_snapshots_that_count_from_the_start(
    cluster: BlockingCluster,
) -> None:
    pushed: list[Stats] = []
    arrived = threading.Event()

    def on_stats(stats: Stats) -> None:
        pushed.append(stats)
        if stats.counters["records_acknowledged"] >= 5:
            arrived.set()

    with pykaf.Producer(cluster.bootstrap, stats_interval=0.05, on_stats=on_stats) as producer:
        for i in range(5):
            producer.send("counted", b"pushed %d" % i).result(LIMIT)
        assert arrived.wait(LIMIT), "no snapshot counted the 5 records"
    assert producer.stats().counters["records_acknowledged"] == 5  # readable after close
    deadline = time.monotonic() + LIMIT
    while any(t.name == "pykaf-stats" and t.is_alive() for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the pusher went on after close()"
        threading.Event().wait(0.01)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"stats_interval": 1.0}, "go together"),
        ({"on_stats": print}, "go together"),
        ({"stats_interval": 0, "on_stats": print}, "positive"),
        ({"stats_interval": 1.0, "on_stats": 3}, "callable"),
    ],
)
def test_stats_settings_say_what_to_fix(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pykaf.Producer("127.0.0.1:9", **options)
