"""Unreadable batches through the real consumer and the embedded broker: the records
before a corrupt batch are handed out, then poll raises a located error and a seek gets
past it while other partitions keep flowing; a batch pykaf's own producer wrote (100 MiB
of zeros, zstd, a few KiB on the wire) is read once max_decompressed_batch_bytes allows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from consumer_helpers import TS, data_batch, produce_raw, values
from test_unreadable_batches import malformed

from pykaf._client._async_client import AsyncClient
from pykaf._consumer._consumer import Consumer
from pykaf._consumer._records import ConsumerRecord, TopicPartition
from pykaf._errors import CorruptRecordError, DecompressionLimitError
from pykaf._producer._producer import Producer
from pykaf.broker import Cluster
from pykaf.protocol import encode_batch

LIMIT = 30.0
T0 = TopicPartition("t", 0)
T1 = TopicPartition("t", 1)
BIG = 100 * 1024 * 1024


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with Cluster(brokers=1, auto_create_topics=False) as running:
        await running.create_topic("t", 2)
        yield running


def poll_until(consumer: Consumer, done: object, got: list[ConsumerRecord]) -> None:
    """Poll into ``got`` until ``done()`` holds; errors propagate. Bounded in time."""
    deadline = time.monotonic() + LIMIT
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"gave up with {len(got)} records"
        got += consumer.poll(timeout=0.2)


def offsets(records: list[ConsumerRecord], tp: TopicPartition) -> list[int]:
    return [r.offset for r in records if r.partition == tp.partition]


async def test_corrupt_batch_hands_out_what_precedes_it_and_a_seek_gets_past(
    cluster: Cluster,
) -> None:
    async with AsyncClient(cluster.bootstrap) as client:
        # A batch with a valid CRC whose records are malformed: the broker stores it.
        for batch in (
            data_batch(values("a", 3)),
            malformed(data_batch(values("b", 3))),
            data_batch(values("c", 3)),
        ):
            await produce_raw(client, "t", 0, batch)
        await produce_raw(client, "t", 1, data_batch(values("z", 5)))

    def blocking() -> None:
        got: list[ConsumerRecord] = []
        with Consumer(cluster.bootstrap, auto_offset_reset="earliest") as consumer:
            consumer.assign([T0, T1])
            with pytest.raises(CorruptRecordError, match=r"seek\('t', 0, 6\)") as caught:
                poll_until(consumer, lambda: False, got)
            assert offsets(got, T0) == [0, 1, 2]  # handed out before the error
            error = caught.value
            assert (error.topic, error.partition, error.offset, error.next_offset) == (
                "t",
                0,
                3,
                6,
            )
            poll_until(consumer, lambda: len(offsets(got, T1)) == 5, got)  # T1 flows
            consumer.seek(T0, error.next_offset)
            poll_until(consumer, lambda: offsets(got, T0)[-1:] == [8], got)
            assert offsets(got, T0) == [0, 1, 2, 6, 7, 8]
            assert offsets(got, T1) == [0, 1, 2, 3, 4]

    await asyncio.wait_for(asyncio.to_thread(blocking), LIMIT * 2)


async def test_header_key_that_is_not_utf8_reaches_the_application(cluster: Cluster) -> None:
    batch = encode_batch([(b"k", b"v", [(b"\xc3(", b"1")], TS), (b"k", b"w", None, TS)])
    async with AsyncClient(cluster.bootstrap) as client:
        await produce_raw(client, "t", 0, batch)

    def blocking() -> None:
        got: list[ConsumerRecord] = []
        with Consumer(cluster.bootstrap, auto_offset_reset="earliest") as consumer:
            consumer.assign([T0])
            poll_until(consumer, lambda: len(got) == 2, got)
        assert got[0].headers == (("\ufffd(", b"1"),)  # as Java shows it
        assert got[0].raw_headers == ((b"\xc3(", b"1"),)
        assert got[1].value == b"w"

    await asyncio.wait_for(asyncio.to_thread(blocking), LIMIT)


async def test_a_huge_zstd_batch_of_our_producer_needs_the_setting_raised(
    cluster: Cluster,
) -> None:
    def blocking() -> None:
        settings = {"max_request_size": BIG + 4096, "buffer_memory": 2 * BIG}
        with Producer(cluster.bootstrap, compression="zstd", **settings) as producer:
            assert producer.send("t", bytes(BIG), partition=0).result(LIMIT).offset == 0
            assert producer.send("t", b"after", partition=0).result(LIMIT).offset == 1
        got: list[ConsumerRecord] = []
        with Consumer(cluster.bootstrap, auto_offset_reset="earliest") as consumer:
            consumer.assign([T0])
            with pytest.raises(
                DecompressionLimitError, match="max_decompressed_batch_bytes: raise"
            ) as caught:
                poll_until(consumer, lambda: False, got)
            error = caught.value
            assert (error.topic, error.partition, error.offset, error.next_offset) == (
                "t",
                0,
                0,
                1,
            )
            consumer.seek(T0, error.next_offset)
            poll_until(consumer, lambda: len(got) == 1, got)
            assert got[0].value == b"after"
        got = []
        with Consumer(
            cluster.bootstrap, auto_offset_reset="earliest", max_decompressed_batch_bytes=2 * BIG
        ) as consumer:
            consumer.assign([T0])
            poll_until(consumer, lambda: len(got) == 2, got)
        assert [r.offset for r in got] == [0, 1]
        assert len(got[0].value or b"") == BIG
        assert not (got[0].value or b"").strip(b"\x00")

    await asyncio.wait_for(asyncio.to_thread(blocking), LIMIT * 2)
