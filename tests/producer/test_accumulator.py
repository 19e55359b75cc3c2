"""The accumulator: appends, readiness with an injected clock, drain per broker, memory."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest

from pykaf._errors import BufferFullError, ProducerClosedError, RecordTooLargeError
from pykaf._producer._accumulator import Accumulator
from pykaf._producer._batches import (
    RECORD_OVERHEAD,
    Batch,
    PartitionQueue,
    TopicUnknownError,
    split_batch,
)
from pykaf._producer._delivery import ProducerRecord
from pykaf._producer._settings import ProducerSettings
from pykaf._producer._topic_table import CAP_KEPT
from pykaf.protocol import BATCH_OVERHEAD, decode_batches
from pykaf.protocol._records import encode_batch


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(
    leaders: Sequence[int] = (1, 1, 2, 2), clock: Clock | None = None, **options: Any
) -> tuple[Accumulator, Clock, list[int]]:
    clock = clock or Clock()
    acc = Accumulator(ProducerSettings.from_options(options), clock=clock, wall_ms=lambda: 1_000)
    wakes: list[int] = []
    acc.wake = lambda: wakes.append(1)
    acc.set_topic("t", list(leaders))
    return acc, clock, wakes


def yes(part: PartitionQueue, batch: Batch) -> bool:
    return True


def queued(acc: Accumulator, partition: int) -> list[Batch]:
    topic = acc.topic("t")
    assert topic is not None
    return list(topic.parts[partition].batches)


def test_records_go_where_asked_and_keep_order() -> None:
    acc, _, _ = make()
    for i in range(5):
        acc.append("t", b"v%d" % i, b"k", partition=2)
    (batch,) = queued(acc, 2)
    assert [r[1] for r in batch.records] == [b"v0", b"v1", b"v2", b"v3", b"v4"]
    assert batch.records[0] == (b"k", b"v0", None, None)
    assert not queued(acc, 0)


def test_values_are_normalised_and_checked() -> None:
    acc, _, _ = make()
    acc.append("t", "text", bytearray(b"key"), partition=0, headers={"h": "x", "n": None})
    acc.append("t", memoryview(b"mv"), partition=0, headers=[("a", b"1")], timestamp=5)
    acc.append("t", None, partition=0)
    records = queued(acc, 0)[0].records
    assert records[0] == (b"key", b"text", [("h", b"x"), ("n", None)], None)
    assert records[1] == (None, b"mv", [("a", b"1")], 5)
    assert records[2] == (None, None, None, None)
    with pytest.raises(TypeError, match="value must be bytes"):
        acc.append("t", 12, partition=0)
    with pytest.raises(TypeError, match="header name"):
        acc.append("t", b"v", partition=0, headers=[(1, b"x")])
    with pytest.raises(TypeError, match="headers must be"):
        acc.append("t", b"v", partition=0, headers="h")
    with pytest.raises(ValueError, match="timestamp must be >= 0"):
        acc.append("t", b"v", partition=0, timestamp=-5)
    with pytest.raises(TypeError, match="timestamp"):
        acc.append("t", b"v", partition=0, timestamp=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"partition 4 is not in 0\.\.3"):
        acc.append("t", b"v", partition=4)
    with pytest.raises(TypeError, match="on_delivery must be a function"):
        acc.append("t", b"v", partition=0, on_delivery=42)
    assert len(records) == 3  # the refused ones took nothing


def test_batches_fill_by_size_and_a_full_one_wakes_the_loop() -> None:
    value = b"x" * 100
    per_record = RECORD_OVERHEAD + len(value)
    acc, _, wakes = make(batch_size=BATCH_OVERHEAD + 3 * per_record, linger=10)
    for _ in range(7):
        acc.append("t", value, partition=1)
    batches = queued(acc, 1)
    assert [len(b.records) for b in batches] == [3, 3, 1]
    assert [b.sealed for b in batches] == [True, True, False]
    # First batch: a linger timer to start; each sealed batch: ready. Coalesced: the
    # loop has not looked yet, so one wakeup stands for all.
    assert len(wakes) == 1
    acc.ready(100.0)  # the loop looks: the next one wakes again
    acc.append("t", value, partition=1)
    acc.append("t", value, partition=1)
    acc.append("t", value, partition=1)
    assert len(wakes) == 2


def test_a_record_larger_than_batch_size_gets_its_own_batch() -> None:
    acc, _, _ = make(batch_size=200)
    acc.append("t", b"small", partition=0)
    acc.append("t", b"x" * 1000, partition=0)
    acc.append("t", b"small", partition=0)
    assert [len(b.records) for b in queued(acc, 0)] == [1, 1, 1]


def test_record_too_large_fails_at_once() -> None:
    acc, _, _ = make(max_request_size=1000)
    with pytest.raises(RecordTooLargeError, match="max_request_size"):
        acc.append("t", b"x" * 1000, partition=0)
    # Just under the limit once encoded: taken.
    exact = len(encode_batch([(None, b"", None, None)], producer_id=0, producer_epoch=0))
    acc.append("t", b"x" * (1000 - exact - 3), partition=0)
    assert queued(acc, 0)
    acc2, _, _ = make(buffer_memory=500, batch_size=100)
    with pytest.raises(RecordTooLargeError, match="buffer_memory"):
        acc2.append("t", b"x" * 600, partition=0)


def test_linger_readiness_with_the_clock() -> None:
    acc, clock, wakes = make(linger=0.5)
    acc.append("t", b"a", partition=0)
    acc.append("t", b"b", partition=2)
    assert len(wakes) == 1  # a linger timer must start
    state = acc.ready(clock.now)
    assert state.nodes == set()
    assert state.next_at == pytest.approx(100.5)
    # A batch due later than the armed timer needs no wakeup.
    clock.now = 100.2
    acc.append("t", b"c", partition=1)
    assert len(wakes) == 1
    clock.now = 100.5
    state = acc.ready(clock.now)
    assert state.nodes == {1, 2}
    assert state.next_at == pytest.approx(100.7)  # partition 1's batch


def test_linger_zero_is_ready_at_once() -> None:
    acc, clock, wakes = make(linger=0)
    acc.append("t", b"a", partition=0)
    assert wakes == [1]
    assert acc.ready(clock.now).nodes == {1}


def test_drain_per_broker_one_batch_per_partition() -> None:
    acc, clock, _ = make(linger=0, batch_size=BATCH_OVERHEAD + 2 * (RECORD_OVERHEAD + 1))
    for p in range(4):
        for _ in range(4):
            acc.append("t", b"x", partition=p)
    drained = acc.drain(1, clock.now, 10**6, yes)
    assert sorted(b.partition for b in drained) == [0, 1]
    assert all(len(b.records) == 2 for b in drained)
    again = acc.drain(1, clock.now, 10**6, yes)
    assert sorted(b.partition for b in again) == [0, 1]
    assert acc.drain(1, clock.now, 10**6, yes) == []
    assert sorted(b.partition for b in acc.drain(2, clock.now, 10**6, yes)) == [2, 3]


def test_drain_respects_max_bytes_but_takes_one() -> None:
    acc, clock, _ = make(linger=0)
    for p in range(4):
        acc.append("t", b"x" * 100, partition=p)
    first = acc.drain(1, clock.now, 1, yes)
    assert len(first) == 1
    assert len(acc.drain(1, clock.now, 1, yes)) == 1


def test_drain_waits_for_linger_unless_flushing() -> None:
    acc, clock, _ = make(linger=1.0)
    acc.append("t", b"x", partition=0)
    assert acc.drain(1, clock.now, 10**6, yes) == []
    target = acc.begin_flush()
    assert len(acc.drain(1, clock.now, 10**6, yes)) == 1
    acc.end_flush()
    assert target == 1


def test_drain_holds_partitions_back() -> None:
    acc, clock, _ = make(linger=0)
    for p in range(2):
        acc.append("t", b"x", partition=p)
    topic = acc.topic("t")
    assert topic is not None
    p0, p1 = topic.parts[0], topic.parts[1]
    # In flight to another broker (the leader moved): wait for those to come back.
    p0.in_flight, p0.in_flight_node = 1, 2
    # A batch waits to be retried: nothing behind it may overtake.
    p1.returned.append(queued(acc, 1)[0])
    assert acc.drain(1, clock.now, 10**6, yes) == []
    p1.returned.clear()
    p1.retry_at = clock.now + 1  # backing off
    assert acc.drain(1, clock.now, 10**6, yes) == []
    p1.retry_at = 0
    p0.in_flight_node = 1
    p0.in_flight = 5  # the per-partition limit
    assert [b.partition for b in acc.drain(1, clock.now, 10**6, yes)] == [1]
    p0.in_flight = 1
    assert [b.partition for b in acc.drain(1, clock.now, 10**6, yes)] == [0]


def test_gate_can_hold_a_batch_back() -> None:
    acc, clock, _ = make(linger=0)
    acc.append("t", b"x", partition=0)
    acc.append("t", b"x", partition=1)
    drained = acc.drain(1, clock.now, 10**6, lambda part, batch: part.index == 1)
    assert [b.partition for b in drained] == [1]
    assert len(queued(acc, 0)) == 1


def test_put_back_keeps_order() -> None:
    acc, clock, _ = make(linger=0, batch_size=BATCH_OVERHEAD + RECORD_OVERHEAD + 1)
    for i in range(3):
        acc.append("t", b"%d" % i, partition=0)
    b1 = acc.drain(1, clock.now, 10**6, yes)[0]
    b2 = acc.drain(1, clock.now, 10**6, yes)[0]
    topic = acc.topic("t")
    assert topic is not None
    acc.put_back(topic.parts[0], [b2, b1])
    assert [b.records[0][1] for b in queued(acc, 0)] == [b"0", b"1", b"2"]


def test_expired_batches_are_taken_out() -> None:
    acc, clock, _ = make(linger=10, delivery_timeout=30, request_timeout=5)
    acc.append("t", b"x", partition=0)
    clock.now += 29
    acc.append("t", b"y", partition=2)
    assert acc.ready(clock.now).expired == []
    clock.now += 1
    state = acc.ready(clock.now)
    assert [b.partition for b in state.expired] == [0]
    assert not queued(acc, 0)
    assert len(queued(acc, 2)) == 1


def test_unknown_topic() -> None:
    acc, _, _ = make()
    with pytest.raises(TopicUnknownError):
        acc.append("other", b"x")
    fetched: list[str] = []

    def fetch(topic: str) -> None:
        fetched.append(topic)
        acc.set_topic(topic, [1, 2])

    acc.fetch_topic = fetch
    acc.append("other", b"x", partition=1)
    assert fetched == ["other"]
    with pytest.raises(TypeError, match="topic must be a non-empty str"):
        acc.append("", b"x")


def test_memory_blocks_then_raises() -> None:
    size = BATCH_OVERHEAD + 100
    acc, _, _ = make(batch_size=size, buffer_memory=2 * size)
    acc.max_block = 0.0
    acc.append("t", b"a", partition=0)
    acc.append("t", b"b", partition=1)
    assert acc.used == 2 * size
    with pytest.raises(BufferFullError, match="buffer_memory is full"):
        acc.append("t", b"c", partition=2)
    # A record that fits an open batch needs no new memory.
    acc.append("t", b"d", partition=0)


def test_a_blocked_append_goes_on_when_memory_frees() -> None:
    size = BATCH_OVERHEAD + 100
    acc, clock, _ = make(batch_size=size, buffer_memory=size, linger=0)
    acc.max_block = 30.0
    acc.append("t", b"a", partition=0)
    done = threading.Event()
    errors: list[BaseException] = []

    def blocked() -> None:
        try:
            acc.append("t", b"b", partition=2)
        except BaseException as exc:
            errors.append(exc)
        done.set()

    thread = threading.Thread(target=blocked)
    thread.start()
    assert not done.wait(0.05)  # waiting for memory, not done
    batch = acc.drain(1, clock.now, 10**6, yes)[0]
    acc.complete([batch])
    assert done.wait(10)
    thread.join(10)
    assert errors == []
    assert len(queued(acc, 2)) == 1


def test_close_fails_appends_and_waiters() -> None:
    acc, _, _ = make()
    acc.close()
    with pytest.raises(ProducerClosedError):
        acc.append("t", b"x")


class RecordingPartitioner:
    """Sticky on a fixed sequence of partitions, recording on_new_batch calls."""

    name = "test"

    def __init__(self) -> None:
        self.current = 0
        self.calls: list[int] = []

    def partition(
        self, topic: str, key: bytes | None, partition_count: int, available: Sequence[int]
    ) -> int:
        return self.current

    def on_new_batch(
        self, topic: str, partition_count: int, available: Sequence[int], previous: int
    ) -> None:
        self.calls.append(previous)
        if previous == self.current:
            self.current = (self.current + 1) % partition_count


def test_sticky_partitioner_moves_on_new_batch() -> None:
    value = b"x" * 10
    acc, _, _ = make(batch_size=BATCH_OVERHEAD + 2 * (RECORD_OVERHEAD + len(value)))
    topic = acc.topic("t")
    assert topic is not None
    part = RecordingPartitioner()
    topic.partitioner = part
    for _ in range(5):
        acc.append("t", value)
    # Record 1 opens a batch: the strategy is told (previous=0) and moves to 1.
    # Records 1-2 fill partition 1; record 3 finds it full: told again, moves to 2.
    assert part.calls == [0, 1, 2]
    assert [len(b.records) for b in queued(acc, 1)] == [2]
    assert [len(b.records) for b in queued(acc, 2)] == [2]
    assert [len(b.records) for b in queued(acc, 3)] == [1]
    # An explicit partition never involves the strategy.
    acc.append("t", value, partition=0)
    assert part.calls == [0, 1, 2]


def test_default_sticky_keyless_records_share_a_batch() -> None:
    acc, _, _ = make(leaders=[1] * 6)
    for _ in range(50):
        acc.append("t", b"x")
    used = [p for p in range(6) if queued(acc, p)]
    assert len(used) == 1


def test_keyed_records_follow_murmur2() -> None:
    from pykaf._producer._partitioner import murmur2_partition

    acc, _, _ = make(leaders=[1] * 12)
    for i in range(100):
        acc.append("t", b"v", b"key-%d" % i)
    for p in range(12):
        for batch in queued(acc, p):
            for key, *_ in batch.records:
                assert murmur2_partition(key, 12) == p


def test_append_many_takes_every_item_kind() -> None:
    acc, _, _ = make(leaders=[1])
    items: list[Any] = [
        b"v0",
        "v1",
        (b"k", b"v2"),
        {"value": b"v3", "key": "k3", "headers": {"h": b"1"}, "timestamp": 7},
        ProducerRecord(value=b"v4", partition=0),
    ]
    acc.append_many("t", items)
    records = queued(acc, 0)[0].records
    assert records == [
        (None, b"v0", None, None),
        (None, b"v1", None, None),
        (b"k", b"v2", None, None),
        (b"k3", b"v3", [("h", b"1")], 7),
        (None, b"v4", None, None),
    ]
    taken = [0]
    with pytest.raises(TypeError):
        acc.append_many("t", [b"a", b"b", 12, b"c"], taken=taken)
    assert taken == [2]
    with pytest.raises(ValueError, match="a record for topic 'x'"):
        acc.append_many("t", [ProducerRecord(topic="x", value=b"v")])


def test_reports_are_kept_only_where_given() -> None:
    acc, _, _ = make(leaders=[1])

    def callback(metadata: object, error: object) -> None:
        return None

    acc.append("t", b"a")
    acc.append("t", b"b", on_delivery=callback)
    acc.append("t", b"c")
    batch = queued(acc, 0)[0]
    assert batch.reports == [(1, callback)]


def test_flush_bookkeeping() -> None:
    acc, clock, _ = make(linger=0, leaders=[1, 1], batch_size=BATCH_OVERHEAD + 20)
    acc.append("t", b"a", partition=0)
    acc.append("t", b"b", partition=1)
    target = acc.begin_flush()
    acc.append("t", b"c" * 10, partition=0)  # after the flush began: a new batch
    assert acc.pending(target) == 2
    assert acc.pending() == 3
    drained = acc.drain(1, clock.now, 10**6, yes)
    assert len(drained) == 2
    acc.complete(drained)
    acc.end_flush()
    assert acc.done_up_to(target)
    assert acc.pending(target) == 0
    assert acc.pending() == 1
    assert not acc.done_up_to(target + 1)


def test_encoded_batches_round_trip() -> None:
    # What the accumulator keeps is exactly what the encoder takes.
    acc, _, _ = make(leaders=[1])
    acc.append("t", b"v", b"k", headers=[("h", b"x")], timestamp=123)
    batch = queued(acc, 0)[0]
    data = encode_batch(batch.records, now_ms=batch.created_ms)
    (decoded,) = decode_batches(data)
    assert decoded.records[0].key == b"k"
    assert decoded.records[0].timestamp == 123


def test_metadata_updates_move_partitions_between_brokers() -> None:
    acc, clock, _ = make(linger=0, leaders=[1, 2])
    acc.append("t", b"x", partition=0)
    assert acc.ready(clock.now).nodes == {1}
    assert acc.set_topic("t", [2, 2]) is True
    assert acc.set_topic("t", [2, 2]) is False
    assert acc.ready(clock.now).nodes == {2}
    assert acc.drain(1, clock.now, 10**6, yes) == []
    assert len(acc.drain(2, clock.now, 10**6, yes)) == 1
    acc.append("t", b"x", partition=1)
    acc.set_topic("t", [2, -1])
    state = acc.ready(clock.now)
    assert state.unled == {"t"}
    assert state.nodes == set()


def test_by_default_a_batch_holds_a_quarter_mebibyte_of_1_kib_records() -> None:
    # The default batch_size (256 KiB): 1 KiB records in 16 KiB batches (the Java
    # client's default) cost 40% of the producer's throughput (benchmarks/custody.py).
    value = b"x" * 1024
    acc, _, _ = make(leaders=[1, 1])
    for _ in range(240):
        acc.append("t", value, partition=0)
    (batch,) = queued(acc, 0)
    assert len(batch.records) == 240
    for _ in range(20):  # past 256 KiB: a second batch opens
        acc.append("t", value, partition=0)
    first, second = queued(acc, 0)
    assert len(first.records) + len(second.records) == 260
    assert 250 <= len(first.records) < 256
    assert acc.used <= 2 * 256 * 1024


def test_a_cap_learnt_from_a_refusal_is_lifted_at_a_metadata_answer_minutes_later() -> None:
    # A topic's max.message.bytes may be raised: the cap a refusal taught is tried
    # again at the first metadata answer CAP_KEPT seconds on (and learnt again if the
    # limit is still low), not kept for the producer's life.
    acc, clock, _ = make(leaders=[1, 1])
    topic = acc.topic("t")
    assert topic is not None
    assert acc.refused_as_too_large("t", 200_000) == 100_000
    assert (topic.batch_limit, topic.reserve) == (100_000, 16384)
    clock.now += CAP_KEPT - 1
    acc.set_topic("t", [1, 1])
    assert topic.batch_limit == 100_000
    clock.now += 1
    acc.set_topic("t", [1, 1])
    assert (topic.batch_limit, topic.reserve) == (256 * 1024, 16384)


def test_a_large_batch_size_reserves_memory_as_the_batch_fills() -> None:
    value = b"x" * 1000
    acc, _, _ = make(batch_size=100_000, buffer_memory=40_000, leaders=[1, 1])
    acc.max_block = 0.0
    acc.append("t", value, partition=0)
    assert acc.used == 16384  # one step, not batch_size
    for _ in range(20):
        acc.append("t", value, partition=0)
    assert acc.used == 2 * 16384  # grew a step as it filled
    for _ in range(11):  # 32 records: still within the reservation
        acc.append("t", value, partition=0)
    assert acc.used == 2 * 16384
    assert len(queued(acc, 0)) == 1
    # No memory left to grow: the batch is closed, and a new one cannot open.
    with pytest.raises(BufferFullError):
        acc.append("t", value, partition=0)
    (batch,) = queued(acc, 0)
    assert batch.sealed
    assert len(batch.records) == 32


def test_split_halves_keep_order_reports_and_sequences() -> None:
    acc, _, _ = make()
    reports = [object() for _ in range(5)]
    for i in range(5):
        acc.append("t", b"v%d" % i, partition=0, headers=[("h", b"x")], on_delivery=print)
    (batch,) = queued(acc, 0)
    batch.reports = [(0, reports[0]), (3, reports[3]), (4, reports[4])]
    batch.base_sequence = 2**31 - 2  # the second half wraps, as Kafka's sequences do
    batch.identity = identity = object()
    batch.attempts = 1
    first, second = split_batch(batch)
    assert [r[1] for r in first.records] == [b"v0", b"v1"]
    assert [r[1] for r in second.records] == [b"v2", b"v3", b"v4"]
    assert first.reports == [(0, reports[0])]
    assert second.reports == [(1, reports[3]), (2, reports[4])]
    assert (first.base_sequence, second.base_sequence) == (2**31 - 2, 0)
    assert [half.identity for half in (first, second)] == [identity, identity]
    assert [half.parent for half in (first, second)] == [batch, batch]
    assert batch.children_left == 2
    assert first.serial == second.serial == batch.serial
    assert [(half.sealed, half.encoded) for half in (first, second)] == [(True, None)] * 2
    assert first.size + second.size == batch.size + BATCH_OVERHEAD
    assert first.reserved == second.reserved == 0  # the whole keeps the memory
