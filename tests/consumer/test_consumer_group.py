"""The consumer's side of groups, on the embedded broker: positions from committed offsets,
commits (sync, async, automatic) of what was handed out and never more, callbacks in the
blocking consumer's own thread, members sharing a topic without loss or duplicates."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from consumer_helpers import by_partition, data_batch, produce_raw, values

from pykaf._client._async_client import AsyncClient
from pykaf._consumer._async_consumer import AsyncConsumer
from pykaf._consumer._consumer import Consumer
from pykaf._consumer._records import ConsumerRecord, OffsetAndMetadata, TopicPartition
from pykaf.broker import Cluster
from pykaf.errors import ConsumerClosedError

LIMIT = 30.0
GROUP = {"session_timeout": 6.0, "heartbeat_interval": 0.5, "retry_backoff": 0.02}


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with Cluster(brokers=1) as running:
        await running.create_topic("g", 3)
        async with AsyncClient(running.bootstrap) as client:
            for p in range(3):
                await produce_raw(client, "g", p, data_batch(values(f"p{p}", 10)))
        yield running


def tps() -> list[TopicPartition]:
    return [TopicPartition("g", p) for p in range(3)]


async def read(consumer: AsyncConsumer, count: int) -> list[ConsumerRecord]:
    out: list[ConsumerRecord] = []
    async with asyncio.timeout(LIMIT):
        while len(out) < count:
            out += await consumer.poll(timeout=5, max_records=count - len(out))
    return out


async def test_commit_and_resume_from_committed(cluster: Cluster) -> None:
    async with AsyncConsumer(
        cluster.bootstrap,
        group_id="resume",
        topics=["g"],
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **GROUP,
    ) as first:
        got = await read(first, 12)
        await first.commit()  # what was handed out
        handed = {tp: await first.position(tp) for tp in tps()}
        assert await first.committed(tps()) == handed
        assert sum(handed.values()) == 12
        done: list[tuple[Any, BaseException | None]] = []
        await first.commit_async(
            {TopicPartition("g", 0): 1}, callback=lambda o, e: done.append((o, e))
        )
        async with asyncio.timeout(LIMIT):
            while not done:
                await asyncio.sleep(0.01)
        assert done == [({TopicPartition("g", 0): OffsetAndMetadata(1)}, None)]
        await first.commit({TopicPartition("g", 0): handed[TopicPartition("g", 0)]})
    async with AsyncConsumer(
        cluster.bootstrap, group_id="resume", topics=["g"], auto_offset_reset="earliest", **GROUP
    ) as second:
        rest = await read(second, 18)
        assert await second.poll(timeout=0.2) == []
    assert sorted(r.value for r in got + rest) == sorted(
        v for p in range(3) for v in values(f"p{p}", 10)
    )


async def test_auto_commit_never_ahead_of_what_was_handed(cluster: Cluster) -> None:
    async with AsyncConsumer(
        cluster.bootstrap,
        group_id="auto",
        topics=["g"],
        auto_offset_reset="earliest",
        auto_commit_interval=0.05,
        **GROUP,
    ) as consumer:
        seen: list[ConsumerRecord] = []
        async with asyncio.timeout(LIMIT):
            async for record in consumer:  # a chunk holds a partition's 10 records
                seen.append(record)
                if len(seen) == 4:
                    await consumer.commit()  # mid-chunk: exactly the four handed out
                    committed_mid = await consumer.committed(tps())
                    assert committed_mid[seen[0].topic_partition] == 4
                    assert sum(v or 0 for v in committed_mid.values()) == 4
                if len(seen) == 5:
                    break
    # close() made the last auto-commit: exactly the five records handed out.
    async with AsyncConsumer(
        cluster.bootstrap, group_id="auto", topics=["g"], auto_offset_reset="earliest", **GROUP
    ) as again:
        assert sum(v or 0 for v in (await again.committed(tps())).values()) == 5
        rest = await read(again, 25)
    assert sorted(r.value for r in seen + rest) == sorted(
        v for p in range(3) for v in values(f"p{p}", 10)
    )


async def test_blocking_consumer_callbacks_run_in_its_thread(cluster: Cluster) -> None:
    def blocking() -> tuple[set[int], list[frozenset[TopicPartition]], dict[TopicPartition, Any]]:
        threads: set[int] = set()
        revoked: list[frozenset[TopicPartition]] = []
        consumer = Consumer(
            cluster.bootstrap,
            group_id="sync-group",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            **GROUP,
        )

        def on_assigned(partitions: frozenset[TopicPartition]) -> None:
            threads.add(threading.get_ident())

        def on_revoked(partitions: frozenset[TopicPartition]) -> None:
            threads.add(threading.get_ident())
            revoked.append(partitions)
            consumer.commit()  # a blocking call from inside the callback

        consumer.subscribe(["g"], on_assigned=on_assigned, on_revoked=on_revoked)
        got: list[ConsumerRecord] = []
        while len(got) < 30:
            got += consumer.poll(5)
        consumer.close()  # leaves: on_revoked, which commits
        check = Consumer(cluster.bootstrap, group_id="sync-group", **GROUP)
        committed = check.committed(tps())
        check.close()
        return threads, revoked, committed

    threads, revoked, committed = await asyncio.wait_for(asyncio.to_thread(blocking), LIMIT)
    assert len(threads) == 1
    assert threads != {threading.get_ident()}  # the caller's thread, not the loop's
    assert revoked == [frozenset(tps())]
    assert committed == dict.fromkeys(tps(), 10)


async def test_two_members_share_the_topic(cluster: Cluster) -> None:
    options = {"group_id": "share", "auto_offset_reset": "earliest", **GROUP}
    got: list[ConsumerRecord] = []
    async with AsyncConsumer(cluster.bootstrap, **options) as a:
        await a.subscribe(["g"])
        got += await read(a, 20)
        async with AsyncConsumer(cluster.bootstrap, **options) as b:
            await b.subscribe(["g"])
            async with asyncio.timeout(LIMIT):
                # Both keep polling (and so take part in the rebalance) until each owns
                # partitions; the auto-commit before a revocation hands positions over.
                while not (a.assignment() and b.assignment()):
                    batch_a, batch_b = await asyncio.gather(a.poll(0.1), b.poll(0.1))
                    got += batch_a + batch_b
                assert a.assignment() | b.assignment() == set(tps())
                assert not a.assignment() & b.assignment()
                async with AsyncClient(cluster.bootstrap) as client:
                    for p in range(3):
                        await produce_raw(client, "g", p, data_batch(values(f"q{p}", 10)))
                while len(got) < 60:
                    batch_a, batch_b = await asyncio.gather(a.poll(0.1), b.poll(0.1))
                    got += batch_a + batch_b
            assert await a.poll(0.1) == []
            assert await b.poll(0.1) == []
    assert len(got) == 60
    assert by_partition(sorted(got, key=lambda r: (r.partition, r.offset))) == {
        p: values(f"p{p}", 10) + values(f"q{p}", 10) for p in range(3)
    }


async def test_on_assigned_may_seek_and_ask_positions(cluster: Cluster) -> None:
    """``on_assigned`` runs once the partitions are the consumer's: a seek there wins over
    the committed offsets (Java's and aiokafka's place to start from offsets kept
    elsewhere), and position() answers. Before, it ran first: both raised
    NotAssignedError (logged, swallowed), and reading began at the committed offsets."""
    group = "seek-on-assign"
    async with AsyncConsumer(cluster.bootstrap, group_id=group, **GROUP) as committer:
        await committer.commit(dict.fromkeys(tps(), 2))
    seen: list[dict[TopicPartition, int]] = []
    errors: list[BaseException] = []

    async def on_assigned(partitions: frozenset[TopicPartition]) -> None:
        try:
            seen.append({tp: await consumer.position(tp) for tp in partitions})
            for tp in partitions:
                await consumer.seek(tp, 7)
        except Exception as exc:  # a callback's error is only logged: keep it for the test
            errors.append(exc)

    async with AsyncConsumer(cluster.bootstrap, group_id=group, **GROUP) as consumer:
        await consumer.subscribe(["g"], on_assigned=on_assigned)
        got = await read(consumer, 9)  # 3 a partition: offsets 7, 8 and 9
        assert await consumer.poll(timeout=0.2) == []
    assert errors == []
    assert seen == [dict.fromkeys(tps(), 2)]  # the committed offsets, before the seek
    assert sorted((r.partition, r.offset) for r in got) == [
        (p, o) for p in range(3) for o in (7, 8, 9)
    ]


async def test_a_blocking_consumer_closed_from_its_callback_says_closed(cluster: Cluster) -> None:
    """A callback that closes the consumer cancels the call that runs it: the poll that
    served it raises ConsumerClosedError. Before: InvalidStateError ("CANCELLED: <Future
    ...>"), setting the cancelled reply of the callback."""

    def blocking() -> tuple[list[str], BaseException | None]:
        done: list[str] = []
        consumer = Consumer(cluster.bootstrap, group_id="close-in-callback", **GROUP)

        def on_assigned(partitions: frozenset[TopicPartition]) -> None:
            consumer.close()
            done.append("closed")

        consumer.subscribe(["g"], on_assigned=on_assigned)
        try:
            consumer.poll(5)
        except Exception as exc:  # what the poll raised is the test's subject
            return done, exc
        finally:
            consumer.close()
        return done, None

    done, raised = await asyncio.wait_for(asyncio.to_thread(blocking), LIMIT)
    assert done == ["closed"]
    assert isinstance(raised, ConsumerClosedError), repr(raised)
