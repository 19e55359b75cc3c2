"""Operations in-process: /healthz with Kafka up and down, /metrics (the gateway's own
families and its Kafka clients'), and one JSON access-log line per request."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path

import httpx
import pytest

from pykaf.broker import BlockingCluster
from pykaf.gateway import Gateway, GatewaySettings, LimitSettings, create_app


async def test_healthz_says_kafka_is_reachable_with_the_journal_state(
    http: httpx.AsyncClient, kafka: BlockingCluster, tmp_path: Path
) -> None:
    assert (await http.post("/safe/async/events", content=b"x")).status_code == 202
    answer = await http.get("/healthz")
    assert answer.status_code == 200, answer.text
    health = answer.json()
    assert health["status"] == "ok"
    assert health["kafka"]["reachable"] is True
    assert health["kafka"]["brokers"] == [kafka.bootstrap]
    assert health["journal"]["directory"] == str(tmp_path / "journal")
    assert set(health["journal"]) >= {"pending_records", "size_bytes", "segments"}
    assert health["producers"]["failed_after_accept"] == 0
    assert health["producers"]["pending"] >= 0


async def test_healthz_answers_503_with_the_backlog_when_kafka_is_down(
    http: httpx.AsyncClient, kafka: BlockingCluster, tmp_path: Path
) -> None:
    # The journal's producer knows the topic before Kafka goes away.
    assert (await http.post("/safe/async/events", content=b"first")).status_code == 202
    await _settled(http)
    kafka.faults.broker_down(1)
    for n in range(5):
        accepted = await http.post("/safe/async/events", content=f"r{n}".encode())
        assert accepted.status_code == 202, accepted.text
    # Health answers are shared for a second: ask until the probe saw the outage.
    answer = await _healthz_until(http, 503)
    health = answer.json()
    assert health["status"] == "degraded"
    assert health["kafka"]["reachable"] is False
    assert health["kafka"]["error"]
    assert health["journal"]["directory"] == str(tmp_path / "journal")
    assert health["journal"]["pending_records"] == 5
    assert health["journal"]["size_bytes"] > 0
    assert health["producers"]["pending"] == 5
    kafka.faults.broker_up(1)


async def _healthz_until(http: httpx.AsyncClient, status: int) -> httpx.Response:
    deadline = time.monotonic() + 10
    while True:
        answer = await http.get("/healthz")
        if answer.status_code == status or time.monotonic() > deadline:
            assert answer.status_code == status, answer.text
            return answer
        await asyncio.sleep(0.1)


async def _settled(http: httpx.AsyncClient) -> None:
    """Wait (bounded) until the gateway's producers have nothing unreported."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        health = (await http.get("/healthz")).json()
        if health["producers"]["pending"] == 0 and health["journal"]["pending_records"] == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"records still pending after 10 s: {health}")


async def test_metrics_has_the_gateways_families_and_the_producers(
    http: httpx.AsyncClient,
) -> None:
    pytest.importorskip("prometheus_client")
    for _ in range(3):
        assert (await http.post("/batch/async/events", content=b"a\nb")).status_code == 202
    assert (await http.post("/async/no_such_topic", content=b"x")).status_code == 404
    answer = await http.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert 'pykaf_gateway_requests_total{route="batch_async",status="202"} 3.0' in text
    assert 'pykaf_gateway_requests_total{route="async",status="404"} 1.0' in text
    assert 'pykaf_gateway_records_total{route="batch_async"} 6.0' in text
    assert 'pykaf_gateway_request_duration_seconds_count{route="batch_async"} 3.0' in text
    assert 'pykaf_gateway_request_duration_seconds_bucket{le="+Inf",route="batch_async"} 3.0' in (
        text
    )
    assert "pykaf_gateway_failed_after_accept_total 0.0" in text
    assert 'pykaf_gateway_rejected_total{reason="rate"} 0.0' in text  # the limits' refusals
    # The Kafka clients' own statistics (pykaf.telemetry), watched from their creation.
    assert 'client="producer-journal"' in text
    assert "pykaf_records_sent_total" in text


async def test_metrics_count_what_the_limits_refused(kafka: BlockingCluster) -> None:
    pytest.importorskip("prometheus_client")
    settings = GatewaySettings(bootstrap=kafka.bootstrap, limits=LimitSettings(max_body_bytes=1024))
    gateway = create_app(settings)
    transport = httpx.ASGITransport(app=gateway)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            assert (await http.post("/async/events", content=b"x" * 2048)).status_code == 413
            text = (await http.get("/metrics")).text
        assert 'pykaf_gateway_rejected_total{reason="body_too_large"} 1.0' in text
        assert 'pykaf_gateway_requests_total{route="async",status="413"} 1.0' in text
    finally:
        await gateway.close(5)


async def test_metrics_without_prometheus_client_says_how_to_get_it(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import fails
    answer = await http.get("/metrics")
    assert answer.status_code == 501
    assert "pip install 'pykaf[prometheus]'" in answer.json()["message"]


async def test_each_request_is_one_json_access_line(
    app: Gateway, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="pykaf.gateway.access"):
        await http.post("/batch/async/events?partition=1", content=b"a\nb\nc")
        await http.get("/nowhere")
    lines = [r.getMessage() for r in caplog.records if r.name == "pykaf.gateway.access"]
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["method"] == "POST"
    assert first["path"] == "/batch/async/events"
    assert first["route"] == "batch_async"
    assert first["status"] == 202
    assert first["records"] == 3
    assert first["bytes_in"] == len(b"a\nb\nc")
    assert first["bytes_out"] > 0
    assert first["duration_ms"] >= 0
    assert "principal" in first
    assert first["client"]
    assert second["status"] == 404
    assert second["route"] is None
    assert second["records"] == 0
