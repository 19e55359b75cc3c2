"""What telemetry costs the producer: pykaf with nothing attached, with a StatsCollector,
with stats pushed every second, with statsd, with Prometheus, beside confluent-kafka with
and without ``statistics.interval.ms``, in the same run.

    python benchmarks/telemetry.py [--messages 300000] [--runs 3] [--size 100]
                                   [--partitions 6] [--linger-ms 5] [--config acks1|idem]

One broker: librdkafka's mock cluster in its own process (as ``produce.py``). Every row
runs in its own subprocess, rows interleaved run by run; each cell is the median of
``--runs`` runs of fire-and-forget ``produce`` (msgs/s from the first timed record to
the last acknowledgement, after a warm-up record). Rows:

  pykaf              nothing attached (the events are not even built)
  pykaf+stats        ``telemetry.stats_collector(producer)``, read once at the end
  pykaf+stats-1s     ``telemetry.stats_every(producer, 1.0, callback)`` (the callback
                     turns the snapshot into JSON, as librdkafka hands one over)
  pykaf+statsd       ``telemetry.statsd(producer, "127.0.0.1", port)``: the parent reads
                     the datagrams (a real listener, so nothing is refused)
  pykaf+prometheus   ``prometheus_collector(producer)`` registered, scraped every second
                     (``generate_latest`` in a thread of the child, as a scrape would)
  confluent          ``produce`` with ``delivery.report.only.error``
  confluent+stats-1s the same with ``statistics.interval.ms=1000`` and a ``stats_cb``
                     that parses the JSON document

Ratios: each pykaf row against ``pykaf``, each confluent row against ``confluent``, and
every row against ``confluent``; beside msgs/s, the CPU the child used per record (every
thread, user + system), steadier than the wall clock on a shared machine. Goal (issue
15): statsd and Prometheus attached cost at most 10% (records per CPU second >= 0.90x
of ``pykaf``'s); exit status 1 if missed. The load average before and after is printed:
the machine is shared, read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

ROWS = (
    "pykaf",
    "pykaf+stats",
    "pykaf+stats-1s",
    "pykaf+statsd",
    "pykaf+prometheus",
    "confluent",
    "confluent+stats-1s",
)
CONFIGS = {"acks1": (1, False), "idem": ("all", True)}
GOALS = {"pykaf+statsd": 0.90, "pykaf+prometheus": 0.90}


# -- the child: one row, one run ----------------------------------------------------------


def _attach(row: str, producer: Any, statsd_port: int) -> Any:
    from pykaf import telemetry  # noqa: PLC0415

    if row == "pykaf+stats":
        return telemetry.stats_collector(producer)
    if row == "pykaf+stats-1s":
        return telemetry.stats_every(producer, 1.0, lambda s: json.dumps(s.as_dict()))
    if row == "pykaf+statsd":
        return telemetry.statsd(producer, "127.0.0.1", statsd_port)
    if row == "pykaf+prometheus":
        from prometheus_client import CollectorRegistry, generate_latest  # noqa: PLC0415

        registry = CollectorRegistry()
        collector = telemetry.prometheus_collector(producer)
        registry.register(collector)
        stop = threading.Event()

        def scrape() -> None:
            while not stop.wait(1.0):
                generate_latest(registry)

        scraper = threading.Thread(target=scrape, daemon=True)
        scraper.start()

        class Scraped:
            def close(self) -> None:
                stop.set()
                scraper.join(5)
                generate_latest(registry)
                collector.close()

        return Scraped()
    return None


def cpu_seconds() -> float:
    """CPU this process used so far, every thread (user + system): on a shared machine a
    steadier measure of what a row costs than the wall clock."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_pykaf(args: argparse.Namespace) -> dict[str, Any]:
    from pykaf import Producer  # noqa: PLC0415

    acks, idempotence = CONFIGS[args.config]
    failed = 0

    def on_error(_record: Any, _error: BaseException) -> None:
        nonlocal failed
        failed += 1

    topic, value = args.topic, b"v" * args.size
    with Producer(
        args.bootstrap,
        on_error=on_error,
        acks=acks,
        enable_idempotence=idempotence,
        linger=args.linger_ms / 1000,
    ) as producer:
        attached = _attach(args.child, producer, args.statsd_port)
        producer.send(topic, value).result(30)
        start, cpu = time.perf_counter(), cpu_seconds()
        produce = producer.produce
        for _ in range(args.messages):
            produce(topic, value)
        failed += producer.flush(120)
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        if attached is not None:
            attached.close()
    return {"seconds": seconds, "cpu": cpu, "failed": failed}


def run_confluent(args: argparse.Namespace) -> dict[str, Any]:
    from confluent_kafka import Producer  # noqa: PLC0415

    acks, idempotence = CONFIGS[args.config]
    failed = 0
    documents = 0

    def on_delivery(error: Any, _message: Any) -> None:
        nonlocal failed
        if error is not None:
            failed += 1

    def on_stats(document: str) -> None:
        nonlocal documents
        json.loads(document)
        documents += 1

    config: dict[str, Any] = {
        "bootstrap.servers": args.bootstrap,
        "acks": str(acks),
        "enable.idempotence": idempotence,
        "linger.ms": args.linger_ms,
        "log_level": 3,
        "delivery.report.only.error": True,
        "on_delivery": on_delivery,
    }
    if args.child == "confluent+stats-1s":
        config["statistics.interval.ms"] = 1000
        config["stats_cb"] = on_stats
    producer = Producer(config)
    topic, value = args.topic, b"v" * args.size
    produce, poll, flush = producer.produce, producer.poll, producer.flush
    produce(topic, value)
    if flush(30):
        raise RuntimeError("confluent-kafka: the warm-up record was not delivered")
    start, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(args.messages):
        while True:
            try:
                produce(topic, value)
                break
            except BufferError:  # its queue is full: serve it, then try again
                poll(0.001)
    failed += flush(120)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    return {"seconds": seconds, "cpu": cpu, "failed": failed, "documents": documents}


def child(args: argparse.Namespace) -> int:
    # Imports are a cost of the process, not of producing: made before the clock starts.
    if args.child.startswith("confluent"):
        import confluent_kafka  # noqa: F401, PLC0415

        result = run_confluent(args)
    else:
        import pykaf  # noqa: PLC0415
        import pykaf.telemetry  # noqa: F401, PLC0415

        result = run_pykaf(args)
    print(json.dumps(result))
    return 0


# -- the parent: the broker, a statsd listener, the runs, the table -------------------------


class StatsdSink:
    """Reads (and counts) the statsd datagrams, in the parent, so the child's sends are
    real sends to a real listener."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.datagrams = 0
        self.lines = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            self.datagrams += 1
            self.lines += data.count(b"\n") + 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def run_row(row: str, args: argparse.Namespace, bootstrap: str, port: int) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--child",
        row,
        "--bootstrap",
        bootstrap,
        "--topic",
        args.topic,
        "--messages",
        str(args.messages),
        "--size",
        str(args.size),
        "--linger-ms",
        str(args.linger_ms),
        "--config",
        args.config,
        "--statsd-port",
        str(port),
    ]
    out = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    if out.returncode != 0 or not out.stdout.strip():
        raise RuntimeError(f"{row} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--linger-ms", type=float, default=5.0)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="acks1")
    parser.add_argument("--only", default=",".join(ROWS))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--topic", default="telemetry-bench", help=argparse.SUPPRESS)
    parser.add_argument("--statsd-port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    rows = [r for r in ROWS if r in args.only.split(",")]

    import confluent_kafka  # noqa: PLC0415
    from peers.mock_cluster import MockCluster  # noqa: PLC0415

    load_before = os.getloadavg()
    print(
        f"python {sys.version.split()[0]}, confluent-kafka {confluent_kafka.version()[0]}"
        f" (librdkafka {confluent_kafka.libversion()[0]}), {os.cpu_count()} cpus, load"
        f" average {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}"
    )
    sink = StatsdSink()
    rates: dict[str, list[float]] = {row: [] for row in rows}
    cpu_per_record: dict[str, list[float]] = {row: [] for row in rows}
    try:
        with MockCluster(1) as mock:
            mock.create_topic(args.topic, args.partitions, 1)
            print(f"librdkafka mock cluster (1 broker) at {mock.bootstrap}; {args.config}")
            for run in range(args.runs):
                for row in rows:
                    result = run_row(row, args, mock.bootstrap, sink.port)
                    if result["failed"]:
                        raise RuntimeError(f"{row}: {result['failed']} records failed")
                    rate = args.messages / result["seconds"]
                    rates[row].append(rate)
                    cpu_per_record[row].append(result["cpu"] / args.messages * 1e6)
                    print(
                        f"  run {run + 1} {row:<20} {rate:>11,.0f} msgs/s"
                        f" {cpu_per_record[row][-1]:>6.2f} CPU us/record",
                        flush=True,
                    )
    finally:
        sink.close()
    load_after = os.getloadavg()
    median = {row: statistics.median(values) for row, values in rates.items() if values}
    cpu = {row: statistics.median(values) for row, values in cpu_per_record.items() if values}
    print(
        f"\n{args.messages:,} records of {args.size} B, {args.partitions} partitions, linger"
        f" {args.linger_ms:g} ms, {args.config}, median of {args.runs}"
    )
    print(
        f"{'row':<20} {'msgs/s':>11} {'vs own':>7} {'vs confluent':>13}"
        f" {'CPU us/rec':>11} {'CPU vs own':>11}"
    )
    for row in rows:
        base = "confluent" if row.startswith("confluent") else "pykaf"
        own, theirs, mine = median.get(base), median.get("confluent"), median[row]
        own_cpu = cpu.get(base)
        print(
            f"{row:<20} {mine:>11,.0f} {mine / own if own else float('nan'):>7.2f}"
            f" {mine / theirs if theirs else float('nan'):>13.2f} {cpu[row]:>11.2f}"
            f" {cpu[row] / own_cpu if own_cpu else float('nan'):>11.2f}"
        )
    print(f"statsd listener: {sink.datagrams:,} datagrams, {sink.lines:,} lines")
    print(
        f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}"
        f" ({os.cpu_count()} cpus)"
    )
    missed = 0
    print("\ngoals")
    for row, goal in GOALS.items():
        if row not in median or "pykaf" not in median:
            continue
        # Judged on CPU per record (what the bridge costs the process); the wall-clock
        # ratio is printed beside it, and moves with whatever else the machine runs.
        ratio = cpu["pykaf"] / cpu[row]
        ok = ratio >= goal
        missed += not ok
        print(
            f"  {'PASS' if ok else 'MISS'} {row} vs pykaf: {ratio:.2f}x the records per CPU"
            f" second (goal >= {goal:g}x); wall clock {median[row] / median['pykaf']:.2f}x"
        )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
