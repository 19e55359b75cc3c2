"""Telemetry for any pykaf client (issue 15): stats snapshots and the bridges.

Every client (``Producer``, ``Consumer``, ``Admin``, ``Client`` and their async twins)
has an event stream, ``client.events`` (``pykaf.events`` names the events). This module
listens to it; nothing here costs a client anything until it is called::

    import pykaf
    from pykaf import telemetry

    with pykaf.Producer("127.0.0.1:9092") as producer:
        with telemetry.stats_every(producer, 10.0, print):   # librdkafka's stats callback
            producer.produce("orders", b"v")
        print(telemetry.stats(producer).counters["records_acknowledged"])

- ``stats(client)``: a ``Stats`` snapshot (counting starts at the first call);
  ``stats_every(client, interval, callback)``: one pushed every ``interval`` seconds.
- ``statsd(client, host, port, prefix="pykaf")``: counters, gauges and timers over UDP
  (ekaf's names where it had them), batched into datagrams by a thread of its own.
- ``prometheus_collector(*clients)``: a collector for ``prometheus_client`` (extra
  ``pykaf[prometheus]``); ``metrics_text()`` and ``serve_metrics(port)`` expose it.
- ``otel_metrics(client)``, ``traced_producer(producer)``, ``traced_consumer(consumer)``:
  OpenTelemetry metrics, and spans per record that follow the messaging semantic
  conventions with the context in the ``traceparent`` header (extra ``pykaf[otel]``).
  The wrappers are for the blocking ``Producer``/``Consumer``; with asyncio, put
  ``inject_headers(headers)`` in what you produce and start your consumer spans from
  ``extract_context(record)``.

Each returns an object with ``close()`` (and ``with`` support) that stops listening.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pykaf._telemetry._histogram import Histogram
from pykaf._telemetry._source import bus_of, client_id_of
from pykaf._telemetry._stats import (
    UNKNOWN_BROKER,
    BrokerStats,
    PartitionStats,
    Stats,
    StatsCollector,
)
from pykaf._telemetry._stats_timer import StatsCallback, StatsTimer
from pykaf._telemetry._statsd import StatsdBridge

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from pykaf._telemetry._otel_metrics import OtelMetrics
    from pykaf._telemetry._otel_traces import TracedConsumer, TracedProducer
    from pykaf._telemetry._prometheus import PrometheusCollector

__all__ = [
    "UNKNOWN_BROKER",
    "BrokerStats",
    "Histogram",
    "PartitionStats",
    "Stats",
    "StatsCollector",
    "StatsTimer",
    "StatsdBridge",
    "extract_context",
    "inject_headers",
    "metrics_text",
    "otel_metrics",
    "prometheus_collector",
    "serve_metrics",
    "stats",
    "stats_collector",
    "stats_every",
    "statsd",
    "traced_consumer",
    "traced_producer",
]

_ATTACHED = "_pykaf_stats_collector"


def stats_collector(client: Any) -> StatsCollector:
    """A new ``StatsCollector`` listening to ``client`` (or an ``EventBus``) from now on."""
    return StatsCollector(bus_of(client), client_id_of(client))


def stats(client: Any) -> Stats:
    """``client``'s statistics now. The first call attaches a collector to the client
    (kept on it: later calls read the same one), so counting starts then."""
    collector = getattr(client, _ATTACHED, None)
    if not isinstance(collector, StatsCollector):
        collector = stats_collector(client)
        try:
            setattr(client, _ATTACHED, collector)
        except AttributeError:
            collector.close()
            raise TypeError(
                f"stats() keeps its collector on the client, and {client!r} takes no new"
                " attributes: use stats_collector(client).snapshot() instead"
            ) from None
    return collector.snapshot()


def stats_every(client: Any, interval: float, callback: StatsCallback) -> StatsTimer:
    """Call ``callback(stats)`` every ``interval`` seconds (a thread of its own) until
    ``close()``: librdkafka's ``statistics.interval.ms`` and stats callback."""
    collector = stats_collector(client)
    try:
        return StatsTimer(collector, interval, callback, owns_collector=True)
    except BaseException:
        collector.close()
        raise


def statsd(
    client: Any,
    host: str = "127.0.0.1",
    port: int = 8125,
    prefix: str = "pykaf",
    *,
    flush_interval: float = 0.5,
    max_datagram: int = 1432,
) -> StatsdBridge:
    """Push ``client``'s events (or an ``EventBus``'s) to statsd at ``host:port``."""
    return StatsdBridge(
        bus_of(client),
        host,
        port,
        prefix,
        flush_interval=flush_interval,
        max_datagram=max_datagram,
    )


def _need(module: str, extra: str) -> None:
    try:
        __import__(module)
    except ImportError as exc:
        raise ImportError(f"this bridge needs {module!r}: pip install 'pykaf[{extra}]'") from exc


def prometheus_collector(*clients: Any, namespace: str = "pykaf") -> PrometheusCollector:
    """A ``prometheus_client`` collector of ``clients``' statistics: register it once
    (``prometheus_client.REGISTRY.register(c)``) and ``c.add(client)`` the others."""
    _need("prometheus_client", "prometheus")
    from pykaf._telemetry._prometheus import PrometheusCollector  # noqa: PLC0415

    return PrometheusCollector(*clients, namespace=namespace)


def metrics_text(registry: Any = None) -> bytes:
    """The Prometheus text exposition of ``registry`` (default: the global one)."""
    _need("prometheus_client", "prometheus")
    import prometheus_client  # noqa: PLC0415

    return prometheus_client.generate_latest(registry or prometheus_client.REGISTRY)


def serve_metrics(port: int, addr: str = "127.0.0.1", registry: Any = None) -> Any:
    """Serve ``/metrics`` over HTTP on ``addr:port`` (0: a free port) from a daemon
    thread; returns the server (``.server_address``, ``.shutdown()``)."""
    _need("prometheus_client", "prometheus")
    import prometheus_client  # noqa: PLC0415

    server, _thread = prometheus_client.start_http_server(
        port, addr, registry or prometheus_client.REGISTRY
    )
    return server


def otel_metrics(client: Any, meter_provider: MeterProvider | None = None) -> OtelMetrics:
    """Publish ``client``'s statistics as OpenTelemetry instruments."""
    _need("opentelemetry.metrics", "otel")
    from pykaf._telemetry._otel_metrics import OtelMetrics  # noqa: PLC0415

    return OtelMetrics(client, meter_provider)


def traced_producer(producer: Any, tracer_provider: TracerProvider | None = None) -> TracedProducer:
    """``producer`` with a PRODUCER span per record and its context in the headers."""
    _need("opentelemetry.trace", "otel")
    from pykaf._telemetry._otel_traces import TracedProducer  # noqa: PLC0415

    return TracedProducer(producer, tracer_provider)


def traced_consumer(consumer: Any, tracer_provider: TracerProvider | None = None) -> TracedConsumer:
    """``consumer`` with a CONSUMER span per record, child of (and linked to) the
    producer's context found in the record's headers."""
    _need("opentelemetry.trace", "otel")
    from pykaf._telemetry._otel_traces import TracedConsumer  # noqa: PLC0415

    return TracedConsumer(consumer, tracer_provider)


def inject_headers(headers: Any = None, context: Context | None = None) -> list[tuple[str, bytes]]:
    """``headers`` plus the current (or ``context``'s) trace context (``traceparent``...),
    as a new list of pairs for ``produce(..., headers=...)``."""
    _need("opentelemetry.propagate", "otel")
    from pykaf._telemetry._otel_traces import inject_headers as inject  # noqa: PLC0415

    return inject(headers, context)


def extract_context(record: Any) -> Context:
    """The trace context a producer put in ``record``'s headers (empty when none): the
    parent or link of a consumer span."""
    _need("opentelemetry.propagate", "otel")
    from pykaf._telemetry._otel_traces import extract_context as extract  # noqa: PLC0415

    return extract(record)
