"""The Prometheus collector: prometheus_client's own text parser reads the exposition,
and the samples are the collector's numbers (synthetic events here; a real produce and
consume in test_bridges_end_to_end.py)."""

from __future__ import annotations

import urllib.request

import pytest
from _synthetic import make
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from pykaf import telemetry
from pykaf.events import (
    BatchAcknowledged,
    BatchSent,
    ConnectionOpened,
    EventBus,
    FetchDone,
    RequestAnswered,
)


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, as a scraper reads the exposition."""
    text = telemetry.metrics_text(registry).decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


class FakeProducer:
    def __init__(self) -> None:
        self.events = EventBus()


def test_the_exposition_parses_and_matches_the_events() -> None:
    producer = FakeProducer()
    registry = CollectorRegistry()
    collector = telemetry.prometheus_collector(producer)
    registry.register(collector)
    bus = producer.events
    bus.emit(
        make(ConnectionOpened, broker=1, address="h:1", purpose="produce", time_to_connect=0.002)
    )
    bus.emit(
        make(
            BatchSent, topic="t", partition=0, broker=1, records=4, bytes=400, compression_ratio=1.0
        )
    )
    bus.emit(
        make(
            BatchAcknowledged,
            topic="t",
            partition=0,
            broker=1,
            records=4,
            bytes=400,
            base_offset=10,
            latency=0.003,
        )
    )
    bus.emit(
        make(
            RequestAnswered,
            broker=1,
            api="Produce",
            version=9,
            request_bytes=400,
            response_bytes=50,
            latency=0.003,
        )
    )
    bus.emit(make(FetchDone, broker=1, records=2, bytes=100, lag=(("t", 0, 5),)))
    found = samples(registry)
    me = (("client", "fakeproducer"), ("client_id", "unit"))
    assert found[("pykaf_records_sent_total", me)] == 4
    assert found[("pykaf_records_acknowledged_total", me)] == 4
    assert found[("pykaf_records_fetched_total", me)] == 2
    assert found[("pykaf_connections_open", me)] == 1
    assert found[("pykaf_api_requests_total", (("api", "Produce"), *me))] == 1
    partition = (
        ("client", "fakeproducer"),
        ("client_id", "unit"),
        ("partition", "0"),
        ("topic", "t"),
    )
    assert found[("pykaf_partition_records_acknowledged_total", partition)] == 4
    assert found[("pykaf_partition_last_offset", partition)] == 13
    assert found[("pykaf_partition_consumer_lag", partition)] == 5
    broker = (("broker", "1"), ("client", "fakeproducer"), ("client_id", "unit"))
    assert found[("pykaf_broker_requests_total", broker)] == 1
    assert found[("pykaf_broker_request_latency_seconds_count", broker)] == 1
    assert found[("pykaf_broker_request_latency_seconds_bucket", (*broker, ("le", "0.0025")))] == 0
    assert found[("pykaf_broker_request_latency_seconds_bucket", (*broker, ("le", "0.005")))] == 1
    assert found[("pykaf_batch_ack_latency_seconds_sum", me)] == pytest.approx(0.003)
    assert found[("pykaf_batch_ack_latency_seconds_bucket", (*me, ("le", "+Inf")))] == 1
    collector.close()
    assert not bus.active


def test_one_collector_serves_several_clients_and_a_second_is_refused() -> None:
    first, second = FakeProducer(), FakeProducer()
    registry = CollectorRegistry()
    collector = telemetry.prometheus_collector(first)
    registry.register(collector)
    collector.add(second)
    for bus, records in ((first.events, 1), (second.events, 2)):
        bus.emit(
            make(
                BatchSent,
                topic="t",
                partition=0,
                broker=1,
                records=records,
                bytes=10,
                compression_ratio=1.0,
            )
        )
    found = samples(registry)
    assert (
        found[("pykaf_records_sent_total", (("client", "fakeproducer"), ("client_id", "unit")))]
        == 1
    )
    assert (
        found[("pykaf_records_sent_total", (("client", "fakeproducer-2"), ("client_id", "unit")))]
        == 2
    )
    with pytest.raises(ValueError, match="Duplicated"):
        registry.register(telemetry.prometheus_collector())
    collector.close()


def test_serve_metrics_answers_on_a_free_port() -> None:
    producer = FakeProducer()
    registry = CollectorRegistry()
    registry.register(telemetry.prometheus_collector(producer))
    producer.events.emit(
        make(
            BatchSent, topic="t", partition=0, broker=1, records=3, bytes=10, compression_ratio=1.0
        )
    )
    server = telemetry.serve_metrics(0, registry=registry)
    try:
        host, port = server.server_address[:2]
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'pykaf_records_sent_total{client="fakeproducer",client_id="unit"} 3.0' in text
