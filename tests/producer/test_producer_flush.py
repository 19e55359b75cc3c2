"""Producer.flush (blocking): the fast path without a coroutine hop keeps its contract."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pykaf._producer._producer import Producer
from pykaf.broker import BlockingCluster

# A linger far longer than any flush bound below: a flush that waited it out would
# return with the record still pending.
SLOW_LINGER: dict[str, Any] = {
    "request_timeout": 5.0,
    "delivery_timeout": 120.0,
    "max_block": 10.0,
    "linger": 60.0,
}


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=1) as running:
        yield running


def written(cluster: BlockingCluster, topic: str) -> int:
    return cluster.call(
        lambda: sum(p.log.high_watermark for p in cluster.state.topics[topic].partitions)
    )


def test_flush_does_not_wait_out_linger(cluster: BlockingCluster) -> None:
    cluster.create_topic("l", 3)
    with Producer(cluster.bootstrap, enable_idempotence=False, acks=1, **SLOW_LINGER) as p:
        for i in range(30):
            p.produce("l", b"%d" % i)
            assert p.flush(10) == 0
        # Some records lingering for a while (the loop has armed its linger timer).
        for i in range(5):
            p.produce("l", b"x%d" % i)
        assert p.flush(10) == 0
        future = p.send("l", b"last")
        assert p.flush(10) == 0
        assert future.done()
        assert future.result(0).offset >= 0
    assert written(cluster, "l") == 36


def test_flush_with_nothing_pending_returns_at_once(cluster: BlockingCluster) -> None:
    cluster.create_topic("e", 1)
    with Producer(cluster.bootstrap, **SLOW_LINGER) as p:
        assert p.flush(0) == 0  # nothing produced yet: no wait, no connection
        p.produce("e", b"a")
        assert p.flush(10) == 0
        assert p.flush(0) == 0


def test_flush_timeout_reports_pending(cluster: BlockingCluster) -> None:
    cluster.create_topic("s", 1)
    with Producer(cluster.bootstrap, **SLOW_LINGER) as p:
        for i in range(10):
            p.produce("s", b"%d" % i)
        # timeout 0: the flush does not wait; whatever is not acknowledged yet is counted.
        assert 0 <= p.flush(0) <= 10
        assert p.flush(10) == 0


def test_concurrent_flushes_from_many_threads(cluster: BlockingCluster) -> None:
    cluster.create_topic("c", 4)
    results: list[int] = []
    lock = threading.Lock()
    with Producer(cluster.bootstrap, **SLOW_LINGER) as p:

        def work(n: int) -> None:
            for i in range(40):
                p.produce("c", b"%d-%d" % (n, i))
                left = p.flush(10)
                with lock:
                    results.append(left)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
    assert results == [0] * 160
    assert written(cluster, "c") == 160


def test_flush_after_close_returns(cluster: BlockingCluster) -> None:
    cluster.create_topic("z", 1)
    p = Producer(cluster.bootstrap, **SLOW_LINGER)
    p.produce("z", b"a")
    assert p.close(10) == 0
    assert p.flush(1) == 0


class _InterruptedOnce:
    """The loop's wake, interrupted once as Ctrl-C does (``KeyboardInterrupt`` between
    the accumulator's promise of a wake and the wake itself)."""

    def __init__(self, wake: Any) -> None:
        self.wake = wake
        self.interrupted = False

    def __call__(self) -> None:
        if not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt
        self.wake()


def test_a_flush_after_an_interrupted_wake_still_delivers(cluster: BlockingCluster) -> None:
    cluster.create_topic("w", 1)
    with Producer(cluster.bootstrap, linger=0.0, request_timeout=5.0) as p:
        p.flush(0)
        wake = _InterruptedOnce(p._accumulator.wake)
        p._accumulator.wake = wake
        with pytest.raises(KeyboardInterrupt):
            p.produce("w", b"a")
        assert wake.interrupted
        # The wake was promised and never sent; the flush must not rely on it.
        assert p.flush(10) == 0
    assert written(cluster, "w") == 1


def test_records_after_an_interrupted_wake_are_sent_without_a_flush(
    cluster: BlockingCluster,
) -> None:
    cluster.create_topic("n", 1)
    delivered = threading.Event()
    with Producer(cluster.bootstrap, linger=0.0, request_timeout=5.0) as p:
        wake = _InterruptedOnce(p._accumulator.wake)
        p._accumulator.wake = wake
        with pytest.raises(KeyboardInterrupt):
            p.produce("n", b"first")
        # The program goes on producing (it caught the Ctrl-C): a record now and then.
        for i in range(200):
            p.produce("n", b"%d" % i, on_delivery=lambda *_: delivered.set())
            if delivered.wait(0.02):
                break
        assert delivered.is_set()
