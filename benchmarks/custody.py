"""Custody levels side by side: memory, journal and journal_sync, beside confluent-kafka.

    python benchmarks/custody.py [--messages 50000] [--latency 500] [--size 1024]
                                 [--batch-size B]  (--latency 0: throughput only)
                                 [--keys N]  (records keyed, N keys in turn)
                                 [--partitions 6] [--runs 3] [--only a,b,...]

One broker: librdkafka's mock cluster in its own process. Every case runs in its own
subprocess (its own GIL), the cases interleaved run by run; each cell is the median of
``--runs`` runs. Values are ``--size`` bytes (1 KiB), acks=all with idempotence (pykaf's
default), linger 5 ms for throughput and 0 for latency, ``--batch-size`` bytes per batch
(pykaf's default, 256 KiB, unless given: ``--batch-size 16384`` shows the Java client's).
Records have no key (the sticky partitioner places them), unless ``--keys N``: then the
throughput runs give them ``N`` keys in turn (Kafka's key hash places them).

Cases:
  memory         ``Producer(custody="memory")``: records in RAM until acknowledged
  journal        ``custody="journal"``: appended to the journal before produce() returns,
                 fsync grouped every ``journal_fsync_interval`` (5 ms)
  journal_sync   ``custody="journal_sync"``: produce() returns after the fsync that
                 covers the record
  confluent      confluent-kafka, memory only (its only custody)

Throughput: ``produce()`` fire-and-forget from one thread, then ``flush()``; msgs/s from
the first record to the last acknowledgement. Latency: ``send(...).result()`` one at a
time (confluent: ``produce`` + ``flush``), p50 and p99 in ms. Also measured alone: one
1 KiB write plus ``os.fdatasync`` on the journal's disk (median and p99 of 200), the
floor under any journal_sync call.

Where the time goes: each throughput run also reads, from ``/proc`` (Linux), the CPU
(user and system) and the page faults (minor and major) of each of the child's threads
over its window, per record; their medians follow the table. The producing thread
(MainThread), the event loop's (pykaf-producer) and the journal's (pykaf-journal,
pykaf-journal-ahead): the first two share one GIL, so their sum, not either alone,
bounds the rate.

Goals (issue 12): journal throughput >= 0.8x memory's; journal_sync one-at-a-time p50
<= memory p50 + one fsync. Reported, and the exit status is 1 when one is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

CASES = ("memory", "journal", "journal_sync", "confluent")
WARMUP = 50


def child(
    case: str,
    mode: str,
    bootstrap: str,
    topic: str,
    count: int,
    size: int,
    batch_size: int,
    keys: int = 0,
) -> dict[str, Any]:
    value = os.urandom(size)
    # None: every record without a key; else ``keys`` keys in turn.
    key_list = [b"key-%d" % i for i in range(keys)] if keys else [None]
    if case == "confluent":
        return _confluent(mode, bootstrap, topic, count, value, key_list)
    from pykaf import Producer  # noqa: PLC0415

    failed = 0

    def on_error(_record: Any, _error: BaseException) -> None:
        nonlocal failed
        failed += 1

    with tempfile.TemporaryDirectory(dir=os.environ.get("CUSTODY_DIR")) as directory:
        options: dict[str, Any] = {"custody": case, "linger": 0.0 if mode == "latency" else 0.005}
        if batch_size:
            options["batch_size"] = batch_size
        if case != "memory":
            options["journal_dir"] = directory
        with Producer(bootstrap, on_error=on_error, **options) as producer:
            producer.send(topic, value).result(30)
            if mode == "latency":
                latencies = []
                for i in range(WARMUP + count):
                    start = time.perf_counter()
                    producer.send(topic, value).result(30)
                    if i >= WARMUP:
                        latencies.append(time.perf_counter() - start)
                return {"latencies": latencies, "failed": failed}
            before = thread_usage()
            start = time.perf_counter()
            produce = producer.produce
            turns = len(key_list)
            for i in range(count):
                produce(topic, value, key_list[i % turns])
            failed += producer.flush(120)
            seconds = time.perf_counter() - start
            threads = per_record(before, thread_usage(), count)
            # Records that went to the journal only (memory full past the short wait) and
            # were read back from disk: the costly way through, shown beside the rate.
            spilled = getattr(producer._accumulator, "spilled", 0)
            return {"seconds": seconds, "failed": failed, "spilled": spilled, "threads": threads}


def _confluent(
    mode: str, bootstrap: str, topic: str, count: int, value: bytes, key_list: list[bytes | None]
) -> dict[str, Any]:
    from confluent_kafka import Producer  # noqa: PLC0415

    failed = 0

    def on_delivery(error: Any, _message: Any) -> None:
        nonlocal failed
        if error is not None:
            failed += 1

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 0 if mode == "latency" else 5,
            "delivery.report.only.error": True,
            "on_delivery": on_delivery,
            "log_level": 3,
        }
    )
    producer.produce(topic, value)
    producer.flush(30)
    if mode == "latency":
        latencies = []
        for i in range(WARMUP + count):
            start = time.perf_counter()
            producer.produce(topic, value)
            producer.flush(30)
            if i >= WARMUP:
                latencies.append(time.perf_counter() - start)
        return {"latencies": latencies, "failed": failed}
    start = time.perf_counter()
    turns = len(key_list)
    for i in range(count):
        while True:
            try:
                producer.produce(topic, value, key_list[i % turns])
                break
            except BufferError:
                producer.poll(0.001)
    failed += producer.flush(120)
    return {"seconds": time.perf_counter() - start, "failed": failed}


def thread_usage() -> dict[str, tuple[int, int, int, int]]:
    """This process's threads by name: (user ticks, system ticks, minor page faults,
    major page faults), from ``/proc`` (none elsewhere). Major: the page was not in the
    page cache (for the journal, a page nobody wrote ahead)."""
    usage = {}
    for thread in threading.enumerate():
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        usage[thread.name] = (int(fields[11]), int(fields[12]), int(fields[7]), int(fields[9]))
    return usage


def per_record(
    before: dict[str, tuple[int, int, int, int]],
    after: dict[str, tuple[int, int, int, int]],
    count: int,
) -> dict[str, list[float]]:
    """Per thread: [user us, system us, minor and major page faults per 1,000] per
    record."""
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    out = {}
    for name, (user, system, minor, major) in after.items():
        user0, system0, minor0, major0 = before.get(name, (0, 0, 0, 0))
        out[name] = [
            (user - user0) * tick_us / count,
            (system - system0) * tick_us / count,
            (minor - minor0) * 1000 / count,
            (major - major0) * 1000 / count,
        ]
    return out


def print_threads(threads: dict[str, list[dict[str, list[float]]]]) -> None:
    """The medians of ``per_record`` over the runs, a line per case."""
    print(
        "where the time goes, per record: user+system us of CPU (minor/major page faults per 1,000)"
    )
    for case, runs in threads.items():
        names = sorted({name for run in runs for name in run})
        cells = []
        for name in names:
            user, system, minor, major = (
                statistics.median(run[name][i] for run in runs if name in run) for i in range(4)
            )
            cells.append(f"{name} {user:.2f}+{system:.2f} ({minor:.0f}/{major:.0f})")
        print(f"  {case:<14}" + "   ".join(cells))


def fsync_alone(samples: int = 200) -> tuple[float, float]:
    """One 1 KiB append plus fdatasync on the journal's disk: median and p99, in ms."""
    times = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("CUSTODY_DIR")) as directory:
        fd = os.open(os.path.join(directory, "probe"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            block = os.urandom(1024)
            for _ in range(samples):
                start = time.perf_counter()
                os.write(fd, block)
                os.fdatasync(fd)
                times.append(time.perf_counter() - start)
        finally:
            os.close(fd)
    times.sort()
    return statistics.median(times) * 1000, times[int(len(times) * 0.99)] * 1000


def run_child(
    args: argparse.Namespace, case: str, mode: str, bootstrap: str, topic: str
) -> dict[str, Any]:
    count = args.latency if mode == "latency" else args.messages
    command = [sys.executable, __file__, "--child", case, mode, bootstrap, topic, str(count)]
    command += ["--size", str(args.size), "--batch-size", str(args.batch_size)]
    command += ["--keys", str(args.keys)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{case} {mode} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--latency", type=int, default=500)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=0, help="pykaf's (0: its default)")
    parser.add_argument("--keys", type=int, default=0, help="keys in turn (0: no key)")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default=",".join(CASES))
    parser.add_argument("--child", nargs=5, metavar=("CASE", "MODE", "BOOTSTRAP", "TOPIC", "N"))
    args = parser.parse_args()
    if args.child:
        case, mode, bootstrap, topic, count = args.child
        print(
            json.dumps(
                child(
                    case, mode, bootstrap, topic, int(count), args.size, args.batch_size, args.keys
                )
            )
        )
        return 0
    from peers.mock_cluster import MockCluster  # noqa: PLC0415

    cases = [c for c in args.only.split(",") if c]
    fsync_p50, fsync_p99 = fsync_alone()
    rates: dict[str, list[float]] = {c: [] for c in cases}
    spilled: dict[str, list[int]] = {c: [] for c in cases}
    lat: dict[str, list[float]] = {c: [] for c in cases}
    threads: dict[str, list[dict[str, list[float]]]] = {c: [] for c in cases if c != "confluent"}
    with MockCluster(1) as mock:
        topic = "custody-bench"
        mock.create_topic(topic, args.partitions, 1)
        for _ in range(args.runs):
            for case in cases:
                result = run_child(args, case, "throughput", mock.bootstrap, topic)
                if result["failed"]:
                    raise RuntimeError(f"{case}: {result['failed']} record(s) failed")
                rates[case].append(args.messages / result["seconds"])
                spilled[case].append(int(result.get("spilled", 0)))
                if result.get("threads") and case in threads:
                    threads[case].append(result["threads"])
                if args.latency > 0:  # ``--latency 0``: throughput only
                    result = run_child(args, case, "latency", mock.bootstrap, topic)
                    lat[case].extend(result["latencies"])
    batches = f"batch_size {args.batch_size}" if args.batch_size else "pykaf's default batch_size"
    keyed = f", {args.keys} keys in turn" if args.keys else ", no keys"
    print(
        f"{args.messages} x {args.size} B{keyed}, {args.runs} run(s); mock cluster, acks=all,"
        f" {batches}"
    )
    print(f"fsync alone (1 KiB write + fdatasync): p50 {fsync_p50:.3f} ms, p99 {fsync_p99:.3f} ms")
    print(
        f"{'case':<14}{'msgs/s':>12}{'vs memory':>11}{'p50 ms':>9}{'p99 ms':>9}"
        f"   {'runs: msgs/s min-max':<22}{'vs memory, run by run'}"
    )
    summary: dict[str, tuple[float, float, float]] = {}
    for case in cases:
        rate = statistics.median(rates[case])
        ordered = sorted(lat[case])
        p50 = statistics.median(ordered) * 1000 if ordered else float("nan")
        p99 = ordered[int(len(ordered) * 0.99)] * 1000 if ordered else float("nan")
        summary[case] = (rate, p50, p99)
    base = summary.get("memory")
    for case, (rate, p50, p99) in summary.items():
        ratio = f"{rate / base[0]:.2f}x" if base else "-"
        spread = f"{min(rates[case]):,.0f}-{max(rates[case]):,.0f}"
        # The cases of one run ran back to back: their ratio shares the machine's mood.
        paired = (
            " ".join(f"{r / m:.2f}" for r, m in zip(rates[case], rates["memory"], strict=True))
            if base
            else "-"
        )
        print(f"{case:<14}{rate:>12,.0f}{ratio:>11}{p50:>9.3f}{p99:>9.3f}   {spread:<22}{paired}")
        if any(spilled[case]):
            print(f"{'':<14}spilled to the journal only, run by run: {spilled[case]}")
    if any(threads.values()):
        print_threads({case: runs for case, runs in threads.items() if runs})
    missed = []
    if base and "journal" in summary and summary["journal"][0] < 0.8 * base[0]:
        missed.append("journal throughput < 0.8x memory")
    if (
        args.latency > 0
        and base
        and "journal_sync" in summary
        and summary["journal_sync"][1] > base[1] + fsync_p50
    ):
        missed.append("journal_sync p50 > memory p50 + one fsync")
    for goal in missed:
        print("goal missed:", goal)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
