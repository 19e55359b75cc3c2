"""Offset commits on a broker with ``--data-dir``: commits per second, and the latency of a
producer beside them, with few and with many stored groups.

    python benchmarks/offset_commits.py [--commits 2000] [--groups 200]

Each row starts a standalone one-broker ``pykaf broker`` (its own process), stores
``--groups`` groups (one commit each; 0 for the first rows), then runs at the same time:
a loop of ``--commits`` OffsetCommit requests one after the other (each waits for its
answer) for one group, and an ``AsyncProducer`` sending one record at a time and timing
each acknowledgement. Rows: in memory, ``--data-dir`` with no stored group, with
``--groups`` stored groups, and the latter with ``--fsync``. Ratios are against the
in-memory row. Before the offsets log (issue 10) each commit rewrote and fsynced one JSON
document of every group: 200 groups took commits from ~1,700/s to ~100/s.

Timings are wall-clock on whatever else the machine is doing: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import pykaf
from pykaf._client._async_client import AsyncClient
from pykaf.protocol._messages import build_request

COMMIT_VERSION = 8


def start_broker(data_dir: str | None, fsync: bool) -> tuple[subprocess.Popen[str], str]:
    args = [sys.executable, "-m", "pykaf.broker", "--port", "0", "--brokers", "1"]
    if data_dir is not None:
        args += ["--data-dir", data_dir]
    if fsync:
        args.append("--fsync")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 20.0)
    if not ready:
        proc.kill()
        raise RuntimeError("the broker did not start within 20 s")
    return proc, proc.stdout.readline().strip()


def commit_request(group: str, offset: int) -> Any:
    return build_request(
        "OffsetCommit",
        COMMIT_VERSION,
        group_id=group,
        generation_id_or_member_epoch=-1,
        member_id="",
        group_instance_id=None,
        topics=[
            {
                "name": "bench",
                "partitions": [
                    {
                        "partition_index": 0,
                        "committed_offset": offset,
                        "committed_leader_epoch": -1,
                        "committed_metadata": "",
                    }
                ],
            }
        ],
    )


async def measure(bootstrap: str, groups: int, commits: int) -> tuple[float, float]:
    """(commits per second, producer p50 in ms while they run)."""
    async with AsyncClient(bootstrap) as client, pykaf.AsyncProducer(bootstrap) as producer:
        await producer.send("bench", b"create")
        for group in range(groups):
            await client.request(commit_request(f"stored-{group}", group), to=1)
        latencies: list[float] = []
        done = asyncio.Event()

        async def produce() -> None:
            while not done.is_set():
                started = time.perf_counter()
                await producer.send("bench", b"x" * 100)
                latencies.append(time.perf_counter() - started)

        producing = asyncio.create_task(produce())
        started = time.perf_counter()
        for offset in range(commits):
            answer = await client.request(commit_request("hot", offset), to=1)
            assert answer.topics[0].partitions[0].error_code == 0
        elapsed = time.perf_counter() - started
        done.set()
        await producing
    return commits / elapsed, statistics.median(latencies) * 1000


def row(
    name: str, data_dir: bool, fsync: bool, groups: int, commits: int
) -> tuple[str, float, float]:
    with tempfile.TemporaryDirectory() as directory:
        proc, bootstrap = start_broker(directory if data_dir else None, fsync)
        try:
            rate, p50 = asyncio.run(measure(bootstrap, groups, commits))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
    return name, rate, p50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=2000)
    parser.add_argument("--groups", type=int, default=200)
    args = parser.parse_args()
    rows = [
        row("in memory", False, False, 0, args.commits),
        row("--data-dir, 0 groups stored", True, False, 0, args.commits),
        row(f"--data-dir, {args.groups} groups stored", True, False, args.groups, args.commits),
        row(f"--data-dir --fsync, {args.groups} groups", True, True, args.groups, args.commits),
    ]
    base_rate, base_p50 = rows[0][1], rows[0][2]
    print(f"{'broker':<36} {'commits/s':>10} {'ratio':>6} {'producer p50':>13} {'ratio':>6}")
    for name, rate, p50 in rows:
        rate_ratio, p50_ratio = rate / base_rate, p50 / base_p50
        print(f"{name:<36} {rate:>10,.0f} {rate_ratio:>6.2f} {p50:>10.2f} ms {p50_ratio:>6.2f}")


if __name__ == "__main__":
    main()
