"""Custody "journal" and "journal_sync" (issue 12) against the embedded broker: delivery in
order with one report each, records taken while every broker is down delivered once they
return (journaled records do not expire by delivery_timeout), what an earlier producer left
in the journal sent first, the lock, and when produce() may return (fsyncs observed)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _custody_support import FAST, one_broker
from _produce_readback import read_topic

from pykaf._errors import DeliveryError, JournalLockedError
from pykaf._producer._async_producer import AsyncProducer
from pykaf._producer._delivery import RecordMetadata
from pykaf._producer._producer import Producer
from pykaf._producer.journal import JournalRecord, JournalStore
from pykaf.broker import BlockingCluster

LEVELS = ["journal", "journal_sync"]


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with one_broker(3) as running:
        yield running


class Reports:
    """One report per record, counted by value."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ok: Counter[bytes] = Counter()
        self.failed: list[BaseException] = []

    def callback(self, value: bytes) -> Callable[[Any, Any], None]:
        def on_delivery(metadata: RecordMetadata | None, error: DeliveryError | None) -> None:
            with self.lock:
                if error is None:
                    self.ok[value] += 1
                else:
                    self.failed.append(error)

        return on_delivery


def pending_in(directory: Path) -> int:
    store = JournalStore(directory, max_bytes=1 << 30, segment_bytes=64 << 20)
    try:
        return store.open().pending_records
    finally:
        store.close()


def values_by_partition(bootstrap: str) -> dict[int, list[bytes]]:
    return {p: [r.value or b"" for r in rs] for p, rs in read_topic(bootstrap, "t").items()}


def expected_values(count: int) -> list[bytes]:
    return sorted(b"v%d" % i for i in range(count))


def assert_in_order(written: dict[int, list[bytes]], prefix: bytes) -> None:
    for values in written.values():
        numbers = [int(v[len(prefix) :]) for v in values if v.startswith(prefix)]
        assert numbers == sorted(numbers)


@pytest.mark.parametrize("level", LEVELS)
def test_blocking_levels_deliver_in_order_with_one_report_each(
    cluster: BlockingCluster, tmp_path: Path, level: str
) -> None:
    reports = Reports()
    with Producer(cluster.bootstrap, custody=level, journal_dir=tmp_path, **FAST) as producer:
        for i in range(600):
            value = b"v%d" % i
            producer.produce("t", value, key=b"k%d" % (i % 7), on_delivery=reports.callback(value))
        futures = [producer.send("t", b"v%d" % i, key=b"k1") for i in range(600, 650)]
        assert producer.flush(30) == 0
        assert all(f.result(1).offset >= 0 for f in futures)
    assert sum(reports.ok.values()) == 600
    assert set(reports.ok.values()) == {1}
    assert reports.failed == []
    written = values_by_partition(cluster.bootstrap)
    assert sorted(v for vs in written.values() for v in vs) == sorted(
        b"v%d" % i for i in range(650)
    )
    assert_in_order(written, b"v")
    assert pending_in(tmp_path) == 0  # every record has its DONE entry


@pytest.mark.parametrize("level", LEVELS)
def test_async_levels_deliver_in_order_with_one_report_each(
    cluster: BlockingCluster, tmp_path: Path, level: str
) -> None:
    reports = Reports()

    async def main() -> None:
        async with AsyncProducer(
            cluster.bootstrap, custody=level, journal_dir=tmp_path, **FAST
        ) as producer:
            for i in range(400):
                value = b"v%d" % i
                await producer.produce(
                    "t", value, key=b"k%d" % (i % 7), on_delivery=reports.callback(value)
                )
            await producer.produce_batch("t", [(b"k2", b"v%d" % i) for i in range(400, 450)])
            assert await producer.flush(30) == 0

    asyncio.run(main())
    assert sum(reports.ok.values()) == 400
    assert set(reports.ok.values()) == {1}
    written = values_by_partition(cluster.bootstrap)
    assert sorted(v for vs in written.values() for v in vs) == sorted(
        b"v%d" % i for i in range(450)
    )
    assert_in_order(written, b"v")
    assert pending_in(tmp_path) == 0


def test_records_taken_while_every_broker_is_down_arrive_after_it_returns(
    cluster: BlockingCluster, tmp_path: Path
) -> None:
    # delivery_timeout is far shorter than the outage: journaled records must not expire.
    settings = {**FAST, "request_timeout": 0.5, "delivery_timeout": 0.6, "retry_backoff_max": 0.1}
    reports = Reports()
    with Producer(cluster.bootstrap, custody="journal", journal_dir=tmp_path, **settings) as p:
        p.send("t", b"warm", partition=0).result(30)
        cluster.faults.broker_down(1)
        for i in range(300):
            value = b"d%d" % i
            p.produce("t", value, partition=i % 3, on_delivery=reports.callback(value))
        # Past every record's delivery_timeout, with the broker still down.
        deadline = time.monotonic() + settings["delivery_timeout"] * 3
        while time.monotonic() < deadline:
            assert p.flush(0.2) == 300
        assert reports.failed == []
        cluster.faults.broker_up(1)
        assert p.flush(30) == 0
    assert reports.failed == []
    assert sum(reports.ok.values()) == 300
    written = values_by_partition(cluster.bootstrap)
    assert sum(1 for vs in written.values() for v in vs if v.startswith(b"d")) == 300
    assert_in_order(written, b"d")
    assert pending_in(tmp_path) == 0


def leave_records(directory: Path, count: int, prefix: bytes) -> None:
    """What a producer killed before its acknowledgements leaves: RECORD entries only."""
    store = JournalStore(directory, max_bytes=1 << 30, segment_bytes=64 << 20)
    store.open()
    try:
        first = store.next_serial
        store.append(
            [
                JournalRecord(first + i, "t", i % 3, 1_000 + i, None, prefix + b"%d" % i, [])
                for i in range(count)
            ]
        )
        store.sync()
    finally:
        store.close()


def replaying_producer(
    cluster: BlockingCluster,
    directory: Path,
    replayed: list[tuple[RecordMetadata | None, BaseException | None]],
) -> Producer:
    """A journaled producer on ``directory`` whose replayed records report to ``replayed``."""
    return Producer(
        cluster.bootstrap,
        custody="journal",
        journal_dir=directory,
        on_replayed_delivery=lambda m, e: replayed.append((m, e)),
        **FAST,
    )


def test_recovered_records_go_first_and_report_to_on_replayed_delivery(
    cluster: BlockingCluster, tmp_path: Path
) -> None:
    leave_records(tmp_path, 30, b"old")
    replayed: list[tuple[RecordMetadata | None, BaseException | None]] = []
    with replaying_producer(cluster, tmp_path, replayed) as producer:
        assert producer.recovered() == {("t", 0): 10, ("t", 1): 10, ("t", 2): 10}
        for i in range(30):
            producer.produce("t", b"new%d" % i, partition=i % 3)
        assert producer.flush(30) == 0
    assert len(replayed) == 30
    assert all(e is None and m is not None for m, e in replayed)
    written = values_by_partition(cluster.bootstrap)
    for partition, values in written.items():
        old = [v for v in values if v.startswith(b"old")]
        assert values[: len(old)] == old  # everything recovered before anything new
        assert old == [b"old%d" % i for i in range(partition, 30, 3)]
        assert len(values) == 20
    assert pending_in(tmp_path) == 0


def test_a_recovered_record_that_cannot_be_sent_fails_alone(
    cluster: BlockingCluster, tmp_path: Path
) -> None:
    # A journal written by hand (or damaged, its CRC right): one recovered record has a
    # negative timestamp. It fails with a report; the records around it, put back in
    # runs by the feed (``replay_run`` stops at it), are delivered in order.
    store = JournalStore(tmp_path, max_bytes=1 << 30, segment_bytes=64 << 20)
    store.open()
    try:
        store.append(
            [
                JournalRecord(i, "t", 0, -5 if i == 7 else 1_000 + i, None, b"old%d" % i, [])
                for i in range(20)
            ]
        )
        store.sync()
    finally:
        store.close()
    replayed: list[tuple[RecordMetadata | None, BaseException | None]] = []
    with replaying_producer(cluster, tmp_path, replayed) as producer:
        assert producer.flush(30) == 0
    failed = [e for _m, e in replayed if e is not None]
    assert len(replayed) == 20
    assert len(failed) == 1
    assert "timestamp" in str(failed[0])
    written = values_by_partition(cluster.bootstrap)
    assert written[0] == [b"old%d" % i for i in range(20) if i != 7]
    assert pending_in(tmp_path) == 0


def test_async_producer_sends_recovered_records_first(
    cluster: BlockingCluster, tmp_path: Path
) -> None:
    leave_records(tmp_path, 30, b"old")
    replayed: list[BaseException | None] = []

    async def main() -> dict[tuple[str, int], int]:
        async with AsyncProducer(
            cluster.bootstrap,
            custody="journal_sync",
            journal_dir=tmp_path,
            on_replayed_delivery=lambda m, e: replayed.append(e),
            **FAST,
        ) as producer:
            recovered = producer.recovered()
            for i in range(30):
                await producer.produce("t", b"new%d" % i, partition=i % 3)
            assert await producer.flush(30) == 0
            return recovered

    assert asyncio.run(main()) == {("t", 0): 10, ("t", 1): 10, ("t", 2): 10}
    assert replayed == [None] * 30
    for values in values_by_partition(cluster.bootstrap).values():
        assert [v[:3] for v in values] == [b"old"] * 10 + [b"new"] * 10
    assert pending_in(tmp_path) == 0


def test_a_flush_right_after_opening_covers_the_recovered_records(
    cluster: BlockingCluster, tmp_path: Path
) -> None:
    # Found by chaos/custody_kills.py: flush() returned 0 at once while the feed had not
    # handed the recovered records over, and close() left them unsent without a word.
    leave_records(tmp_path, 30, b"old")
    replayed: list[BaseException | None] = []
    with Producer(
        cluster.bootstrap,
        custody="journal",
        journal_dir=tmp_path,
        on_replayed_delivery=lambda m, e: replayed.append(e),
        **FAST,
    ) as producer:
        assert producer.flush(30) == 0
        assert replayed == [None] * 30  # reported before flush() returned
    assert sum(len(v) for v in values_by_partition(cluster.bootstrap).values()) == 30
    assert pending_in(tmp_path) == 0


def test_async_flush_right_after_opening_covers_the_recovered_records(
    cluster: BlockingCluster, tmp_path: Path
) -> None:
    leave_records(tmp_path, 30, b"old")
    replayed: list[BaseException | None] = []

    async def main() -> None:
        async with AsyncProducer(
            cluster.bootstrap,
            custody="journal",
            journal_dir=tmp_path,
            on_replayed_delivery=lambda m, e: replayed.append(e),
            **FAST,
        ) as producer:
            assert await producer.flush(30) == 0
            assert replayed == [None] * 30

    asyncio.run(main())
    assert sum(len(v) for v in values_by_partition(cluster.bootstrap).values()) == 30
    assert pending_in(tmp_path) == 0


def test_a_second_producer_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    first = Producer("127.0.0.1:9", custody="journal", journal_dir=tmp_path)
    try:
        with pytest.raises(JournalLockedError, match=str(os.getpid())):
            Producer("127.0.0.1:9", custody="journal_sync", journal_dir=tmp_path)
    finally:
        first.close(0)
    Producer("127.0.0.1:9", custody="journal", journal_dir=tmp_path).close(0)  # free again


class FsyncSpy:
    """Counts ``os.fdatasync`` calls per thread name; ``gate`` may hold the first one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.gate: Callable[[], None] | None = None
        real = os.fdatasync

        def fdatasync(fd: int) -> None:
            gate, self.gate = self.gate, None
            if gate is not None:
                gate()
            real(fd)
            with self.lock:
                self.calls[threading.current_thread().name] += 1

        monkeypatch.setattr(os, "fdatasync", fdatasync)

    def outside_journal_thread(self) -> int:
        with self.lock:
            return sum(n for name, n in self.calls.items() if name != "pykaf-journal")


def test_journal_sync_produce_returns_only_after_an_fsync(
    cluster: BlockingCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = FsyncSpy(monkeypatch)
    with Producer(cluster.bootstrap, custody="journal_sync", journal_dir=tmp_path, **FAST) as p:
        store = p._accumulator.store  # type: ignore[attr-defined]
        for i in range(20):
            before = sum(spy.calls.values())
            p.produce("t", b"s%d" % i, partition=0)
            # An fsync ran since the call began (the caller's own, or the journal
            # thread's that it waited for) and it covered the record.
            assert sum(spy.calls.values()) > before
            assert store.synced_serial >= store.next_serial
        assert spy.outside_journal_thread() > 0  # callers lead fsyncs themselves
        assert p.flush(30) == 0


def test_journal_produce_leaves_the_fsync_to_the_journal_thread(
    cluster: BlockingCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = FsyncSpy(monkeypatch)
    with Producer(cluster.bootstrap, custody="journal", journal_dir=tmp_path, **FAST) as p:
        for i in range(200):
            p.produce("t", b"j%d" % i, partition=0)
        assert p.flush(30) == 0
        store = p._accumulator.store  # type: ignore[attr-defined]
        pause = threading.Event()
        deadline = time.monotonic() + 10
        while store.synced_serial < store.next_serial and time.monotonic() < deadline:
            pause.wait(0.005)  # the group commit runs within journal_fsync_interval
        assert store.synced_serial >= store.next_serial
    assert spy.outside_journal_thread() == 0
    assert spy.calls["pykaf-journal"] >= 1


def test_concurrent_journal_sync_callers_share_an_fsync(
    cluster: BlockingCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = FsyncSpy(monkeypatch)
    callers = 6
    with Producer(cluster.bootstrap, custody="journal_sync", journal_dir=tmp_path, **FAST) as p:
        p.produce("t", b"warm", partition=0)
        store = p._accumulator.store  # type: ignore[attr-defined]
        base = store.next_serial
        all_appended = threading.Event()

        def hold_first_fsync() -> None:
            # The first caller's fsync waits until every caller has appended: the next
            # fsync then covers all the others (group commit), whatever the scheduling.
            deadline = time.monotonic() + 10
            while store.next_serial < base + callers and time.monotonic() < deadline:
                all_appended.wait(0.001)

        before = spy.outside_journal_thread()
        spy.gate = hold_first_fsync
        threads = [
            threading.Thread(target=p.produce, args=("t", b"c%d" % i), kwargs={"partition": 1})
            for i in range(callers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert store.synced_serial >= base + callers
        assert spy.outside_journal_thread() - before <= 2
        assert p.flush(30) == 0


def test_async_journal_sync_produce_returns_only_after_an_fsync(
    cluster: BlockingCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = FsyncSpy(monkeypatch)

    async def main() -> None:
        async with AsyncProducer(
            cluster.bootstrap, custody="journal_sync", journal_dir=tmp_path, **FAST
        ) as producer:
            for i in range(20):
                with spy.lock:
                    before = spy.calls["pykaf-journal"]
                await producer.produce("t", b"a%d" % i, partition=2)
                with spy.lock:  # the sync ran on the journal's thread, never on the loop
                    assert spy.calls["pykaf-journal"] > before
            assert await producer.flush(30) == 0

    asyncio.run(main())
    assert spy.outside_journal_thread() == 0


def test_fsync_chooses_journal_sync_per_call_on_a_journal_producer(
    cluster: BlockingCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # custody "journal" leaves the fsync to its thread; fsync() waits for it (the gateway's
    # per-request "journal_sync" on one journal).
    spy = FsyncSpy(monkeypatch)

    async def main() -> None:
        async with AsyncProducer(
            cluster.bootstrap, custody="journal", journal_dir=tmp_path, **FAST
        ) as producer:
            store = producer._accumulator.store  # type: ignore[attr-defined]
            for i in range(20):
                await producer.produce("t", b"f%d" % i, partition=2)
                await producer.fsync()
                assert store.synced_serial >= store.next_serial
            assert await producer.flush(30) == 0
        async with AsyncProducer(cluster.bootstrap, **FAST) as memory:
            with pytest.raises(ValueError, match="journal"):
                await memory.fsync()

    asyncio.run(main())
    assert spy.outside_journal_thread() == 0


def test_a_journal_larger_than_buffer_memory_is_fed_in_as_memory_frees(
    cluster: BlockingCluster, tmp_path: Path
) -> None:
    store = JournalStore(tmp_path, max_bytes=1 << 30, segment_bytes=64 << 20)
    store.open()
    big = bytes(1000)
    try:
        store.append(
            [
                JournalRecord(i, "t", i % 3, 1_000 + i, None, b"%05d" % i + big, [])
                for i in range(3000)
            ]
        )
        store.sync()
    finally:
        store.close()
    settings = {**FAST, "buffer_memory": 256 * 1024}  # the journal holds ~3 MB
    replayed: list[BaseException | None] = []
    with Producer(
        cluster.bootstrap,
        custody="journal",
        journal_dir=tmp_path,
        on_replayed_delivery=lambda m, e: replayed.append(e),
        **settings,
    ) as producer:
        assert sum(producer.recovered().values()) == 3000
        producer.produce("t", b"new", partition=1)  # waits behind the whole replay
        assert producer.flush(60) == 0
        assert producer._accumulator.used == 0
    assert replayed == [None] * 3000
    written = values_by_partition(cluster.bootstrap)
    for partition, values in written.items():
        numbers = [int(v[:5]) for v in values if v != b"new"]
        assert numbers == list(range(partition, 3000, 3))
    assert written[1][-1] == b"new"
    assert pending_in(tmp_path) == 0
