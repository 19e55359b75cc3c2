"""A Produce answer cut off in the middle of its frame: the connection is lost like any
other, so the batches are retried (idempotence makes that safe), never failed at once.

The cut happens at the client's socket end: the bytes of the next answer after a
Produce are handed to the connection only up to half, then the stream ends, exactly
what a broker (or a middlebox) dying mid-write looks like to the client.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from _produce_readback import Check, read_topic

from pykaf._client._connection import BrokerConnection
from pykaf._producer._producer import Producer
from pykaf.broker import BlockingCluster

FAST = {"request_timeout": 5.0, "delivery_timeout": 20.0, "max_block": 10.0, "linger": 0.002}


class CutAnswers:
    """Cuts ``count`` answers, each the first one after a Produce request on its
    connection. (Counted as answers are cut, not as requests are sent: two requests on
    one connection before its first answer, under load, armed one cut for two, and the
    test saw a single cut.)"""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, count: int) -> None:
        self.left = count
        self.cut = 0
        self.lock = threading.Lock()
        armed: set[int] = set()
        real_produce = BrokerConnection.produce_nowait
        real_received = BrokerConnection.data_received

        def produce_nowait(conn: BrokerConnection, *args: Any, **kwargs: Any) -> bool:
            with self.lock:
                if self.left > 0:
                    armed.add(id(conn))
            return real_produce(conn, *args, **kwargs)

        def data_received(conn: BrokerConnection, data: bytes) -> None:
            with self.lock:
                cut = id(conn) in armed and len(data) > 8 and self.left > 0
                if cut:
                    armed.discard(id(conn))
                    self.left -= 1
                    self.cut += 1
            if not cut:
                real_received(conn, data)
                return
            real_received(conn, data[: len(data) // 2])  # the frame is not complete
            conn.eof_received()

        monkeypatch.setattr(BrokerConnection, "produce_nowait", produce_nowait)
        monkeypatch.setattr(BrokerConnection, "data_received", data_received)


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=1) as running:
        yield running


@pytest.mark.parametrize("idempotent", [True, False])
def test_a_produce_answer_cut_mid_frame_is_retried(
    cluster: BlockingCluster, monkeypatch: pytest.MonkeyPatch, idempotent: bool
) -> None:
    cluster.create_topic("cut", 2)
    check = Check(partitions=2)
    failed: list[BaseException] = []
    settings: dict[str, Any] = {**FAST, "enable_idempotence": idempotent}
    with Producer(cluster.bootstrap, on_error=lambda r, e: failed.append(e), **settings) as p:
        p.send("cut", b"warm-up", b"w").result(30)
        check.add(b"w", b"warm-up")
        cuts = CutAnswers(monkeypatch, count=2)
        futures = []
        for i in range(200):
            key, value = b"k%d" % (i % 10), b"v%d" % i
            futures.append(p.send("cut", value, key))
            check.add(key, value)
        for future in futures:
            assert future.result(30).offset >= 0
        assert p.flush(30) == 0
    assert failed == []
    assert cuts.cut == 2
    written = read_topic(cluster.bootstrap, "cut")
    if idempotent:
        check.verify(written)  # nothing lost, nothing duplicated (the broker deduplicates)
    else:
        values = {r.value for records in written.values() for r in records}
        assert values >= {b"v%d" % i for i in range(200)}  # at least once
