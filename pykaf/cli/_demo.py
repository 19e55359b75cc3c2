"""``pykaf demo``: the main job, end to end on the embedded broker.

Starts the embedded broker in its own process (so it does not share our GIL), writes a
million 100-byte messages over several partitions with a live progress bar and the
throughput, then reads the end offset of every partition back from the broker and
checks they add up. Until the producer lands, the writing goes through the public raw
API (``AsyncClient.request`` with batches from ``pykaf.protocol.encode_batch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from pykaf._aio._client import AsyncClient
from pykaf._core._targets import Leader
from pykaf._core._versions import BrokerApiVersions
from pykaf._errors import PykafError
from pykaf.cli._progress import Progress
from pykaf.errors import raise_for_code
from pykaf.protocol import build_request, encode_batch

__all__ = ["DemoOptions", "run_demo"]

_LATEST = -1
_IN_FLIGHT_PER_PARTITION = 4  # pipelined Produce requests per partition (order kept)


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoOptions:
    messages: int = 1_000_000
    partitions: int = 6
    brokers: int = 3
    value_size: int = 100
    batch_records: int = 2_000
    topic: str = "pykaf-demo"

    def __post_init__(self) -> None:
        for name in ("messages", "partitions", "brokers", "value_size", "batch_records"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")


@contextlib.contextmanager
def _broker_process(brokers: int, out: TextIO) -> Iterator[str]:
    """Start ``python -m pykaf.broker --port 0`` and yield its bootstrap (its first line)."""
    cmd = [sys.executable, "-m", "pykaf.broker", "--port", "0", "--brokers", str(brokers)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line:
            raise PykafError(f"the embedded broker did not start (exit code {proc.poll()})")
        print(f"embedded broker: {brokers} broker(s) at {line} (pid {proc.pid})", file=out)
        yield line
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


async def _create_topic(
    client: AsyncClient, versions: BrokerApiVersions, opts: DemoOptions
) -> None:
    request = build_request(
        "CreateTopics",
        versions.version("CreateTopics"),
        topics=[
            {
                "name": opts.topic,
                "num_partitions": opts.partitions,
                "replication_factor": 1,
                "assignments": [],
                "configs": [],
            }
        ],
        timeout=10_000,
        validate_only=False,
    )
    response = await client.request(request, to="any")
    (result,) = response.topics
    raise_for_code(int(result.error_code), result.error_message)


async def _produce_partition(
    client: AsyncClient,
    version: int,
    topic_id: Any,
    partition: int,
    count: int,
    opts: DemoOptions,
    progress: Progress,
) -> None:
    value = b"x" * opts.value_size
    slots = asyncio.Semaphore(_IN_FLIGHT_PER_PARTITION)
    pending: list[asyncio.Task[None]] = []

    async def send(batch: bytes, n: int) -> None:
        try:
            request = build_request(
                "Produce",
                version,
                transactional_id=None,
                acks=1,
                timeout=30_000,
                topic_data=[
                    {
                        "name": opts.topic,
                        "topic_id": topic_id,
                        "partition_data": [{"index": partition, "records": batch}],
                    }
                ],
            )
            response = await client.request(
                request, to=Leader(opts.topic, partition), purpose="produce"
            )
            (answer,) = response.responses[0].partition_responses
            raise_for_code(int(answer.error_code), answer.error_message)
            progress.advance(n)
        finally:
            slots.release()

    sent = 0
    while sent < count:
        n = min(opts.batch_records, count - sent)
        batch = encode_batch([(None, value, None, None)] * n, now_ms=int(time.time() * 1000))
        await slots.acquire()
        pending.append(asyncio.create_task(send(batch, n)))
        sent += n
    await asyncio.gather(*pending)


async def _end_offsets(
    client: AsyncClient, versions: BrokerApiVersions, opts: DemoOptions, leaders: dict[int, int]
) -> dict[int, int]:
    offsets: dict[int, int] = {}
    for partition, leader in sorted(leaders.items()):
        request = build_request(
            "ListOffsets",
            versions.version("ListOffsets"),
            replica_id=-1,
            isolation_level=0,
            timeout=10_000,
            topics=[
                {
                    "name": opts.topic,
                    "partitions": [
                        {
                            "partition_index": partition,
                            "timestamp": _LATEST,
                            "current_leader_epoch": -1,
                        }
                    ],
                }
            ],
        )
        response = await client.request(request, to=leader)
        (answer,) = response.topics[0].partitions
        raise_for_code(int(answer.error_code))
        offsets[partition] = int(answer.offset)
    return offsets


async def _run(bootstrap: str, opts: DemoOptions, out: TextIO) -> int:
    async with AsyncClient(bootstrap, client_id="pykaf-demo") as client:
        versions = await client.api_versions()
        await _create_topic(client, versions, opts)
        metadata = await client.metadata([opts.topic])
        topic = metadata.topics[opts.topic]
        leaders = {p.partition: p.leader for p in topic.partitions}
        produce_version = versions.version("Produce")
        share, extra = divmod(opts.messages, opts.partitions)
        progress = Progress(opts.messages, out=out, label="produce")
        started = time.perf_counter()
        with progress:
            await asyncio.gather(
                *(
                    _produce_partition(
                        client,
                        produce_version,
                        topic.topic_id,
                        p,
                        share + (1 if p < extra else 0),
                        opts,
                        progress,
                    )
                    for p in range(opts.partitions)
                )
            )
        elapsed = time.perf_counter() - started
        rate = opts.messages / elapsed if elapsed > 0 else float("inf")
        megabytes = opts.messages * opts.value_size / elapsed / 1e6 if elapsed > 0 else 0.0
        print(
            f"produced {opts.messages:,} messages of {opts.value_size} B in {elapsed:.2f} s: "
            f"{rate:,.0f} msg/s, {megabytes:.1f} MB/s",
            file=out,
        )
        offsets = await _end_offsets(client, versions, opts, leaders)
    print(f"end offsets read back from the broker, topic {opts.topic!r}:", file=out)
    for partition, offset in offsets.items():
        print(
            f"  partition {partition:>3}  leader {leaders[partition]}  end offset {offset:>10,}",
            file=out,
        )
    total = sum(offsets.values())
    verdict = "OK" if total == opts.messages else "MISMATCH"
    print(f"  total {total:,} of {opts.messages:,} produced: {verdict}", file=out)
    return 0 if total == opts.messages else 1


def run_demo(opts: DemoOptions, out: TextIO = sys.stdout) -> int:
    """Run the demo; the exit status is 0 when every message is accounted for."""
    with _broker_process(opts.brokers, out) as bootstrap:
        return asyncio.run(_run(bootstrap, opts, out))
