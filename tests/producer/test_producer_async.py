"""AsyncProducer against the embedded broker running in the same event loop."""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pykaf import AsyncConsumer, TopicPartition
from pykaf._errors import (
    BufferFullError,
    DeliveryError,
    KafkaTimeoutError,
    ProducerClosedError,
    RecordTooLargeError,
)
from pykaf._producer._async_producer import AsyncProducer
from pykaf._producer._batches import PYTHON_RECORD_COST, PYTHON_REPORT_COST
from pykaf._producer._delivery import ProducerRecord, RecordMetadata
from pykaf.broker import Cluster

# What a sent 300-byte record with a future holds, at least (its 500-byte batch, its
# Python objects and report, its encoded copy).
HELD_300 = 500 + PYTHON_RECORD_COST + PYTHON_REPORT_COST + 300

FAST: dict[str, Any] = {
    "request_timeout": 5.0,
    "delivery_timeout": 20.0,
    "max_block": 10.0,
    "linger": 0.002,
}


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with Cluster(brokers=3) as running:
        yield running


def log_values(cluster: Cluster, topic: str) -> dict[int, int]:
    """Records per partition, straight from the broker's logs."""
    state = cluster.state
    topic_state = state.topics[topic]
    return {p.index: p.log.high_watermark for p in topic_state.partitions}


async def test_send_produce_flush_close(cluster: Cluster) -> None:
    await cluster.create_topic("a", 3)
    seen: list[tuple[Any, Any]] = []
    async with AsyncProducer(cluster.bootstrap, **FAST) as producer:
        metadata = await producer.send("a", b"one", partition=1)
        assert metadata == RecordMetadata("a", 1, 0, metadata.timestamp)
        for i in range(1000):
            await producer.produce(
                "a", b"%d" % i, b"k%d" % (i % 10), on_delivery=lambda m, e: seen.append((m, e))
            )
        assert await producer.flush(10) == 0
        assert len(seen) == 1000
        assert all(m is not None and e is None for m, e in seen)
    assert producer.closed
    assert sum(log_values(cluster, "a").values()) == 1001
    with pytest.raises(ProducerClosedError):
        await producer.produce("a", b"late")


async def test_a_loop_of_awaited_produce_calls_gives_the_loop_turns(cluster: Cluster) -> None:
    # While the buffer has room, produce() completes without awaiting anything: a loop of
    # them held the loop (its I/O, the broker here, every other task) until
    # ``buffer_memory`` was full, 60-100 ms at a time with small records. It gives the
    # loop a turn every thousand calls now; a task counting its turns sees them.
    await cluster.create_topic("turns", 1)
    turns = 0
    counting = True

    async def count_turns() -> None:
        nonlocal turns
        while counting:
            turns += 1
            await asyncio.sleep(0)

    async with AsyncProducer(cluster.bootstrap, **{**FAST, "linger": 10.0}) as producer:
        await producer.produce("turns", b"first")  # the topic known: no call below waits
        counter = asyncio.create_task(count_turns())
        await asyncio.sleep(0)
        before = turns
        for _ in range(20_000):
            await producer.produce("turns", b"v")
        during = turns - before
        counting = False
        await counter
        assert await producer.flush(10) == 0
    assert during >= 20_000 // 2_048


async def test_produce_batch_and_futures(cluster: Cluster) -> None:
    await cluster.create_topic("b", 2)
    async with AsyncProducer(cluster.bootstrap, **FAST) as producer:
        await producer.produce_batch(
            "b",
            [b"v", (b"k", b"v"), {"value": b"d", "partition": 1}, ProducerRecord(value=b"r")],
        )
        futures = [producer.send("b", b"f%d" % i, partition=0) for i in range(100)]
        results = await asyncio.gather(*futures)
        offsets = [r.offset for r in results]
        assert offsets == sorted(offsets)
        assert len(set(offsets)) == 100
        assert await producer.flush(10) == 0
    assert sum(log_values(cluster, "b").values()) == 104


async def test_unknown_topic_waits_for_metadata_then_times_out() -> None:
    options = dict(FAST, max_block=0.3)
    async with (
        Cluster(brokers=1, auto_create_topics=False) as cluster,
        AsyncProducer(cluster.bootstrap, **options) as producer,
    ):
        with pytest.raises(KafkaTimeoutError, match="'nope' is not in the cluster metadata"):
            await producer.produce("nope", b"x")
        future = producer.send("nope", b"y")
        with pytest.raises(KafkaTimeoutError):
            await future
        # A topic created meanwhile is found.
        await cluster.create_topic("late", 1)
        assert (await producer.send("late", b"z")).offset == 0


async def test_full_buffer_waits_then_raises(cluster: Cluster) -> None:
    await cluster.create_topic("full", 1)
    # Each 300-byte record held costs ~1.2 KB of buffer_memory: its batch's 500 bytes,
    # its Python objects and future, and its encoded copy once sent.
    options = dict(FAST, buffer_memory=2500, batch_size=500, max_block=0.3, linger=0)
    async with AsyncProducer(cluster.bootstrap, **options) as producer:
        await producer.send("full", b"warm")
        hold = cluster.faults.hold_responses("Produce")
        first = producer.send("full", b"x" * 300)
        second = producer.send("full", b"y" * 300)  # fills the buffer once both are sent
        async with asyncio.timeout(10):
            while producer._accumulator.used < 2 * HELD_300:
                await asyncio.sleep(0.002)
        with pytest.raises(BufferFullError):
            await producer.produce("full", b"z" * 300)
        third = producer.send("full", b"w" * 300)  # waits in the background...
        with pytest.raises(BufferFullError):
            await third  # ...and gives up after max_block
        hold.release()
        await asyncio.gather(first, second)
        # Memory is back: appends go through again.
        await producer.send("full", b"after")


async def test_a_full_buffer_append_goes_on_when_space_frees(cluster: Cluster) -> None:
    await cluster.create_topic("frees", 1)
    options = dict(FAST, buffer_memory=1000, batch_size=500, max_block=10, linger=0)
    async with AsyncProducer(cluster.bootstrap, **options) as producer:
        hold = cluster.faults.hold_responses("Produce")
        futures = [producer.send("frees", b"%d" % i * 300) for i in range(6)]
        await hold.wait_held(1)
        hold.release()
        results = await asyncio.gather(*futures)
    # In call order: a record that waited for memory never overtakes an earlier one.
    assert [r.offset for r in results] == list(range(6))


async def test_record_too_large_raises_at_once(cluster: Cluster) -> None:
    await cluster.create_topic("big", 1)
    async with AsyncProducer(cluster.bootstrap, max_request_size=5000, **FAST) as producer:
        with pytest.raises(RecordTooLargeError):
            await producer.produce("big", b"x" * 6000)
        with pytest.raises(RecordTooLargeError):
            producer.send("big", b"x" * 6000)


async def test_close_with_every_broker_down_is_bounded(cluster: Cluster) -> None:
    await cluster.create_topic("down", 2)
    errors: list[BaseException] = []
    producer = AsyncProducer(cluster.bootstrap, on_error=lambda r, e: errors.append(e), **FAST)
    await producer.send("down", b"warm")
    for node in (1, 2, 3):
        await cluster.faults.broker_down(node)
    futures = [producer.send("down", b"%d" % i) for i in range(100)]
    for i in range(100):
        await producer.produce("down", b"ff%d" % i)
    started = time.monotonic()
    failed = await producer.close(0.5)
    assert time.monotonic() - started < 0.5 + producer.settings.client.close_timeout + 1.0
    assert failed == 200
    for future in futures:
        assert isinstance(future.exception(), ProducerClosedError)
    assert len(errors) == 100
    assert all(isinstance(e, ProducerClosedError) for e in errors)
    assert await producer.close() == 200  # idempotent


async def test_on_error_reports_fire_and_forget_failures(cluster: Cluster) -> None:
    await cluster.create_topic("bad", 1)
    errors: list[tuple[ProducerRecord, BaseException]] = []
    async with AsyncProducer(
        cluster.bootstrap, on_error=lambda r, e: errors.append((r, e)), **FAST
    ) as producer:
        await producer.send("bad", b"warm")
        cluster.faults.push_errors("Produce", [87])  # INVALID_RECORD: not retriable
        await producer.produce("bad", b"doomed", b"key", headers={"h": b"1"})
        await producer.flush(10)
    ((record, error),) = errors
    assert record == ProducerRecord(
        topic="bad", partition=0, key=b"key", value=b"doomed", headers=[("h", b"1")]
    )
    assert isinstance(error, DeliveryError)
    assert not error.maybe_persisted


async def test_close_before_use_and_lazy_connection() -> None:
    producer = AsyncProducer("nonexistent.invalid:9092", **FAST)
    assert await producer.close() == 0
    assert await producer.flush() == 0


async def test_produce_batch_past_the_room_left_waits_for_room_and_keeps_order(
    cluster: Cluster,
) -> None:
    await cluster.create_topic("runs", 1)
    options = dict(FAST, buffer_memory=64 * 1024, batch_size=4096, linger=0.001)
    async with AsyncProducer(cluster.bootstrap, **options) as producer:
        await producer.send("runs", b"warm")
        values = [b"%05d" % i + bytes(200) for i in range(2000)]  # ~7x buffer_memory
        one_at_a_time = 0
        wait = producer._wait

        def counting(*args: Any) -> None:
            nonlocal one_at_a_time
            one_at_a_time += 1
            wait(*args)

        producer._wait = counting  # type: ignore[method-assign]
        await producer.produce_batch("runs", values, partition=0)
        assert one_at_a_time == 0  # taken in runs as room frees, not item by item
        assert await producer.flush(20) == 0
    assert log_values(cluster, "runs") == {0: 2001}
    read: list[bytes] = []
    async with AsyncConsumer(cluster.bootstrap, auto_offset_reset="earliest") as consumer:
        await consumer.assign([TopicPartition("runs", 0)])
        async with asyncio.timeout(20):
            while len(read) < 2001:
                read.extend(r.value[:5] for r in await consumer.poll(1.0))
    assert read[1:] == [b"%05d" % i for i in range(2000)]


async def test_produce_batch_that_cannot_be_taken_says_how_many_were(cluster: Cluster) -> None:
    await cluster.create_topic("part", 1)
    options = dict(FAST, buffer_memory=8 * 1024, batch_size=1024, max_block=0.2, linger=0)
    async with AsyncProducer(cluster.bootstrap, **options) as producer:
        await producer.send("part", b"warm")
        hold = cluster.faults.hold_responses("Produce")
        with pytest.raises(BufferFullError) as raised:
            await producer.produce_batch("part", [bytes(300)] * 100, partition=0)
        taken = raised.value.taken
        assert taken is not None
        assert 0 < taken < 100
        hold.release()
        assert await producer.flush(20) == 0
    assert log_values(cluster, "part") == {0: 1 + taken}


async def test_an_async_callback_is_refused_or_said_not_to_run(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Callbacks run per report on the producer's loop, where nothing awaits them: an
    ``async def`` on_error is refused at construction, and an ``async def`` on_delivery
    is said at ERROR (its body never runs). Before: accepted, and only Python's "never
    awaited" RuntimeWarning, which most programs never show, told of it."""

    async def on_error(_record: ProducerRecord, _error: BaseException) -> None:
        raise AssertionError("never called")

    with pytest.raises(TypeError, match="on_error is an async function"):
        AsyncProducer(cluster.bootstrap, on_error=on_error)
    ran: list[Any] = []

    async def on_delivery(metadata: RecordMetadata | None, error: BaseException | None) -> None:
        ran.append(metadata)

    async with AsyncProducer(cluster.bootstrap, **FAST) as producer:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a "never awaited" warning fails the test
            await producer.produce("t", b"x", on_delivery=on_delivery)
            assert await producer.flush(10) == 0
            gc.collect()
    assert ran == []
    told = [r for r in caplog.records if "on_delivery is an async function" in r.getMessage()]
    assert [r.levelname for r in told] == ["ERROR"]
