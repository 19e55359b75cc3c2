"""Custody "journal" past ``buffer_memory`` (issue 12): while every broker is down the
producer keeps taking records into the journal (memory stays within ``buffer_memory``),
feeds them back in order once brokers return; close() keeps what was not delivered in the
journal for the next producer (``JournalKeptError``); ``journal_delivery_timeout`` bounds
an outage when asked; the downtime events."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from _custody_support import FAST, one_broker
from _produce_readback import read_topic
from test_custody import (
    Reports,
    assert_in_order,
    leave_records,
    pending_in,
    values_by_partition,
)

from pykaf._errors import DeliveryTimeoutError, JournalDiskError, JournalKeptError
from pykaf._producer._async_producer import AsyncProducer
from pykaf._producer._batches import PYTHON_RECORD_COST, PYTHON_REPORT_COST
from pykaf._producer._custody_events import CustodyEvent
from pykaf._producer._journaled import JournalAccumulator
from pykaf._producer._journaled_feed import NoRoom
from pykaf._producer._producer import Producer
from pykaf._producer.journal import _tail
from pykaf.broker import BlockingCluster

BUFFER = 128 * 1024
# Outage bounds: short timeouts so the producer notices the outage at once, and a
# delivery_timeout far below the outage (journaled records must not expire by it).
OUTAGE: dict[str, Any] = {
    **FAST,
    "buffer_memory": BUFFER,
    "max_block": 0.5,
    "request_timeout": 0.5,
    "delivery_timeout": 0.6,
    "retry_backoff_max": 0.1,
}
PAD = bytes(1000)
COUNT = 3000  # ~3 MB: more than 20 times buffer_memory


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with one_broker(3) as running:
        yield running


def value(i: int) -> bytes:
    return b"d%05d" % i + PAD


def assert_all_once_in_order(bootstrap: str, count: int) -> dict[int, list[bytes]]:
    written = values_by_partition(bootstrap)
    values = [v[:6] for vs in written.values() for v in vs if v.startswith(b"d")]
    assert sorted(values) == [b"d%05d" % i for i in range(count)]
    assert_in_order({p: [v[:6] for v in vs] for p, vs in written.items()}, b"d")
    return written


def memory_bound(accumulator: JournalAccumulator) -> int:
    """What the accounting lets memory hold during an outage, whatever its length: new
    batches are taken while it is within ``buffer_memory``; a batch that was sent keeps
    its encoded copy for a retry (charged on top: at most as much again), and each
    record held is charged its Python objects once its batch is sealed. (A request
    written just as the broker went down leaves such copies: 304,893 bytes once, under
    test load, against a bound of twice ``buffer_memory`` this test had before.)"""
    held = COUNT - accumulator.spilled  # the records that went to memory
    return 2 * BUFFER + held * (PYTHON_RECORD_COST + PYTHON_REPORT_COST)


def assert_every_record_reported_once(reports: Reports, bootstrap: str) -> dict[int, list[bytes]]:
    """Each of the COUNT records got one report, a success, and is in Kafka once, in order."""
    assert reports.failed == []
    assert sum(reports.ok.values()) == COUNT
    assert set(reports.ok.values()) == {1}
    return assert_all_once_in_order(bootstrap, COUNT)


@contextmanager
def down_after_warming(
    cluster: BlockingCluster, tmp_path: Path, **options: Any
) -> Iterator[Producer]:
    """A journaled producer that has reached the broker once, then the broker down."""
    with Producer(
        cluster.bootstrap, custody="journal", journal_dir=tmp_path, **{**OUTAGE, **options}
    ) as producer:
        producer.send("t", b"warm", partition=0).result(30)
        cluster.faults.broker_down(1)
        yield producer


def test_records_past_buffer_memory_wait_in_the_journal_while_brokers_are_down(
    cluster: BlockingCluster, tmp_path: Path
) -> None:
    reports = Reports()
    events: list[CustodyEvent] = []
    with down_after_warming(cluster, tmp_path, on_custody_event=events.append) as producer:
        for i in range(COUNT):  # never blocks on memory: max_block is 0.5 s
            producer.produce("t", value(i), on_delivery=reports.callback(value(i)))
        accumulator = producer._accumulator
        assert isinstance(accumulator, JournalAccumulator)
        # Bounded by buffer_memory, not by the 3 MB taken.
        assert accumulator.used <= memory_bound(accumulator)
        assert accumulator.spilled > COUNT // 2
        # What waits in the journal only is not in the journal's index either (memory
        # bounded however long the outage): the index holds what memory holds.
        assert accumulator.store.pending_records < COUNT - accumulator.spilled + 10
        assert producer.flush(0.2) > 0
        assert reports.failed == []
        cluster.faults.broker_up(1)
        assert producer.flush(60) == 0
        assert accumulator.used == 0
    written = assert_every_record_reported_once(reports, cluster.bootstrap)
    # Keyless records still move between partitions while they spill (KIP-480).
    assert sum(1 for vs in written.values() if any(v.startswith(b"d") for v in vs)) == 3
    assert pending_in(tmp_path) == 0
    kinds = [event.kind for event in events]
    assert "replay_started" in kinds
    assert kinds[-1] == "replay_finished" or "replay_finished" in kinds
    assert all(event.journal_dir == str(tmp_path) for event in events)


def test_downtime_events_count_the_records_saved_while_down(
    cluster: BlockingCluster, tmp_path: Path
) -> None:
    events: list[CustodyEvent] = []
    with down_after_warming(cluster, tmp_path, on_custody_event=events.append) as producer:
        # One record first, alone: downtime may begin while records are still produced,
        # and those count as saved while down (before, 100 here made the count racy).
        producer.produce("t", value(0), partition=0)
        # The producer retries; its metadata round finds no broker: downtime began.
        assert producer.flush(5) == 1
        assert [e.kind for e in events if e.kind.startswith("downtime")] == ["downtime_began"]
        for i in range(1, 201):  # saved while down
            producer.produce("t", value(i), partition=i % 3)
        cluster.faults.broker_up(1)
        assert producer.flush(60) == 0
    downtime = [e for e in events if e.kind.startswith("downtime")]
    assert [e.kind for e in downtime] == ["downtime_began", "downtime_ended"]
    ended = downtime[1]
    assert ended.records == 200
    assert ended.seconds > 0


def test_async_records_past_buffer_memory_wait_in_the_journal_while_brokers_are_down(
    cluster: BlockingCluster, tmp_path: Path
) -> None:
    reports = Reports()

    async def main() -> None:
        async with AsyncProducer(
            cluster.bootstrap, custody="journal", journal_dir=tmp_path, **OUTAGE
        ) as producer:
            await producer.send("t", b"warm", partition=0)
            cluster.faults.broker_down(1)
            for i in range(COUNT):
                await producer.produce("t", value(i), on_delivery=reports.callback(value(i)))
            accumulator = producer._accumulator
            assert isinstance(accumulator, JournalAccumulator)
            assert accumulator.used <= memory_bound(accumulator)
            assert not producer._backlog  # waiting in the journal, not in the backlog
            assert reports.failed == []
            cluster.faults.broker_up(1)
            assert await producer.flush(60) == 0

    asyncio.run(main())
    assert_every_record_reported_once(reports, cluster.bootstrap)
    assert pending_in(tmp_path) == 0


def test_close_during_an_outage_keeps_the_records_for_the_next_producer(
    cluster: BlockingCluster, tmp_path: Path
) -> None:
    reports = Reports()
    with down_after_warming(cluster, tmp_path) as first:
        for i in range(1000):  # some in memory, most in the journal only
            first.produce("t", value(i), on_delivery=reports.callback(value(i)))
        assert first.close(0.5) == 1000
    assert sum(reports.ok.values()) == 0
    assert len(reports.failed) == 1000
    assert all(isinstance(error, JournalKeptError) for error in reports.failed)
    assert pending_in(tmp_path) == 1000  # no DONE entry for any of them
    cluster.faults.broker_up(1)
    replayed: list[BaseException | None] = []
    with Producer(
        cluster.bootstrap,
        custody="journal",
        journal_dir=tmp_path,
        on_replayed_delivery=lambda m, e: replayed.append(e),
        **FAST,
    ) as second:
        assert sum(second.recovered().values()) == 1000
        assert second.flush(60) == 0
    assert replayed == [None] * 1000
    assert_all_once_in_order(cluster.bootstrap, 1000)
    assert pending_in(tmp_path) == 0


def test_journal_delivery_timeout_fails_journaled_records_that_wait_too_long(
    cluster: BlockingCluster, tmp_path: Path
) -> None:
    reports = Reports()
    with down_after_warming(cluster, tmp_path, journal_delivery_timeout=1.0) as p:
        for i in range(500):  # past buffer_memory: some wait in the journal only
            p.produce("t", value(i), on_delivery=reports.callback(value(i)))
        assert p.flush(30) == 0  # every record got its report: failed, the broker is down
    assert sum(reports.ok.values()) == 0
    assert len(reports.failed) == 500
    assert all(isinstance(error, DeliveryTimeoutError) for error in reports.failed)
    assert pending_in(tmp_path) == 0  # failed with a report: done


def outage_then_delete(cluster: BlockingCluster, tmp_path: Path, reports: Reports) -> None:
    """400 records to "doomed" (2 partitions) while the broker is down, "doomed" deleted
    meanwhile, the broker back; one more record to "t"; flushed."""
    cluster.create_topic("doomed", 2)
    with Producer(cluster.bootstrap, custody="journal", journal_dir=tmp_path, **OUTAGE) as p:
        p.send("doomed", b"warm", partition=0).result(30)
        p.send("t", b"warm", partition=0).result(30)
        cluster.faults.broker_down(1)
        for i in range(400):  # past buffer_memory: some wait in the journal only
            p.produce("doomed", value(i), partition=i % 2, on_delivery=reports.callback(value(i)))
        cluster.delete_topic("doomed")
        cluster.faults.broker_up(1)
        p.produce("t", b"alive", partition=2, on_delivery=reports.callback(b"alive"))
        assert p.flush(30) == 0
    assert pending_in(tmp_path) == 0


def test_a_topic_deleted_during_an_outage_fails_its_records_with_a_report(
    tmp_path: Path,
) -> None:
    reports = Reports()
    with BlockingCluster(brokers=1, auto_create_topics=False) as cluster:
        cluster.create_topic("t", 3)
        outage_then_delete(cluster, tmp_path, reports)
    assert reports.ok == {b"alive": 1}
    assert len(reports.failed) == 400
    assert all("does not exist" in str(error) for error in reports.failed)


def test_a_topic_made_again_with_fewer_partitions_fails_the_records_of_the_gone_ones(
    cluster: BlockingCluster, tmp_path: Path
) -> None:
    # Auto-creation makes "doomed" again at the producer's metadata request, with one
    # partition: records for partition 0 go there, those for partition 1 cannot.
    reports = Reports()
    outage_then_delete(cluster, tmp_path, reports)
    assert sum(reports.ok.values()) == 201
    assert {v[:6] for v in reports.ok if v != b"alive"} == {b"d%05d" % i for i in range(0, 400, 2)}
    assert len(reports.failed) == 200


def test_the_feed_reads_each_journaled_entry_about_once(
    cluster: BlockingCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Records taken while a replay runs wait in the journal; each feed pass must start
    # where the last stopped. Rescanning the segment from its start at every pass made a
    # journal_sync producer 5x slower behind a replay (and a long segment quadratic).
    leave_records(tmp_path, 2000, b"r")
    peeks = [0]
    real_peek = _tail.peek_record

    def counting_peek(*args: Any, **kwargs: Any) -> tuple[int, str, int]:
        peeks[0] += 1
        return real_peek(*args, **kwargs)

    monkeypatch.setattr(_tail, "peek_record", counting_peek)
    with Producer(
        cluster.bootstrap, custody="journal_sync", journal_dir=tmp_path, **FAST
    ) as producer:
        for i in range(500):
            producer.produce("t", b"n%d" % i, partition=i % 3)
        assert producer.flush(30) == 0
    assert peeks[0] <= 2 * 2500
    written = values_by_partition(cluster.bootstrap)
    assert sum(len(values) for values in written.values()) == 2500
    assert_in_order(written, b"n")


class _FailingOnce:
    """Stands in for ``feed_span``: raises ``error`` the first ``times`` calls after it is
    armed, then calls the real one."""

    def __init__(self, real: Any, error: Exception, times: int) -> None:
        self.real, self.error, self.left = real, error, times
        self.armed = False

    def __call__(self) -> Any:
        if self.armed and self.left > 0:
            self.left -= 1
            raise self.error
        return self.real()


@pytest.mark.parametrize(
    "error",
    [
        JournalDiskError("journal read of 0.log failed: Input/output error (errno 5)", errno=5),
        KeyError("a bug"),
    ],
    ids=["disk", "bug"],
)
def test_the_feed_goes_on_after_an_error_and_says_so_once(
    cluster: BlockingCluster,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    error: Exception,
) -> None:
    # Before, the feeder thread ended at its first error (a read the disk failed, or a
    # bug): the records still waiting in the journal stayed there until another spill
    # started a new feeder, or a new producer; flush() waited for them in vain.
    reports = Reports()
    journal_log = caplog.at_level(logging.INFO, logger="pykaf.producer.journal")
    with journal_log, down_after_warming(cluster, tmp_path) as producer:
        accumulator = producer._accumulator
        assert isinstance(accumulator, JournalAccumulator)
        failing = _FailingOnce(accumulator.feed_span, error, times=3)
        accumulator.feed_span = failing  # type: ignore[method-assign]
        for i in range(COUNT):
            producer.produce("t", value(i), on_delivery=reports.callback(value(i)))
        assert accumulator.spilled > COUNT // 2
        failing.armed = True  # the feeder's next pass fails, three times in a row
        cluster.faults.broker_up(1)
        assert producer.flush(30) == 0
        assert failing.left == 0
    assert_every_record_reported_once(reports, cluster.bootstrap)
    said = [r for r in caplog.records if "feed of journaled records" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.ERROR, logging.INFO]
    if isinstance(error, JournalDiskError):
        assert str(error) in said[0].getMessage()  # the disk's cause, in the message
    else:
        assert said[0].exc_info is not None  # a bug: its traceback


def test_the_feed_puts_plain_records_back_in_runs_and_the_rest_one_by_one(
    cluster: BlockingCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Spilled records of every kind, interleaved: plain values, keyed ones, ones with
    # headers, and two topics. The feed takes plain ones in runs (``replay_run``) and
    # the others through ``replay``; each arrives once, in order, as it was produced.
    cluster.create_topic("u", 2)
    one_by_one: list[int] = []
    real_replay = JournalAccumulator.replay

    def replay(self: JournalAccumulator, rec: Any, report: Any, *, block: bool) -> None:
        one_by_one.append(rec.serial)
        real_replay(self, rec, report, block=block)

    monkeypatch.setattr(JournalAccumulator, "replay", replay)
    reports = Reports()
    sent: dict[str, list[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]] = {"t": [], "u": []}
    with Producer(cluster.bootstrap, custody="journal", journal_dir=tmp_path, **OUTAGE) as producer:
        producer.send("t", b"warm", partition=0).result(30)
        producer.send("u", b"warm", partition=0).result(30)  # known before the outage
        cluster.faults.broker_down(1)
        for i in range(COUNT):
            topic = "u" if i % 5 == 0 else "t"
            key = b"k%d" % (i % 4) if i % 3 == 0 else None
            headers = [("h", b"%d" % i)] if i % 7 == 0 else []
            report = reports.callback(value(i))
            producer.produce(topic, value(i), key, headers=headers or None, on_delivery=report)
            sent[topic].append((key, value(i), headers))
        accumulator = producer._accumulator
        assert isinstance(accumulator, JournalAccumulator)
        assert accumulator.spilled > COUNT // 2
        cluster.faults.broker_up(1)
        assert producer.flush(60) == 0
    assert reports.failed == []
    assert sum(reports.ok.values()) == COUNT
    assert set(reports.ok.values()) == {1}
    # Only the records with headers (1 in 7) and a few at the runs' edges go one by one.
    assert 0 < len(one_by_one) < COUNT // 5
    for topic, expected in sent.items():
        parts = {
            number: [r for r in records if r.value != b"warm"]
            for number, records in read_topic(cluster.bootstrap, topic).items()
        }
        assert_in_order({n: [r.value[:6] for r in rs] for n, rs in parts.items()}, b"d")
        got = [(r.key, r.value, list(r.headers)) for rs in parts.values() for r in rs]
        assert sorted(got, key=repr) == sorted(expected, key=repr)
    assert pending_in(tmp_path) == 0


_ROOM = 64 * 1024  # free memory enough for any new batch (its first reservation and more)


def test_the_feed_does_not_wait_for_room_that_came_while_it_let_the_lock_go(
    cluster: BlockingCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ``replay_run`` lets the lock go between a record that found memory full and its
    # wait for room; memory freed in between was said to nobody, and the feeder waited
    # out a whole second with memory empty and the spill growing behind it (found by an
    # AsyncProducer whose spill never ended: the feed stood still, memory at 0 bytes).
    # Here memory is "full" once, for a record the feed puts back while it has room for
    # any new batch: the feeder must not wait for it.
    feeder = "pykaf-journal-feed"
    lacked: list[int] = []  # the bytes the one refused record was said to lack
    resumed: list[bool] = []  # the feed put a record back since (later waits are real)
    waits_with_room: list[int] = []
    real_put = JournalAccumulator._put

    def put(self: JournalAccumulator, t: Any, partition: Any, *rest: Any) -> bool:
        if threading.current_thread().name == feeder:
            if not lacked and self._used + _ROOM <= self._limit:
                lacked.append(rest[1])  # its size
                raise NoRoom(rest[1])
            if lacked:
                resumed.append(True)
        return real_put(self, t, partition, *rest)

    monkeypatch.setattr(JournalAccumulator, "_put", put)
    reports = Reports()
    with down_after_warming(cluster, tmp_path) as producer:
        accumulator = producer._accumulator
        assert isinstance(accumulator, JournalAccumulator)
        space = accumulator._space
        real_wait = space.wait

        def wait(timeout: float | None = None) -> bool:
            # Between the refusal (memory had room for any new batch) and the next record
            # put back, memory only empties (nothing else puts records in): a wait there
            # waits for room that is there. (Later waits may be real: memory full again.)
            on_feeder = threading.current_thread().name == feeder
            if on_feeder and lacked and not resumed:
                waits_with_room.append(accumulator._used)
            return real_wait(timeout)

        monkeypatch.setattr(space, "wait", wait)
        for i in range(COUNT):
            producer.produce("t", value(i), on_delivery=reports.callback(value(i)))
        assert accumulator.spilled > COUNT // 2
        cluster.faults.broker_up(1)
        assert producer.flush(60) == 0
    assert lacked, "the feed put no record back"
    assert waits_with_room == []
    assert_every_record_reported_once(reports, cluster.bootstrap)
