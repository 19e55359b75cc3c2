"""``buffer_memory`` bounds what buffered records really cost, not only their wire bytes.

Measured with tracemalloc (not RSS): the records' Python objects, their reports and the
encoded copies kept for retries are all counted, so what the producer holds during an
outage stays within about ``buffer_memory`` plus a fixed overhead, and comes back after.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from pykaf._errors import BufferFullError
from pykaf._producer._accumulator import Accumulator
from pykaf._producer._future import DeliveryFuture
from pykaf._producer._producer import Producer
from pykaf._producer._settings import ProducerSettings
from pykaf.broker import BlockingCluster

RECORDS = 20_000
# Allocations that do not grow with the records: connections, metadata, loop machinery.
FIXED = 1024 * 1024
BUFFER = 4 * 1024 * 1024


@pytest.fixture
def tracing() -> Iterator[None]:
    gc.collect()
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


# The embedded broker runs in this process: what it allocates (its logs keep every
# record delivered) is not the producer's.
_NOT_THE_PRODUCER = (
    tracemalloc.Filter(False, "*/pykaf/broker/*"),
    tracemalloc.Filter(False, "*/asyncio/streams.py"),
)


def traced() -> int:
    """Bytes allocated and still held, the embedded broker's left out."""
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(_NOT_THE_PRODUCER)
    return sum(stat.size for stat in snapshot.statistics("filename"))


@pytest.mark.parametrize("report", [None, "future"])
@pytest.mark.parametrize("value_size", [10, 100, 1000])
def test_the_accounted_bytes_cover_what_records_hold(
    tracing: None, value_size: int, report: str | None
) -> None:
    settings = ProducerSettings(buffer_memory=1 << 30, linger=60.0)
    accumulator = Accumulator(settings)
    accumulator.set_topic("t", [1, 1, 1])
    before = traced()
    for i in range(RECORDS):
        value = bytes([i % 256]) * value_size  # dropped by the caller: ours to hold
        accumulator.append("t", value, on_delivery=DeliveryFuture() if report else None)
    batches = accumulator.drain(1, time.monotonic() + 120, 1 << 40, lambda p, b: True, 1 << 20)
    while more := accumulator.drain(1, time.monotonic() + 120, 1 << 40, lambda p, b: True, 99):
        batches += more
    held = traced() - before
    assert sum(len(b.records) for b in batches) == RECORDS
    # Counted at least what is held, and not far more (the estimate is per record).
    assert held <= accumulator.used
    assert accumulator.used <= 1.3 * held + 64 * 1024


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=1) as running:
        running.create_topic("t", 3)
        yield running


def fill(producer: Producer, futures: bool) -> int:
    """Produce until the buffer is full; the number of records taken."""
    for i in range(1_000_000):
        value = b"%09d" % i * 11  # 99 bytes
        try:
            if futures:
                producer.send("t", value)
            else:
                producer.produce("t", value)
        except BufferFullError:
            return i
    raise AssertionError("the buffer never filled")


@pytest.mark.parametrize("futures", [False, True], ids=["produce", "send"])
@pytest.mark.parametrize("outage", ["paused", "down"])
def test_an_outage_holds_about_buffer_memory_and_gives_it_back(
    cluster: BlockingCluster, tracing: None, outage: str, futures: bool
) -> None:
    settings: dict[str, Any] = {
        "buffer_memory": BUFFER,
        "max_block": 0.5,  # fill() stops at the first BufferFullError
        "linger": 0.002,
        "request_timeout": 30.0,
        "delivery_timeout": 120.0,
        "retry_backoff": 0.02,
        "retry_backoff_max": 0.05,
    }
    with Producer(cluster.bootstrap, **settings) as producer:
        producer.send("t", b"warm").result(30)
        baseline = traced()
        if outage == "paused":
            hold = cluster.faults.hold_responses("Produce")
        else:
            cluster.faults.broker_down(1)
        taken = fill(producer, futures)
        assert producer.flush(0.5) > 0  # nothing can be delivered meanwhile
        held = traced() - baseline
        assert taken > 1000
        assert held <= BUFFER + FIXED, f"{taken} records hold {held} bytes"
        if outage == "paused":
            hold.release()
        else:
            cluster.faults.broker_up(1)
        assert producer.flush(60) == 0
        assert producer._accumulator.used == 0
        assert traced() - baseline <= FIXED
