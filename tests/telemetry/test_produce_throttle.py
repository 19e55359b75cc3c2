"""A broker that throttles Produce (its quota, KIP-219) is heard and obeyed by the producer:
a ``Throttled`` event per throttled answer (naming the broker, in seconds), counted by
``stats()``, no request to that broker before the throttle time has passed, and every
record delivered all the same. On the wire, against the embedded broker's throttle fault.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from producer._produce_readback import read_topic

from pykaf._producer._producer import Producer
from pykaf.broker import BlockingCluster
from pykaf.events import Event, Throttled

THROTTLE = 0.25  # seconds the broker asks for
PRODUCE = 0


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=2) as running:
        running.create_topic("t", 2)
        yield running


def leader_of(cluster: BlockingCluster, partition: int) -> int:
    part = cluster.state.partition("t", partition)
    assert part is not None
    return part.leader


def test_throttled_produce_answers_are_events_with_broker_and_seconds(
    cluster: BlockingCluster,
) -> None:
    leader = leader_of(cluster, 1)
    cluster.faults.set_throttle(THROTTLE, api="Produce", broker=leader)
    events: list[Event] = []
    with Producer(cluster.bootstrap, linger=0.002, on_event=events.append) as producer:
        producer.stats()  # counting starts at the first call
        futures = [producer.send("t", b"v%d" % i, partition=1) for i in range(20)]
        for future in futures:
            future.result(timeout=20)
        throttled = [e for e in events if isinstance(e, Throttled) and e.api == "Produce"]
        stats = producer.stats()
    assert throttled, "no Throttled event for the throttled Produce answers"
    assert {(e.broker, e.throttle_time) for e in throttled} == {(leader, THROTTLE)}
    assert stats.counters["throttles"] >= len(throttled)
    assert stats.brokers[leader].throttles == len(throttled)
    assert stats.durations["throttle_seconds"] == pytest.approx(THROTTLE * len(throttled))
    assert [r.value for r in read_topic(cluster.bootstrap, "t")[1]] == [
        b"v%d" % i for i in range(20)
    ]


def test_nothing_is_sent_to_a_throttled_broker_before_its_throttle_time(
    cluster: BlockingCluster,
) -> None:
    # When each Produce reaches the broker (its own clock: the same monotonic clock).
    arrivals: list[float] = []

    async def note_produce(
        ctx: Any, request: Any, call_next: Callable[[Any, Any], Awaitable[Any]]
    ) -> Any:
        if ctx.api_key == PRODUCE:
            arrivals.append(time.monotonic())
        return await call_next(ctx, request)

    cluster.set_interceptor(note_produce)
    leader = leader_of(cluster, 0)
    cluster.faults.set_throttle(THROTTLE, api="Produce", broker=leader)
    with Producer(cluster.bootstrap, linger=0.0) as producer:
        # Records queued while the broker's answer says "wait": they go after the wait.
        for i in range(4):
            producer.send("t", b"r%d" % i, partition=0).result(timeout=20)
    assert len(arrivals) >= 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    # Each answer was throttled: the next request left only after the throttle time
    # (a millisecond of slack for the clock's resolution).
    assert min(gaps) >= THROTTLE - 0.001, gaps
    assert [r.value for r in read_topic(cluster.bootstrap, "t")[0]] == [
        b"r%d" % i for i in range(4)
    ]


def test_the_throttle_fault_is_armed_per_api_and_broker_and_cleared(
    cluster: BlockingCluster,
) -> None:
    cluster.faults.set_throttle(0.5, api="Produce", broker=1)
    cluster.faults.set_throttle(0.1)
    assert cluster.faults.summary()["throttle"] == {"Produce@1": 0.5, "*@*": 0.1}
    cluster.faults.set_throttle(0, api="Produce", broker=1)
    assert cluster.faults.summary()["throttle"] == {"*@*": 0.1}
    with pytest.raises(ValueError, match="throttle time"):
        cluster.faults.set_throttle(-1)
    cluster.faults.clear()
    assert cluster.faults.summary()["throttle"] == {}
