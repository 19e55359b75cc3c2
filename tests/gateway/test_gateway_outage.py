"""Kafka down behind ``pykaf gateway --journal-dir``: HTTP clients keep getting
202 throughout, and every record accepted arrives afterwards, none lost, duplicated or
out of order within its writer's partition.

Kafka is the embedded broker as its own process, with a data directory: SIGKILL takes it
down (nothing is flushed or closed), and it comes back on the same port and directory.
The default run takes Kafka down for 15 s; the issue's 60 s is ``-m slow`` (the default
run leaves it out: CI's time budget).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from pathlib import Path

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

import pykaf.gateway._cluster_view as cluster_view
from pykaf.broker import BlockingCluster

OUTAGE = 60.0  # seconds Kafka stays down (the figure, ``-m slow``)
SHORT_OUTAGE = 15.0  # the default run's
WRITERS = 3  # one per partition: a writer's records keep their order in its partition
# Each writer waits this long between requests: load, not speed, is what this test is
# about (about 250 requests/s in all, thousands of records in the journal).
PACE = 0.01


async def test_a_known_topic_is_not_looked_up_again_while_kafka_does_not_answer(
    http: httpx.AsyncClient, kafka: BlockingCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: once the topic list was 10 s old, every request waited for a new
    # list (up to the lookup timeout) while Kafka was down: 2-3 answers/s per client
    # during an outage. A topic known to exist is now answered from what is known, and
    # the list refreshed behind the answer.
    assert (await http.post("/async/events", content=b"known")).status_code == 202
    monkeypatch.setattr(cluster_view, "TOPICS_FRESH", 0.0)  # the list is stale at once
    monkeypatch.setattr(cluster_view, "_LOOKUP_TIMEOUT", 600.0)
    held = kafka.faults.hold_responses("Metadata")  # a lookup now never ends
    try:
        for n in range(3):
            answer = await asyncio.wait_for(http.post("/async/events", content=b"%d" % n), 2)
            assert answer.status_code == 202, answer.text
    finally:
        held.release()


class Writers:
    """HTTP clients posting numbered records (``/async``, and every fifth request a
    ``/batch/async`` of five) until stopped; every answer's status is counted."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.accepted: dict[bytes, dict[int, list[bytes]]] = {}
        self.statuses: Counter[int] = Counter()
        self.during_outage: Counter[int] = Counter()
        self.outage = False
        self.stopped = asyncio.Event()

    async def run(self, number: int) -> None:
        tag, partition = b"w%d" % number, number % 3
        mine = self.accepted.setdefault(tag, {partition: []})[partition]
        sequence = 0
        # TCP_NODELAY: else each POST (head and body written apart) waits for the
        # server's delayed ACK, about 40 ms, and the load is a tenth of what is meant.
        nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
        transport = httpx.AsyncHTTPTransport(socket_options=nodelay)
        async with httpx.AsyncClient(base_url=self.url, timeout=30, transport=transport) as http:
            while not self.stopped.is_set():
                batch = [b"%s:%d:%d" % (tag, partition, sequence + n) for n in range(5)]
                if sequence % 25 == 20:
                    path, body = "/batch/async/events", b"\n".join(batch)
                else:
                    path, body, batch = "/async/events", batch[0], batch[:1]
                answer = await http.post(f"{path}?partition={partition}", content=body)
                self.statuses[answer.status_code] += 1
                if self.outage:
                    self.during_outage[answer.status_code] += 1
                if answer.status_code == 202:
                    mine.extend(batch)
                sequence += len(batch)
                await asyncio.sleep(PACE)

    def count(self, tag: bytes) -> int:
        return sum(len(values) for values in self.accepted.get(tag, {}).values())

    def total(self) -> int:
        return sum(self.count(tag) for tag in self.accepted)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_kafka_down_60_s_clients_get_202_and_every_record_arrives(tmp_path: Path) -> None:
    _down_and_back(tmp_path, OUTAGE)


@pytest.mark.timeout(300)
def test_kafka_down_15_s_clients_get_202_and_every_record_arrives(tmp_path: Path) -> None:
    _down_and_back(tmp_path, SHORT_OUTAGE)


def _down_and_back(tmp_path: Path, outage: float) -> None:
    broker = BrokerProcess.start(tmp_path / "data", free_port(), tmp_path / "broker.log")
    gateway: GatewayProcess | None = None
    try:
        create_topic(broker.bootstrap, "events", 3)
        gateway = GatewayProcess.start(
            [
                *("-b", broker.bootstrap, "--port", "0"),
                *("--journal-dir", str(tmp_path / "journal")),
                *("--config", patient_config(tmp_path)),
            ],
            tmp_path / "gateway.log",
        )
        writers = Writers(gateway.url)
        broker, figures = asyncio.run(_outage(broker, gateway, writers, outage))
        assert writers.statuses.keys() == {202}, writers.statuses
        assert writers.during_outage[202] > 1000, writers.during_outage
        records = read_topic(broker.bootstrap, "events", 3, until=writers.total(), timeout=120)
        for tag, expected in writers.accepted.items():
            arrivals = count_arrivals(records, expected, tag=tag)
            assert arrivals.total_lost == 0, (tag, arrivals)
            assert arrivals.total_duplicated == 0, (tag, arrivals)
            assert arrivals.total_reordered == 0, (tag, arrivals)
            assert arrivals.unexpected == 0, (tag, arrivals)
        print(f"\noutage figures: {figures}, accepted {writers.total()} records")
        assert gateway.terminate() == 0
    finally:
        if gateway is not None and gateway.alive():
            gateway.kill()
        broker.kill()


async def _outage(
    broker: BrokerProcess, gateway: GatewayProcess, writers: Writers, outage: float
) -> tuple[BrokerProcess, dict[str, float]]:
    tasks = [asyncio.ensure_future(writers.run(n)) for n in range(WRITERS)]
    figures: dict[str, float] = {}
    try:
        await _until(lambda: all(writers.count(b"w%d" % n) >= 50 for n in range(WRITERS)), 30)
        before = writers.total()
        writers.outage = True
        await asyncio.to_thread(broker.kill)
        began = time.monotonic()
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            # Operations see it: 503 with the backlog growing in the journal.
            health = await _health_until(http, lambda h: h["journal"]["pending_records"] > 0)
            assert health["kafka"]["reachable"] is False
            while time.monotonic() - began < outage:
                _raise_if_done(tasks)
                await asyncio.sleep(0.2)
            figures["accepted_during_outage"] = writers.total() - before
            broker = await asyncio.to_thread(broker.restart)
            writers.outage = False
            came_back = time.monotonic()
            await _until(lambda: writers.total() - before > figures["accepted_during_outage"], 30)
            writers.stopped.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
            # Delivered: the journal and the producers hold nothing more.
            await _health_until(
                http,
                lambda h: (
                    h["kafka"]["reachable"]
                    and h["journal"]["pending_records"] == 0
                    and h["producers"]["pending"] == 0
                ),
                timeout=180,
            )
            figures["seconds_to_drain"] = round(time.monotonic() - came_back, 1)
    finally:
        writers.stopped.set()
        for task in tasks:
            task.cancel()
    return broker, figures


def _raise_if_done(tasks: list[asyncio.Future[None]]) -> None:
    for task in tasks:
        if task.done():
            task.result()  # a writer failed: its exception here
            raise AssertionError("a writer stopped early")


async def _health_until(http: httpx.AsyncClient, condition: object, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        health = (await http.get("/healthz")).json()
        if condition(health):  # type: ignore[operator]
            return health  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"health never got there in {timeout} s: {health}")
        await asyncio.sleep(0.2)


async def _until(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(0.05)
