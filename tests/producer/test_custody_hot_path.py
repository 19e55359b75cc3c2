"""Custody "journal": the append path made fast (``JournalAccumulator.append`` takes most
records itself, keyed ones and ones with headers too, the rest through ``_take``).
Whichever path a record takes, the journal holds what memory holds (partition, serial
order, key, value, timestamp, headers), a record refused is neither journaled nor sent,
each record gets one report, and what reaches the broker carries the journaled
timestamp. A memory full for a moment (brokers up, slower than the caller) makes a
blocking caller wait a little instead of spilling to the journal."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from _custody_support import FAST, one_broker
from _produce_readback import read_topic
from test_custody import Reports, assert_in_order, pending_in

from pykaf._errors import ProducerClosedError
from pykaf._producer import _journaled
from pykaf._producer._async_producer import AsyncProducer
from pykaf._producer._journaled import JournalAccumulator
from pykaf._producer._producer import Producer
from pykaf.broker import BlockingCluster


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with one_broker(3) as running:
        yield running


def _journal_of(accumulator: JournalAccumulator) -> list[tuple[int, int, Any, Any, int]]:
    store = accumulator.store
    return [
        (r.serial, r.partition, r.key, r.value, r.timestamp_ms)
        for r in store.read_pending(accumulator.opened_serial, store.next_serial)
        if r.value != b"warm"  # delivered; its DONE entry may not be written yet
    ]


def _memory_of(accumulator: JournalAccumulator) -> list[tuple[int, Any, Any, int]]:
    # Every record still in memory, as (partition, key, value, timestamp), batch by batch.
    out = []
    for t in accumulator._topics.values():
        for part in t.parts:
            for batch in part.batches:
                out.extend((part.index, k, v, ts) for k, v, _h, ts in batch.records)
    return out


def _counting_takes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the records that go through ``_take`` (the general path)."""
    taken: list[int] = []
    general = JournalAccumulator._take

    def counted(self: JournalAccumulator, *args: Any) -> int:
        taken.append(1)
        return general(self, *args)

    monkeypatch.setattr(JournalAccumulator, "_take", counted)
    return taken


def test_every_path_journals_what_memory_holds_and_the_broker_gets(
    cluster: BlockingCluster, tmp_path: Path
) -> None:
    reports = Reports()
    # A long linger: the batches stay open while the journal and memory are compared.
    options = {**FAST, "linger": 30.0, "delivery_timeout": 60.0}
    with Producer(cluster.bootstrap, custody="journal", journal_dir=tmp_path, **options) as p:
        p.produce("t", b"warm", partition=0)
        assert p.flush(30) == 0
        accumulator = p._accumulator
        assert isinstance(accumulator, JournalAccumulator)
        sent = []
        for i in range(40):
            v = b"v%d" % i
            kind = i % 5
            if kind == 0:  # keyless: the sticky partition (the hot path once it has a batch)
                p.produce("t", v, on_delivery=reports.callback(v))
            elif kind == 1:  # a partition given
                p.produce("t", v, partition=i % 3, on_delivery=reports.callback(v))
            elif kind == 2:  # keyed: the partitioner decides (on the hot path too)
                p.produce("t", v, key=b"k%d" % i, on_delivery=reports.callback(v))
            elif kind == 3:  # headers (on the hot path too)
                p.produce("t", v, headers=[("h", b"x")], on_delivery=reports.callback(v))
            else:  # a timestamp given: journaled and sent as given
                p.produce("t", v, timestamp=1_000_000 + i, on_delivery=reports.callback(v))
            sent.append(v)
        with pytest.raises(ValueError, match=r"partition 7 is not in 0\.\.2"):
            p.produce("t", b"refused", partition=7)
        journal = _journal_of(accumulator)
        memory = _memory_of(accumulator)
        # Serial order is append order; the journal and memory agree record by record.
        assert [s for s, *_ in journal] == sorted(s for s, *_ in journal)
        by_value = {v: (part, k, ts) for _s, part, k, v, ts in journal}
        assert sorted(by_value) == sorted(sent)  # the refused record is not journaled
        assert sorted((v, (part, k, ts)) for part, k, v, ts in memory if v != b"warm") == sorted(
            by_value.items()
        )
        for i in range(4, 40, 5):
            assert by_value[b"v%d" % i][2] == 1_000_000 + i
        # Per partition, journal order is memory order (what a replay would send).
        for partition in range(3):
            in_journal = [v for _s, part, _k, v, _ts in journal if part == partition]
            in_memory = [v for part, _k, v, _ts in memory if part == partition and v != b"warm"]
            assert in_journal == in_memory
        assert p.flush(30) == 0
        p.close()
        with pytest.raises(ProducerClosedError):
            p.produce("t", b"after close")
    assert reports.failed == []
    assert sorted(reports.ok) == sorted(sent)
    assert set(reports.ok.values()) == {1}
    written = read_topic(cluster.bootstrap, "t")
    got = {r.value: (part, r.key, r.timestamp) for part, rs in written.items() for r in rs}
    assert b"refused" not in got
    assert b"after close" not in got
    assert {v: got[v] for v in sent} == by_value
    assert pending_in(tmp_path) == 0


def _assert_each_once_in_order(
    reports: Reports, cluster: BlockingCluster, directory: Path, count: int
) -> None:
    """``count`` records ``d00000``... each reported once, in Kafka once and in order per
    partition, and the journal in ``directory`` empty."""
    assert reports.failed == []
    assert len(reports.ok) == count
    assert set(reports.ok.values()) == {1}
    written = {
        p: [r.value[:6] for r in rs if r.value]
        for p, rs in read_topic(cluster.bootstrap, "t").items()
    }
    assert sum(len(vs) for vs in written.values()) == count
    assert_in_order(written, b"d")
    assert pending_in(directory) == 0


def _through_small_memory(
    monkeypatch: pytest.MonkeyPatch, count: int, *, max_block: float
) -> tuple[Reports, dict[str, Any], list[bytes]]:
    """Reports, producer options with 128 KiB of buffer_memory, and ``count`` values of
    1 KiB (``d00000``...); the spill's wait raised to 60 s (a constant: raised so that
    no outcome hangs on the machine's speed)."""
    monkeypatch.setattr(_journaled, "_SPILL_AFTER", 60.0)
    options = {**FAST, "buffer_memory": 128 * 1024, "max_block": max_block}
    return Reports(), options, [b"d%05d" % i + bytes(1000) for i in range(count)]


@pytest.mark.parametrize("caller", ["blocking", "async"])
def test_a_memory_full_for_a_moment_does_not_spill_a_caller(
    cluster: BlockingCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caller: str
) -> None:
    # The broker is up: memory frees as batches are acknowledged. A wait far longer than
    # any acknowledgement (the bound is a constant, raised here so the outcome does not
    # hang on the machine's speed) and nothing goes to the journal only. An
    # AsyncProducer's produce() awaits room (``RoomSoon``) as long: before, its records
    # spilled the moment memory was full (a saturating AsyncProducer of 1 KiB records
    # on the mock cluster: 85% spilled, 81,000-85,000 records/s; now none,
    # 257,000-300,000).
    count = 2000  # ~2 MB through 128 KiB of buffer_memory
    reports, options, values = _through_small_memory(monkeypatch, count, max_block=60.0)

    def blocking() -> int:
        with Producer(cluster.bootstrap, custody="journal", journal_dir=tmp_path, **options) as p:
            for i, v in enumerate(values):
                p.produce("t", v, partition=i % 3, on_delivery=reports.callback(v[:6]))
            accumulator = p._accumulator
            assert isinstance(accumulator, JournalAccumulator)
            spilled = accumulator.spilled
            assert p.flush(60) == 0
            return spilled

    async def awaiting() -> int:
        async with AsyncProducer(
            cluster.bootstrap, custody="journal", journal_dir=tmp_path, **options
        ) as p:
            for i, v in enumerate(values):
                await p.produce("t", v, partition=i % 3, on_delivery=reports.callback(v[:6]))
            accumulator = p._accumulator
            assert isinstance(accumulator, JournalAccumulator)
            assert await p.flush(60) == 0
            return accumulator.spilled

    assert (blocking() if caller == "blocking" else asyncio.run(awaiting())) == 0
    _assert_each_once_in_order(reports, cluster, tmp_path, count)


def test_an_async_caller_s_wait_for_room_ends_within_its_max_block(
    cluster: BlockingCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An AsyncProducer awaits room (``RoomSoon``) for the spill's wait, but no longer
    # than its own max_block: then the journal takes the record. Before, a max_block
    # below the spill's wait raised BufferFullError from produce() while the journal
    # had room (max_block 10 ms, a broker 300 ms slow: 4 of 3,000 produce() calls).
    count = 600  # ~600 KB through 128 KiB of buffer_memory
    reports, options, values = _through_small_memory(monkeypatch, count, max_block=0.5)

    async def main() -> int:
        async with AsyncProducer(
            cluster.bootstrap, custody="journal", journal_dir=tmp_path, **options
        ) as p:
            await p.send("t", b"", partition=0)  # the topic known, the broker reached
            cluster.faults.broker_down(1)
            for i, v in enumerate(values):  # none raises: the journal takes them
                await p.produce("t", v, partition=i % 3, on_delivery=reports.callback(v[:6]))
            accumulator = p._accumulator
            assert isinstance(accumulator, JournalAccumulator)
            cluster.faults.broker_up(1)
            assert await p.flush(60) == 0
            return accumulator.spilled

    assert asyncio.run(main()) > count // 2
    _assert_each_once_in_order(reports, cluster, tmp_path, count)


@contextmanager
def _warm_producer(cluster: BlockingCluster, directory: Path) -> Iterator[Producer]:
    """A journaled producer with 1 MiB batches that stay open (a long linger), after one
    record delivered (its connection and metadata ready)."""
    options = {**FAST, "linger": 30.0, "delivery_timeout": 60.0, "batch_size": 1 << 20}
    with Producer(cluster.bootstrap, custody="journal", journal_dir=directory, **options) as p:
        p.produce("t", b"warm", partition=0)
        assert p.flush(30) == 0
        assert isinstance(p._accumulator, JournalAccumulator)
        yield p


def test_a_batch_growing_its_reservation_stays_on_the_hot_path(
    cluster: BlockingCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A batch reserves memory by steps as it fills (``Accumulator._room``); the hot path
    # grows it itself. Before, every step went through ``_take``: 1 record in 15 of 1 KiB.
    taken = _counting_takes(monkeypatch)
    with _warm_producer(cluster, tmp_path) as p:
        accumulator = p._accumulator
        assert isinstance(accumulator, JournalAccumulator)
        taken.clear()
        sent = [b"g%03d" % i + bytes(1000) for i in range(600)]
        for value in sent:
            p.produce("t", value, partition=1)
        (batch,) = accumulator._topics["t"].parts[1].batches
        assert batch.reserved >= batch.size > 600 * 1000  # grown well past its first step
        # The batch's opening, and seldom an append that met a step being written ahead
        # of it (``_mapped``'s fence); before, about 40.
        assert len(taken) < 5
        journal = _journal_of(accumulator)
        assert [(part, v) for _s, part, _k, v, _ts in journal] == [(1, v) for v in sent]
        assert [v for part, _k, v, _ts in _memory_of(accumulator) if part == 1] == sent
        # ``produce_batch``'s runs (``JournalRuns._append_run``) grow it the same way.
        taken.clear()
        p.produce_batch("t", sent, partition=2)
        assert len(taken) < 5
        assert [v for part, _k, v, _ts in _memory_of(accumulator) if part == 2] == sent
        assert p.flush(30) == 0
    written = read_topic(cluster.bootstrap, "t")
    assert [r.value for r in written[1]] == sent
    assert [r.value for r in written[2]] == sent
    assert pending_in(tmp_path) == 0


def test_keyed_records_and_records_with_headers_stay_on_the_hot_path(
    cluster: BlockingCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, every keyed record and every record with headers went through ``_take``:
    # with 1 KiB values 0.28x and 0.21x the memory level's rate (0.45x and 0.69x now).
    taken = _counting_takes(monkeypatch)
    headers = [("trace-id", b"0123456789abcdef"), ("clé", None)]
    with _warm_producer(cluster, tmp_path) as p:
        accumulator = p._accumulator
        assert isinstance(accumulator, JournalAccumulator)
        taken.clear()
        sent = [b"h%03d" % i for i in range(300)]
        for i, value in enumerate(sent):
            p.produce("t", value, key=b"k%d" % (i % 7), headers=headers if i % 2 else None)
        # Each partition's first batch opens through ``_take``; the rest took the hot path.
        assert len(taken) <= 3 + 2
        journal = accumulator.store.read_pending(accumulator.opened_serial, 10**9)
        by_value = {r.value: (r.partition, r.key, r.headers) for r in journal}
        for i, value in enumerate(sent):
            assert by_value[value][1:] == (b"k%d" % (i % 7), headers if i % 2 else [])
        assert p.flush(30) == 0
    written = read_topic(cluster.bootstrap, "t")
    got = {r.value: (part, r.key, list(r.headers)) for part, rs in written.items() for r in rs}
    for i, value in enumerate(sent):
        assert got[value] == (by_value[value][0], b"k%d" % (i % 7), headers if i % 2 else [])
    # The same key, the same partition: Kafka's key hash decided, once per record.
    assert len({got[value][0] for i, value in enumerate(sent) if i % 7 == 3}) == 1
    assert pending_in(tmp_path) == 0
