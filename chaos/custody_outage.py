"""An outage of the whole cluster under a steady producer with custody "journal", measured.

    python chaos/custody_outage.py [--outage 600] [--rate 2000] [--value-size 1024]
                                   [--partitions 6] [--buffer-memory 16777216] [--stop kill]

The embedded broker runs in a subprocess with an on-disk log (``--data-dir``). In this
process a ``Producer(custody="journal", buffer_memory=16 MiB)`` produces unique values (each
carries its sequence number) at a fixed, paced rate over several partitions. After
``--before`` seconds the broker is stopped (SIGKILL, or SIGTERM with ``--stop clean``) for
``--outage`` seconds (its port held meanwhile, bound and not listening, so that no other
program takes it), then restarted on the same data directory and port; production goes on
for ``--after`` seconds more, then stops, and the script waits (``--drain-timeout``) until
every record accepted has its report; a ``flush()`` begun at the restart times the drain of
the outage's backlog. Every second it samples this process's memory
(VmRSS, RssAnon, RssFile from /proc/self/status) and the journal's size on disk.

Then it consumes the topic and counts, per partition:
  lost        accepted values (produce() returned) that are not in Kafka
  duplicated  values present more than once
  reordered   values behind a larger sequence number already read in that partition
and prints the summary: max RSS (what the run added to the interpreter's own, checked
against ``buffer_memory`` + 32 MiB; anonymous and file-backed apart, since the journal's
mapped segments count as file-backed pages of this process; ``--memory-bound anon`` checks
the anonymous growth only), the journal's peak, the
records produced, the rate at which produce() accepted them in each phase and the time it
spent blocked (a full ``buffer_memory`` blocks produce() until records are delivered: with
every broker down the rate is then not held), the time to drain, lost/duplicated/reordered.
Exit status 1 when a bound is broken: anything lost, duplicated or reordered, the memory
bound, the rate not held during the outage, a record refused, or the drain not finished in
time. ``--per-record-reports`` gives every record an ``on_delivery`` callback, to see what
holding those costs while records wait on disk.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from pykaf import Consumer, CustodyEvent, DeliveryError, Producer, RecordMetadata, TopicPartition

TOPIC: Final = "custody-outage"
MIB: Final = 1 << 20
RSS_SLACK: Final = 32 * MIB  # the bound: buffer_memory + 32 MiB
RATE_HELD: Final = 0.95  # share of the target rate that counts as "held"
BLOCKED: Final = 0.001  # a produce() call longer than this counts as blocked
TICK: Final = 0.01  # pacing granularity, seconds
PHASES: Final = ("before", "outage", "after")


# -- the broker, in its own process ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class BrokerProcess:
    """``python -m pykaf.broker`` on a fixed port and data directory; stopped by pid."""

    def __init__(self, port: int, data_dir: Path, partitions: int) -> None:
        self.port, self.data_dir, self.partitions = port, data_dir, partitions
        self.process: subprocess.Popen[str] | None = None
        self._placeholder: socket.socket | None = None
        self._options = ("--data-dir", str(data_dir), "--partitions", str(partitions))

    def start(self, timeout: float = 60.0) -> str:
        """Start it; the first line it prints is its bootstrap, once it listens. A port
        still held by the stopped one's sockets makes it exit: then it is tried again."""
        deadline = time.monotonic() + timeout
        self._release_port()
        while True:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pykaf.broker", "--port", str(self.port), *self._options],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            assert self.process.stdout is not None
            line = self.process.stdout.readline().strip()
            if line:
                return line
            self.process.wait(10)
            if time.monotonic() > deadline:
                raise RuntimeError(f"the broker did not start on port {self.port}")
            time.sleep(0.5)

    def hold_port(self) -> None:
        """While the broker is down, keep its port: bound, not listening, so a connection
        is refused as by a stopped broker. Free, another program on this machine (a test's
        broker on a random port) could take it, and the producer would send there."""
        placeholder = socket.socket()
        placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        placeholder.bind(("127.0.0.1", self.port))
        self._placeholder = placeholder

    def _release_port(self) -> None:
        placeholder, self._placeholder = self._placeholder, None
        if placeholder is not None:
            placeholder.close()

    def stop(self, how: str) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            self._release_port()
            return
        if how == "kill":
            process.kill()
        else:
            process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)


# -- sampling memory and the journal --------------------------------------------------------


def memory_kib() -> dict[str, int]:
    """VmRSS, RssAnon and RssFile of this process (kB as /proc says, i.e. KiB)."""
    found: dict[str, int] = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                found[name] = int(rest.split()[0])
    return found


def journal_bytes(directory: Path) -> tuple[int, int]:
    """(apparent size, bytes allocated on disk) of every file in the journal."""
    size = used = 0
    with contextlib.suppress(FileNotFoundError), os.scandir(directory) as entries:
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                info = entry.stat()
                size += info.st_size
                used += info.st_blocks * 512
    return size, used


@dataclass(slots=True)
class Peaks:
    rss: int = 0
    anon: int = 0
    file: int = 0
    journal_size: int = 0
    journal_used: int = 0
    samples: int = 0
    rss_when: str = ""  # the phase and second of the VmRSS peak
    outage_rss: int = 0  # the VmRSS peak while the broker was down

    def take(self, journal: Path, phase: str, elapsed: float) -> dict[str, int]:
        mem = memory_kib()
        size, used = journal_bytes(journal)
        rss = mem.get("VmRSS", 0) * 1024
        if rss > self.rss:
            self.rss, self.rss_when = rss, f"{phase}, t={elapsed:.0f} s"
        if phase == "outage":
            self.outage_rss = max(self.outage_rss, rss)
        self.anon = max(self.anon, mem.get("RssAnon", 0) * 1024)
        self.file = max(self.file, mem.get("RssFile", 0) * 1024)
        self.journal_size = max(self.journal_size, size)
        self.journal_used = max(self.journal_used, used)
        self.samples += 1
        return {**{k: v * 1024 for k, v in mem.items()}, "size": size, "used": used}


# -- the paced producer ---------------------------------------------------------------------


@dataclass(slots=True)
class PhaseCount:
    accepted: int = 0
    seconds: float = 0.0
    blocked: float = 0.0  # time inside produce() calls longer than BLOCKED
    longest: float = 0.0
    refused: int = 0  # BufferFullError (after max_block) or another error: not taken
    missed: int = 0  # slots of the fixed rate skipped while produce() was blocked


class BacklogFlush:
    """At the broker's restart, ``flush()`` from a thread of its own: it waits for the
    reports of exactly the records produced before it, i.e. the outage's backlog, while
    the pacer goes on producing. Its duration is the time the backlog took to drain."""

    def __init__(self, producer: Producer, timeout: float) -> None:
        self.left: int | None = None
        self.seconds: float | None = None
        self._thread = threading.Thread(
            target=self._run, args=(producer, timeout), name="backlog", daemon=True
        )

    def _run(self, producer: Producer, timeout: float) -> None:
        started = time.monotonic()
        self.left = producer.flush(timeout)
        self.seconds = time.monotonic() - started

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


@dataclass(slots=True)
class Pacer:
    """Produces ``rate`` values a second from its own thread; no catching up beyond one
    second: slots missed while produce() blocked are skipped (the accept rate shows it)."""

    producer: Producer
    rate: float
    value_size: int
    partitions: int
    per_record_reports: bool
    phase: str = "before"
    stop: threading.Event = field(default_factory=threading.Event)
    attempted: int = 0  # sequence numbers 0..attempted-1 were offered to produce()
    accepted: list[int] = field(default_factory=list)  # per partition
    refused: set[int] = field(default_factory=set)
    phases: dict[str, PhaseCount] = field(default_factory=lambda: {p: PhaseCount() for p in PHASES})
    errors: Counter[str] = field(default_factory=Counter)
    first_error: str = ""
    reported: Counter[str] = field(default_factory=Counter)  # per-record reports, by outcome
    in_call_since: float | None = None  # a produce() call in progress, for the live lines

    def blocked_now(self) -> float:
        since = self.in_call_since
        ongoing = time.perf_counter() - since if since is not None else 0.0
        return sum(c.blocked for c in self.phases.values()) + (
            ongoing if ongoing > BLOCKED else 0.0
        )

    def report(self, metadata: RecordMetadata | None, error: DeliveryError | None) -> None:
        self.reported["delivered" if error is None else type(error).__name__] += 1

    def run(self) -> None:
        produce = self.producer.produce
        report = self.report if self.per_record_reports else None
        self.accepted = [0] * self.partitions
        pad = b"." * max(0, self.value_size - 13)
        seq = missed = 0
        started = phase_started = time.monotonic()
        phase = self.phase
        while not self.stop.is_set():
            now = time.monotonic()
            due = int((now - started) * self.rate) - missed
            if due - seq > self.rate:  # more than a second behind: those slots are missed,
                skip = due - seq - int(self.rate)  # counted in the phase the stall began in
                self.phases[phase].missed += skip
                missed += skip
                due = seq + int(self.rate)
            if phase != self.phase:
                self.phases[phase].seconds += now - phase_started
                phase, phase_started = self.phase, now
            counts = self.phases[phase]
            while seq < due and not self.stop.is_set():
                value = b"%012d:" % seq + pad
                partition = seq % self.partitions
                self.in_call_since = call = time.perf_counter()
                try:
                    produce(TOPIC, value, partition=partition, on_delivery=report)
                    counts.accepted += 1
                    self.accepted[partition] += 1
                except Exception as exc:  # BufferFullError, JournalFullError, anything
                    self.refused.add(seq)
                    counts.refused += 1
                    self.errors[type(exc).__name__] += 1
                    self.first_error = self.first_error or f"{type(exc).__name__}: {exc}"
                took = time.perf_counter() - call
                self.in_call_since = None
                if took > BLOCKED:
                    counts.blocked += took
                    counts.longest = max(counts.longest, took)
                seq += 1
                self.attempted = seq
            self.stop.wait(TICK)
        self.phases[phase].seconds += time.monotonic() - phase_started


# -- reading back ---------------------------------------------------------------------------


@dataclass(slots=True)
class ReadBack:
    read: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    per_partition: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)


def read_back(bootstrap: str, partitions: int, accepted: int, refused: set[int]) -> ReadBack:
    seen: Counter[int] = Counter()
    result = ReadBack()
    counts = {p: [0, 0, 0] for p in range(partitions)}  # read, duplicated, reordered
    last = dict.fromkeys(range(partitions), -1)
    with Consumer(bootstrap, auto_offset_reset="earliest", stop_at_end=True) as consumer:
        consumer.assign([TopicPartition(TOPIC, p) for p in range(partitions)])
        while batch := consumer.poll(timeout=10.0, max_records=50_000):
            for record in batch:
                seq = int((record.value or b"")[:12])
                if seq < 0:
                    continue  # the warm-up records
                p = record.partition
                counts[p][0] += 1
                seen[seq] += 1
                if seen[seq] > 1:
                    counts[p][1] += 1
                elif seq < last[p]:
                    counts[p][2] += 1
                last[p] = max(last[p], seq)
    lost_by_partition: Counter[int] = Counter(
        seq % partitions for seq in range(accepted) if seq not in refused and not seen[seq]
    )
    for p in range(partitions):
        read, duplicated, reordered = counts[p]
        result.per_partition[p] = (read, lost_by_partition[p], duplicated, reordered)
    result.read = sum(c[0] for c in counts.values())
    result.lost = sum(lost_by_partition.values())
    result.duplicated = sum(c[1] for c in counts.values())
    result.reordered = sum(c[2] for c in counts.values())
    return result


# -- the run --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Drain:
    left: int  # records without a report when the final flush returned
    seconds: float  # from the broker's restart to the final flush's return
    backlog_seconds: float | None  # the flush begun at the restart: the backlog's drain
    backlog_left: int | None  # what that flush left pending


def mib(n: float) -> str:
    return f"{n / MIB:,.1f} MiB"


@contextlib.contextmanager
def sampling(journal: Path, peaks: Peaks, pacer: Pacer, every: float) -> Iterator[None]:
    stop = threading.Event()
    started = time.monotonic()

    def sample() -> None:
        next_line = 0.0
        while not stop.wait(1.0):
            elapsed = time.monotonic() - started
            now = peaks.take(journal, pacer.phase, elapsed)
            if elapsed >= next_line:
                next_line += every
                print(
                    f"t={elapsed:6.0f}s {pacer.phase:<6} accepted {sum(pacer.accepted):>10,}"
                    f"  blocked {pacer.blocked_now():7.1f}s  VmRSS {mib(now.get('VmRSS', 0))}"
                    f" (anon {mib(now.get('RssAnon', 0))}, file {mib(now.get('RssFile', 0))})"
                    f"  journal {mib(now['used'])} on disk",
                    flush=True,
                )

    thread = threading.Thread(target=sample, name="sampler", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def run(args: argparse.Namespace, scratch: Path) -> int:
    broker = BrokerProcess(free_port(), scratch / "broker", args.partitions)
    journal = scratch / "journal"
    expected = args.rate * (args.before + args.outage + args.after) * (args.value_size + 64)
    journal_max = max(1 << 30, int(expected * 2))
    failures: Counter[str] = Counter()
    events: list[CustodyEvent] = []
    peaks = Peaks()
    bootstrap = broker.start()
    print(
        f"broker pid {broker.process.pid if broker.process else '?'} at {bootstrap}, data"
        f" {broker.data_dir}; journal {journal} (journal_max_bytes {mib(journal_max)})"
    )
    try:
        producer = Producer(
            bootstrap,
            custody="journal",
            journal_dir=str(journal),
            journal_max_bytes=journal_max,
            buffer_memory=args.buffer_memory,
            max_block=args.max_block,
            on_error=lambda record, error: failures.update([type(error).__name__]),
            on_custody_event=events.append,
        )
        for p in range(args.partitions):  # the topic exists, every connection is up
            producer.send(TOPIC, b"%012d:warm" % -1, partition=p).result(60)
        before = memory_kib()
        baseline, baseline_anon = before["VmRSS"] * 1024, before["RssAnon"] * 1024
        pacer = Pacer(
            producer, args.rate, args.value_size, args.partitions, args.per_record_reports
        )
        thread = threading.Thread(target=pacer.run, name="pacer", daemon=True)
        with sampling(journal, peaks, pacer, args.report_every):
            thread.start()
            time.sleep(args.before)
            print(f"stopping the broker ({args.stop}) for {args.outage:g} s", flush=True)
            pacer.phase = "outage"
            broker.stop(args.stop)
            broker.hold_port()
            time.sleep(args.outage)
            restarted = time.monotonic()
            broker.start()
            backlog = BacklogFlush(producer, args.drain_timeout)
            backlog.start()
            print("broker restarted on the same port and data directory", flush=True)
            pacer.phase = "after"
            time.sleep(args.after)
            pacer.stop.set()
            thread.join(args.max_block + 10)
            left = producer.flush(args.drain_timeout)
            drained = time.monotonic() - restarted
            backlog.join(args.drain_timeout)
        producer.close(10)
        outcome = read_back(bootstrap, args.partitions, pacer.attempted, pacer.refused)
    finally:
        broker.stop("clean")
    drain = Drain(left, drained, backlog.seconds, backlog.left)
    print_events(events)
    return summary(args, pacer, peaks, (baseline, baseline_anon), drain, failures, outcome)


def print_events(events: list[CustodyEvent]) -> None:
    print("\ncustody events (on_custody_event):")
    for event in events:
        print(f"  {event.kind:<16} records {event.records:>10,}  seconds {event.seconds:8.1f}")


def summary(
    args: argparse.Namespace,
    pacer: Pacer,
    peaks: Peaks,
    before: tuple[int, int],
    drain: Drain,
    failures: Counter[str],
    outcome: ReadBack,
) -> int:
    # The bound applies to what the run adds: the interpreter and its libraries alone take
    # about 45 MiB of VmRSS here before the first record (measured, printed below).
    baseline, baseline_anon = before
    bound = args.buffer_memory + RSS_SLACK
    # "total" is VmRSS, journal pages mapped in this process included (file-backed, the
    # kernel may reclaim them); "anon" is the memory the process itself allocated.
    grew = peaks.rss - baseline if args.memory_bound == "total" else peaks.anon - baseline_anon
    taken = pacer.attempted - len(pacer.refused)
    print("\nsummary")
    print(
        f"  memory: max VmRSS {mib(peaks.rss)} ({peaks.rss_when}; while down"
        f" {mib(peaks.outage_rss)}) (anon {mib(peaks.anon)}, file {mib(peaks.file)});"
        f" before producing {mib(baseline)} (anon {mib(baseline_anon)})"
    )
    print(
        f"  memory the run added: VmRSS {mib(peaks.rss - baseline)}, RssAnon"
        f" {mib(peaks.anon - baseline_anon)} (peak minus before producing); bound"
        f" {mib(bound)}, checked on {args.memory_bound}"
    )
    print(
        f"  journal peak: {mib(peaks.journal_used)} on disk"
        f" ({mib(peaks.journal_size)} apparent), {peaks.samples} samples"
    )
    print(f"  produced: {taken:,} accepted of {pacer.attempted:,} attempted at {args.rate:g}/s")
    for name in PHASES:
        c = pacer.phases[name]
        rate = c.accepted / c.seconds if c.seconds else 0.0
        print(
            f"    {name:<6} {c.seconds:7.1f} s: accepted {c.accepted:>10,}"
            f" ({rate:,.0f}/s, {rate / args.rate:.0%} of the target);"
            f" produce() blocked {c.blocked:.1f} s (longest call {c.longest:.2f} s);"
            f" refused {c.refused:,}; slots missed {c.missed:,}"
        )
    if pacer.errors:
        print(f"    refusals: {dict(pacer.errors)}; first: {pacer.first_error}")
    if pacer.per_record_reports:
        print(f"    per-record reports: {dict(pacer.reported)}")
    if drain.backlog_seconds is None or drain.backlog_left:
        backlog = f"not drained ({drain.backlog_left} left)"
    else:
        backlog = f"delivered {drain.backlog_seconds:.1f} s after the broker's restart"
    print(f"  backlog (every record produced before the restart): {backlog}")
    print(
        f"  drain: {drain.left:,} record(s) still pending at the end; {drain.seconds:.1f} s"
        f" from the restart to the last report (production went on for {args.after:g} s)"
    )
    if failures:
        print(f"  failure reports: {dict(failures)}")
    print(
        f"  read back {outcome.read:,}: lost {outcome.lost:,}, duplicated"
        f" {outcome.duplicated:,}, reordered {outcome.reordered:,}"
    )
    for p, (read, lost, dup, reo) in sorted(outcome.per_partition.items()):
        print(f"    partition {p}: read {read:,} lost {lost} duplicated {dup} reordered {reo}")
    outage = pacer.phases["outage"]
    outage_rate = outage.accepted / outage.seconds if outage.seconds else 0.0
    broken = {
        "lost": outcome.lost > 0,
        "duplicated": outcome.duplicated > 0,
        "reordered": outcome.reordered > 0,
        f"memory ({args.memory_bound} added over buffer_memory + 32 MiB)": grew > bound,
        "rate not held during the outage": outage_rate < RATE_HELD * args.rate,
        "not drained": drain.left > 0 or bool(failures) or drain.backlog_left != 0,
        "produce() refused records": bool(pacer.refused),
    }
    names = [name for name, bad in broken.items() if bad]
    print("bounds broken: " + ", ".join(names) if names else "every bound held")
    return 1 if names else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--outage", type=float, default=600.0, help="seconds the broker is down")
    parser.add_argument("--before", type=float, default=10.0, help="seconds before the outage")
    parser.add_argument("--after", type=float, default=10.0, help="seconds after it")
    parser.add_argument("--rate", type=float, default=2000.0, help="records a second")
    parser.add_argument("--value-size", type=int, default=1024)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--buffer-memory", type=int, default=16 * MIB)
    parser.add_argument("--max-block", type=float, default=60.0, help="produce()'s bound")
    parser.add_argument("--stop", choices=("kill", "clean"), default="kill")
    parser.add_argument(
        "--memory-bound",
        choices=("total", "anon"),
        default="total",
        help="check the bound on VmRSS (total) or on RssAnon (anon) growth",
    )
    parser.add_argument(
        "--per-record-reports",
        action="store_true",
        help="give every produce() an on_delivery callback (what it costs in memory)",
    )
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--report-every", type=float, default=10.0, help="seconds per line")
    args = parser.parse_args()
    if args.rate <= 0 or args.value_size < 16 or args.partitions < 1:
        parser.error("--rate must be positive, --value-size at least 16, --partitions >= 1")
    with tempfile.TemporaryDirectory(prefix="pykaf-outage-") as scratch:
        return run(args, Path(scratch))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
