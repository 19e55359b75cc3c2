"""Consumer exit paths, run as a subprocess by ``test_consumer_exit.py``: the test reads
this process's stderr (asyncio's "Task was destroyed" / "never retrieved" go there at
exit) and bounds it with a subprocess timeout. ``python exit_scenarios.py NAME``."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import threading
import time

from pykaf import AsyncConsumer, Consumer, TopicPartition
from pykaf.broker import BlockingCluster, Cluster

# Fails fast where a lookup can fail; the bounds still hold without it.
FAST = {"request_timeout": 2.0, "fetch_max_wait": 0.1, "retry_backoff": 0.05}
GROUP = {"session_timeout": 6.0, "heartbeat_interval": 0.5, "rebalance_timeout": 1.0}
ROUNDS = 200  # every loop here is bounded


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unreachable_poll_then_exit() -> None:
    """The issue's case: no broker, poll(timeout=1) returns [], the program ends."""
    consumer = Consumer(f"127.0.0.1:{free_port()}", topics=["t"], group_id="g")
    print("polled", consumer.poll(timeout=1))


def poll_raised_then_exit() -> None:
    """A poll raises (the topic does not exist); the program ends without close()."""
    with BlockingCluster(brokers=1) as cluster:
        consumer = Consumer(cluster.bootstrap, topics=["absent"], **FAST)
        for _ in range(ROUNDS):
            try:
                consumer.poll(timeout=0.2)
            except Exception as exc:
                print("raised", type(exc).__name__)
                break


def broker_gone_close() -> None:
    """A group member read records; every broker goes away; close() returns, bounded."""

    async def run() -> None:
        async with Cluster(brokers=1) as cluster:
            await cluster.create_topic("t", 1)
            errors: list[BaseException] = []
            # The default request_timeout (30 s): close() must not wait for it.
            consumer = AsyncConsumer(
                cluster.bootstrap, group_id="gone", on_error=errors.append, **GROUP
            )
            await consumer.assign([TopicPartition("t", 0)])
            await consumer.poll(timeout=0.5)
            await cluster.faults.broker_down(1)
            await consumer.close()
            print("errors", [type(e).__name__ for e in errors])

    asyncio.run(run())


def join_failing_close() -> None:
    """The group cannot be joined (the coordinator answers COORDINATOR_NOT_AVAILABLE),
    the application gives up and closes."""
    with BlockingCluster(brokers=1) as cluster:
        cluster.create_topic("t", 1)
        cluster.faults.push_errors("JoinGroup", [15] * 1000)
        errors: list[BaseException] = []
        consumer = Consumer(
            cluster.bootstrap,
            group_id="nojoin",
            topics=["t"],
            on_error=errors.append,
            **FAST,
            **GROUP,
        )
        deadline = time.monotonic() + 30
        while not errors and time.monotonic() < deadline:
            consumer.poll(timeout=0.2)
        consumer.close(timeout=1.0)
        print("errors", [type(e).__name__ for e in errors])


def join_failed_unseen_close() -> None:
    """The join fails in the background after the last poll returned; then close()."""
    with BlockingCluster(brokers=1) as cluster:
        cluster.create_topic("t", 1)
        cluster.faults.push_errors("JoinGroup", [15] * 1000)
        consumer = Consumer(cluster.bootstrap, group_id="nojoin", topics=["t"], **FAST, **GROUP)
        consumer.poll(timeout=0.5)
        # Setup, not a check: let the join's budget (rebalance_timeout=1) run out unseen.
        time.sleep(2.0)
        consumer.close()


def ctrl_c_in_poll_loop() -> None:
    """Ctrl-C while a poll loop waits (no broker): the program ends on KeyboardInterrupt."""
    consumer = Consumer(f"127.0.0.1:{free_port()}", topics=["t"], group_id="g", **FAST)
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
    try:
        for _ in range(ROUNDS):
            consumer.poll(timeout=0.5)
    except KeyboardInterrupt:
        print("interrupted")


SCENARIOS = {
    f.__name__: f
    for f in (
        unreachable_poll_then_exit,
        poll_raised_then_exit,
        broker_gone_close,
        join_failing_close,
        join_failed_unseen_close,
        ctrl_c_in_poll_loop,
    )
}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]]()
    print("DONE")
