"""Operations: ``/healthz`` (Kafka reachable, the journal's backlog and whether it still
writes) and ``/metrics`` (Prometheus: the gateway's requests and its Kafka clients'
statistics).

Both are public routes (no credentials: load balancers and scrapers call them) and
both are cheap when called often: one health probe of Kafka and one look at the journal
serve every caller of the same second.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Iterator, Mapping
from typing import Any, Final

from pykaf.errors import JournalDiskError
from pykaf.gateway._access_log import LATENCY_BOUNDS, RequestMetrics
from pykaf.gateway._asgi import JsonResponse, Request, Response
from pykaf.gateway._backend import Backend
from pykaf.gateway._routes import Context, Route

__all__ = ["OPS_ROUTES", "health"]

# A probe of Kafka (DescribeCluster) waits this long before calling it unreachable: a
# load balancer's health check has its own timeout, usually a few seconds.
_PROBE_TIMEOUT: Final = 2.0
# Callers within this many seconds share one probe and one look at the journal.
_FRESH: Final = 1.0
_PROMETHEUS_TEXT: Final = "text/plain; version=0.0.4; charset=utf-8"


class _HealthCache:
    def __init__(self) -> None:
        self.at = -1e9
        self.value: dict[str, Any] | None = None
        self.running: asyncio.Task[dict[str, Any]] | None = None


_cache: weakref.WeakKeyDictionary[Backend, _HealthCache] = weakref.WeakKeyDictionary()


async def health(backend: Backend) -> dict[str, Any]:
    """The health document: ``status`` ("ok" when Kafka answers, "degraded" when it does
    not, "failed" when the journal's disk failed: it takes no records until the gateway
    restarts), ``kafka`` {reachable, brokers}, ``journal`` (None without one; its
    ``state`` "ok", "failed" with the ``failure``, "slow": no fsync within the probe's
    time, or "unknown" with why) and ``producers``."""
    cache = _cache.setdefault(backend, _HealthCache())
    if cache.value is not None and time.monotonic() - cache.at < _FRESH:
        return cache.value
    if cache.running is None or cache.running.done():
        cache.running = asyncio.ensure_future(_look(backend))
    value = await asyncio.shield(cache.running)
    cache.value, cache.at = value, time.monotonic()
    return value


async def _look(backend: Backend) -> dict[str, Any]:
    kafka, (state, failure) = await asyncio.gather(_probe_kafka(backend), _probe_journal(backend))
    journal = await _journal_state(backend.settings.journal_dir)
    if journal is not None:
        journal["state"] = state
        if failure is not None:
            journal["failure"] = failure
    status = "ok" if kafka["reachable"] else "degraded"
    return {
        "status": "failed" if state == "failed" else status,
        "kafka": kafka,
        "journal": journal,
        "producers": await _producers(backend),
    }


async def _probe_journal(backend: Backend) -> tuple[str, str | None]:
    """("ok" | "failed" | "slow" | "unknown", why): whether the journal still writes. An
    fsync is the probe: free when nothing is unsynced, and it fails at once with the
    store's ``JournalDiskError`` once a failed fsync or write has stopped the store
    (records are refused with 503 from then on)."""
    producer = backend.clients.get("producer-journal")
    if producer is None or producer.closed:
        return "ok", None
    try:
        await asyncio.wait_for(producer.fsync(), _PROBE_TIMEOUT)
    except JournalDiskError as exc:
        return "failed", str(exc) or type(exc).__name__
    except TimeoutError:
        return "slow", None
    except Exception as exc:  # closed meanwhile (a stop), or something unforeseen: said
        return "unknown", f"{type(exc).__name__}: {exc}"
    return "ok", None


async def _probe_kafka(backend: Backend) -> dict[str, Any]:
    try:
        admin = backend.admin()
        cluster = await asyncio.wait_for(admin.describe_cluster(), _PROBE_TIMEOUT)
    except Exception as exc:  # unreachable, or refusing us: the answer says which
        backend.kafka_answered(exc)
        return {"reachable": False, "brokers": [], "error": str(exc) or type(exc).__name__}
    backend.kafka_answered()
    return {
        "reachable": True,
        "cluster_id": cluster.cluster_id,
        "brokers": [f"{b.host}:{b.port}" for b in cluster.brokers],
    }


async def _journal_state(directory: str | None) -> dict[str, Any] | None:
    if directory is None:
        return None
    from pykaf.journal import NotAJournalError, inspect_journal  # noqa: PLC0415

    try:
        # Reads the segment files: off the event loop.
        summary = await asyncio.to_thread(inspect_journal, directory)
    except NotAJournalError:  # nothing journaled yet
        return {"directory": directory, "pending_records": 0, "size_bytes": 0, "segments": 0}
    except Exception as exc:  # damage or a disk error: the health answer carries it
        return {"directory": directory, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "directory": directory,
        "pending_records": summary.pending_records,
        "size_bytes": summary.size_bytes,
        "segments": len(summary.segments),
        "oldest_pending_age_s": summary.oldest_pending_age_s,
    }


async def _producers(backend: Backend) -> dict[str, Any]:
    pending = 0
    replay: dict[str, Any] | None = None
    for role, client in backend.clients.items():
        if not role.startswith("producer") or client.closed:
            continue
        pending += client.pending()
        if role == "producer-journal":
            stats = client.replay_stats()
            replay = {
                "recovered": stats.recovered,
                "proven": stats.proven,
                "resent_unproven": stats.resent_unproven,
                "unsent": stats.unsent,
                "failed": stats.failed,
                "settled": stats.settled,
            }
    return {
        "pending": pending,
        "failed_after_accept": backend.failed_after_accept,
        "replay": replay,
    }


async def _healthz(gateway: Context, request: Request, params: Mapping[str, str]) -> Response:
    document = await health(gateway.backend)
    return JsonResponse(200 if document["status"] == "ok" else 503, document)


async def _metrics(gateway: Context, request: Request, params: Mapping[str, str]) -> Response:
    try:
        from prometheus_client import CollectorRegistry, generate_latest  # noqa: PLC0415
    except ImportError:
        return JsonResponse(
            501,
            {
                "error_code": 501,
                "message": "/metrics needs prometheus_client: pip install 'pykaf[prometheus]'",
            },
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_GatewayCollector(gateway))
    telemetry = gateway.telemetry
    if telemetry.prometheus is not None:
        registry.register(telemetry.prometheus)
    # Text exposition of a few hundred samples: quick, but off the loop all the same.
    text = await asyncio.to_thread(generate_latest, registry)
    return Response(200, text, content_type=_PROMETHEUS_TEXT)


class _GatewayCollector:
    """The gateway's own families, read from its ``RequestMetrics`` at each scrape."""

    def __init__(self, gateway: Context) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily  # noqa: PLC0415

        metrics: RequestMetrics = self.gateway.telemetry.metrics
        seen = metrics.snapshot()
        yield _counter(
            "pykaf_gateway_requests",
            "HTTP requests answered",
            ["route", "status"],
            {(route, str(status)): n for (route, status), n in seen["requests"].items()},
        )
        yield _counter(
            "pykaf_gateway_records",
            "records taken into custody or sent to Kafka",
            ["route"],
            {(route,): n for route, n in seen["records"].items()},
        )
        yield _counter(
            "pykaf_gateway_too_many_requests",
            "requests answered 429 (buffer or journal full, or a rate limit)",
            ["route"],
            {(route,): n for route, n in seen["too_many"].items()},
        )
        latency = HistogramMetricFamily(
            "pykaf_gateway_request_duration_seconds",
            "time from the request's arrival to its answer",
            labels=["route"],
        )
        for route, counts in sorted(seen["latency"].items()):
            buckets, cumulative = [], 0
            for bound, count in zip((*map(repr, LATENCY_BOUNDS), "+Inf"), counts, strict=True):
                cumulative += count
                buckets.append((bound, float(cumulative)))
            latency.add_metric([route], buckets, seen["latency_sum"][route])
        yield latency
        refused = {**self.gateway.limits.rejected, **self.gateway.security.rejected}
        yield _counter(
            "pykaf_gateway_rejected",
            "requests refused, by reason (rate, concurrency, body_too_large, ...;"
            " bad_credentials, forbidden, too_many_failures: authentication and permissions)",
            ["reason"],
            {(reason,): n for reason, n in refused.items()},
        )
        backend = self.gateway.backend
        yield _counter(
            "pykaf_gateway_failed_after_accept",
            "records answered 2xx that Kafka never took (see the log)",
            [],
            {(): backend.failed_after_accept},
        )
        reachable = GaugeMetricFamily(
            "pykaf_gateway_kafka_reachable",
            "1 when the gateway's last look at Kafka succeeded (-1: not looked yet)",
        )
        reachable.add_metric([], -1 if backend.reachable is None else int(backend.reachable))
        yield reachable


def _counter(name: str, text: str, labels: list[str], values: dict[tuple[str, ...], int]) -> Any:
    from prometheus_client.core import CounterMetricFamily  # noqa: PLC0415

    family = CounterMetricFamily(name, text, labels=labels)
    for key, count in sorted(values.items()):
        family.add_metric(list(key), count)
    return family


_HEALTH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status", "kafka"],
    "properties": {
        "status": {"type": "string"},
        "kafka": {"type": "object"},
        "journal": {"type": ["object", "null"]},
        "producers": {"type": "object"},
    },
}

OPS_ROUTES: list[Route] = [
    Route(
        "GET",
        "/healthz",
        _healthz,
        "healthz",
        "Kafka reachable, journal state (and whether it still writes)",
        public=True,
        openapi={
            "responses": {
                "200": {
                    "description": "Kafka answers and the journal (if any) writes",
                    "content": {"application/json": {"schema": _HEALTH_SCHEMA}},
                },
                "503": {
                    "description": "Kafka does not answer (the journal state says what"
                    " waits), or the journal's disk failed (journal.state 'failed')",
                    "content": {
                        "application/json": {
                            "schema": {
                                "anyOf": [
                                    _HEALTH_SCHEMA,
                                    {"$ref": "#/components/schemas/Error"},
                                ]
                            }
                        }
                    },
                },
            }
        },
    ),
    Route(
        "GET",
        "/metrics",
        _metrics,
        "metrics",
        "Prometheus metrics",
        public=True,
        openapi={
            "responses": {
                "200": {
                    "description": "Prometheus' text exposition format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "501": {"description": "prometheus_client is not installed"},
            }
        },
    ),
]
