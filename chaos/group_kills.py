"""Break consumer groups on purpose: SIGKILL members again and again, then count.

    python chaos/group_kills.py [--kills 40] [--members 3] [--partitions 6] [--seed N]
                                [--assignor range|roundrobin|cooperative-sticky]
                                [--static] [--auto-commit] [--rate 3000]

The embedded broker (three brokers) runs in this process, and a producer in a thread of it
writes numbered records (``n`` to partition ``n % partitions``, so each partition's
numbers rise) at ``--rate`` records/s. ``--members`` child processes consume the topic in
one group, at least once: each prints every record it processed and then commits (after
every poll, and in ``on_revoked``); with ``--auto-commit`` they rely on auto-commit
instead (of what was handed out, never ahead of it). At random moments one member is
SIGKILLed (sometimes two at once) and a new one started in its place; ``--static`` gives
the places static member ids (``group_instance_id``), so a new member takes its
predecessor's place without a rebalance. With ``--outages P`` a share P of those rounds
takes one broker (a third of the time every broker) down around the kill, for up to 3 s:
the group's coordinator, partition leaders or the whole cluster gone while members join,
commit and die. With ``--moves P`` a share moves every partition's leader to another
broker. After the last kill the producer stops, the
members consume until every record was processed (bounded), then close.

Then it counts:
  lost         records produced (acknowledged) that no member processed: must be 0
  duplicated   records processed more than once: a kill between processing and the
               commit (at-least-once), counted
  rewound      per member and partition, a record processed after a later one of that
               partition by the same member without a rebalance of that member between:
               must be 0
  behind       partitions whose committed offset, after the members closed, is not the
               end of the log: must be 0
Exit status 1 if any of those that must be 0 is not. Random moments, so this is a tool to
break things with, not a test: its bound is ``--kills`` kills a few seconds apart and a
drain of at most ``--drain`` seconds.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from pykaf import Admin, Producer, TopicPartition
from pykaf.broker import BlockingCluster

TOPIC = "group-chaos"
GROUP = "group-chaos"
BROKERS = 3

CHILD = """
import logging, sys, threading, time
from pykaf import Consumer
from pykaf import PykafError
if len(sys.argv) > 7:
    logging.basicConfig(filename=sys.argv[7], level=logging.DEBUG,
                        format="%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
boot, topic, group, assignor, instance, auto = sys.argv[1:7]
out = sys.stdout
lock = threading.Lock()

def say(line):
    with lock:
        out.write(line + "\\n")
        out.flush()

def assigned(partitions):
    say("A " + " ".join(str(tp.partition) for tp in partitions))

def commit():
    # A rebalance between the poll and the commit: the records go again to the partition's
    # next owner (at least once); the next poll rejoins.
    try:
        consumer.commit()
    except PykafError as exc:  # refused (a rebalance), or no coordinator (an outage)
        say(f"E {time.time():.3f} {type(exc).__name__}: {exc}")

def revoked(partitions):
    if auto != "1":
        commit()
    say("R " + " ".join(str(tp.partition) for tp in partitions))

consumer = Consumer(
    boot,
    group_id=group,
    enable_auto_commit=auto == "1",
    auto_commit_interval=0.2,
    auto_offset_reset="earliest",
    partition_assignment_strategy=(assignor,),
    group_instance_id=instance or None,
    session_timeout=6.0,
    heartbeat_interval=0.5,
    fetch_max_wait=0.1,
)
consumer.subscribe([topic], on_assigned=assigned, on_revoked=revoked)
say("ready")
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
while not stop.is_set():
    batch = consumer.poll(0.1, max_records=200)
    if batch:
        say("\\n".join(f"P {r.partition} {r.offset} {r.value.decode()}" for r in batch))
        if auto != "1":
            commit()
consumer.close()
say("closed")
"""


@dataclass
class Member:
    """One child process of the group, and what it printed."""

    place: int
    generation: int
    process: subprocess.Popen[str]
    processed: list[tuple[int, int, int]] = field(default_factory=list)  # partition, offset, n
    # Per partition, the last offset processed since this member was last assigned it.
    last: dict[int, int] = field(default_factory=dict)
    rewound: int = 0
    commit_errors: list[str] = field(default_factory=list)
    closed: bool = False
    reader: threading.Thread | None = None

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "P":
                partition_s, offset_s, number_s = rest.split()
                partition, offset = int(partition_s), int(offset_s)
                if self.last.get(partition, -1) >= offset:
                    self.rewound += 1
                self.last[partition] = offset
                self.processed.append((partition, offset, int(number_s)))
            elif kind == "A":  # a new assignment: a partition may start again from its commit
                self.last.clear()
            elif kind == "E":
                self.commit_errors.append(rest)
            elif kind == "closed":
                self.closed = True


def start_member(place: int, generation: int, bootstrap: str, args: argparse.Namespace) -> Member:
    instance = f"place-{place}" if args.static else ""
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, bootstrap, TOPIC, GROUP, args.assignor, instance]
        + ["1" if args.auto_commit else "0"]
        + ([f"{args.logs}/member-{place}.{generation}.log"] if args.logs else []),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    member = Member(place, generation, process)
    assert process.stdout is not None
    first = process.stdout.readline()
    if first.strip() != "ready":
        raise SystemExit(f"member {place} did not start: {first!r}")
    member.reader = threading.Thread(target=member.read, daemon=True)
    member.reader.start()
    return member


def produce(bootstrap: str, partitions: int, rate: float, stop: threading.Event) -> list[int]:
    """Numbered records until ``stop``; returns the numbers acknowledged (a record
    refused or failed is not counted, and not looked for)."""
    acknowledged: list[int] = []

    def report(n: int) -> Callable[[object, BaseException | None], None]:
        def done(metadata: object, error: BaseException | None) -> None:
            if error is None:
                acknowledged.append(n)

        return done

    with Producer(bootstrap, acks="all", linger=0.005) as producer:
        n = 0
        began = time.monotonic()
        while not stop.is_set():
            due = began + n / rate
            if due > time.monotonic():
                stop.wait(due - time.monotonic())
                continue
            producer.produce(TOPIC, b"%d" % n, partition=n % partitions, on_delivery=report(n))
            n += 1
        producer.flush(60)
    return acknowledged


def committed_behind(bootstrap: str, partitions: int) -> list[int]:
    tps = [TopicPartition(TOPIC, p) for p in range(partitions)]
    with Admin(bootstrap) as admin:
        ends = admin.list_offsets(dict.fromkeys(tps, "latest"))
        committed = admin.list_group_offsets(GROUP)
    return [
        tp.partition
        for tp in tps
        if tp not in committed.ok or committed.ok[tp].committed != ends[tp].offset
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=40)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--assignor",
        default="cooperative-sticky",
        choices=("range", "roundrobin", "cooperative-sticky"),
    )
    parser.add_argument("--static", action="store_true")
    parser.add_argument("--auto-commit", action="store_true")
    parser.add_argument("--rate", type=float, default=3000.0)
    parser.add_argument("--drain", type=float, default=120.0)
    parser.add_argument("--outages", type=float, default=0.0, help="share of rounds, brokers down")
    parser.add_argument("--moves", type=float, default=0.0, help="share of rounds moving leaders")
    parser.add_argument("--logs", help="a directory for each member's DEBUG log")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    began = time.monotonic()
    with BlockingCluster(brokers=BROKERS) as cluster:
        cluster.create_topic(TOPIC, partitions=args.partitions, replication_factor=BROKERS)
        bootstrap = cluster.bootstrap
        members = [start_member(p, 0, bootstrap, args) for p in range(args.members)]
        gone: list[Member] = []
        stop = threading.Event()
        result: list[list[int]] = []
        producer = threading.Thread(
            target=lambda: result.append(produce(bootstrap, args.partitions, args.rate, stop))
        )
        producer.start()
        kills = outages = moves = 0
        leaders = [1 + p % BROKERS for p in range(args.partitions)]  # as assigned, and moved
        try:
            while kills < args.kills:
                time.sleep(rng.uniform(0.3, 3.0))
                down: list[int] = []
                if rng.random() < args.outages:  # one broker (a third of the time all) down
                    outages += 1
                    every = rng.random() < 1 / 3
                    down = list(range(1, BROKERS + 1)) if every else [rng.randint(1, BROKERS)]
                    for node in down:
                        cluster.faults.broker_down(node)
                    time.sleep(rng.uniform(0.0, 1.5))
                if not down and rng.random() < args.moves:  # each leader to another broker
                    moves += 1
                    for partition in range(args.partitions):
                        others = [n for n in range(1, BROKERS + 1) if n != leaders[partition]]
                        leaders[partition] = rng.choice(others)
                        cluster.faults.move_leader(TOPIC, partition, leaders[partition])
                victims = rng.sample(range(len(members)), 2 if rng.random() < 0.2 else 1)
                for i in victims:
                    member = members[i]
                    os.kill(member.process.pid, signal.SIGKILL)
                    member.process.wait(30)
                    gone.append(member)
                    kills += 1
                if down:
                    time.sleep(rng.uniform(0.0, 1.5))
                    for node in down:
                        cluster.faults.broker_up(node)
                if rng.random() < 0.3:
                    time.sleep(rng.uniform(0.5, 4.0))  # a gap: the survivors take over
                for i in victims:
                    members[i] = start_member(i, members[i].generation + 1, bootstrap, args)
        finally:
            stop.set()
            producer.join(120)
        if not result:
            print("the producing thread failed (its traceback above)")
            return 1
        acknowledged = set(result[0])
        deadline = time.monotonic() + args.drain

        def seen() -> Counter[int]:
            counts: Counter[int] = Counter()
            for m in gone + members:
                counts.update(n for _, _, n in list(m.processed))
            return counts

        while time.monotonic() < deadline and not acknowledged <= set(seen()):
            time.sleep(0.2)
        for m in members:
            assert m.process.stdin is not None
            m.process.stdin.close()  # close: the member commits and leaves
        for m in members:
            m.process.wait(60)
            if m.reader is not None:
                m.reader.join(10)
        behind = committed_behind(bootstrap, args.partitions)
    counts = seen()
    lost = sorted(acknowledged - set(counts))
    duplicated = sum(c - 1 for c in counts.values() if c > 1)
    rewound = sum(m.rewound for m in gone + members)
    errors = Counter(e.split(":")[0].split()[-1] for m in gone + members for e in m.commit_errors)
    wrong = sum(1 for m in gone + members for p, _, n in m.processed if n % args.partitions != p)
    print(
        f"seed {seed}, {args.assignor}{', static' if args.static else ''}"
        f"{', auto-commit' if args.auto_commit else ''}: {kills} SIGKILLs of {args.members}"
        f" members ({outages} rounds with brokers down, {moves} with leaders moved),"
        f" {len(acknowledged):,} records acknowledged, {len(counts):,} processed;"
        f" lost {len(lost)}, duplicated {duplicated}, rewound {rewound},"
        f" wrong partition {wrong}, committed behind the end {behind};"
        f" commits refused {dict(errors)};"
        f" {time.monotonic() - began:.0f} s"
    )
    if lost:
        print("lost (first 20):", lost[:20])
    return 1 if lost or rewound or wrong or behind else 0


if __name__ == "__main__":
    sys.exit(main())
