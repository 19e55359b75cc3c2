"""Request round trips against librdkafka's mock cluster: pykaf beside confluent-kafka and
aiokafka, in one run.

    python benchmarks/requests.py [--n 2000] [--warmup 200] [--topics 1]

One mock cluster (3 brokers, its own process, started like the test fixture) serves every
client. Each row sends ``--n`` requests one after the other (each waits for its answer) and
reports the latency percentiles; ratios are p50 against pykaf's row for the same kind of
call. The rows are interleaved (``--rounds`` slices each), so that a busy moment on a
shared machine lands on every client alike. Rows:

- Metadata for one topic: pykaf ``AsyncClient.request`` (a raw kio request, to broker 1),
  ``AsyncClient.metadata([topic])`` (the typed view, cache update included), the blocking
  ``Client.request`` (a hop to the client's loop thread and back), confluent-kafka's
  ``AdminClient.list_topics(topic=...)`` and aiokafka's ``AIOKafkaClient.send`` of a
  ``MetadataRequest``, plus ``fetch_all_metadata()``;
- ApiVersions: pykaf ``AsyncClient.request`` and aiokafka ``AIOKafkaClient.send``
  (confluent-kafka has no call that sends one on demand);
- Metadata with 64 requests in flight at once (pipelined), pykaf and aiokafka: the time per
  request, i.e. the inverse of the throughput.

Timings are wall-clock on whatever else the machine is doing: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The mock cluster lives with the test fixtures; benchmarks reuse it rather than copy it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from peers.mock_cluster import MockCluster

import pykaf
from pykaf._client._async_client import AsyncClient
from pykaf._client._client import Client
from pykaf.protocol._messages import build_request

try:
    import confluent_kafka
    from confluent_kafka.admin import AdminClient
except ImportError:  # optional: its rows are skipped
    confluent_kafka = None
try:
    import aiokafka
    from aiokafka.client import AIOKafkaClient
    from aiokafka.protocol.admin import ApiVersionRequest
    from aiokafka.protocol.metadata import MetadataRequest
except ImportError:
    aiokafka = None

TOPIC = "bench"
PIPELINE = 64
_PYKAF = "pykaf AsyncClient.request"
_AIOKAFKA = "aiokafka AIOKafkaClient.send"
_PIPELINED = f"Metadata x{PIPELINE} in flight"


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    kind: str
    client: str
    p50_us: float
    p99_us: float
    mean_us: float


def _row(kind: str, client: str, samples_ns: list[int]) -> Row:
    samples = sorted(samples_ns)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return Row(
        kind=kind,
        client=client,
        p50_us=statistics.median(samples) / 1000,
        p99_us=p99 / 1000,
        mean_us=statistics.fmean(samples) / 1000,
    )


@dataclass(slots=True)
class Case:
    """One row: ``call`` is a coroutine function (awaited) or a plain blocking function;
    ``pipelined`` cases send PIPELINE calls at once and record the time per call."""

    kind: str
    client: str
    call: Callable[[], Any]
    is_async: bool
    pipelined: bool = False
    samples: list[int] | None = None


async def _run_case(case: Case, count: int) -> list[int]:
    clock = time.perf_counter_ns
    samples = []
    if case.pipelined:
        for _ in range(max(1, count // PIPELINE)):
            start = clock()
            await asyncio.gather(*(case.call() for _ in range(PIPELINE)))
            samples.append((clock() - start) // PIPELINE)
    elif case.is_async:
        for _ in range(count):
            start = clock()
            await case.call()
            samples.append(clock() - start)
    else:
        for _ in range(count):
            start = clock()
            case.call()
            samples.append(clock() - start)
    return samples


async def _measure(cases: list[Case], n: int, warmup: int, rounds: int) -> None:
    """Interleaved: every round runs a slice of every case, so a busy moment on the
    machine lands on all clients alike instead of on whichever row ran then."""
    for case in cases:
        await _run_case(case, warmup)
        case.samples = []
    per_round = max(1, n // rounds)
    for _ in range(rounds):
        gc.collect()
        for case in cases:
            assert case.samples is not None
            case.samples += await _run_case(case, per_round)


def _metadata_request(version: int) -> Any:
    return build_request(
        "Metadata",
        version,
        topics=[{"name": TOPIC, "topic_id": None}],
        allow_auto_topic_creation=False,
        include_cluster_authorized_operations=False,
        include_topic_authorized_operations=False,
    )


async def _run(bootstrap: str, n: int, warmup: int, rounds: int) -> list[Row]:
    cases: list[Case] = []
    client = AsyncClient(bootstrap)
    blocking = Client(bootstrap)
    versions = await client.api_versions(1)
    metadata = _metadata_request(versions.version("Metadata"))
    api_versions = build_request(
        "ApiVersions",
        versions.version("ApiVersions"),
        client_software_name="pykaf",
        client_software_version="0",
    )

    async def raw_metadata() -> Any:
        return await client.request(metadata, to=1)

    async def typed_metadata() -> Any:
        return await client.metadata([TOPIC])

    async def raw_api_versions() -> Any:
        return await client.request(api_versions, to=1)

    def blocking_metadata() -> Any:
        return blocking.request(metadata, to=1)

    cases += [
        Case(kind="Metadata", client=_PYKAF, call=raw_metadata, is_async=True),
        Case(
            kind="Metadata", client="pykaf AsyncClient.metadata", call=typed_metadata, is_async=True
        ),
        Case(
            kind="Metadata",
            client="pykaf Client.request (blocking)",
            call=blocking_metadata,
            is_async=False,
        ),
        Case(kind="ApiVersions", client=_PYKAF, call=raw_api_versions, is_async=True),
        Case(kind=_PIPELINED, client=_PYKAF, call=raw_metadata, is_async=True, pipelined=True),
    ]
    admin = None
    if confluent_kafka is not None:
        admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})

        def list_topics() -> Any:
            return admin.list_topics(topic=TOPIC, timeout=10)

        cases.append(
            Case(
                kind="Metadata",
                client="confluent-kafka AdminClient.list_topics",
                call=list_topics,
                is_async=False,
            )
        )
    aio = None
    if aiokafka is not None:
        aio = AIOKafkaClient(bootstrap_servers=bootstrap)
        await aio.bootstrap()

        async def aio_metadata() -> Any:
            return await aio.send(1, MetadataRequest([TOPIC], False))

        async def aio_api_versions() -> Any:
            return await aio.send(1, ApiVersionRequest())

        cases += [
            Case(kind="Metadata", client=_AIOKAFKA, call=aio_metadata, is_async=True),
            Case(
                kind="Metadata",
                client="aiokafka fetch_all_metadata",
                call=aio.fetch_all_metadata,
                is_async=True,
            ),
            Case(kind="ApiVersions", client=_AIOKAFKA, call=aio_api_versions, is_async=True),
            Case(
                kind=_PIPELINED, client=_AIOKAFKA, call=aio_metadata, is_async=True, pipelined=True
            ),
        ]
    try:
        await _measure(cases, n, warmup, rounds)
    finally:
        await client.close()
        blocking.close()
        if aio is not None:
            await aio.close()
    order = {"Metadata": 0, "ApiVersions": 1}
    cases.sort(key=lambda c: order.get(c.kind, 2))
    return [_row(c.kind, c.client, c.samples or [0]) for c in cases]


def _print(rows: list[Row]) -> None:
    baseline: dict[str, float] = {}
    for row in rows:
        if row.client == _PYKAF:
            baseline[row.kind] = row.p50_us
    width = max(len(r.client) for r in rows)
    kind_width = max(len(r.kind) for r in rows)
    print(
        f"{'call':<{kind_width}}  {'client':<{width}}  {'p50 us':>8}  {'p99 us':>8}"
        f"  {'mean us':>8}  {'p50 / pykaf':>11}"
    )
    for row in rows:
        base = baseline.get(row.kind)
        ratio = f"{row.p50_us / base:10.2f}x" if base else "-"
        print(
            f"{row.kind:<{kind_width}}  {row.client:<{width}}  {row.p50_us:8.1f}"
            f"  {row.p99_us:8.1f}  {row.mean_us:8.1f}  {ratio:>11}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="timed calls per row")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls first")
    parser.add_argument("--rounds", type=int, default=20, help="interleaving rounds")
    args = parser.parse_args()
    versions = [f"pykaf {pykaf.__version__}", f"Python {platform.python_version()}"]
    if confluent_kafka is not None:
        versions.append(f"confluent-kafka {confluent_kafka.version()[0]}")
        versions.append(f"librdkafka {confluent_kafka.libversion()[0]}")
    if aiokafka is not None:
        versions.append(f"aiokafka {aiokafka.__version__}")
    print(", ".join(versions))
    with MockCluster(3) as cluster:
        cluster.create_topic(TOPIC, 3, 1)
        rows = asyncio.run(_run(cluster.bootstrap, args.n, args.warmup, args.rounds))
    print(
        f"mock cluster, 3 brokers; {args.n} calls per row after {args.warmup},"
        f" interleaved over {args.rounds} rounds"
    )
    _print(rows)


if __name__ == "__main__":
    main()
