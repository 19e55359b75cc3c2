"""``AsyncProducer.produce_values`` and its ``Receipt``: each record taken is told exactly
once, by run, with the partition and offset it really has in Kafka (read back), through
batch boundaries, a batch split for a broker that found it too large, and failures; and
the path takes none where it is not open (a journal, records waiting, an unknown topic,
values that are not plain bytes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from _custody_support import FAST

from pykaf import AsyncConsumer, AsyncProducer, Receipt, TopicPartition
from pykaf._errors import DeliveryError, JournalKeptError
from pykaf._producer import _journaled, _journaled_runs
from pykaf._producer._batches import Batch, split_batch
from pykaf._producer._receipt import ReceiptRun, tell_delivered
from pykaf.broker import Cluster


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with Cluster(brokers=1) as running:
        yield running


def told(receipt: Receipt) -> list[tuple[int, int, int, int, Any]]:
    """Each record's outcome, by its index: (index, partition, offset, timestamp, error),
    asserting that every record was told exactly once."""
    each: dict[int, tuple[int, int, int, int, Any]] = {}
    for first, count, partition, offset, timestamp, error in receipt.runs:
        for k in range(count):
            assert first + k not in each, f"record {first + k} told twice"
            at = -1 if offset < 0 else offset + k
            each[first + k] = (first + k, partition, at, timestamp, error)
    assert sorted(each) == list(range(receipt.expected)), "a record not told"
    return [each[i] for i in range(receipt.expected)]


async def read_back(cluster: Cluster, topic: str, partitions: int, count: int) -> dict[Any, bytes]:
    found: dict[tuple[int, int], bytes] = {}
    async with AsyncConsumer(cluster.bootstrap, auto_offset_reset="earliest") as consumer:
        await consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        async with asyncio.timeout(20):
            while len(found) < count:
                for r in await consumer.poll(0.5):
                    found[r.partition, r.offset] = r.value
    return found


async def test_every_value_taken_is_told_once_with_where_it_is(cluster: Cluster) -> None:
    await cluster.create_topic("t", 3)
    values = [b"%06d" % i + b"x" * 50 for i in range(5000)]
    # Small batches: the values span many batches and partitions (the sticky one moves).
    async with AsyncProducer(cluster.bootstrap, **dict(FAST, batch_size=4096)) as producer:
        await producer.partitions_for("t")
        receipt = Receipt(asyncio.get_running_loop())
        assert producer.produce_values("t", values, receipt) == len(values)
        await asyncio.wait_for(receipt.done, 20)
    outcomes = told(receipt)
    assert len(receipt.runs) > 3  # runs, not one report per record
    assert len({o[1] for o in outcomes}) == 3
    assert all(o[4] is None and o[3] > 0 for o in outcomes)
    stored = await read_back(cluster, "t", 3, len(values))
    assert [stored[o[1], o[2]] for o in outcomes] == values


@pytest.mark.parametrize("custody", ["memory", "journal"])
async def test_a_batch_split_for_being_too_large_splits_its_runs(
    cluster: Cluster, tmp_path: Path, custody: str
) -> None:
    await cluster.create_topic("big", 1)
    values = [b"%05d" % i for i in range(3000)]
    options = dict(FAST, linger=0.2, custody=custody, journal_dir=str(tmp_path / "j"))
    if custody == "memory":
        del options["journal_dir"]
    async with AsyncProducer(cluster.bootstrap, **options) as producer:
        await producer.partitions_for("big")
        cluster.faults.push_errors("Produce", 10)  # MESSAGE_TOO_LARGE: split in halves
        receipt = Receipt(asyncio.get_running_loop())
        assert producer.produce_values("big", values, receipt) == len(values)
        await asyncio.wait_for(receipt.done, 20)
    outcomes = told(receipt)
    assert all(o[4] is None for o in outcomes)
    stored = await read_back(cluster, "big", 1, len(values))
    assert [stored[0, o[2]] for o in outcomes] == values


def test_split_batch_keeps_each_record_of_a_run_in_its_part() -> None:
    loop = asyncio.new_event_loop()
    try:
        receipt = Receipt(loop)
        part = SimpleNamespace(topic=SimpleNamespace(name="t"), index=0)
        batch = Batch(part, 0, 0.0, 0, 0.0)  # type: ignore[arg-type]
        batch.records = [(None, b"%d" % i, None, None) for i in range(10)]
        # records 0-5 from run (first 100), 6 alone, 7-9 from run (first 200)
        batch.reports = [
            (0, ReceiptRun(receipt, 100, 6)),
            (6, ReceiptRun(receipt, 106, 1)),
            (7, ReceiptRun(receipt, 200, 3)),
        ]
        parts = split_batch(batch, 3)  # records 0-2, 3-5, 6-9
        shapes = [
            [(i, r.first, r.count) for i, r in part.reports or []]  # type: ignore[attr-defined]
            for part in parts
        ]
    finally:
        loop.close()
    assert shapes == [[(0, 100, 3)], [(0, 103, 3)], [(0, 106, 1), (1, 200, 3)]]


async def test_a_batch_kafka_refuses_tells_its_runs_the_error(cluster: Cluster) -> None:
    await cluster.create_topic("no", 1)
    async with AsyncProducer(cluster.bootstrap, **dict(FAST, linger=0.2)) as producer:
        await producer.partitions_for("no")
        cluster.faults.push_errors("Produce", 29)  # TOPIC_AUTHORIZATION_FAILED: final
        receipt = Receipt(asyncio.get_running_loop())
        assert producer.produce_values("no", [b"a"] * 100, receipt) == 100
        await asyncio.wait_for(receipt.done, 20)
    outcomes = told(receipt)
    assert all(isinstance(o[4], DeliveryError) and o[2] == -1 for o in outcomes)


async def test_the_path_takes_none_where_it_is_not_open(cluster: Cluster, tmp_path: Path) -> None:
    await cluster.create_topic("t", 1)
    loop = asyncio.get_running_loop()
    async with AsyncProducer(cluster.bootstrap, **FAST) as producer:
        receipt = Receipt()  # the running loop's
        assert producer.produce_values("unknown", [b"a"], receipt) == 0
        assert receipt.expected == 0
        assert receipt.done.done()  # nothing is owed: nobody waits forever
        await producer.partitions_for("t")
        too_large = [b"x" * (2 * 1024 * 1024)]  # past max_request_size: send() says so
        assert producer.produce_values("t", too_large, Receipt(loop)) == 0


async def test_values_that_are_not_a_list_of_bytes_are_refused(cluster: Cluster) -> None:
    await cluster.create_topic("t", 1)
    async with AsyncProducer(cluster.bootstrap, **FAST) as producer:
        await producer.partitions_for("t")
        for values in (["text"], [b"a", None], [(b"k", b"v")], (b"a",)):
            with pytest.raises(TypeError, match="a list of bytes"):
                producer.produce_values("t", values, Receipt())  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"pykaf\.Receipt"):
            producer.produce_values("t", [b"a"], asyncio.get_running_loop().create_future())  # type: ignore[arg-type]
        assert producer.produce_values("t", [], Receipt()) == 0


@pytest.mark.parametrize("custody", ["journal", "journal_sync"])
async def test_a_journal_tells_each_record_once_with_where_it_is(
    cluster: Cluster, tmp_path: Path, custody: str
) -> None:
    await cluster.create_topic("t", 3)
    values = [b"%06d" % i for i in range(3000)]
    options = dict(FAST, custody=custody, journal_dir=str(tmp_path / "j"), batch_size=4096)
    async with AsyncProducer(cluster.bootstrap, **options) as producer:
        await producer.partitions_for("t")
        receipt = Receipt(asyncio.get_running_loop())
        assert producer.produce_values("t", values, receipt) == len(values)
        await asyncio.wait_for(receipt.done, 20)
    outcomes = told(receipt)
    assert all(o[4] is None for o in outcomes)
    stored = await read_back(cluster, "t", 3, len(values))
    assert [stored[o[1], o[2]] for o in outcomes] == values


async def test_records_spilled_to_the_journal_are_told_once(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_journaled, "_SPILL_AFTER", 0.0)  # spill as soon as memory is full
    await cluster.create_topic("t", 1)
    options = dict(FAST, custody="journal", journal_dir=str(tmp_path / "j"))
    options.update(buffer_memory=128 * 1024, batch_size=16 * 1024)
    values = [b"%05d" % i + bytes(300) for i in range(3000)]
    async with AsyncProducer(cluster.bootstrap, **options) as producer:
        await producer.partitions_for("t")
        held = cluster.faults.hold_responses("Produce")
        receipts: list[tuple[int, Receipt]] = []  # (the index of its first value, it)
        taken = 0
        async with asyncio.timeout(20):
            while taken < len(values):  # what a call does not take, the next one may
                receipt = Receipt(asyncio.get_running_loop())
                receipts.append((taken, receipt))
                taken += producer.produce_values("t", values[taken:], receipt)
                await asyncio.sleep(0.001)
        accumulator = producer._accumulator
        assert isinstance(accumulator, _journaled.JournalAccumulator)
        assert accumulator.spilled > 1000  # most went to the journal only, then fed
        held.release()
        await asyncio.wait_for(asyncio.gather(*(r.done for _, r in receipts)), 30)
    where = [(o[1], o[2]) for _, r in receipts for o in told(r)]
    assert all(o[4] is None for _, r in receipts for o in told(r))
    stored = await read_back(cluster, "t", 1, len(values))
    assert [stored[at] for at in where] == values


async def test_records_a_journal_keeps_at_close_are_told_kept(
    cluster: Cluster, tmp_path: Path
) -> None:
    await cluster.create_topic("t", 1)
    options = dict(FAST, custody="journal", journal_dir=str(tmp_path / "j"))
    producer = AsyncProducer(cluster.bootstrap, **options)
    await producer.partitions_for("t")
    await cluster.faults.broker_down(1)
    receipt = Receipt(asyncio.get_running_loop())
    assert producer.produce_values("t", [b"kept"] * 200, receipt) == 200
    await producer.close(0.2)
    await asyncio.wait_for(receipt.done, 20)
    outcomes = told(receipt)
    assert all(isinstance(o[4], JournalKeptError) for o in outcomes)
    await cluster.faults.broker_up(1)
    options["custody"] = "journal"
    async with AsyncProducer(cluster.bootstrap, **options) as again:  # sends what was kept
        assert await again.flush(20) == 0
    stored = await read_back(cluster, "t", 1, 200)
    assert sorted(stored.values()) == [b"kept"] * 200


async def test_a_full_buffer_takes_what_fits_in_order(cluster: Cluster) -> None:
    await cluster.create_topic("t", 1)
    options = dict(FAST, buffer_memory=64 * 1024, batch_size=8 * 1024)
    async with AsyncProducer(cluster.bootstrap, **options) as producer:
        await producer.partitions_for("t")
        held = cluster.faults.hold_responses("Produce")
        receipt = Receipt(asyncio.get_running_loop())
        values = [b"%04d" % i + b"x" * 496 for i in range(1000)]
        taken = producer.produce_values("t", values, receipt)
        assert 0 < taken < len(values)
        assert receipt.expected == taken
        held.release()
        await asyncio.wait_for(receipt.done, 20)
        outcomes = told(receipt)
    stored = await read_back(cluster, "t", 1, taken)
    assert [stored[0, o[2]] for o in outcomes] == values[:taken]


async def test_a_close_before_delivery_tells_every_run(cluster: Cluster) -> None:
    await cluster.create_topic("t", 1)
    options = dict(FAST, delivery_timeout=1.0, request_timeout=0.5)
    producer = AsyncProducer(cluster.bootstrap, **options)
    await producer.partitions_for("t")
    held = cluster.faults.hold_responses("Produce")
    receipt = Receipt(asyncio.get_running_loop())
    assert producer.produce_values("t", [b"v"] * 500, receipt) == 500
    await producer.close(0.1)  # gives up on what is not delivered
    held.release()
    await asyncio.wait_for(receipt.done, 20)
    assert len(told(receipt)) == 500


def test_neighbouring_runs_of_a_batch_are_told_as_one() -> None:
    loop = asyncio.new_event_loop()
    try:
        mine, other = Receipt(loop), Receipt(loop)
        runs = [
            (0, ReceiptRun(mine, 10, 1), 5),
            (1, ReceiptRun(mine, 11, 2), 5),  # next in the batch and in the call: joined
            (3, ReceiptRun(other, 0, 1), 5),
            (4, ReceiptRun(mine, 13, 1), 5),  # next in the call, not in the batch
            (5, ReceiptRun(mine, 14, 1), 6),  # another timestamp
        ]
        tell_delivered(runs, 2, 100)
    finally:
        loop.close()
    assert mine.runs == [
        (10, 3, 2, 100, 5, None),
        (13, 1, 2, 104, 5, None),
        (14, 1, 2, 105, 6, None),
    ]
    assert other.runs == [(0, 1, 2, 103, 5, None)]


def test_a_journaled_record_joins_its_receipts_run_only_right_after_it() -> None:
    loop = asyncio.new_event_loop()
    try:
        mine = Receipt(loop)
        part = SimpleNamespace(topic=SimpleNamespace(name="t"), index=0)
        batch = Batch(part, 0, 0.0, 0, 0.0)  # type: ignore[arg-type]
        _journaled_runs._report(batch, 0, mine, 0)
        _journaled_runs._report(batch, 1, mine, 1)  # next in the batch and the call
        _journaled_runs._report(batch, 3, mine, 2)  # record 2 of the batch is another's
        _journaled_runs._report(batch, 4, mine, 4)  # item 3 of the call went elsewhere
        shapes = [(i, r.first, r.count) for i, r in batch.reports or []]  # type: ignore[attr-defined]
    finally:
        loop.close()
    assert shapes == [(0, 0, 2), (3, 2, 1), (4, 4, 1)]


async def test_a_transformed_batch_tells_each_record_where_it_went(cluster: Cluster) -> None:
    """transform_batch merging each batch into one record (ekaf's massage): every value
    of a run is told the offset of the record it became part of, not offsets that
    record does not have."""
    await cluster.create_topic("t", 1)

    def merge(topic: str, partition: int, records: list[Any]) -> list[bytes]:
        return [b"|".join(r[1] for r in records)]

    options = dict(FAST, linger=0.2, transform_batch=merge)
    async with AsyncProducer(cluster.bootstrap, **options) as producer:
        await producer.partitions_for("t")
        receipt = Receipt()
        values = [b"%03d" % i for i in range(300)]
        assert producer.produce_values("t", values, receipt) == len(values)
        await asyncio.wait_for(receipt.done, 20)
    outcomes = told(receipt)
    stored = await read_back(cluster, "t", 1, len({o[2] for o in outcomes}))
    for value, outcome in zip(values, outcomes, strict=True):
        assert value in stored[0, outcome[2]].split(b"|")


async def test_headers_go_on_every_value(cluster: Cluster, tmp_path: Path) -> None:
    await cluster.create_topic("t", 1)
    headers = [("who", b"alice"), ("empty", None)]
    async with AsyncProducer(cluster.bootstrap, **dict(FAST, batch_size=2048)) as producer:
        await producer.partitions_for("t")
        receipt = Receipt()
        values = [b"%04d" % i for i in range(500)]
        assert producer.produce_values("t", values, receipt, headers=headers) == len(values)
        with pytest.raises(TypeError, match="header"):
            producer.produce_values("t", values, Receipt(), headers=[("n", 5)])
        await asyncio.wait_for(receipt.done, 20)
    outcomes = told(receipt)
    async with AsyncConsumer(cluster.bootstrap, auto_offset_reset="earliest") as consumer:
        await consumer.assign([TopicPartition("t", 0)])
        read: dict[int, Any] = {}
        async with asyncio.timeout(20):
            while len(read) < len(values):
                read.update((r.offset, r) for r in await consumer.poll(0.5))
    assert [read[o[2]].value for o in outcomes] == values
    assert all(list(read[o[2]].headers) == headers for o in outcomes)
    journal = dict(FAST, custody="journal", journal_dir=str(tmp_path / "j"))
    async with AsyncProducer(cluster.bootstrap, **journal) as producer:
        await producer.partitions_for("t")
        assert producer.produce_values("t", values, Receipt(), headers=headers) == 0
