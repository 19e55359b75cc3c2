"""Consumer throughput: pykaf against confluent-kafka, aiokafka and kafka-python, one run.

    python benchmarks/consume.py [--broker tansu|embedded] [--messages 1000000]
                                 [--size 100] [--partitions 6] [--only a,b,...]
                                 [--profile CLIENT] [--events]

One broker (tansu, or the embedded broker as ``python -m pykaf.broker --port 0``), in its
own process. The topic is filled once (confluent-kafka, explicit partitions round robin),
then every client reads all ``--messages`` records from offset 0 of its ``--partitions``
partitions (assigned, no group), each in its own subprocess so that its peak RSS is its
own. Timed from the consumer's creation to the last record; records are counted, and
their values touched, by the same loop in every client.

Clients: pykaf blocking iteration (``for r in consumer``), pykaf async iteration
(``async for``), pykaf batch reads (``Consumer.poll(timeout, max_records)``), pykaf async
batch reads (``getmany``), confluent-kafka (``consume(num_messages)``), aiokafka
(``getmany``), kafka-python (``poll``). Ratios are against confluent-kafka. Goals (issue
6): pykaf batch reads >= 1.0x confluent-kafka, iteration >= 0.6x. ``--profile CLIENT``
runs that client under cProfile and prints where its time went.

``--events`` (issue 15's cost rule) runs every pykaf client a second time, right after
the first, with a counting subscriber on its telemetry bus (``on_event=``): the row
``CLIENT+events`` says what listening costs (goal: <= 10%), and the event count shows
events are per fetch answer, not per record. Without ``--events`` nobody listens (goal:
within noise of the code before telemetry).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import json
import os
import pstats
import resource
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

CLIENTS = (
    "pykaf-iter",
    "pykaf-async-iter",
    "pykaf-poll",
    "pykaf-async-poll",
    "confluent",
    "aiokafka",
    "kafka-python",
)
GOALS = {"pykaf-poll": 1.0, "pykaf-async-poll": 1.0, "pykaf-iter": 0.6, "pykaf-async-iter": 0.6}
BATCH = 10_000  # records per batch read, for every client that has batch reads
# perf_counter() when the first record arrived (for the steady-state rate).
FIRST: list[float] = [0.0]
# A client that gets nothing new for this long has stalled: it reports what it read.
STALL = 20.0
# Extra options of the pykaf consumers (``--events``: the counting subscriber).
OPTIONS: dict[str, Any] = {}
EVENTS = "+events"


class CountingSubscriber:
    """Counts the events it hears: the cheapest subscriber there is, so what it costs
    is the emitting side's."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, event: object) -> None:
        self.count += 1


# -- the broker and the data ---------------------------------------------------------------


@contextmanager
def embedded() -> Iterator[tuple[str, Callable[[str, int], None]]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pykaf.broker", "--port", "0", "--brokers", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30.0)
        if not ready:
            raise RuntimeError("the embedded broker printed no bootstrap line in 30 s")
        bootstrap = proc.stdout.readline().strip()
        yield bootstrap, lambda topic, partitions: create_topic(bootstrap, topic, partitions)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def tansu_broker() -> Iterator[tuple[str, Callable[[str, int], None]]]:
    from peers.tansu import Tansu  # noqa: PLC0415

    with Tansu() as tansu:
        yield (
            tansu.bootstrap,
            lambda topic, partitions: tansu.create_topic(topic, partitions, timeout=30),
        )


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic  # noqa: PLC0415

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[
        topic
    ].result(30)


def fill(bootstrap: str, topic: str, count: int, size: int, partitions: int) -> float:
    """Produce ``count`` values of ``size`` bytes round robin; seconds taken."""
    from confluent_kafka import Producer  # noqa: PLC0415

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "log_level": 3,
            "acks": 1,
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "batch.num.messages": 10_000,
            "enable.idempotence": False,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "message.timeout.ms": 120_000,
        }
    )
    producer.list_topics(topic, timeout=30)
    failed = [0]

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            failed[0] += 1

    value = b"v" * size
    start = time.perf_counter()
    for i in range(count):
        while True:
            try:
                producer.produce(topic, value, partition=i % partitions, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.01)
    remaining = producer.flush(120)
    if remaining or failed[0]:
        raise RuntimeError(f"filling the topic: {remaining} undelivered, {failed[0]} failed")
    return time.perf_counter() - start


# -- the clients (each in its own process) -------------------------------------------------


def run_pykaf_iter(bootstrap: str, topic: str, partitions: int, expected: int) -> int:
    from pykaf._consumer._consumer import Consumer  # noqa: PLC0415
    from pykaf._consumer._records import TopicPartition  # noqa: PLC0415

    seen = 0
    with Consumer(bootstrap, auto_offset_reset="earliest", **OPTIONS) as consumer:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        nbytes = 0
        for record in consumer:
            if not seen:
                FIRST[0] = time.perf_counter()
            nbytes += len(record.value)  # type: ignore[arg-type]
            seen += 1
            if seen >= expected:
                break
    return seen


def run_pykaf_poll(bootstrap: str, topic: str, partitions: int, expected: int) -> int:
    from pykaf._consumer._consumer import Consumer  # noqa: PLC0415
    from pykaf._consumer._records import TopicPartition  # noqa: PLC0415

    seen = 0
    with Consumer(bootstrap, auto_offset_reset="earliest", **OPTIONS) as consumer:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        last = time.monotonic()
        nbytes = 0
        while seen < expected and time.monotonic() - last < STALL:
            batch = consumer.poll(1.0, BATCH)
            if batch:
                if not seen:
                    FIRST[0] = time.perf_counter()
                for record in batch:
                    nbytes += len(record.value)  # type: ignore[arg-type]
                seen += len(batch)
                last = time.monotonic()
    return seen


def run_pykaf_async_iter(bootstrap: str, topic: str, partitions: int, expected: int) -> int:
    from pykaf._consumer._async_consumer import AsyncConsumer  # noqa: PLC0415
    from pykaf._consumer._records import TopicPartition  # noqa: PLC0415

    async def main() -> int:
        seen = 0
        nbytes = 0
        async with AsyncConsumer(bootstrap, auto_offset_reset="earliest", **OPTIONS) as consumer:
            await consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
            async for record in consumer:
                if not seen:
                    FIRST[0] = time.perf_counter()
                nbytes += len(record.value)  # type: ignore[arg-type]
                seen += 1
                if seen >= expected:
                    break
        return seen

    return asyncio.run(main())


def run_pykaf_async_poll(bootstrap: str, topic: str, partitions: int, expected: int) -> int:
    from pykaf._consumer._async_consumer import AsyncConsumer  # noqa: PLC0415
    from pykaf._consumer._records import TopicPartition  # noqa: PLC0415

    async def main() -> int:
        seen = 0
        nbytes = 0
        async with AsyncConsumer(bootstrap, auto_offset_reset="earliest", **OPTIONS) as consumer:
            await consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
            last = time.monotonic()
            while seen < expected and time.monotonic() - last < STALL:
                batch = await consumer.getmany(1.0, BATCH)
                if batch:
                    if not seen:
                        FIRST[0] = time.perf_counter()
                    for record in batch:
                        nbytes += len(record.value)  # type: ignore[arg-type]
                    seen += len(batch)
                    last = time.monotonic()
        return seen

    return asyncio.run(main())


def run_confluent(bootstrap: str, topic: str, partitions: int, expected: int) -> int:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException  # noqa: PLC0415
    from confluent_kafka import TopicPartition as CTopicPartition  # noqa: PLC0415

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "benchmark",  # assign() only: no group is joined
            "enable.auto.commit": False,
            "log_level": 3,
            "fetch.wait.max.ms": 100,
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 1_048_576,
            "queued.min.messages": 1_000_000,
            "queued.max.messages.kbytes": 65_536,
        }
    )
    seen = 0
    try:
        consumer.assign([CTopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        last = time.monotonic()
        nbytes = 0
        while seen < expected and time.monotonic() - last < STALL:
            batch = consumer.consume(BATCH, 1.0)
            if batch:
                if not seen:
                    FIRST[0] = time.perf_counter()
                for msg in batch:
                    if msg.error() is not None:
                        raise KafkaException(msg.error())
                    nbytes += len(msg.value())
                seen += len(batch)
                last = time.monotonic()
    finally:
        consumer.close()
    return seen


def run_aiokafka(bootstrap: str, topic: str, partitions: int, expected: int) -> int:
    import aiokafka  # noqa: PLC0415

    async def main() -> int:
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            max_partition_fetch_bytes=1_048_576,
            fetch_max_bytes=52_428_800,
        )
        await consumer.start()
        seen = 0
        try:
            consumer.assign([aiokafka.TopicPartition(topic, p) for p in range(partitions)])
            await consumer.seek_to_beginning()
            last = time.monotonic()
            nbytes = 0
            while seen < expected and time.monotonic() - last < STALL:
                batches = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
                for records in batches.values():
                    if not seen:
                        FIRST[0] = time.perf_counter()
                    for record in records:
                        nbytes += len(record.value)
                    seen += len(records)
                    last = time.monotonic()
        finally:
            await consumer.stop()
        return seen

    return asyncio.run(main())


def run_kafka_python(bootstrap: str, topic: str, partitions: int, expected: int) -> int:
    import kafka  # noqa: PLC0415

    consumer = kafka.KafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=1_048_576,
        fetch_max_bytes=52_428_800,
    )
    seen = 0
    try:
        consumer.assign([kafka.TopicPartition(topic, p) for p in range(partitions)])
        consumer.seek_to_beginning()
        last = time.monotonic()
        nbytes = 0
        while seen < expected and time.monotonic() - last < STALL:
            batches = consumer.poll(timeout_ms=1000, max_records=BATCH)
            for records in batches.values():
                if not seen:
                    FIRST[0] = time.perf_counter()
                for record in records:
                    nbytes += len(record.value)
                seen += len(records)
                last = time.monotonic()
    finally:
        consumer.close()
    return seen


RUNNERS = {
    "pykaf-iter": run_pykaf_iter,
    "pykaf-async-iter": run_pykaf_async_iter,
    "pykaf-poll": run_pykaf_poll,
    "pykaf-async-poll": run_pykaf_async_poll,
    "confluent": run_confluent,
    "aiokafka": run_aiokafka,
    "kafka-python": run_kafka_python,
}


def peak_rss_kib() -> int:
    """This process's peak RSS. VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss
    across exec, so a child would report its parent's peak when that is higher."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


IMPORTS = {
    "pykaf-iter": "pykaf._consumer._consumer",
    "pykaf-async-iter": "pykaf._consumer._async_consumer",
    "pykaf-poll": "pykaf._consumer._consumer",
    "pykaf-async-poll": "pykaf._consumer._async_consumer",
    "confluent": "confluent_kafka",
    "aiokafka": "aiokafka",
    "kafka-python": "kafka",
}


def cpu_seconds() -> float:
    """CPU time of this process, every thread (the loop thread too): on a shared machine
    the cost of a change shows here better than in the wall clock, which other processes
    stretch."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(args: argparse.Namespace) -> int:
    name = args.child.removesuffix(EVENTS)
    runner = RUNNERS[name]
    counter = CountingSubscriber()
    if args.child.endswith(EVENTS):
        OPTIONS["on_event"] = counter
    # A one-time cost of the process, not of reading records: outside the timing.
    importlib.import_module(IMPORTS[name])
    profiler = cProfile.Profile() if args.profile == args.child else None
    cpu_before = cpu_seconds()
    start = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    seen = runner(args.bootstrap, args.topic, args.partitions, args.messages)
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_before
    if profiler is not None:
        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(30)
    rss_kib = peak_rss_kib()
    steady = start + elapsed - FIRST[0] if FIRST[0] else float("nan")
    print(
        json.dumps(
            {
                "seen": seen,
                "seconds": elapsed,
                "steady": steady,
                "rss_kib": rss_kib,
                "events": counter.count,
                "cpu": cpu,
            }
        )
    )
    return 0


def measure(client: str, bootstrap: str, topic: str, args: argparse.Namespace) -> dict[str, float]:
    command = [
        sys.executable,
        __file__,
        "--child",
        client,
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--partitions",
        str(args.partitions),
        "--messages",
        str(args.messages),
    ]
    if args.profile:
        command += ["--profile", args.profile]
    out = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if args.profile == client:
        print(out.stderr[-12000:])
    if out.returncode != 0 or not out.stdout.strip():
        print(f"{client} failed:\n{out.stderr[-3000:]}")
        return {"seen": 0, "seconds": float("nan"), "rss_kib": 0, "events": 0, "cpu": 0}
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=("tansu", "embedded"), default="tansu")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--only", default=",".join(CLIENTS))
    parser.add_argument("--profile", default=None, help="cProfile this client")
    parser.add_argument(
        "--events",
        action="store_true",
        help="run every pykaf client again with a counting telemetry subscriber",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--topic", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    import confluent_kafka  # noqa: PLC0415

    from pykaf.protocol import using_c_accelerator  # noqa: PLC0415

    wanted = [c for c in args.only.split(",") if c]
    for name in wanted:
        if name not in RUNNERS:
            parser.error(f"unknown client {name!r}; known: {', '.join(CLIENTS)}")
    if args.events:
        wanted = [
            run for name in wanted for run in (name, name + EVENTS)[: 2 if "pykaf" in name else 1]
        ]
    print(
        f"python {sys.version.split()[0]}, confluent-kafka {confluent_kafka.version()[0]}"
        f" (librdkafka {confluent_kafka.libversion()[0]}), pykaf C records:"
        f" {using_c_accelerator()}, {os.cpu_count()} cpus"
    )
    topic = f"consume-{int(time.time())}"
    results: dict[str, dict[str, float]] = {}
    with tansu_broker() if args.broker == "tansu" else embedded() as (bootstrap, make_topic):
        make_topic(topic, args.partitions)
        took = fill(bootstrap, topic, args.messages, args.size, args.partitions)
        print(
            f"{args.broker} at {bootstrap}: {args.messages:,} x {args.size} B into {topic}"
            f" ({args.partitions} partitions) in {took:.1f} s"
        )
        for client in wanted:
            results[client] = measure(client, bootstrap, topic, args)
            r = results[client]
            heard = f", {r['events']:,.0f} events" if client.endswith(EVENTS) else ""
            print(
                f"  {client:<17} {r['seen']:>9,.0f} records in {r['seconds']:.2f} s{heard}",
                flush=True,
            )

    def rates(r: dict[str, float]) -> tuple[float, float]:
        wall = r["seen"] / r["seconds"] if r["seconds"] > 0 else 0.0
        steady = r["seen"] / r["steady"] if r.get("steady", 0) > 0 else 0.0
        return wall, steady

    base = rates(results["confluent"]) if "confluent" in results else None
    print(
        "\nmsgs/s from the consumer's creation to the last record (ratio to confluent-kafka),"
        " then from the first record to the last (steady state)"
    )
    print(
        f"{'client':<17} {'msgs/s':>11} {'ratio':>6} {'steady/s':>11} {'ratio':>6}"
        f" {'peak RSS MiB':>13} {'CPU s':>6}  complete"
    )
    failed = 0
    for client, r in results.items():
        wall, steady = rates(r)
        ratio = wall / base[0] if base and base[0] else float("nan")
        steady_ratio = steady / base[1] if base and base[1] else float("nan")
        complete = "yes" if r["seen"] == args.messages else f"NO ({r['seen']:,.0f})"
        print(
            f"{client:<17} {wall:>11,.0f} {ratio:>6.2f} {steady:>11,.0f} {steady_ratio:>6.2f}"
            f" {r['rss_kib'] / 1024:>13.1f} {r.get('cpu', 0):>6.2f}  {complete}"
        )
        failed += r["seen"] != args.messages
    for client, r in results.items():
        plain = results.get(client.removesuffix(EVENTS))
        if client.endswith(EVENTS) and plain and r["cpu"] > 0 and plain["cpu"] > 0:
            wall = r["seconds"] / plain["seconds"] - 1
            cpu = r["cpu"] / plain["cpu"] - 1
            print(
                f"{client}: a counting subscriber costs {cpu:+.1%} CPU, {wall:+.1%} wall"
                " (goal <= +10%)"
            )
    for client, goal in GOALS.items():
        if client in results and base and base[0]:
            ratio = rates(results[client])[0] / base[0]
            verdict = "PASS" if ratio >= goal else "MISS"
            print(f"{verdict} {client}: {ratio:.2f}x confluent-kafka (goal >= {goal:g}x)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
