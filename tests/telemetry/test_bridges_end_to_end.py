"""The bridges on real clients: a produce and a consume against the embedded broker, seen
by a statsd listener on 127.0.0.1, by prometheus_client's parser and by stats()."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import pykaf
from pykaf import telemetry
from pykaf.broker import BlockingCluster

FAST = {"request_timeout": 5.0, "delivery_timeout": 20.0, "max_block": 10.0, "linger": 0.002}
RECORDS = 200


@pytest.fixture(scope="module")
def cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=1, default_partitions=2) as running:
        yield running


def _produce(bootstrap: str, topic: str, attach: Any) -> None:
    with pykaf.Producer(bootstrap, client_id="e2e-producer", **FAST) as producer:
        bridge = attach(producer)
        for i in range(RECORDS):
            producer.produce(topic, b"%d" % i, partition=i % 2)
        assert producer.flush(10) == 0
        bridge.close()


def _consume(bootstrap: str, topic: str, attach: Any) -> None:
    with pykaf.Consumer(bootstrap, stop_at_end=True, client_id="e2e-consumer") as consumer:
        bridge = attach(consumer)
        consumer.assign([pykaf.TopicPartition(topic, 0), pykaf.TopicPartition(topic, 1)])
        consumer.seek_to_beginning()
        assert sum(1 for _ in consumer) == RECORDS
        bridge.close()


def _sums(sock: socket.socket, until: dict[str, float]) -> dict[str, float]:
    """Summed values of the counters seen in the datagrams, until each name in ``until``
    reached its value (each datagram waits at most the socket's timeout)."""
    sums: dict[str, float] = {}
    for _ in range(10_000):
        if all(sums.get(name, 0) >= value for name, value in until.items()):
            break
        for line in sock.recv(65536).decode().split("\n"):
            name, _, rest = line.partition(":")
            value, _, kind = rest.partition("|")
            if kind == "c":
                sums[name] = sums.get(name, 0) + float(value)
            else:
                sums.setdefault(name, 0)
    return sums


def test_statsd_hears_a_real_produce_and_consume(cluster: BlockingCluster) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(5.0)
    port = listener.getsockname()[1]
    try:

        def attach(client: Any) -> Any:
            return telemetry.statsd(client, "127.0.0.1", port, prefix="e2e")

        _produce(cluster.bootstrap, "statsd-e2e", attach)
        _consume(cluster.bootstrap, "statsd-e2e", attach)
        sums = _sums(
            listener,
            {
                "e2e.records.acknowledged": RECORDS,
                "e2e.records.fetched": RECORDS,
                "e2e.requests.Produce": 1,
                "e2e.requests.Fetch": 1,
            },
        )
    finally:
        listener.close()
    assert sums["e2e.records.acknowledged"] == RECORDS
    assert sums["e2e.records.fetched"] == RECORDS
    per_partition = {
        name: value
        for name, value in sums.items()
        if name.startswith("e2e.statsd-e2e.flushed_replied.")
    }
    assert sum(per_partition.values()) == RECORDS
    assert {name.rsplit(".", 1)[1] for name in per_partition} == {"0", "1"}
    assert any(name.startswith("e2e.worker_up.broker") for name in sums)


def test_prometheus_counts_match_what_was_produced_and_consumed(cluster: BlockingCluster) -> None:
    registry = CollectorRegistry()
    collector = telemetry.prometheus_collector()
    registry.register(collector)

    class Detach:
        def close(self) -> None:
            pass  # the collector keeps the counts: they are read after the clients close

    def attach(client: Any) -> Any:
        collector.add(client)
        return Detach()

    _produce(cluster.bootstrap, "prometheus-e2e", attach)
    _consume(cluster.bootstrap, "prometheus-e2e", attach)
    text = telemetry.metrics_text(registry).decode()
    collector.close()
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    producer = (("client", "producer"), ("client_id", "e2e-producer"))
    consumer = (("client", "consumer"), ("client_id", "e2e-consumer"))
    assert found[("pykaf_records_acknowledged_total", producer)] == RECORDS
    assert found[("pykaf_records_failed_total", producer)] == 0
    assert found[("pykaf_records_fetched_total", consumer)] == RECORDS
    acknowledged = [
        found[
            (
                "pykaf_partition_records_acknowledged_total",
                (*producer, ("partition", p), ("topic", "prometheus-e2e")),
            )
        ]
        for p in ("0", "1")
    ]
    assert acknowledged == [RECORDS / 2, RECORDS / 2]
    assert found[("pykaf_api_requests_total", (("api", "Produce"), *producer))] >= 1
    assert found[("pykaf_request_latency_seconds_count", producer)] >= 2  # Metadata, Produce
    lag = [
        found[
            (
                "pykaf_partition_consumer_lag",
                (*consumer, ("partition", p), ("topic", "prometheus-e2e")),
            )
        ]
        for p in ("0", "1")
    ]
    assert lag == [0, 0]  # read to the end


def test_stats_every_pushes_a_real_producers_counts(cluster: BlockingCluster) -> None:
    pushed: list[telemetry.Stats] = []
    done = threading.Event()

    def callback(stats: telemetry.Stats) -> None:
        pushed.append(stats)
        if stats.counters["records_acknowledged"] == RECORDS:
            done.set()

    with pykaf.Producer(cluster.bootstrap, client_id="e2e-stats", **FAST) as producer:
        timer = telemetry.stats_every(producer, 0.05, callback)
        for i in range(RECORDS):
            producer.produce("stats-e2e", b"%d" % i, partition=0)
        assert producer.flush(10) == 0
        assert done.wait(10)
        timer.close()
        assert telemetry.stats(producer).client_id == "e2e-stats"  # attached on first call
        producer.send("stats-e2e", b"one more", partition=0).result(10)
        assert telemetry.stats(producer).counters["records_acknowledged"] == 1
    last = pushed[-1]
    assert last.client_id == "e2e-stats"
    assert last.partitions[("stats-e2e", 0)].records_acknowledged == RECORDS
    assert last.partitions[("stats-e2e", 0)].last_offset == RECORDS - 1
    assert last.histograms["batch_ack_latency"].p50 is not None
    assert last.counters["connections_opened"] >= 1
