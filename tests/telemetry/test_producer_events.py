"""The producer's telemetry events (issue 15), with real values: batches sent and
acknowledged add up to what a reader finds, at the offsets it finds them; a NOT_LEADER
answer is a retried batch; an outage is downtime began/ended with the records saved, and
a journal's replay; the buffer's fill is told by tenths, never per record."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from producer._produce_readback import read_topic

from pykaf._producer._async_producer import AsyncProducer
from pykaf._producer._producer import Producer
from pykaf.broker import BlockingCluster
from pykaf.events import (
    BatchAcknowledged,
    BatchRetried,
    BatchSent,
    BufferFill,
    DowntimeBegan,
    DowntimeEnded,
    Event,
    JournalFill,
    ReplayFinished,
    ReplayStarted,
)

NOT_LEADER_OR_FOLLOWER = 6
# Outage bounds: the producer notices a broker gone at once, records wait for it.
OUTAGE: dict[str, Any] = {
    "request_timeout": 0.5,
    "delivery_timeout": 30.0,
    "max_block": 10.0,
    "linger": 0.002,
    "retry_backoff_max": 0.1,
}
PAD = bytes(1000)


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=1) as running:
        running.create_topic("t", 3)
        yield running


def listen(producer: Producer) -> list[Event]:
    """Every event the producer emits from now on, in order."""
    events: list[Event] = []
    producer.events.subscribe(events.append)
    return events


def wait_until(condition: Callable[[], bool], bound: float) -> None:
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def of(events: list[Event], kind: type[Any]) -> list[Any]:
    return [e for e in list(events) if isinstance(e, kind)]


def test_sent_and_acknowledged_batches_add_up_to_what_a_reader_finds(
    cluster: BlockingCluster,
) -> None:
    count = 3000
    events: list[Event] = []
    with Producer(
        cluster.bootstrap, compression="gzip", linger=0.01, on_event=events.append
    ) as producer:
        for i in range(count):
            producer.produce("t", b"reading %05d " % i + b"abc" * 40, partition=i % 3)
        assert producer.flush(30) == 0
    written = read_topic(cluster.bootstrap, "t")
    sent, acked = of(events, BatchSent), of(events, BatchAcknowledged)
    for partition, records in written.items():
        assert len(records) == count // 3
        mine = [e for e in sent if e.partition == partition]
        assert sum(e.records for e in mine) == len(records)
        # Compressible values, gzip: the batches are smaller than their records.
        assert all(0 < e.compression_ratio < 1 and e.bytes > 0 for e in mine)
        assert all(e.topic == "t" and e.broker == 1 and e.attempt == 1 for e in mine)
        ranges = sorted((e.base_offset, e.records) for e in acked if e.partition == partition)
        offsets = [base + n for base, count_ in ranges for n in range(count_)]
        assert offsets == [r.offset for r in records]
        assert all(e.latency >= 0 for e in acked)


def test_a_not_leader_answer_is_a_retried_batch_with_the_error_name(
    cluster: BlockingCluster,
) -> None:
    with Producer(cluster.bootstrap, retry_backoff=0.01) as producer:
        producer.send("t", b"warm", partition=0).result(30)
        events = listen(producer)
        cluster.faults.push_errors("Produce", [NOT_LEADER_OR_FOLLOWER])
        metadata = producer.send("t", b"moved", partition=0).result(30)
    [retried] = of(events, BatchRetried)
    assert (retried.topic, retried.partition, retried.records) == ("t", 0, 1)
    assert retried.error == "NotLeaderOrFollowerError"
    assert retried.attempt == 1
    assert [e.attempt for e in of(events, BatchSent)] == [1, 2]
    [acked] = of(events, BatchAcknowledged)
    assert acked.base_offset == metadata.offset == 1


def one_downtime(events: list[Event]) -> DowntimeEnded:
    """The one downtime the events tell: began, then ended (returned)."""
    kinds = [type(e) for e in events if isinstance(e, DowntimeBegan | DowntimeEnded)]
    assert kinds == [DowntimeBegan, DowntimeEnded]
    ended: DowntimeEnded = of(events, DowntimeEnded)[0]
    return ended


def outage(cluster: BlockingCluster, producer: Producer, events: list[Event], saved: int) -> None:
    """Warm the producer, take the broker down until the producer says so, produce
    ``saved`` records meanwhile, bring it back and flush."""
    producer.send("t", b"warm", partition=0).result(30)
    cluster.faults.broker_down(1)
    for i in range(30):
        producer.produce("t", b"before %d" % i, partition=i % 3)
    wait_until(lambda: bool(of(events, DowntimeBegan)), 20)
    for i in range(saved):
        producer.produce("t", b"saved %05d" % i + PAD, partition=i % 3)
    time.sleep(0.05)  # a measurable downtime, whatever the machine's speed
    cluster.faults.broker_up(1)
    assert producer.flush(60) == 0


def test_an_outage_of_a_journaled_producer_is_downtime_saved_and_replayed(
    cluster: BlockingCluster, tmp_path: Path
) -> None:
    # A small buffer: what is produced while down waits in the journal, then replays.
    journal_limit = 1 << 20
    options = {
        **OUTAGE,
        "buffer_memory": 128 * 1024,
        "journal_max_bytes": journal_limit,
        "journal_segment_bytes": 64 * 1024,
    }
    with Producer(
        cluster.bootstrap, custody="journal", journal_dir=tmp_path, **options
    ) as producer:
        events = listen(producer)
        outage(cluster, producer, events, 400)
    ended = one_downtime(events)
    assert ended.records_saved == 400
    assert ended.seconds > 0
    started, finished = of(events, ReplayStarted), of(events, ReplayFinished)
    assert started
    assert finished
    assert events.index(started[0]) < events.index(finished[-1])
    assert started[0].records > 0
    assert sum(e.records for e in finished) >= started[0].records
    assert sum(len(rs) for rs in read_topic(cluster.bootstrap, "t").values()) == 431
    # The journal's fill, by tenths of journal_max_bytes: up while down, down once sent.
    fills = of(events, JournalFill)
    tenths = [e.used_bytes * 10 // journal_limit for e in fills]
    assert all(a != b for a, b in itertools.pairwise(tenths)), tenths
    assert max(tenths) >= 3
    assert max(e.pending_records for e in fills) >= 300
    assert all(e.limit_bytes == journal_limit for e in fills)


def test_an_outage_of_a_memory_producer_is_downtime_with_the_records_held(
    cluster: BlockingCluster,
) -> None:
    with Producer(cluster.bootstrap, **OUTAGE) as producer:
        events = listen(producer)
        outage(cluster, producer, events, 200)
    ended = one_downtime(events)
    assert ended.records_saved == 200
    assert ended.seconds > 0
    assert not of(events, ReplayStarted)  # memory has nothing to replay


def test_buffer_fill_is_told_when_it_crosses_a_tenth_never_per_record(
    cluster: BlockingCluster,
) -> None:
    limit = 512 * 1024
    with Producer(cluster.bootstrap, buffer_memory=limit, **OUTAGE) as producer:
        events = listen(producer)
        producer.send("t", b"warm", partition=0).result(30)
        cluster.faults.broker_down(1)
        produced = 0
        while producer._accumulator.used < limit * 0.7:
            producer.produce("t", PAD, partition=produced % 3)
            produced += 1
            assert produced < 2000
        wait_until(lambda: any(e.used_bytes * 10 // limit >= 6 for e in of(events, BufferFill)), 10)
        cluster.faults.broker_up(1)
        assert producer.flush(60) == 0
        wait_until(lambda: of(events, BufferFill)[-1].used_bytes < limit // 10, 10)
    fills = of(events, BufferFill)
    tenths = [e.used_bytes * 10 // limit for e in fills]
    assert all(e.limit_bytes == limit for e in fills)
    assert all(a != b for a, b in itertools.pairwise(tenths)), tenths
    assert max(tenths) >= 6
    assert tenths[-1] == 0
    assert len(fills) <= 2 * max(tenths) + 2 < produced // 10


def test_events_cost_nothing_to_a_producer_nobody_listens_to(cluster: BlockingCluster) -> None:
    # The cost rule, structurally: with no subscriber no event object is ever built.
    built: Counter[str] = Counter()
    original = BatchSent.__init__

    def counting(self: BatchSent, **fields: Any) -> None:
        built["BatchSent"] += 1
        original(self, **fields)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BatchSent, "__init__", counting)
        with Producer(cluster.bootstrap) as producer:
            for i in range(100):
                producer.produce("t", b"%d" % i)
            assert producer.flush(30) == 0
            assert built["BatchSent"] == 0
            events = listen(producer)
            producer.produce("t", b"heard")
            assert producer.flush(30) == 0
    assert built["BatchSent"] == len(of(events, BatchSent)) >= 1


async def test_the_async_producer_emits_the_same_batch_events(cluster: BlockingCluster) -> None:
    events: list[Event] = []
    async with AsyncProducer(cluster.bootstrap, on_event=events.append) as producer:
        futures = [producer.send("t", b"a%d" % i, partition=i % 3) for i in range(30)]
        await producer.flush(30)
    delivered = Counter(f.result().partition for f in futures)
    acked: Counter[int] = Counter()
    for event in of(events, BatchAcknowledged):
        acked[event.partition] += event.records
    assert acked == delivered == Counter({0: 10, 1: 10, 2: 10})
    assert sum(e.records for e in of(events, BatchSent)) == 30
