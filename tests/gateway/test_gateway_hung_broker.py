"""A hung Kafka behind the gateway: the broker process frozen (SIGSTOP), its connections
open and its port listening, but nothing answered. Unlike a broker that is down, nothing
refuses: only the client's timeouts tell. The gateway must go on answering: 202 for
what it takes into its journal, an error for what waits on an acknowledgement (within
``ack_timeout``), and ``/healthz`` degraded; once the broker runs again, every record
taken arrives. The broker is tansu or librdkafka's mock cluster (each its own process)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from _gateway_support import gateway_http
from peers.frozen import freeze
from peers.process_broker import PROCESS_BROKERS, ProcessBroker, process_broker
from peers.readback import read_back

from pykaf.gateway import GatewaySettings

pytestmark = pytest.mark.peer

PARTITIONS = 3
TAKEN = 40
ACK_TIMEOUT = 2.0
BOUND = 30.0  # any wait here, far above what a healthy run needs


@pytest.fixture(params=PROCESS_BROKERS)
def broker(request: pytest.FixtureRequest) -> ProcessBroker:
    return process_broker(request, "events", PARTITIONS)


@pytest_asyncio.fixture
async def http(broker: ProcessBroker, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = GatewaySettings(
        bootstrap=broker.bootstrap,
        journal_dir=str(tmp_path / "journal"),
        ack_timeout=ACK_TIMEOUT,
        producer_options={
            "linger": 0.001,
            "request_timeout": 1.0,
            "retry_backoff_max": 0.2,
            "delivery_timeout": 1.5,  # memory custody: fails before ack_timeout
        },
    )
    async with gateway_http(settings, timeout=BOUND) as client:  # closes once all reported
        yield client


async def health(http: httpx.AsyncClient) -> str:
    return str((await http.get("/healthz")).json()["status"])


async def wait_for_health(http: httpx.AsyncClient, wanted: str) -> None:
    deadline = time.monotonic() + BOUND
    while (status := await health(http)) != wanted:
        assert time.monotonic() < deadline, f"/healthz still says {status!r}, not {wanted!r}"
        await asyncio.sleep(0.1)


async def test_a_frozen_broker_gets_202s_errors_in_time_and_every_record_after(
    broker: ProcessBroker, http: httpx.AsyncClient
) -> None:
    # Partition 0 throughout /sync?custody=memory: its leader's connection is up before
    # the freeze, so the request carrying "maybe" below is sent (and goes unanswered).
    warm = await http.post("/sync/events?partition=0", content=b"warm")
    assert warm.status_code == 200, warm.text
    assert await health(http) == "ok"
    freeze(broker.pid)
    try:
        taken = []
        for i in range(TAKEN):
            value = b"taken-%d" % i
            route = "/safe/async/events" if i % 2 else "/async/events?custody=journal"
            answer = await http.post(route, content=value)
            assert answer.status_code == 202, answer.text
            taken.append(value)
        waited = await http.post("/sync/events?custody=journal", content=b"waited")
        # Not acknowledged within ack_timeout: said so, and kept (it may still arrive).
        assert waited.status_code == 504, waited.text
        assert "stays in custody" in waited.json()["message"]
        # In memory, past delivery_timeout: failed, and said to be maybe in Kafka (the
        # request carrying it went unanswered: the broker may write it when it wakes).
        maybe = await http.post("/sync/events?custody=memory&partition=0", content=b"maybe")
        assert maybe.status_code == 504, maybe.text
        assert maybe.json().get("maybe_persisted") is True, maybe.text
        assert "may be in the log" in maybe.json()["message"]
        await wait_for_health(http, "degraded")
    finally:
        os.kill(broker.pid, signal.SIGCONT)
    await wait_for_health(http, "ok")
    after = await http.post("/sync/events", content=b"after")
    assert after.status_code == 200, after.text
    log = read_back(
        broker.bootstrap, "events", PARTITIONS, TAKEN + 3, trust_watermarks=broker.trust_watermarks
    )
    found = [v for rows in log.records.values() for _offset, _key, v in rows if v != b"maybe"]
    assert sorted(found) == sorted([b"warm", *taken, b"waited", b"after"])
