"""Custody "journal" against librdkafka's mock cluster (a real, independent Kafka protocol
implementation), with every broker down and then up again (``rd_kafka_mock_broker_set_down``
/ ``set_up``): the producer keeps accepting while nothing answers, and afterwards every
record arrives, in order per partition, none lost, none twice, each with one report. Also
the crash variant: a producer SIGKILLed while the brokers are down, and a new one on its
journal after they are back."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from custody_filler import expected_values, fill_journal, read_values, replay_journal
from peers.mock_cluster import MockCluster

from pykaf import AsyncProducer, DeliveryError, Producer, RecordMetadata
from pykaf.journal import inspect_journal

pytestmark = pytest.mark.peer

PARTITIONS = 3
ALL = -1  # every broker of the mock cluster
SETTINGS: dict[str, Any] = {
    "linger": 0.002,
    "request_timeout": 2.0,
    "retry_backoff_max": 0.2,
    "max_block": 30.0,
}


@pytest.fixture
def mock() -> Iterator[MockCluster]:
    with MockCluster(3) as cluster:
        cluster.create_topic("t", PARTITIONS)
        yield cluster


class Reports:
    """Reports counted per value: exactly one each is the promise."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.delivered: Counter[bytes] = Counter()
        self.failed: list[BaseException] = []

    def for_value(
        self, value: bytes
    ) -> Callable[[RecordMetadata | None, DeliveryError | None], None]:
        def report(metadata: RecordMetadata | None, error: DeliveryError | None) -> None:
            with self.lock:
                if error is None:
                    self.delivered[value] += 1
                else:
                    self.failed.append(error)

        return report


def only_replayed(written: dict[int, list[bytes]]) -> dict[int, list[bytes]]:
    return {p: [v for v in values if v.startswith(b"r")] for p, values in written.items()}


# "spill": 3 MB of records through a 256 KiB buffer_memory, most of it waiting in the
# journal only while the brokers are down, fed back as memory frees.
@pytest.mark.parametrize("buffer_memory", [32 << 20, 256 << 10], ids=["fits", "spill"])
def test_journal_accepts_while_every_broker_is_down_and_delivers_all_after(
    mock: MockCluster, tmp_path: Path, buffer_memory: int
) -> None:
    count = 3_000
    pad = bytes(1000)
    reports = Reports()
    with Producer(
        mock.bootstrap,
        custody="journal",
        journal_dir=tmp_path,
        buffer_memory=buffer_memory,
        **SETTINGS,
    ) as p:
        for partition in range(PARTITIONS):  # metadata known, connections up
            p.send("t", b"warm", partition=partition).result(30)
        mock.broker_down(ALL)
        for i in range(count):
            value = b"r%d " % i + pad
            # Accepted at once: the journal and the buffer take it, nothing waits on Kafka.
            p.produce("t", value, partition=i % PARTITIONS, on_delivery=reports.for_value(value))
        assert p.flush(1.0) == count  # nothing can be delivered while every broker is down
        assert inspect_journal(tmp_path).pending_records == count
        # In memory and, spilling, in the journal only: all counted, none reported.
        assert p.pending() == count
        assert reports.failed == []
        mock.broker_up(ALL)
        assert p.flush(60) == 0
        assert p.pending() == 0
    assert reports.failed == []
    assert set(reports.delivered.values()) == {1}  # one report each
    assert len(reports.delivered) == count
    written = only_replayed(read_values(mock.bootstrap, "t", PARTITIONS))
    # In order per partition, none lost, none twice.
    expected = expected_values(count, PARTITIONS)
    assert {p: [v.split()[0] for v in vs] for p, vs in written.items()} == expected
    assert all(v.endswith(pad) for vs in written.values() for v in vs)
    assert inspect_journal(tmp_path).pending_records == 0


def test_a_producer_killed_while_brokers_are_down_is_replayed_in_full_after(
    mock: MockCluster, tmp_path: Path
) -> None:
    count = 1_500
    journal = tmp_path / "journal"
    fill_journal(journal, mock.bootstrap, lambda: mock.broker_down(ALL), count=count)
    mock.broker_up(ALL)
    replayed, _stats = replay_journal(
        journal, mock.bootstrap, partitions=PARTITIONS, count=count, **SETTINGS
    )
    assert [e for _, e in replayed if e is not None] == []
    assert len(replayed) == count  # one report each
    offsets = Counter((m.partition, m.offset) for m, _ in replayed if m is not None)
    assert set(offsets.values()) == {1}
    written = only_replayed(read_values(mock.bootstrap, "t", PARTITIONS))
    assert written == expected_values(count, PARTITIONS)
    assert inspect_journal(journal).pending_records == 0


Produce = Callable[[bytes, Any], Awaitable[None]]


@pytest.mark.parametrize("call", ["produce", "produce_batch"])
@pytest.mark.parametrize("caller", ["blocking", "async"])
def test_a_spill_over_a_stall_ends_while_the_caller_keeps_producing(
    tmp_path: Path, mock: MockCluster, caller: str, call: str
) -> None:
    # A producer faster than the feeder spills over a stall of the broker (its answers
    # 300 ms late: memory fills). Once answers are quick again, each produce() waits
    # for the feeder to hand back two records (memory has room): the backlog shrinks
    # and the spill ends while the caller goes on. Before, the caller outran the
    # feeder, the backlog grew for as long as it produced, and the producer stayed at
    # the feeder's pace (600,000 records after a 0.4 s stall: 103,000-145,000 records/s
    # against 256,000-296,000). An AsyncProducer's record awaits the feed on its loop
    # (``FeedSoon``); before, it never awaited, its loop never ran the I/O that frees
    # memory for the feed, and its spill went on for as long as it produced.
    reports = Reports()
    value = bytes(1000)
    options: dict[str, Any] = {
        "custody": "journal",
        "journal_dir": tmp_path,
        "buffer_memory": 512 * 1024,
        **SETTINGS,
    }

    async def drive(one: Produce, many: Produce, accumulator: Any) -> tuple[int, int]:
        sent = 0
        mock.set_rtt(ALL, 300)
        try:
            for _ in range(100_000):  # bounded: until the spill has begun
                tag = b"%07d" % sent
                await one(value + tag, reports.for_value(tag))
                sent += 1
                if accumulator.spilled >= 500:
                    break
        finally:
            mock.set_rtt(ALL, 0)
        assert accumulator.spilled >= 500
        for extra in range(0, 50_000, 100):  # bounded: the spill ends well within it
            tags = [b"%07d" % (sent + i) for i in range(100)]
            if call == "produce":
                for tag in tags:
                    await one(value + tag, reports.for_value(tag))
            else:  # one report for the batch's records: counted under b"batch"
                await many([value + tag for tag in tags], reports.for_value(b"batch"))
            sent += 100
            if accumulator.is_fed():
                return sent, extra
        raise AssertionError(f"still spilling: {accumulator.unfed} records behind")

    async def blocking() -> tuple[int, int]:
        with Producer(mock.bootstrap, **options) as producer:
            producer.send("t", b"warm").result(30)

            async def one(v: bytes, report: Any) -> None:
                producer.produce("t", v, on_delivery=report)

            async def many(vs: Any, report: Any) -> None:
                producer.produce_batch("t", vs, on_delivery=report)

            got = await drive(one, many, producer._accumulator)
            assert producer.flush(60) == 0
        return got

    async def awaiting() -> tuple[int, int]:
        async with AsyncProducer(mock.bootstrap, **options) as producer:
            await producer.send("t", b"warm")

            async def one(v: bytes, report: Any) -> None:
                await producer.produce("t", v, on_delivery=report)

            async def many(vs: Any, report: Any) -> None:
                await producer.produce_batch("t", vs, on_delivery=report)

            got = await drive(one, many, producer._accumulator)
            assert await producer.flush(60) == 0
        return got

    sent, _ = asyncio.run(blocking() if caller == "blocking" else awaiting())
    assert reports.failed == []
    assert sum(reports.delivered.values()) == sent
    assert {n for tag, n in reports.delivered.items() if tag != b"batch"} == {1}
