"""AsyncConsumer and Consumer end to end against the embedded broker.

Exactly what was produced is read back (12 partitions, every codec, both stream modes,
batch reads and iteration, blocking and async); transactions' control batches; offsets by
time; leaders moved and brokers down and up while consuming: nothing skipped or repeated.
"""

from __future__ import annotations

import asyncio
import dataclasses
import typing
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from consumer_helpers import TS, by_partition, control_batch, data_batch, produce_raw, values

from pykaf._client._async_client import AsyncClient
from pykaf._consumer._async_consumer import AsyncConsumer
from pykaf._consumer._consumer import Consumer
from pykaf._consumer._records import ConsumerRecord, TopicPartition
from pykaf.broker import Cluster
from pykaf.protocol import ControlType
from pykaf.protocol._records import iter_batch_headers

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
FAST = {"retry_backoff": 0.02, "reconnect_backoff": 0.01, "reconnect_backoff_max": 0.1}
LIMIT = 20.0


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with Cluster(brokers=3) as running:
        yield running


async def fill(
    cluster: Cluster, topic: str, partitions: int, per_codec: int = 20
) -> dict[int, list[bytes]]:
    """One batch per codec into every partition; what each partition holds, in order."""
    await cluster.create_topic(topic, partitions, replication_factor=3)
    expected: dict[int, list[bytes]] = {}
    async with AsyncClient(cluster.bootstrap) as client:
        for p in range(partitions):
            for codec in CODECS:
                vals = values(f"{p}-{codec}", per_codec)
                await produce_raw(client, topic, p, data_batch(vals, compression=codec))
                expected.setdefault(p, []).extend(vals)
    return expected


def tps(topic: str, count: int) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for p in range(count)]


def check_offsets(records: list[ConsumerRecord]) -> None:
    """Per partition, offsets strictly follow each other: nothing skipped or repeated."""
    last: dict[int, int] = {}
    for r in records:
        if r.partition in last:
            assert r.offset == last[r.partition] + 1, (r.partition, last[r.partition], r.offset)
        last[r.partition] = r.offset


async def test_every_codec_12_partitions_stop_at_end(cluster: Cluster) -> None:
    expected = await fill(cluster, "codecs", 12)
    async with AsyncConsumer(
        cluster.bootstrap, topics=["codecs"], auto_offset_reset="earliest", stop_at_end=True
    ) as consumer:
        async with asyncio.timeout(LIMIT):
            iterated = [r async for r in consumer]
        assert by_partition(iterated) == expected
        check_offsets(iterated)
        first = iterated[0]
        assert first.key == b"k"
        assert first.headers == (("h", b"x"),)
        assert first.timestamp == TS
        # Again, as batch reads: poll returns [] at once at the end.
        await consumer.seek_to_beginning()
        polled: list[ConsumerRecord] = []
        async with asyncio.timeout(LIMIT):
            while batch := await consumer.poll(timeout=5, max_records=97):
                assert len(batch) <= 97
                polled += batch
        assert by_partition(polled) == expected
        assert {tp: await consumer.position(tp) for tp in tps("codecs", 12)} == dict.fromkeys(
            tps("codecs", 12), 100
        )


async def test_blocking_stream_waits_for_new_records(cluster: Cluster) -> None:
    expected = await fill(cluster, "live", 3, per_codec=4)
    total = sum(map(len, expected.values()))
    async with (
        AsyncConsumer(cluster.bootstrap, auto_offset_reset="earliest", **FAST) as consumer,
        AsyncClient(cluster.bootstrap) as client,
    ):
        await consumer.assign(tps("live", 3))
        seen: list[ConsumerRecord] = []
        async with asyncio.timeout(LIMIT):
            async for record in consumer:
                seen.append(record)
                if len(seen) == total:
                    # At the end of every partition: the stream waits. Write more.
                    for p in range(3):
                        await produce_raw(client, "live", p, data_batch(values(f"new{p}", 2)))
                if len(seen) == total + 6:
                    break
        assert sorted(r.value for r in seen[total:]) == sorted(
            v for p in range(3) for v in values(f"new{p}", 2)
        )
        check_offsets(seen)
        # poll() without stop_at_end waits up to its timeout, then returns [].
        assert await consumer.poll(timeout=0.05) == []


async def test_blocking_consumer_iteration_and_poll(cluster: Cluster) -> None:
    expected = await fill(cluster, "sync", 12, per_codec=10)

    def read() -> tuple[list[ConsumerRecord], list[ConsumerRecord], int]:
        with Consumer(
            cluster.bootstrap, topics=["sync"], auto_offset_reset="earliest", stop_at_end=True
        ) as consumer:
            iterated = list(consumer)
            consumer.seek_to_beginning()
            polled: list[ConsumerRecord] = []
            while batch := consumer.poll(5, 333):
                polled += batch
            return iterated, polled, consumer.position(TopicPartition("sync", 3))

    iterated, polled, position = await asyncio.wait_for(asyncio.to_thread(read), LIMIT)
    assert by_partition(iterated) == expected
    assert by_partition(polled) == expected
    check_offsets(iterated)
    assert position == 50


async def test_break_mid_chunk_resumes_at_the_next_record(cluster: Cluster) -> None:
    await cluster.create_topic("brk", 1, replication_factor=1)
    async with AsyncClient(cluster.bootstrap) as client:
        await produce_raw(client, "brk", 0, data_batch(values("v", 50)))
    tp = TopicPartition("brk", 0)

    def sync_part() -> list[int]:
        with Consumer(cluster.bootstrap, auto_offset_reset="earliest", stop_at_end=True) as c:
            c.assign([tp])
            offsets = []
            for record in c:  # the chunk holds all 50; leave after 10
                offsets.append(record.offset)
                if record.offset == 9:
                    break
            assert c.position(tp) == 10
            offsets += [r.offset for r in c]
            return offsets

    assert await asyncio.wait_for(asyncio.to_thread(sync_part), LIMIT) == list(range(50))
    async with AsyncConsumer(
        cluster.bootstrap, auto_offset_reset="earliest", stop_at_end=True
    ) as consumer:
        await consumer.assign([tp])
        seen = []
        async for record in consumer:
            seen.append(record.offset)
            if record.offset == 19:
                assert await consumer.position(tp) == 20  # mid-chunk: what was handed
                await consumer.seek(tp, 40)
        assert seen == [*range(20), *range(40, 50)]


async def test_offsets_seek_pause_resume(cluster: Cluster) -> None:
    await cluster.create_topic("off", 2, replication_factor=1)
    async with AsyncClient(cluster.bootstrap) as client:
        for p in range(2):
            await produce_raw(client, "off", p, data_batch(values("a", 10), ts=1000))
            await produce_raw(client, "off", p, data_batch(values("b", 10), ts=5000))
    t0, t1 = TopicPartition("off", 0), TopicPartition("off", 1)
    async with AsyncConsumer(cluster.bootstrap, stop_at_end=True) as consumer:
        await consumer.assign([t0, t1])
        assert await consumer.earliest_offset(t0) == 0
        assert await consumer.latest_offset(t0) == 20
        assert await consumer.beginning_offsets([t0, t1]) == {t0: 0, t1: 0}
        assert await consumer.end_offsets([t0, t1]) == {t0: 20, t1: 20}
        found = await consumer.offsets_for_times({t0: 5000, t1: 99_999})
        assert found == {t0: (10, 5000), t1: None}
        assert await consumer.position(t0) == 20  # auto_offset_reset="latest"
        await consumer.seek_to_timestamp(t0, 1005)
        await consumer.seek_to_timestamp({t1: 10**12})  # after every record: the end
        assert await consumer.position(t0) == 5
        assert await consumer.position(t1) == 20
        consumer.pause(t0)
        assert consumer.paused() == {t0}
        assert await consumer.poll(timeout=1) == []  # t0 paused, t1 at its end
        consumer.resume(t0)
        got = await consumer.poll(timeout=5, max_records=100)
        assert [r.offset for r in got] == list(range(5, 20))
        await consumer.seek(t1, 3)
        await consumer.seek_to_end(t0)
        assert [r.offset for r in await consumer.poll(timeout=5)] == list(range(3, 20))
        assert await consumer.position(t0) == 20


async def test_leaders_moved_while_consuming(cluster: Cluster) -> None:
    await cluster.create_topic("moves", 6, replication_factor=3)
    produced = {p: [] for p in range(6)}  # type: dict[int, list[bytes]]
    seen: list[ConsumerRecord] = []
    async with (
        AsyncClient(cluster.bootstrap) as client,
        AsyncConsumer(cluster.bootstrap, auto_offset_reset="earliest", **FAST) as consumer,
    ):
        await consumer.assign(tps("moves", 6))
        async with asyncio.timeout(LIMIT):
            for round_ in range(4):
                for p in range(6):
                    vals = values(f"r{round_}p{p}", 7)
                    await produce_raw(client, "moves", p, data_batch(vals))
                    produced[p] += vals
                want = sum(map(len, produced.values()))
                while len(seen) < want:
                    seen += await consumer.poll(timeout=5)
                # Every leader moves to the next broker while fetches are in flight.
                for p in range(6):
                    part = cluster.state.partition("moves", p)
                    assert part is not None
                    cluster.faults.move_leader("moves", p, part.leader % 3 + 1)
        assert by_partition(seen) == produced
        check_offsets(seen)


async def test_broker_down_and_up_while_consuming(cluster: Cluster) -> None:
    # Partition 0 only on broker 1 (no other replica): down means no leader at all.
    cluster.state.create_topic("down", 2, assignment=[(1,), (1, 2, 3)])
    seen: list[ConsumerRecord] = []
    produced: dict[int, list[bytes]] = {0: [], 1: []}
    async with AsyncConsumer(cluster.bootstrap, auto_offset_reset="earliest", **FAST) as consumer:
        await consumer.assign(tps("down", 2))
        async with AsyncClient(cluster.bootstrap, **FAST) as client:
            for p in range(2):
                await produce_raw(client, "down", p, data_batch(values(f"a{p}", 5)))
                produced[p] += values(f"a{p}", 5)
        async with asyncio.timeout(LIMIT):
            while len(seen) < 10:
                seen += await consumer.poll(timeout=5)
            await cluster.faults.broker_down(1)
            async with AsyncClient(cluster.bootstrap, **FAST) as client:
                await produce_raw(client, "down", 1, data_batch(values("b1", 5)))
            produced[1] += values("b1", 5)
            while len(seen) < 15:  # partition 1 moved to broker 2: it keeps flowing
                seen += await consumer.poll(timeout=5)
            await cluster.faults.broker_up(1)
            async with AsyncClient(cluster.bootstrap, **FAST) as client:
                for p in range(2):
                    await produce_raw(client, "down", p, data_batch(values(f"c{p}", 5)))
                    produced[p] += values(f"c{p}", 5)
            while len(seen) < 25:
                seen += await consumer.poll(timeout=5)
        assert await consumer.poll(timeout=0.2) == []
    assert by_partition(seen) == produced
    check_offsets(seen)


def _with_aborted(response: Any, aborted: dict[int, list[tuple[int, int]]]) -> Any:
    """A Fetch answer with ``aborted`` (partition -> [(producer_id, first_offset)]) set,
    as a broker with transactions would send it to a read_committed consumer."""
    topics = []
    for topic in response.responses:
        parts = []
        for part in topic.partitions:
            entries = aborted.get(int(part.partition_index), [])
            hints = typing.get_type_hints(type(part))
            entry_cls = typing.get_args(typing.get_args(hints["aborted_transactions"])[0])[0]
            made = tuple(entry_cls(producer_id=pid, first_offset=first) for pid, first in entries)
            parts.append(dataclasses.replace(part, aborted_transactions=made))
        topics.append(dataclasses.replace(topic, partitions=tuple(parts)))
    return dataclasses.replace(response, responses=tuple(topics))


async def test_transactions_read_committed_and_uncommitted(cluster: Cluster) -> None:
    """The embedded broker has no transactions: the batches (and markers) go into its log
    directly, and an interceptor adds the aborted transactions to Fetch answers."""
    await cluster.create_topic("txn", 1, replication_factor=1)
    part = cluster.state.partition("txn", 0)
    assert part is not None
    batches = [
        data_batch(values("c1", 3), producer_id=10, base_sequence=0, transactional=True),
        data_batch(values("x", 2), producer_id=11, base_sequence=0, transactional=True),
        control_batch(ControlType.COMMIT, base_offset=0, producer_id=10, base_sequence=3),
        data_batch(values("plain", 2)),
        control_batch(ControlType.ABORT, base_offset=0, producer_id=11, base_sequence=2),
        data_batch(values("c2", 2), producer_id=12, base_sequence=0, transactional=True),
        control_batch(ControlType.COMMIT, base_offset=0, producer_id=12, base_sequence=2),
    ]
    for batch in batches:
        [(_, header)] = list(iter_batch_headers(batch))
        result = part.log.append(bytearray(batch), header, leader_epoch=0, log_append_time=None)
        assert result.error == 0

    async def interceptor(ctx: Any, request: Any, call_next: Any) -> Any:
        response = await call_next(ctx, request)
        if ctx.api_key == 1 and request.isolation_level == 1:
            return _with_aborted(response, {0: [(11, 3)]})
        return response

    cluster.set_interceptor(interceptor)
    for isolation, expected in (
        ("read_committed", [*values("c1", 3), *values("plain", 2), *values("c2", 2)]),
        (
            "read_uncommitted",
            [*values("c1", 3), *values("x", 2), *values("plain", 2), *values("c2", 2)],
        ),
    ):
        async with AsyncConsumer(
            cluster.bootstrap,
            topics=["txn"],
            auto_offset_reset="earliest",
            stop_at_end=True,
            isolation_level=isolation,
        ) as consumer:
            async with asyncio.timeout(LIMIT):
                got = [r.value async for r in consumer]
            assert got == expected, isolation
            assert await consumer.position(TopicPartition("txn", 0)) == 12  # past the marker


async def test_prefetch_is_bounded_in_bytes(cluster: Cluster) -> None:
    await cluster.create_topic("big", 2, replication_factor=1)
    async with AsyncClient(cluster.bootstrap) as client:
        for p in range(2):
            for _ in range(40):
                await produce_raw(client, "big", p, data_batch([b"x" * 1000] * 10))
    batch_size = len(data_batch([b"x" * 1000] * 10))
    async with AsyncConsumer(
        cluster.bootstrap,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * batch_size,
        buffer_max_bytes=6 * batch_size,
    ) as consumer:
        await consumer.assign(tps("big", 2))
        state = consumer._state
        most = 0
        got = 0
        async with asyncio.timeout(LIMIT):
            while got < 800:
                # Give the fetcher every chance to over-fetch before each read.
                for _ in range(20):
                    await asyncio.sleep(0)
                most = max(most, state.buffered)
                got += len(await consumer.poll(timeout=5, max_records=7))
    # The bound stops new fetches; one answer per partition may land on top of it.
    assert most <= 6 * batch_size + 2 * 4 * batch_size


async def test_stop_at_end_looks_again_on_the_next_read(cluster: Cluster) -> None:
    await cluster.create_topic("again", 2, replication_factor=1)
    async with (
        AsyncClient(cluster.bootstrap) as client,
        AsyncConsumer(
            cluster.bootstrap, auto_offset_reset="earliest", stop_at_end=True
        ) as consumer,
    ):
        await consumer.assign(tps("again", 2))
        await produce_raw(client, "again", 0, data_batch(values("a", 3)))
        async with asyncio.timeout(LIMIT):
            assert [r.value async for r in consumer] == values("a", 3)
            assert [r.value async for r in consumer] == []  # still the end
            await produce_raw(client, "again", 1, data_batch(values("b", 2)))
            assert [r.value async for r in consumer] == values("b", 2)
            await produce_raw(client, "again", 0, data_batch(values("c", 2)))
            assert [r.value for r in await consumer.poll(timeout=5)] == values("c", 2)
            assert await consumer.poll(timeout=5) == []
