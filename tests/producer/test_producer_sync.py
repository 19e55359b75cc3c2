"""Producer (blocking): the context manager, futures, threads, bounds, callbacks."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pykaf._errors import (
    BufferFullError,
    DeliveryError,
    KafkaTimeoutError,
    ProducerClosedError,
    WrongEventLoopError,
)
from pykaf._producer._batches import PYTHON_RECORD_COST, PYTHON_REPORT_COST
from pykaf._producer._delivery import RecordMetadata
from pykaf._producer._producer import Producer
from pykaf.broker import BlockingCluster

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
def cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=2) as running:
        yield running


def written(cluster: BlockingCluster, topic: str) -> int:
    return cluster.call(
        lambda: sum(p.log.high_watermark for p in cluster.state.topics[topic].partitions)
    )


def test_context_manager_flush_and_close(cluster: BlockingCluster) -> None:
    cluster.create_topic("t", 2)
    with Producer(cluster.bootstrap, **FAST) as producer:
        assert not producer.closed
        for i in range(500):
            producer.produce("t", b"%d" % i)
        assert producer.flush(10) == 0
        assert "open" in repr(producer)
    assert producer.closed
    assert producer.close() == 0  # idempotent
    assert written(cluster, "t") == 500
    with pytest.raises(ProducerClosedError):
        producer.produce("t", b"late")


def test_send_returns_a_concurrent_future(cluster: BlockingCluster) -> None:
    cluster.create_topic("f", 1)
    with Producer(cluster.bootstrap, **FAST) as producer:
        future = producer.send("f", b"v", b"k", headers=[("h", b"1")])
        assert isinstance(future, concurrent.futures.Future)
        metadata = future.result(10)
    assert isinstance(metadata, RecordMetadata)
    assert (metadata.topic, metadata.partition, metadata.offset) == ("f", 0, 0)


def test_futures_from_many_threads(cluster: BlockingCluster) -> None:
    cluster.create_topic("threads", 3)
    with Producer(cluster.bootstrap, **FAST) as producer:

        def work(n: int) -> list[RecordMetadata]:
            futures = [producer.send("threads", b"%d-%d" % (n, i)) for i in range(300)]
            return [f.result(20) for f in futures]

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            results = [r for rs in pool.map(work, range(6)) for r in rs]
    assert len({(r.partition, r.offset) for r in results}) == 1800
    assert written(cluster, "threads") == 1800


def test_a_callback_may_produce(cluster: BlockingCluster) -> None:
    cluster.create_topic("chain", 1)
    done = threading.Event()
    with Producer(cluster.bootstrap, **FAST) as producer:

        def then(metadata: RecordMetadata | None, error: DeliveryError | None) -> None:
            # On the producer's own thread: appends never wait for the loop there.
            producer.produce("chain", b"second", on_delivery=lambda m, e: done.set())

        producer.produce("chain", b"first", on_delivery=then)
        assert done.wait(10)
    assert written(cluster, "chain") == 2


@pytest.mark.parametrize("call", ["result", "exception", "flush", "close"])
def test_a_wait_from_a_callback_is_refused_at_once(cluster: BlockingCluster, call: str) -> None:
    """A delivery callback runs on the producer's own thread: a wait there would hold the
    thread it waits for. Refused at once, and the producer goes on. Before: ``result()``
    and ``exception()`` held the thread for their whole timeout, then raised a bare
    TimeoutError; ``close(5)`` stalled every report for 8 s; ``flush()`` raised a plain
    RuntimeError."""
    cluster.create_topic("waits", 1)
    raised: list[BaseException] = []
    after = threading.Event()
    with Producer(cluster.bootstrap, **FAST) as producer:

        def then(metadata: RecordMetadata | None, error: DeliveryError | None) -> None:
            try:
                if call in ("result", "exception"):
                    getattr(producer.send("waits", b"inner"), call)(5.0)
                else:
                    getattr(producer, call)(5.0)
            except WrongEventLoopError as exc:
                raised.append(exc)  # at once: the 5 s wait would have raised TimeoutError
            producer.produce("waits", b"next", on_delivery=lambda m, e: after.set())

        producer.produce("waits", b"first", on_delivery=then)
        assert after.wait(10)  # the producer went on, the callback's own record sent too
        assert producer.flush(10) == 0
    assert len(raised) == 1, raised
    assert "own thread" in str(raised[0])
    assert isinstance(raised[0], RuntimeError)  # as flush() raised before
    assert written(cluster, "waits") == (3 if call in ("result", "exception") else 2)


def test_a_new_topic_from_a_callback_is_refused(cluster: BlockingCluster) -> None:
    cluster.create_topic("known", 1)
    errors: list[BaseException] = []
    with Producer(cluster.bootstrap, **FAST) as producer:

        def then(metadata: RecordMetadata | None, error: DeliveryError | None) -> None:
            try:
                producer.produce("never-seen", b"x")
            except KafkaTimeoutError as exc:
                errors.append(exc)

        producer.send("known", b"a")
        producer.produce("known", b"b", on_delivery=then)
        producer.flush(10)
    assert len(errors) == 1
    assert "delivery callback" in str(errors[0])


def test_full_buffer_blocks_then_raises(cluster: BlockingCluster) -> None:
    cluster.create_topic("full", 1)
    # Each 300-byte record held costs ~1.2 KB of buffer_memory: its batch's 500 bytes,
    # its Python objects and future, and its encoded copy once sent.
    options = dict(FAST, buffer_memory=2500, batch_size=500, max_block=0.2, linger=0)
    with Producer(cluster.bootstrap, **options) as producer:
        producer.send("full", b"warm").result(10)
        hold = cluster.faults.hold_responses("Produce")
        futures = [producer.send("full", b"x" * 300), producer.send("full", b"y" * 300)]
        # Both sent (held): each counts its Python objects and encoded copy now.
        deadline = time.monotonic() + 10
        while producer._accumulator.used < 2 * HELD_300 and time.monotonic() < deadline:
            time.sleep(0.002)
        with pytest.raises(BufferFullError, match="max_block"):
            producer.produce("full", b"z" * 300)
        hold.release()
        for future in futures:
            future.result(10)


def test_unknown_topic_times_out_after_max_block() -> None:
    with (
        BlockingCluster(brokers=1, auto_create_topics=False) as cluster,
        Producer(cluster.bootstrap, **dict(FAST, max_block=0.3)) as producer,
        pytest.raises(KafkaTimeoutError, match="does it exist"),
    ):
        producer.produce("missing", b"x")


def test_no_broker_at_all_is_bounded() -> None:
    options = dict(FAST, max_block=0.3, connect_timeout=0.2)
    producer = Producer("127.0.0.1:1", **options)
    started = time.monotonic()
    with pytest.raises(KafkaTimeoutError):
        producer.produce("t", b"x")
    assert producer.close(0.5) == 0
    assert time.monotonic() - started < 5


def test_flush_with_nothing_pending_and_after_close() -> None:
    producer = Producer("127.0.0.1:1", **FAST)
    assert producer.flush(0.1) == 0
    producer.close(0)
    assert producer.flush() == 0


def test_close_wakes_a_produce_waiting_for_metadata() -> None:
    with BlockingCluster(brokers=1, auto_create_topics=False) as cluster:
        _close_wakes_a_produce_waiting_for_metadata(cluster)


def _close_wakes_a_produce_waiting_for_metadata(cluster: BlockingCluster) -> None:
    producer = Producer(cluster.bootstrap, **dict(FAST, max_block=30))
    outcome: list[BaseException] = []
    waiting = threading.Event()

    def blocked() -> None:
        waiting.set()
        try:
            producer.produce("no-such-topic", b"x")
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=blocked)
    thread.start()
    assert waiting.wait(10)
    deadline = time.monotonic() + 10
    while not producer._engine.metadata.waiting_for("no-such-topic"):  # waits for metadata
        assert time.monotonic() < deadline
        time.sleep(0.005)
    producer.close(0)
    thread.join(10)
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], ProducerClosedError)
