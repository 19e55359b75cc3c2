"""Ctrl-C at every call: run by ``test_ctrl_c_anywhere.py`` as ``python ctrl_c_sweep.py NAME``.

Python runs a SIGINT handler, so raises Ctrl-C's ``KeyboardInterrupt``, between any two
calls of the main thread. Here a profile hook raises it at the k-th call into pykaf's
code, for every k a blocking operation makes; the operation is then run once more,
uninterrupted, and must work. The test reads this process's stderr, where Python says
"coroutine ... was never awaited" and asyncio "Task was destroyed but it is pending!".
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from pykaf import (
    Admin,
    AsyncAdmin,
    AsyncConsumer,
    AsyncProducer,
    Client,
    Consumer,
    Producer,
    TopicPartition,
)
from pykaf._client import _ctrl_c
from pykaf.broker import BlockingCluster

PYKAF = str(Path(__file__).resolve().parents[2] / "pykaf")
CALLS = 200  # above the points any one operation below has (the sweep reports its hits)
FAST = {"request_timeout": 2.0, "retry_backoff": 0.05}
# A seek waits for the fetch in flight (up to fetch_max_wait) before position() answers.
CONSUMING = {**FAST, "fetch_max_wait": 0.05}
RECORDS = 3_000  # the async consumer's scenario
GROUP = {"session_timeout": 6.0, "heartbeat_interval": 0.5, "rebalance_timeout": 1.0}


BOTH = ("call", "c_return")


def interrupt_at(k: int, points: tuple[str, ...] = BOTH) -> Callable[[FrameType, str, Any], None]:
    """A profile hook raising KeyboardInterrupt at the k-th point where CPython would run
    a signal handler in pykaf's code: a Python function's start ("call"), and just after
    a C function returns ("c_return": the exception replaces its result, as the check
    after a call does)."""
    calls = 0

    def hook(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal calls
        if event in points and frame.f_code.co_filename.startswith(PYKAF):
            calls += 1
            if calls == k:
                sys.setprofile(None)
                # Ctrl-C itself: Python's handler for it (or the application's, or
                # pykaf's) runs at the next check, as it would for a terminal's.
                signal.raise_signal(signal.SIGINT)

    return hook


def sweep(operation: Callable[[], object], points: tuple[str, ...] = BOTH) -> None:
    """``operation`` interrupted at its 1st, 2nd, ... call into pykaf; then run whole."""
    interrupted = 0
    for k in range(1, CALLS + 1):
        sys.setprofile(interrupt_at(k, points))  # this thread only: the loop's is not interrupted
        try:
            operation()
            again = _ctrl_c.redelivery
            if again is not None:  # pykaf deferred it (mid-append): it lands in here
                again.join()
                threading.Event().wait(1.0)  # interrupted at once: bounded if it were not
        except KeyboardInterrupt:
            interrupted += 1
        finally:
            sys.setprofile(None)
            _ctrl_c.redelivery = None
    print("interrupted", interrupted, "times; then", operation())


def consumer_poll(cluster: BlockingCluster) -> None:
    with Consumer(cluster.bootstrap, topics=["t"], group_id="g", **CONSUMING, **GROUP) as consumer:
        consumer.poll(timeout=5)  # joined: each poll below makes a group step
        sweep(lambda: consumer.poll(timeout=0.01))


def consumer_calls(cluster: BlockingCluster) -> None:
    with Consumer(cluster.bootstrap, group_id="g", **CONSUMING) as consumer:
        tp = TopicPartition("t", 0)
        consumer.assign([tp])

        def calls() -> object:
            consumer.seek_to_beginning(tp)
            consumer.commit({tp: 0})
            return consumer.position(tp), consumer.committed([tp])

        sweep(calls)


def client_metadata(cluster: BlockingCluster) -> None:
    with Client(cluster.bootstrap, **FAST) as client:
        sweep(lambda: sorted(client.metadata(["t"]).topics))


def admin_list_topics(cluster: BlockingCluster) -> None:
    with Admin(cluster.bootstrap, **FAST) as admin:
        sweep(lambda: sorted(admin.list_topics()))


def producer_flush(cluster: BlockingCluster) -> None:
    with Producer(cluster.bootstrap, linger=0.0, **FAST) as producer:
        producer.produce("t", b"warm")  # the topic known: the sweep reaches the append
        producer.flush(5.0)

        def produce_and_flush() -> object:
            producer.produce("t", b"v")
            return producer.flush(5.0)

        sweep(produce_and_flush)


def journaled_producer_flush(cluster: BlockingCluster) -> None:
    with tempfile.TemporaryDirectory() as directory:
        options = {"custody": "journal", "journal_dir": directory, "linger": 0.0, **FAST}
        with Producer(cluster.bootstrap, **options) as producer:
            producer.produce("t", b"warm")
            producer.flush(5.0)

            def produce_and_flush() -> object:
                producer.produce("t", b"v")
                producer.produce_batch("t", [b"w"] * 3)
                return producer.flush(5.0)

            sweep(produce_and_flush)


def async_producer_run_until_complete(cluster: BlockingCluster) -> None:
    # An event loop of the main thread's own (``run_until_complete``, not asyncio.run):
    # Python's SIGINT handler raises wherever the loop is, inside the producer's
    # callbacks and background tasks too.
    loop = asyncio.new_event_loop()
    # This script's own coroutine, made just before run_until_complete wraps it, can meet
    # the interrupt in between (asyncio's, with or without pykaf): not pykaf's noise.
    warnings.filterwarnings(
        "ignore", message=".*produce_and_flush' was never awaited", category=RuntimeWarning
    )

    async def make() -> AsyncProducer:
        return AsyncProducer(cluster.bootstrap, linger=0.0, **FAST)

    producer = loop.run_until_complete(make())

    async def produce_and_flush() -> int:
        for _ in range(3):
            await producer.produce("t", b"v")
        return await producer.flush(5.0)

    def run() -> int:
        return loop.run_until_complete(produce_and_flush())

    run()
    sweep(run)
    loop.run_until_complete(producer.close(5.0))
    loop.close()


def async_consumer_run_until_complete(cluster: BlockingCluster) -> None:
    # As above, an AsyncConsumer in a group: every record is handed out, none skipped.
    # Before, with no handler of pykaf's, 15 of 3,000 were never handed out.
    with Producer(cluster.bootstrap, **FAST) as producer:
        producer.produce_batch("t", [b"%d" % i for i in range(RECORDS)])
        assert producer.flush(10) == 0
    loop = asyncio.new_event_loop()
    warnings.filterwarnings(
        "ignore", message=".*poll_some' was never awaited", category=RuntimeWarning
    )

    async def make() -> AsyncConsumer:
        return AsyncConsumer(
            cluster.bootstrap,
            group_id="async-g",
            topics=["t"],
            auto_offset_reset="earliest",
            **CONSUMING,
            **GROUP,
        )

    consumer = loop.run_until_complete(make())
    seen: set[int] = set()

    async def poll_some() -> bool:
        records = await consumer.poll(timeout=2.0, max_records=5)
        seen.update(r.offset for r in records)
        return bool(records)

    loop.run_until_complete(poll_some())
    sweep(lambda: loop.run_until_complete(poll_some()))
    for _ in range(RECORDS):  # the rest, a few at a time (bounded: a call takes one)
        if len(seen) == RECORDS or not loop.run_until_complete(poll_some()):
            break
    loop.run_until_complete(consumer.close())
    loop.close()
    assert len(seen) == RECORDS, f"{RECORDS - len(seen)} record(s) never handed out"


def async_admin_run_until_complete(cluster: BlockingCluster) -> None:
    # As above, an AsyncAdmin: a request's bookkeeping interrupted left the connection's
    # in-flight slot taken for good, and every later call timed out.
    loop = asyncio.new_event_loop()
    warnings.filterwarnings("ignore", message=".*calls' was never awaited", category=RuntimeWarning)

    async def make() -> AsyncAdmin:
        return AsyncAdmin(cluster.bootstrap, **FAST)

    admin = loop.run_until_complete(make())

    async def calls() -> list[str]:
        topics = await admin.list_topics()
        await admin.describe_cluster()
        return sorted(topics)

    loop.run_until_complete(calls())
    sweep(lambda: loop.run_until_complete(calls()))
    loop.run_until_complete(admin.close())
    loop.close()


SCENARIOS = {
    f.__name__: f
    for f in (
        consumer_poll,
        consumer_calls,
        client_metadata,
        admin_list_topics,
        producer_flush,
        journaled_producer_flush,
        async_producer_run_until_complete,
        async_consumer_run_until_complete,
        async_admin_run_until_complete,
    )
}

if __name__ == "__main__":
    with BlockingCluster(brokers=1) as cluster:
        cluster.create_topic("t", partitions=1)
        SCENARIOS[sys.argv[1]](cluster)
    gc.collect()  # a coroutine never awaited is reported as it is collected
    print("DONE", [t.name for t in threading.enumerate()])
