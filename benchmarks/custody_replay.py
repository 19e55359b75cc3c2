"""Replay after an outage: how fast a journaled producer delivers what it took while every
broker was down, beside the same client's memory-level throughput in the same run.

    python benchmarks/custody_replay.py [--messages 200000] [--size 1024] [--runs 3]

One broker, librdkafka's mock cluster (from ``tests/peers``), one topic of 6 partitions,
acks=all with idempotence, linger 5 ms, pykaf's defaults otherwise. Each run, in this
process:

  memory   ``Producer(custody="memory")``: ``produce()`` the records fire-and-forget, then
           ``flush()``; records/s from the first to the last acknowledgement
  outage   ``Producer(custody="journal")``: the broker down (``broker_down``), the same
           records produced (past ``buffer_memory`` they wait in the journal only, the
           rest in memory), then the broker up; records/s delivered from the moment it is
           up to the last acknowledgement (the feed reads the journal back, in order)

Prints each run and the medians, with outage/memory as a ratio. No peer has a journal
to compare with: the memory level is the yardstick (what the same records cost when no
broker was away). A script, not a test: no goal, exit status 0.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from peers.mock_cluster import MockCluster

from pykaf import Producer

TOPIC = "replay"


def memory_run(bootstrap: str, count: int, value: bytes) -> float:
    with Producer(bootstrap, linger=0.005) as producer:
        producer.send(TOPIC, b"warm").result(30)
        start = time.perf_counter()
        for _ in range(count):
            producer.produce(TOPIC, value)
        assert producer.flush(300) == 0
        return count / (time.perf_counter() - start)


def outage_run(mock: MockCluster, count: int, value: bytes) -> tuple[float, int, float]:
    """(records/s delivered once the broker is back, records that waited in the journal
    only, records/s taken while it was down)."""
    with (
        tempfile.TemporaryDirectory() as journal,
        Producer(mock.bootstrap, custody="journal", journal_dir=journal, linger=0.005) as producer,
    ):
        producer.send(TOPIC, b"warm").result(30)
        mock.broker_down(1)
        try:
            start = time.perf_counter()
            for _ in range(count):
                producer.produce(TOPIC, value)
            taken = count / (time.perf_counter() - start)
            spilled = getattr(producer._accumulator, "spilled", 0)
        finally:
            mock.broker_up(1)
        start = time.perf_counter()
        assert producer.flush(600) == 0
        return count / (time.perf_counter() - start), spilled, taken


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    value = os.urandom(args.size)
    memory: list[float] = []
    outage: list[float] = []
    print(f"{args.messages:,} x {args.size} B, {args.runs} run(s); mock cluster, acks=all")
    with MockCluster(1) as mock:
        mock.create_topic(TOPIC, 6, 1)
        for run in range(args.runs):
            memory.append(memory_run(mock.bootstrap, args.messages, value))
            delivered, spilled, taken = outage_run(mock, args.messages, value)
            outage.append(delivered)
            print(
                f"run {run + 1}: memory {memory[-1]:,.0f} records/s; outage: taken while"
                f" down {taken:,.0f} records/s ({spilled:,} in the journal only), delivered"
                f" once back {delivered:,.0f} records/s ({delivered / memory[-1]:.2f}x)",
                flush=True,
            )
    m, o = statistics.median(memory), statistics.median(outage)
    print(
        f"medians: memory {m:,.0f} records/s; delivered after the outage {o:,.0f}"
        f" records/s: {o / m:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
