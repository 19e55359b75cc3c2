"""OpenTelemetry traces for produce and consume, following the messaging semantic
conventions, with the context carried in record headers (W3C ``traceparent``).

Tracing is per record by nature (a span and a header each), so it is opt-in: wrap a
producer or consumer (``TracedProducer``, ``TracedConsumer``); the plain clients pay
nothing. The wrappers use only the public client API (``produce``, ``send``, ``poll``,
iteration) and pass everything else through.

- Producer: each ``produce``/``send`` starts a PRODUCER span ``send <topic>`` (a child of
  the caller's current span, if any) and adds its context to the record's headers through
  the global propagator (``traceparent``, ``tracestate``, ``baggage``). With ``send()`` or
  an ``on_delivery`` the span ends at the outcome and carries partition and offset (or
  the error); a fire-and-forget ``produce()`` keeps the producer's own ``on_error``
  routing, so its span ends once the record is queued.
- ``produce_batch`` and everything else pass through untraced (a batch call has no
  per-record hook to put a span in).
- Consumer: iterating gives each record a CONSUMER span ``process <topic>``, a child of
  the producer's context and linked to it, ended when the next record is asked for;
  ``poll()`` makes one ``poll <topic>`` span (receive) linked to every record's producer
  context; ``process(record)`` is the same per-record span as a context manager.

Attributes: the current names (``messaging.operation.type``,
``messaging.destination.partition.id``, ``messaging.kafka.offset``,
``messaging.consumer.group.name``) and, beside them, the older ones many backends still
read (``messaging.operation``, ``messaging.kafka.destination.partition``,
``messaging.kafka.message.offset``, ``messaging.kafka.consumer.group``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer, TracerProvider

from pykaf._telemetry._source import client_id_of
from pykaf._version import __version__

__all__ = ["TracedConsumer", "TracedProducer", "extract_context", "inject_headers"]

_MAX_LINKS = 128  # a poll span links at most this many producer contexts


def _tracer(provider: TracerProvider | None) -> Tracer:
    return trace.get_tracer("pykaf", __version__, tracer_provider=provider)


def inject_headers(headers: Any = None, context: Context | None = None) -> list[tuple[str, bytes]]:
    """``headers`` (None or ``(name, value)`` pairs) plus the current (or ``context``'s)
    trace context, as a new list of pairs for ``produce(..., headers=...)``."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    out = [] if headers is None else list(headers)
    out.extend((name, value.encode()) for name, value in carrier.items())
    return out


def extract_context(record: Any) -> Context:
    """The trace context a producer put in ``record``'s headers (empty when none)."""
    wanted = propagate.get_global_textmap().fields
    carrier: dict[str, str] = {}
    for name, value in record.headers or ():
        if name in wanted and isinstance(value, bytes | bytearray):
            carrier[name] = bytes(value).decode("latin-1")
    return propagate.extract(carrier)


def _key_attribute(key: Any) -> str | None:
    if isinstance(key, str):
        return key
    if isinstance(key, bytes | bytearray):
        try:
            return bytes(key).decode()
        except UnicodeDecodeError:
            return None  # no canonical string form: the conventions say leave it out
    return None


def _common(topic: str, client_id: str | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
    }
    if client_id:
        attributes["messaging.client.id"] = client_id
    return attributes


def _placed(span: Span, partition: int, offset: int) -> None:
    span.set_attribute("messaging.destination.partition.id", str(partition))
    span.set_attribute("messaging.kafka.destination.partition", partition)
    span.set_attribute("messaging.kafka.offset", offset)
    span.set_attribute("messaging.kafka.message.offset", offset)


def _failed(span: Span, error: BaseException) -> None:
    span.set_attribute("error.type", type(error).__name__)
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, str(error)))


class TracedProducer:
    """A producer whose ``produce``/``send`` trace each record (see the module doc)."""

    def __init__(self, producer: Any, tracer_provider: TracerProvider | None = None) -> None:
        self.producer = producer
        self._tracer = _tracer(tracer_provider)
        self._client_id = client_id_of(producer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.producer, name)

    def __enter__(self) -> TracedProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.producer.__exit__(*exc)

    def _start(self, topic: str, key: Any, value: Any, partition: int | None) -> Span:
        attributes = _common(topic, self._client_id)
        attributes["messaging.operation.type"] = "send"
        attributes["messaging.operation.name"] = "send"
        attributes["messaging.operation"] = "publish"
        key_text = _key_attribute(key)
        if key_text is not None:
            attributes["messaging.kafka.message.key"] = key_text
        if value is None:
            attributes["messaging.kafka.message.tombstone"] = True
        elif isinstance(value, bytes | bytearray | str):
            attributes["messaging.message.body.size"] = len(value)
        if partition is not None:
            attributes["messaging.destination.partition.id"] = str(partition)
            attributes["messaging.kafka.destination.partition"] = partition
        return self._tracer.start_span(
            f"send {topic}", kind=SpanKind.PRODUCER, attributes=attributes
        )

    @staticmethod
    def _finish(span: Span, metadata: Any, error: BaseException | None) -> None:
        if error is not None:
            _failed(span, error)
        elif metadata is not None:
            _placed(span, metadata.partition, metadata.offset)
        span.end()

    def produce(
        self,
        topic: str,
        value: Any,
        key: Any = None,
        *,
        partition: int | None = None,
        headers: Any = None,
        timestamp: int | None = None,
        on_delivery: Callable[[Any, BaseException | None], object] | None = None,
    ) -> None:
        span = self._start(topic, key, value, partition)
        traced = inject_headers(headers, trace.set_span_in_context(span))
        if on_delivery is None:
            try:
                self.producer.produce(
                    topic, value, key, partition=partition, headers=traced, timestamp=timestamp
                )
            except BaseException as exc:
                _failed(span, exc)
                raise
            finally:
                span.end()
            return

        def delivered(metadata: Any, error: BaseException | None) -> None:
            self._finish(span, metadata, error)
            on_delivery(metadata, error)

        try:
            self.producer.produce(
                topic,
                value,
                key,
                partition=partition,
                headers=traced,
                timestamp=timestamp,
                on_delivery=delivered,
            )
        except BaseException as exc:
            self._finish(span, None, exc)
            raise

    def send(
        self,
        topic: str,
        value: Any,
        key: Any = None,
        *,
        partition: int | None = None,
        headers: Any = None,
        timestamp: int | None = None,
    ) -> Any:
        span = self._start(topic, key, value, partition)
        traced = inject_headers(headers, trace.set_span_in_context(span))
        try:
            future = self.producer.send(
                topic, value, key, partition=partition, headers=traced, timestamp=timestamp
            )
        except BaseException as exc:
            self._finish(span, None, exc)
            raise

        def done(finished: Any) -> None:
            error = finished.exception()
            self._finish(span, None if error else finished.result(), error)

        future.add_done_callback(done)
        return future


class TracedConsumer:
    """A consumer whose records get spans linked to their producer's (see the module
    doc)."""

    def __init__(self, consumer: Any, tracer_provider: TracerProvider | None = None) -> None:
        self.consumer = consumer
        self._tracer = _tracer(tracer_provider)
        self._client_id = client_id_of(consumer)
        group = getattr(consumer, "group_id", None)
        self._group = group if isinstance(group, str) else None
        self._open: Span | None = None
        self._records: Iterator[Any] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.consumer, name)

    def __enter__(self) -> TracedConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._end_open()
        self.consumer.__exit__(*exc)

    def _attributes(self, topic: str, operation: str, name: str, old: str) -> dict[str, Any]:
        attributes = _common(topic, self._client_id)
        attributes["messaging.operation.type"] = operation
        attributes["messaging.operation.name"] = name
        attributes["messaging.operation"] = old
        if self._group is not None:
            attributes["messaging.consumer.group.name"] = self._group
            attributes["messaging.kafka.consumer.group"] = self._group
        return attributes

    def start_process_span(self, record: Any) -> Span:
        """A started ``process <topic>`` span for ``record`` (end it yourself)."""
        producer = extract_context(record)
        linked = trace.get_current_span(producer).get_span_context()
        attributes = self._attributes(record.topic, "process", "process", "process")
        key_text = _key_attribute(record.key)
        if key_text is not None:
            attributes["messaging.kafka.message.key"] = key_text
        if record.value is None:
            attributes["messaging.kafka.message.tombstone"] = True
        else:
            attributes["messaging.message.body.size"] = len(record.value)
        span = self._tracer.start_span(
            f"process {record.topic}",
            context=producer if linked.is_valid else None,
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=[Link(linked)] if linked.is_valid else None,
        )
        _placed(span, record.partition, record.offset)
        return span

    @contextlib.contextmanager
    def process(self, record: Any) -> Iterator[Span]:
        """``with consumer.process(record):`` the record's span is the current one."""
        span = self.start_process_span(record)
        with trace.use_span(span, end_on_exit=True):
            yield span

    def _end_open(self) -> None:
        if self._open is not None:
            self._open.end()
            self._open = None

    def __iter__(self) -> TracedConsumer:
        return self

    def __next__(self) -> Any:
        self._end_open()
        if self._records is None:
            self._records = iter(self.consumer)
        record = next(self._records)
        self._open = self.start_process_span(record)
        return record

    def poll(self, *args: Any, **kwargs: Any) -> Any:
        """The consumer's ``poll``, inside one ``poll`` span linked to each record's
        producer context (at most 128 links)."""
        self._end_open()
        start = self._tracer.start_span("poll", kind=SpanKind.CONSUMER)
        try:
            records = self.consumer.poll(*args, **kwargs)
        except BaseException as exc:
            _failed(start, exc)
            start.end()
            raise
        topics = sorted({r.topic for r in records})
        attributes = self._attributes(",".join(topics), "receive", "poll", "receive")
        if not topics:  # nothing arrived: no destination to name
            del attributes["messaging.destination.name"]
        for key, value in attributes.items():
            start.set_attribute(key, value)
        start.set_attribute("messaging.batch.message_count", len(records))
        if len(topics) == 1:
            start.update_name(f"poll {topics[0]}")
        for record in records[:_MAX_LINKS]:
            linked = trace.get_current_span(extract_context(record)).get_span_context()
            if linked.is_valid:
                start.add_link(linked)
        start.end()
        return records
