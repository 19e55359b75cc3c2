"""Replay after a SIGKILL is deduplicated by the broker (issue 12, DESIGN.md "Custody").

A journaled producer writes the identity (producer id, epoch, base sequence, serials) of
every batch before sending it; a new producer on the journal re-sends those batches as
exactly the same idempotent batches, so the broker recognises the ones it wrote before
the crash: no duplicate in the topic, and ``replay_stats()`` says how many were proven.
Where the broker cannot tell any more (it remembers five batches per producer and
partition, or lost the producer's state), the records are sent again, never dropped, and
counted as unproven.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from _custody_support import FAST, one_broker
from _produce_readback import read_topic
from test_custody_crash import Child

from pykaf._producer._async_producer import AsyncProducer
from pykaf._producer._producer import Producer
from pykaf._producer._replay_identity import ReplayPlan, ReplayStats, ReplayTally
from pykaf._producer.journal import Identity, JournalRecord
from pykaf.broker import BlockingCluster

ACKED_CHILD = Path(__file__).with_name("_dedup_child.py")
UNKNOWN_PRODUCER_ID = 59
OUT_OF_ORDER_SEQUENCE_NUMBER = 45


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with one_broker(3) as running:
        yield running


def kill_while_answers_are_held(cluster: BlockingCluster, directory: Path) -> list[int]:
    """A journal_sync child produces while the broker writes its batches but holds every
    answer; SIGKILL; then the answers go (to nobody). Returns the values it was told
    are in custody."""
    child = Child(directory, cluster.bootstrap)
    hold = cluster.faults.hold_responses("Produce")
    try:
        child.go()
        returned = child.read_returned(300)
    finally:
        child.kill()
        hold.release()
    assert len(returned) >= 300
    return returned


def reopen(bootstrap: str, directory: Path) -> tuple[dict[tuple[str, int], int], ReplayStats]:
    """A new producer on the journal replays, takes one new record for partition 0 (it
    must land after every replayed one), flushes, closes; returns (recovered, stats)."""
    replayed: list[BaseException | None] = []
    with Producer(
        bootstrap,
        custody="journal_sync",
        journal_dir=directory,
        on_replayed_delivery=lambda m, e: replayed.append(e),
        **FAST,
    ) as producer:
        recovered = producer.recovered()
        producer.produce("t", b"new", partition=0)  # queued behind the replay
        assert producer.flush(60) == 0
        stats = producer.replay_stats()
    assert replayed == [None] * sum(recovered.values())
    assert read_topic(bootstrap, "t")[0][-1].value == b"new"
    return recovered, stats


def counted(bootstrap: str, prefix: bytes) -> Counter[int]:
    """How often each value ``<prefix><n>`` is in topic "t"; order per partition checked."""
    counts: Counter[int] = Counter()
    for records in read_topic(bootstrap, "t").values():
        numbers = [int(r.value[1:]) for r in records if r.value and r.value.startswith(prefix)]
        first_seen = list(dict.fromkeys(numbers))
        assert first_seen == sorted(first_seen)
        counts.update(numbers)
    return counts


def check_held_replay(bootstrap: str, returned: list[int], stats: ReplayStats) -> int:
    """Nothing lost; every count accounted for; returns the duplicates in the topic."""
    counts = counted(bootstrap, b"c")
    assert [n for n in returned if counts[n] == 0] == []
    assert stats.settled
    assert stats.failed == 0
    assert stats.recovered == stats.proven + stats.resent_unproven + stats.unsent
    assert stats.proven > 0  # the batches the broker wrote before the kill
    assert stats.unsent > 0  # queued behind them, never sent: sent as new records
    return sum(n - 1 for n in counts.values())


def test_a_replay_after_sigkill_is_deduplicated_by_the_broker(
    cluster: BlockingCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    returned = kill_while_answers_are_held(cluster, tmp_path)
    with caplog.at_level(logging.INFO, logger="pykaf.producer.journal"):
        _, stats = reopen(cluster.bootstrap, tmp_path)
    duplicates = check_held_replay(cluster.bootstrap, returned, stats)
    assert duplicates == 0
    assert stats.resent_unproven == 0
    [line] = [r for r in caplog.records if "replay finished" in r.getMessage()]
    assert line.levelno == logging.INFO
    assert f"{stats.proven} re-sent as the same idempotent batches" in line.getMessage()


def test_the_async_producer_replays_the_same_batches(
    cluster: BlockingCluster, tmp_path: Path
) -> None:
    returned = kill_while_answers_are_held(cluster, tmp_path)

    async def replay() -> ReplayStats:
        async with AsyncProducer(
            cluster.bootstrap, custody="journal", journal_dir=tmp_path, **FAST
        ) as producer:
            assert await producer.flush(60) == 0
            return producer.replay_stats()

    stats = asyncio.run(replay())
    assert check_held_replay(cluster.bootstrap, returned, stats) == 0
    assert stats.resent_unproven == 0


def test_a_broker_that_lost_the_producer_state_gets_the_records_again_counted(
    cluster: BlockingCluster, tmp_path: Path
) -> None:
    returned = kill_while_answers_are_held(cluster, tmp_path)
    # The first replayed request is refused as from a producer the broker does not know
    # (its batches are in the log all the same): those records cannot be proven delivered.
    cluster.faults.push_errors("Produce", [UNKNOWN_PRODUCER_ID])
    _, stats = reopen(cluster.bootstrap, tmp_path)
    duplicates = check_held_replay(cluster.bootstrap, returned, stats)
    assert stats.resent_unproven > 0
    assert duplicates == stats.resent_unproven  # sent again, so written twice: counted


def kill_after_acknowledgements(bootstrap: str, directory: Path, count: int) -> None:
    """``_dedup_child``: ``count`` acknowledged batches of partition 0, no DONE entry."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen(
        [sys.executable, str(ACKED_CHILD), str(directory), bootstrap, str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "acked"
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def test_batches_older_than_the_five_the_broker_remembers_are_sent_again_counted(
    cluster: BlockingCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kill_after_acknowledgements(cluster.bootstrap, tmp_path, 7)
    with caplog.at_level(logging.INFO, logger="pykaf.producer.journal"):
        recovered, stats = reopen(cluster.bootstrap, tmp_path)
    [line] = [r for r in caplog.records if "replay finished" in r.getMessage()]
    assert line.levelno == logging.WARNING
    assert "2 could not be proven delivered and were sent again" in line.getMessage()
    assert recovered == {("t", 0): 7}
    # Kafka keeps the last five batches per producer and partition: those are proven;
    # the two before them get OUT_OF_ORDER_SEQUENCE_NUMBER and go again (duplicates).
    assert (stats.proven, stats.resent_unproven, stats.unsent, stats.failed) == (5, 2, 0, 0)
    counts = counted(cluster.bootstrap, b"a")
    assert sorted(counts.items()) == [(0, 2), (1, 2), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1)]


def test_deduplication_holds_across_a_broker_restart(tmp_path: Path) -> None:
    data = tmp_path / "broker"
    journal = tmp_path / "journal"
    with BlockingCluster(brokers=1, data_dir=data) as first:
        first.create_topic("t", 1)
        kill_after_acknowledgements(first.bootstrap, journal, 4)
    # The broker's producer state comes back from its log: the replay is recognised.
    with BlockingCluster(brokers=1, data_dir=data) as second:
        recovered, stats = reopen(second.bootstrap, journal)
        assert recovered == {("t", 0): 4}
        assert (stats.proven, stats.resent_unproven, stats.settled) == (4, 0, True)
        assert counted(second.bootstrap, b"a") == Counter({0: 1, 1: 1, 2: 1, 3: 1})


def test_a_memory_producer_reports_no_replay(cluster: BlockingCluster) -> None:
    with Producer(cluster.bootstrap, **FAST) as producer:
        stats = producer.replay_stats()
    assert stats == ReplayStats(
        recovered=0, proven=0, resent_unproven=0, unsent=0, failed=0, settled=True
    )


class FakeAccumulator:
    """What ``ReplayPlan`` uses of the journaled accumulator: records what it is given."""

    def __init__(self, limit: int = 1 << 20) -> None:
        self.buffer_limit = limit
        self.taken: list[tuple[list[int], int | None]] = []  # (serials, base sequence)

    def replay(self, rec: JournalRecord, report: object, *, block: bool) -> None:
        self.taken.append(([rec.serial], None))

    def replay_batch(
        self,
        records: list[JournalRecord],
        identity: Identity,
        report: object,
        tally: ReplayTally,
        *,
        block: bool,
    ) -> None:
        self.taken.append(([r.serial for r in records], identity.base_sequence))


def test_the_plan_rebuilds_each_journaled_batch_from_interleaved_partitions() -> None:
    # Partition 0: serials 0, 2 (batch seq 7), 4, 6 (batch seq 9), then 8 never sent;
    # partition 1: 1, 3, 5, 7 never sent. Recovery found 0..8; 9 is this producer's own.
    def rec(serial: int) -> JournalRecord:
        return JournalRecord(serial, "t", serial % 2, 0, None, b"v", [])

    batches = {("t", 0): (Identity("t", 0, 4, 0, 7, 0, 2, 2), Identity("t", 0, 4, 0, 9, 4, 6, 2))}
    tally = ReplayTally("j", 9)
    plan = ReplayPlan(batches, tally, 9)
    accumulator = FakeAccumulator()
    for serial in range(10):
        for unit in plan.take(rec(serial), accumulator):
            plan.put(accumulator, unit, None, block=True)
    assert accumulator.taken == [
        ([1], None),
        ([0, 2], 7),
        ([3], None),
        ([5], None),
        ([4, 6], 9),
        ([7], None),
        ([8], None),
        ([9], None),
    ]
    # The batches count once the broker answers; lone records count as they go back.
    assert tally.snapshot() == ReplayStats(
        recovered=9, proven=0, resent_unproven=0, unsent=5, failed=0, settled=False
    )


def test_a_journaled_batch_larger_than_memory_goes_as_lone_records_unproven() -> None:
    records = [JournalRecord(s, "t", 0, 0, None, b"v" * 100, []) for s in range(3)]
    tally = ReplayTally("j", 3)
    plan = ReplayPlan({("t", 0): (Identity("t", 0, 4, 0, 0, 0, 2, 3),)}, tally, 3)
    accumulator = FakeAccumulator(limit=200)
    for one in records:
        for unit in plan.take(one, accumulator):
            plan.put(accumulator, unit, None, block=True)
    assert accumulator.taken == [([0], None), ([1], None), ([2], None)]
    assert tally.snapshot().resent_unproven == 3
    assert tally.snapshot().settled


def test_a_feed_pass_tried_again_holds_each_record_of_a_batch_once() -> None:
    # A feed pass that fails after the plan held part of a batch is tried again from the
    # first record not put back: the held records come again, and are held once.
    records = [JournalRecord(s, "t", 0, 0, None, b"v", []) for s in range(3)]
    plan = ReplayPlan({("t", 0): (Identity("t", 0, 4, 0, 5, 0, 2, 3),)}, ReplayTally("j", 3), 3)
    accumulator = FakeAccumulator()
    for serial in (0, 1, 0, 1, 2):  # the first pass failed after holding 0 and 1
        for unit in plan.take(records[serial], accumulator):
            plan.put(accumulator, unit, None, block=True)
    assert accumulator.taken == [([0, 1, 2], 5)]
