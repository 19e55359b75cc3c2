"""The real server: ``pykaf gateway`` as its own process before ``pykaf broker`` as
another, over real HTTP (httpx): every kafboy route, SIGTERM (graceful: the request in
flight is answered, what was accepted in memory is flushed, exit status 0) and SIGKILL
(every record answered 202 on a /safe route arrives once the gateway is back)."""

from __future__ import annotations

import asyncio
import inspect
import json
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _processes import (
    BrokerProcess,
    GatewayProcess,
    count_arrivals,
    create_topic,
    free_port,
    patient_config,
    read_topic,
)

from pykaf.broker._control import control

PARTITIONS = 3


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    home = tmp_path_factory.mktemp("broker")
    process = BrokerProcess.start(home / "data", free_port(), home / "broker.log")
    try:
        create_topic(process.bootstrap, "events", PARTITIONS)
        yield process
    finally:
        process.kill()


def _gateway(broker: BrokerProcess, tmp_path: Path, *extra: str) -> GatewayProcess:
    args = ["-b", broker.bootstrap, "--port", "0", "--journal-dir", str(tmp_path / "journal")]
    args += ["--config", patient_config(tmp_path)]
    return GatewayProcess.start([*args, *extra], tmp_path / "gateway.log")


def test_every_kafboy_route_over_http(broker: BrokerProcess, tmp_path: Path) -> None:
    gateway = _gateway(broker, tmp_path)
    try:
        with httpx.Client(base_url=gateway.url, timeout=30) as http:
            answers = {
                "/async": http.post("/async/events?partition=0&key=k", content=b"a"),
                "/sync": http.post("/sync/events?partition=0", content=b"s"),
                "/batch/async": http.post("/batch/async/events?partition=1", content=b"1\n2"),
                "/batch/sync": http.post(
                    "/batch/sync/events?partition=1", json=["3", {"value": {"v": 4}}]
                ),
                "/safe/async": http.post("/safe/async/events?partition=2", content=b"x"),
                "/safe/sync": http.post("/safe/sync/events?partition=2", content=b"y"),
                "/safe/batch/async": http.post("/safe/batch/async/events", content=b"p\nq"),
                "/safe/batch/sync": http.post("/safe/batch/sync/events", json=["r", "t"]),
            }
            for route, answer in answers.items():
                assert answer.status_code in (200, 202), (route, answer.text)
            assert answers["/async"].json()["custody"] == "journal"
            assert answers["/safe/async"].json()["custody"] == "journal_sync"
            assert answers["/sync"].json()["partition"] == 0
            assert [r["partition"] for r in answers["/batch/sync"].json()["records"]] == [1, 1]
            assert len(answers["/safe/batch/sync"].json()["records"]) == 2
            # The errors, in Confluent's shape, through the real HTTP stack.
            unknown = http.post("/async/nope", content=b"x")
            assert (unknown.status_code, unknown.json()["error_code"]) == (404, 40403)
            bad_json = http.post(
                "/batch/sync/events", content=b"[1,", headers={"content-type": "application/json"}
            )
            assert bad_json.status_code == 400
            assert set(bad_json.json()) == {"error_code", "message"}
            assert http.get("/async/events").status_code == 405
            health = http.get("/healthz")
            assert health.status_code == 200
            assert health.json()["kafka"]["reachable"] is True
            metrics = http.get("/metrics")
            assert metrics.status_code == 200
            assert 'pykaf_gateway_requests_total{route="safe_batch_sync",status="200"}' in (
                metrics.text
            )
        values = sorted(
            r.value for r in read_topic(broker.bootstrap, "events", 3, until=12, timeout=20)
        )
        assert values == sorted(
            [b"a", b"s", b"1", b"2", b"3", b'{"v":4}', b"x", b"y", b"p", b"q", b"r", b"t"]
        )
    finally:
        assert gateway.terminate() == 0
    access = [json.loads(line) for line in gateway.log.read_text().splitlines() if line[:1] == "{"]
    assert [a["path"] for a in access][:8] == [f"{r}/events" for r in answers]
    assert access[2]["records"] == 2  # /batch/async carried two


def test_every_v3_route_over_http(broker: BrokerProcess, tmp_path: Path) -> None:
    gateway = _gateway(broker, tmp_path)
    try:
        with httpx.Client(base_url=gateway.url, timeout=30) as http:
            clusters = http.get("/v3/clusters")
            assert clusters.status_code == 200, clusters.text
            cluster = clusters.json()["data"][0]["cluster_id"]
            base = f"/v3/clusters/{cluster}"
            assert http.get(base).json()["cluster_id"] == cluster
            created = http.post(
                f"{base}/topics", json={"topic_name": "v3-real", "partitions_count": 2}
            )
            assert created.status_code == 201, created.text
            names = [t["topic_name"] for t in http.get(f"{base}/topics").json()["data"]]
            assert "v3-real" in names
            assert http.get(f"{base}/topics/v3-real").json()["partitions_count"] == 2
            one = http.post(
                f"{base}/topics/v3-real/records",
                json={"partition_id": 1, "value": {"type": "STRING", "data": "solo"}},
            )
            assert one.status_code == 200, one.text
            assert (one.json()["error_code"], one.json()["offset"]) == (200, 0)
            # Streaming mode through the real HTTP stack: chunked, one report per record.
            stream = (
                json.dumps({"partition_id": 0, "value": {"type": "JSON", "data": i}}).encode()
                for i in range(50)
            )
            with http.stream(
                "POST",
                f"{base}/topics/v3-real/records",
                content=stream,
                headers={"content-type": "application/json"},
            ) as answer:
                reports = [json.loads(line) for line in answer.iter_lines() if line.strip()]
            assert [r["offset"] for r in reports] == list(range(50))
            assert http.get(f"{base}/topics/nope").json()["error_code"] == 40403
            assert http.delete(f"{base}/topics/v3-real").status_code == 204
    finally:
        assert gateway.terminate() == 0


def test_sigterm_answers_the_request_in_flight_flushes_memory_and_exits_0(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    create_topic(broker.bootstrap, "term", PARTITIONS)
    gateway = _gateway(broker, tmp_path)
    hold = control(broker.control, "hold_responses", api="Produce")["hold"]
    released = False

    async def scenario() -> tuple[httpx.Response, list[int]]:
        nonlocal released
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as http:
            # Accepted in memory only: only the shutdown's flush can deliver these.
            memory = [
                await http.post("/async/term?custody=memory&partition=0", content=b"m%d" % n)
                for n in range(20)
            ]
            in_flight = asyncio.ensure_future(
                http.post("/sync/term?partition=1&custody=memory", content=b"in-flight")
            )
            await _until(lambda: _pending(http), "the records to reach the producer")
            gateway.proc.send_signal(signal.SIGTERM)
            # Shutting down: no new connections, and the request in flight still waits.
            await _until(_closed(gateway), "the listener to close")
            assert not in_flight.done()
            assert gateway.alive()
            control(broker.control, "release", hold=hold)
            released = True
            return await in_flight, [a.status_code for a in memory]

    try:
        answer, memory_statuses = asyncio.run(scenario())
        assert memory_statuses == [202] * 20
        assert answer.status_code == 200, answer.text
        assert answer.json()["partition"] == 1
        assert gateway.wait_exit() == 0  # the status of a clean stop
    finally:
        if not released:
            control(broker.control, "release", hold=hold)
        if gateway.alive():
            gateway.kill()
    log = gateway.log.read_text()
    assert "unreported" not in log, log
    values = [r.value for r in read_topic(broker.bootstrap, "term", 3, until=21, timeout=20)]
    assert sorted(values) == sorted([b"m%d" % n for n in range(20)] + [b"in-flight"])


def test_sigkill_loses_no_record_answered_202_on_a_safe_route(tmp_path: Path) -> None:
    broker = BrokerProcess.start(tmp_path / "data", free_port(), tmp_path / "broker.log")
    acked: dict[bytes, dict[int, list[bytes]]] = {}
    try:
        create_topic(broker.bootstrap, "events", PARTITIONS)
        # 1. Writers post to /safe routes while Kafka is up; SIGKILL mid-stream.
        gateway = _gateway(broker, tmp_path)
        unanswered = asyncio.run(_write_until_killed(gateway, acked, writers=4, records=300))
        # 2. Restarted, it learns the topic, then Kafka goes down: what is answered 202
        # now lives only in the journal, and the gateway is killed again mid-stream.
        gateway = _gateway(broker, tmp_path)
        assert httpx.post(f"{gateway.url}/safe/sync/events", content=b"warm").status_code == 200
        broker.kill()
        unanswered += asyncio.run(_write_until_killed(gateway, acked, writers=3, records=150))
        # 3. Kafka back, the gateway back: its journal replays.
        broker = broker.restart()
        gateway = _gateway(broker, tmp_path)
        try:
            total = sum(len(v) for p in acked.values() for v in p.values())
            answered = [v for p in acked.values() for values in p.values() for v in values]
            records = read_topic(broker.bootstrap, "events", 3, until=answered, timeout=60)
        finally:
            assert gateway.terminate() == 0
        duplicated = 0
        for writer, expected in acked.items():
            arrivals = count_arrivals(records, expected, tag=writer)
            assert arrivals.total_lost == 0, (writer, arrivals)
            assert arrivals.total_reordered == 0, (writer, arrivals)
            duplicated += arrivals.total_duplicated  # at least once: counted, allowed
        print(f"\nSIGKILL figures: {total} answered 202, {unanswered} unanswered, {duplicated} dup")
        assert total >= 450
        assert unanswered <= 7  # at most one request in flight per writer
    finally:
        broker.kill()


async def _write_until_killed(
    gateway: GatewayProcess,
    acked: dict[bytes, dict[int, list[bytes]]],
    *,
    writers: int,
    records: int,
) -> int:
    """``writers`` clients post numbered records to /safe routes (each on its own
    partition, one request at a time) and note in ``acked`` the values answered 202;
    after ``records`` answers in all the gateway gets SIGKILL, requests in flight.
    Returns how many requests had no answer (their records may or may not be in)."""
    unanswered = answered = 0

    async def write(number: int) -> None:
        nonlocal answered, unanswered
        tag = b"w%d-%d" % (number, gateway.pid)
        partition = number % PARTITIONS
        mine = acked.setdefault(tag, {partition: []})[partition]
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            for sequence in range(100_000):
                value = b"%s:%d:%d" % (tag, partition, sequence)
                path = "/safe/batch/async/events" if sequence % 5 == 4 else "/safe/async/events"
                try:
                    answer = await http.post(f"{path}?partition={partition}", content=value)
                except httpx.TransportError:
                    unanswered += 1
                    return
                assert answer.status_code == 202, answer.text
                mine.append(value)
                answered += 1

    tasks = [asyncio.ensure_future(write(n)) for n in range(writers)]
    await _until(lambda: answered >= records, f"{records} answers", timeout=60)
    gateway.kill()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    return unanswered


async def _pending(http: httpx.AsyncClient) -> bool:
    answer = await http.get("/healthz")
    return int(answer.json()["producers"]["pending"]) >= 1


def _closed(gateway: GatewayProcess) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return not await asyncio.to_thread(gateway.accepting)

    return check


async def _until(condition: Callable[[], Any], what: str, timeout: float = 20.0) -> None:
    """Wait (bounded) until ``condition()`` (or the value it awaits) is true."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}")
        await asyncio.sleep(0.05)
