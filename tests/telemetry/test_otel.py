"""OpenTelemetry: producer and consumer spans with the messaging attributes, the
consumer's span a child of (and linked to) the producer's through the record headers,
against the embedded broker; the metrics bridge through the SDK's in-memory reader."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from _synthetic import make
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import pykaf
from pykaf import telemetry
from pykaf.broker import BlockingCluster
from pykaf.events import BatchAcknowledged, BatchFailed, EventBus, RequestAnswered

FAST = {"request_timeout": 5.0, "delivery_timeout": 20.0, "max_block": 10.0, "linger": 0.002}


@pytest.fixture(scope="module")
def cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=1) as running:
        yield running


@pytest.fixture
def tracing() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _spans(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def _consume(bootstrap: str, topic: str, count: int, provider: Any, *, poll: bool) -> list[Any]:
    with pykaf.Consumer(bootstrap, stop_at_end=True, client_id="reader") as plain:
        consumer = telemetry.traced_consumer(plain, provider)
        consumer.assign([pykaf.TopicPartition(topic, 0)])
        consumer.seek_to_beginning()
        if poll:
            records: list[Any] = []
            for _ in range(50):
                records.extend(consumer.poll(timeout=1.0))
                if len(records) >= count:
                    break
            return records
        return list(consumer)


def test_consumer_spans_are_children_of_the_producer_spans(
    cluster: BlockingCluster, tracing: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = tracing
    topic = "otel-iterate"
    delivered: list[Any] = []
    with pykaf.Producer(cluster.bootstrap, client_id="writer", **FAST) as plain:
        producer = telemetry.traced_producer(plain, provider)
        metadata = [
            producer.send(topic, b"v%d" % i, key=b"k", partition=0).result(10) for i in range(3)
        ]
        producer.produce(topic, b"v3", partition=0, on_delivery=lambda m, e: delivered.append(m))
        producer.produce(topic, None, partition=0, headers=[("mine", b"kept")])
        assert producer.flush(10) == 0
    assert delivered[0].offset == 3
    sends = _spans(exporter, f"send {topic}")
    assert len(sends) == 5
    first = sends[0]
    assert first.kind is SpanKind.PRODUCER
    attributes = dict(first.attributes or {})
    assert attributes["messaging.system"] == "kafka"
    assert attributes["messaging.destination.name"] == topic
    assert attributes["messaging.operation.type"] == "send"
    assert attributes["messaging.operation"] == "publish"
    assert attributes["messaging.client.id"] == "writer"
    assert attributes["messaging.kafka.message.key"] == "k"
    assert attributes["messaging.destination.partition.id"] == "0"
    assert attributes["messaging.kafka.destination.partition"] == 0
    assert attributes["messaging.kafka.offset"] == metadata[0].offset
    assert attributes["messaging.kafka.message.offset"] == metadata[0].offset
    # send() and on_delivery spans end at the outcome, with the offset; the
    # fire-and-forget one ends once queued (first of the last two to finish), without.
    offsets = [dict(s.attributes or {}).get("messaging.kafka.offset") for s in sends]
    assert sorted(offsets, key=lambda o: -1 if o is None else o) == [None, 0, 1, 2, 3]

    records = _consume(cluster.bootstrap, topic, 5, provider, poll=False)
    assert [r.offset for r in records] == [0, 1, 2, 3, 4]
    assert ("mine", b"kept") in records[4].headers
    assert all(name == "traceparent" for name, _ in records[0].headers)
    processed = _spans(exporter, f"process {topic}")
    assert len(processed) == 5
    by_offset = {dict(s.attributes or {})["messaging.kafka.offset"]: s for s in processed}
    for send in sends:
        offset = dict(send.attributes or {}).get("messaging.kafka.offset")
        if offset is None:  # the fire-and-forget record: its span has no offset
            offset = 4
        span = by_offset[offset]
        assert span.kind is SpanKind.CONSUMER
        assert span.parent is not None
        assert span.parent.span_id == send.context.span_id
        assert span.context.trace_id == send.context.trace_id
        assert [link.context.span_id for link in span.links] == [send.context.span_id]
        attributes = dict(span.attributes or {})
        assert attributes["messaging.operation.type"] == "process"
        assert attributes["messaging.destination.partition.id"] == "0"
        assert attributes["messaging.client.id"] == "reader"
    assert dict(by_offset[4].attributes or {})["messaging.kafka.message.tombstone"] is True


def test_a_poll_span_links_every_record_to_its_producer(
    cluster: BlockingCluster, tracing: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = tracing
    topic = "otel-poll"
    with pykaf.Producer(cluster.bootstrap, **FAST) as plain:
        producer = telemetry.traced_producer(plain, provider)
        for i in range(4):
            producer.send(topic, b"%d" % i, partition=0).result(10)
    sends = {s.context.span_id for s in _spans(exporter, f"send {topic}")}
    records = _consume(cluster.bootstrap, topic, 4, provider, poll=True)
    assert len(records) == 4
    polls = [s for s in _spans(exporter, f"poll {topic}") if s.links]
    linked = {link.context.span_id for span in polls for link in span.links}
    assert linked == sends
    attributes = dict(polls[0].attributes or {})
    assert attributes["messaging.operation.type"] == "receive"
    assert attributes["messaging.batch.message_count"] == len(polls[0].links)


def test_a_producer_failure_marks_its_span(
    cluster: BlockingCluster, tracing: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = tracing
    with pykaf.Producer(cluster.bootstrap, **FAST) as plain:
        producer = telemetry.traced_producer(plain, provider)
        with pytest.raises(pykaf.RecordTooLargeError):
            producer.send("otel-big", b"x" * 2_000_000).result(10)
    (span,) = _spans(exporter, "send otel-big")
    assert span.status.is_ok is False
    assert dict(span.attributes or {})["error.type"] == "RecordTooLargeError"


def test_async_producers_and_consumers_use_the_header_helpers(
    cluster: BlockingCluster, tracing: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, _exporter = tracing
    tracer = provider.get_tracer("test")

    async def main() -> Any:
        async with pykaf.AsyncProducer(cluster.bootstrap, **FAST) as producer:
            with tracer.start_as_current_span("upstream") as upstream:
                headers = telemetry.inject_headers([("k", b"v")])
                metadata = await producer.send("otel-async", b"x", partition=0, headers=headers)
        where = pykaf.TopicPartition("otel-async", 0)
        async with pykaf.AsyncConsumer(cluster.bootstrap, stop_at_end=True) as consumer:
            await consumer.assign([where])
            await consumer.seek(where, metadata.offset)
            (record,) = await consumer.poll(timeout=5.0, max_records=1)
        return upstream, record

    upstream, record = asyncio.run(main())
    assert record.headers[0] == ("k", b"v")
    context = telemetry.extract_context(record)
    found = trace.get_current_span(context).get_span_context()
    assert (found.trace_id, found.span_id) == (
        upstream.get_span_context().trace_id,
        upstream.get_span_context().span_id,
    )


def test_metrics_go_through_a_meter_provider() -> None:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    bus = EventBus()
    bridge = telemetry.otel_metrics(bus, meters)
    bus.emit(
        make(
            BatchAcknowledged,
            topic="t",
            partition=2,
            broker=1,
            records=10,
            bytes=900,
            base_offset=0,
            latency=0.01,
        )
    )
    bus.emit(make(BatchFailed, topic="t", partition=2, records=3, error="Timeout"))
    bus.emit(
        make(
            RequestAnswered,
            broker=1,
            api="Produce",
            version=9,
            request_bytes=10,
            response_bytes=5,
            latency=0.004,
        )
    )
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points[metric.name] = list(metric.data.data_points)
    assert points["pykaf.records_acknowledged"][0].value == 10
    assert points["pykaf.records_failed"][0].value == 3
    assert points["pykaf.bytes_acknowledged"][0].value == 900
    sent = {
        dict(p.attributes).get("error.type"): p.value
        for p in points["messaging.client.sent.messages"]
    }
    assert sent == {None: 10, "Timeout": 3}
    (duration,) = points["messaging.client.operation.duration"]
    assert (duration.count, duration.sum) == (1, pytest.approx(0.01))
    assert dict(duration.attributes)["messaging.destination.partition.id"] == "2"
    (request,) = points["pykaf.request.duration"]
    assert dict(request.attributes)["pykaf.api"] == "Produce"
    bridge.close()
    assert not bus.active
    meters.shutdown()
