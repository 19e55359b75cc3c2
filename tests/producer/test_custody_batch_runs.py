"""Custody "journal": ``produce_batch`` of plain values takes ``append``'s hot path in
runs (``JournalRuns._append_run``), spilled or not, any other item ``_take``. Whichever path a
record takes, the journal holds what memory holds, in the same order per partition, and
what the broker gets; a batch that mixes kinds keeps its order; runs longer than one lock
hold, a spill in the middle of a batch, a refused item's count and "journal_sync"'s one
fsync all hold as with one ``produce`` per record."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _custody_support import FAST, one_broker
from _produce_readback import read_topic
from test_custody import assert_in_order, pending_in
from test_custody_hot_path import _counting_takes, _journal_of, _memory_of

from pykaf import ProducerRecord
from pykaf._producer import _journaled, _journaled_runs
from pykaf._producer._journaled import JournalAccumulator
from pykaf._producer._producer import Producer
from pykaf.broker import BlockingCluster


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with one_broker(3) as running:
        yield running


@pytest.mark.parametrize("partition", [None, 1])
def test_a_batch_of_values_is_journaled_as_memory_holds_it_and_the_broker_gets_it(
    cluster: BlockingCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    partition: int | None,
) -> None:
    monkeypatch.setattr(_journaled_runs, "_LOCK_RUN", 16)  # many runs in one call
    takes = _counting_takes(monkeypatch)
    reports: list[Any] = []
    options = {**FAST, "linger": 30.0, "delivery_timeout": 60.0, "batch_size": 4096}
    with Producer(cluster.bootstrap, custody="journal", journal_dir=tmp_path, **options) as p:
        p.produce("t", b"warm", partition=0)
        assert p.flush(30) == 0
        accumulator = p._accumulator
        assert isinstance(accumulator, JournalAccumulator)
        sent = [b"b%03d" % i + bytes(i % 7 * 50) for i in range(300)]
        # Answers held: nothing is acknowledged (and leaves the journal) while it is read.
        held = cluster.faults.hold_responses("Produce")
        p.produce_batch(
            "t", sent, partition=partition, on_delivery=lambda _m, error: reports.append(error)
        )
        # Nearly every record took the run path: _take only opens batches (small ones
        # here: the sticky partition moves often) and meets the topic once.
        assert 0 < len(takes) < 60
        journal = _journal_of(accumulator)
        assert [v for *_, v, _ts in journal] == sent  # serial order is the batch's order
        by_value = {v: (part, k, ts) for _s, part, k, v, ts in journal}
        # What memory still holds (full batches went to the broker) is as journaled,
        # and per partition in journal order.
        memory = [(part, k, v, ts) for part, k, v, ts in _memory_of(accumulator) if v != b"warm"]
        assert memory
        assert all(by_value[v] == (part, k, ts) for part, k, v, ts in memory)
        for number in range(3):
            in_journal = [v for _s, part, _k, v, _ts in journal if part == number]
            in_memory = [v for part, _k, v, _ts in memory if part == number]
            assert in_journal[len(in_journal) - len(in_memory) :] == in_memory
            if partition is not None:
                assert in_journal == (sent if number == partition else [])
        held.release()
        assert p.flush(30) == 0
    assert reports == [None] * len(sent)  # one report each, every one a delivery
    written = read_topic(cluster.bootstrap, "t")
    got = {r.value: (part, r.key, r.timestamp) for part, rs in written.items() for r in rs}
    assert {v: got[v] for v in sent} == by_value
    assert pending_in(tmp_path) == 0


def test_a_batch_that_mixes_kinds_keeps_its_order(cluster: BlockingCluster, tmp_path: Path) -> None:
    items: list[Any] = []
    for i in range(120):
        value = b"m%03d" % i
        kind = i % 6
        if kind == 3:
            items.append((b"k", value))  # keyed: _take
        elif kind == 5:
            items.append(ProducerRecord(value=value, headers=[("h", b"x")]))  # _take
        else:
            items.append(value)  # the run path
    with Producer(
        cluster.bootstrap, custody="journal", journal_dir=tmp_path, **FAST, batch_size=2048
    ) as p:
        p.produce_batch("t", items, partition=2)
        assert p.flush(30) == 0
    written = read_topic(cluster.bootstrap, "t")
    assert [r.value for r in written[2]] == [b"m%03d" % i for i in range(120)]
    assert [r.key for r in written[2]][:4] == [None, None, None, b"k"]
    assert pending_in(tmp_path) == 0


def test_a_refused_item_stops_the_batch_with_the_count_of_those_before_it(
    cluster: BlockingCluster, tmp_path: Path
) -> None:
    with Producer(cluster.bootstrap, custody="journal", journal_dir=tmp_path, **FAST) as p:
        p.produce("t", b"warm")
        items: list[Any] = [b"ok%d" % i for i in range(40)]
        items.insert(25, object())  # refused by the general path, with the count
        with pytest.raises(TypeError) as refused:
            p.produce_batch("t", items)
        assert p.flush(30) == 0
    assert "value" in str(refused.value)
    values = [r.value for rs in read_topic(cluster.bootstrap, "t").values() for r in rs]
    assert sorted(v for v in values if v != b"warm") == sorted(b"ok%d" % i for i in range(25))
    assert pending_in(tmp_path) == 0


def test_journal_sync_syncs_a_batch_once_and_returns_after_it(
    cluster: BlockingCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Producer(cluster.bootstrap, custody="journal_sync", journal_dir=tmp_path, **FAST) as p:
        p.produce("t", b"warm")
        accumulator = p._accumulator
        assert isinstance(accumulator, JournalAccumulator)
        syncs: list[int] = []
        real = accumulator._sync_to

        def counted(serial: int) -> None:
            syncs.append(serial)
            real(serial)

        monkeypatch.setattr(accumulator, "_sync_to", counted)
        p.produce_batch("t", [b"s%d" % i for i in range(500)])
        assert syncs == [accumulator.last_serial]
        assert accumulator.store.synced_serial > accumulator.last_serial
        assert p.flush(30) == 0
    assert pending_in(tmp_path) == 0


@pytest.mark.parametrize("partition", [None, 0])
def test_a_batch_larger_than_memory_spills_in_order(
    cluster: BlockingCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    partition: int | None,
) -> None:
    # The broker holds its answers: memory fills mid-batch, the rest goes to the journal
    # only, and is fed back in order once answers flow.
    monkeypatch.setattr(_journaled, "_SPILL_AFTER", 0.0)
    takes = _counting_takes(monkeypatch)
    count = 3000
    sent = [b"p%05d" % i + bytes(500) for i in range(count)]
    options = {**FAST, "buffer_memory": 256 * 1024, "batch_size": 16384, "max_block": 30.0}
    with Producer(cluster.bootstrap, custody="journal", journal_dir=tmp_path, **options) as p:
        p.produce("t", b"warm", partition=0)
        assert p.flush(30) == 0
        with cluster.faults.hold_responses("Produce") as held:
            p.produce_batch("t", sent, partition=partition)
            accumulator = p._accumulator
            assert isinstance(accumulator, JournalAccumulator)
            assert accumulator.spilled > count // 2
            # Spilled values take the run path too (to the journal only): _take opens
            # batches and begins the spill, no more.
            assert len(takes) < count // 10
            held.release()
        assert p.flush(60) == 0
    written = {
        number: [r.value[:6] for r in records if r.value != b"warm"]
        for number, records in read_topic(cluster.bootstrap, "t").items()
    }
    assert sorted(v for values in written.values() for v in values) == [v[:6] for v in sent]
    assert_in_order(written, b"p")
    if partition is None:  # the sticky partition moved on as the spilled bytes filled it
        assert sum(1 for values in written.values() if values) > 1
    assert pending_in(tmp_path) == 0
