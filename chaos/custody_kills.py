"""Break custody on purpose: SIGKILL a journal_sync producer again and again, then count.

    python chaos/custody_kills.py [--kills 200] [--partitions 4] [--seed N] [--down 0.3]
                                  [--moves 0.0] [--client blocking|async] [--workers 16]
                                  [--custody journal_sync|journal] [--pad 0]

The embedded broker (three brokers) runs in this process. A child process opens a
``Producer(custody="journal_sync")`` on one journal directory (re-sending what the previous
child left, first) and produces unique values as fast as it can, writing each value to a
log file once its ``produce()`` has returned. With ``--client async`` the child is an
``AsyncProducer(custody="journal_sync")`` driven by ``--workers`` coroutines, each awaiting
its own ``produce()`` calls one after the other (so they share the group fsyncs), writing
``<child>.<worker>-<seq>`` values. Each child is SIGKILLed at a random moment
(while appending, during an fsync, during the replay of the previous child's records, or
while every broker is down: with probability ``--down`` the brokers go down before the kill
and come back after it). With ``--moves P`` the topic has three replicas, and during a
child's life (with probability P) each partition's leader moves to another broker, once
or twice, at random moments: the producer finds the new leader while it appends, syncs,
replays or is killed. After the last kill one more child drains the journal and closes.
``--custody journal`` runs either child at that level instead (produce() returns once
the record is in the journal's map, before its fsync: a killed process loses nothing all
the same); ``--pad N`` adds N bytes to each value, so that the appends cross the
journal's pages written ahead and its segments quickly; ``--headers`` gives every other
record two headers (the journal's hot path writes them too).

Then every partition is read back and counted:
  lost        values whose produce() returned (in a log) but are not in Kafka: must be 0
  duplicated  values present more than once (re-sends after a crash; counted, reported)
  reordered   per child (per worker of an async child) and partition, values out of
              produce order (must be 0)
and what each child's replay of the previous one's records came to (``replay_stats()``,
summed over the children whose replay settled before their kill): re-sent as the same
idempotent batches and so proven not duplicated, sent again unproven, never sent before.
Exit status 1 if anything was lost or reordered. Random moments, so this is a tool to
break things with, not a test: its bound is ``--kills`` children of at most a few seconds.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from pykaf import Consumer, TopicPartition
from pykaf.broker import BlockingCluster
from pykaf.journal import inspect_journal

TOPIC = "custody-chaos"
BROKERS = 3

# Both children's failures of replayed records and the counts of their replay.
REPLAY_NOTES = """failures = []

def replayed(metadata, error):
    if error is not None:
        failures.append(repr(error))

def noted(producer):
    # Once the replay of what the previous child left is settled: its counts, noted.
    stats = producer.replay_stats()
    if stats.settled:
        with open(stats_path, "a") as out:
            fields = (stats.proven, stats.resent_unproven, stats.unsent, stats.failed)
            out.write(" ".join(map(str, fields)) + "\\n")
    return stats.settled
"""

CHILD = """
import sys, threading, time
from pykaf import Producer

bootstrap, journal, child, log_path, drain, stats_path, custody, pad, headed = sys.argv[1:10]
PAD = b"|" + b"x" * int(pad) if int(pad) else b""
HEADERS = [("seq", b"%d" % n) for n in range(2)] if headed == "1" else None
REPLAY_NOTES
def note_replay(producer):
    for _ in range(1200):  # bounded: 60 s
        if noted(producer):
            return
        time.sleep(0.05)

with open(log_path, "a", buffering=1) as log, Producer(
    bootstrap, custody=custody, journal_dir=journal, linger=0.001, max_block=120,
    on_replayed_delivery=replayed,
) as producer:
    print("open", sum(producer.recovered().values()), flush=True)
    if drain == "1":
        left = producer.flush(120)
        note_replay(producer)
        print("flushed", left, len(failures), failures[:3], flush=True)
    else:
        threading.Thread(target=note_replay, args=(producer,), daemon=True).start()
        for seq in range(10_000_000):
            value = f"{child}-{seq}"
            producer.produce(
                "TOPIC_NAME", value.encode() + PAD, key=str(seq % 97).encode(),
                headers=HEADERS if seq % 2 else None,
            )
            log.write(value + "\\n")  # after produce() returned: in custody
""".replace("TOPIC_NAME", TOPIC).replace("REPLAY_NOTES\n", REPLAY_NOTES)

# The same with the asyncio producer: ``WORKERS`` coroutines await their own produce()
# calls one after the other, so their records share the group fsyncs ("journal_sync"
# callers on a loop wait together), and each worker's values keep their order.
ASYNC_CHILD = """
import asyncio, sys, threading, time
from pykaf import AsyncProducer

bootstrap, journal, child, log_path, drain, stats_path, workers, custody, pad, headed = (
    sys.argv[1:11]
)
PAD = b"|" + b"x" * int(pad) if int(pad) else b""
HEADERS = [("seq", b"%d" % n) for n in range(2)] if headed == "1" else None
REPLAY_NOTES
async def note_replay(producer):
    for _ in range(1200):  # bounded: 60 s
        if noted(producer):
            return
        await asyncio.sleep(0.05)

async def worker(producer, log, number):
    for seq in range(10_000_000):
        value = f"{child}.{number}-{seq}".encode()
        await producer.produce(
            "TOPIC_NAME", value + PAD, key=f"{number}-{seq % 97}".encode(),
            headers=HEADERS if seq % 2 else None,
        )
        log.write(value.decode() + "\\n")  # after produce() returned: in custody

async def main():
    with open(log_path, "a", buffering=1) as log:
        async with AsyncProducer(
            bootstrap, custody=custody, journal_dir=journal, linger=0.001,
            max_block=120, on_replayed_delivery=replayed,
        ) as producer:
            print("open", sum(producer.recovered().values()), flush=True)
            if drain == "1":
                left = await producer.flush(120)
                await note_replay(producer)
                print("flushed", left, len(failures), failures[:3], flush=True)
            else:
                noting = asyncio.ensure_future(note_replay(producer))
                await asyncio.gather(*(worker(producer, log, n) for n in range(int(workers))))
                await noting

asyncio.run(main())
""".replace("TOPIC_NAME", TOPIC).replace("REPLAY_NOTES\n", REPLAY_NOTES)


def start_child(
    bootstrap: str,
    journal: str,
    child: int,
    logs: Path,
    drain: bool,
    *,
    workers: int = 0,
    custody: str = "journal_sync",
    pad: int = 0,
    headers: bool = False,
) -> subprocess.Popen[str]:
    """The blocking child (at ``custody``, values padded with ``pad`` bytes), or with
    ``workers`` the asyncio one."""
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            ASYNC_CHILD if workers else CHILD,
            bootstrap,
            journal,
            str(child),
            str(logs / f"{child}.log"),
            "1" if drain else "0",
            str(logs / "replays.txt"),
            *([str(workers)] if workers else []),
            custody,
            str(pad),
            "1" if headers else "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


# What ``--headers`` gives every other record (the children's ``HEADERS``).
HEADERS = [("seq", b"0"), ("seq", b"1")]


def read_back(bootstrap: str, partitions: int, headed: bool) -> tuple[dict[int, list[str]], int]:
    """Every value of every partition, in offset order; and with ``headed``, how many
    records do not carry the headers their producer gave them."""
    tps = [TopicPartition(TOPIC, p) for p in range(partitions)]
    seen: dict[int, list[str]] = defaultdict(list)
    wrong = 0
    with Consumer(bootstrap, auto_offset_reset="earliest", stop_at_end=True) as consumer:
        consumer.assign(tps)
        for record in consumer:
            # A value with ``--pad``: its name, then "|" and the padding.
            name = (record.value or b"").decode().split("|", 1)[0]
            seen[record.partition].append(name)
            if headed:
                given = HEADERS if int(name.rsplit("-", 1)[1]) % 2 else []
                wrong += list(record.headers) != given
    return seen, wrong


def read_replays(path: Path) -> tuple[int, tuple[int, ...]]:
    """How many opens settled their replay, and the sums of their ``replay_stats()``
    counts: proven, resent unproven, unsent, failed (see ``CHILD``)."""
    if not path.exists():
        return 0, (0, 0, 0, 0)
    rows = [[int(field) for field in line.split()] for line in path.read_text().splitlines()]
    return len(rows), tuple(sum(column) for column in zip(*rows, strict=True)) or (0, 0, 0, 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--down", type=float, default=0.3, help="share of kills with brokers down")
    parser.add_argument("--moves", type=float, default=0.0, help="share of kills with leader moves")
    parser.add_argument("--client", choices=("blocking", "async"), default="blocking")
    parser.add_argument("--workers", type=int, default=16, help="coroutines of an async child")
    parser.add_argument("--custody", choices=("journal_sync", "journal"), default="journal_sync")
    parser.add_argument("--pad", type=int, default=0, help="bytes added to each value")
    parser.add_argument("--headers", action="store_true", help="headers on every other record")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    workers = args.workers if args.client == "async" else 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch, BlockingCluster(brokers=BROKERS) as cluster:
        journal, logs = os.path.join(scratch, "journal"), Path(scratch) / "logs"
        logs.mkdir()
        cluster.create_topic(
            TOPIC, args.partitions, replication_factor=BROKERS if args.moves > 0 else None
        )
        leaders = [1 + p % BROKERS for p in range(args.partitions)]  # as assigned, and moved
        replayed = 0
        downs = moved = 0
        for child in range(args.kills):
            process = start_child(
                cluster.bootstrap,
                journal,
                child,
                logs,
                drain=False,
                workers=workers,
                custody=args.custody,
                pad=args.pad,
                headers=args.headers,
            )
            assert process.stdout is not None
            opened = process.stdout.readline().split()
            if opened and opened[0] == "open":
                replayed += int(opened[1])
            down = rng.random() < args.down
            if down:
                downs += 1
                time.sleep(rng.uniform(0.0, 0.3))
                for node in range(1, BROKERS + 1):
                    cluster.faults.broker_down(node)
            life = rng.uniform(0.0, 0.6)
            if not down and rng.random() < args.moves:
                moved += 1
                steps = rng.randint(1, 2)
                for _ in range(steps):
                    time.sleep(life / (steps + 1))
                    for partition in range(args.partitions):
                        others = [n for n in range(1, BROKERS + 1) if n != leaders[partition]]
                        leaders[partition] = rng.choice(others)
                        cluster.faults.move_leader(TOPIC, partition, leaders[partition])
                life /= steps + 1
            time.sleep(life)
            process.send_signal(signal.SIGKILL)
            process.wait(30)
            if down:
                for node in range(1, BROKERS + 1):
                    cluster.faults.broker_up(node)
        drain = start_child(
            cluster.bootstrap,
            journal,
            args.kills,
            logs,
            drain=True,
            workers=workers,
            custody=args.custody,
        )
        out, _ = drain.communicate(timeout=300)
        print("drain:", out.strip().replace("\n", " | "))
        print("journal after the drain:", inspect_journal(journal).pending_records, "pending")
        if drain.returncode != 0:
            print("the draining producer failed:", out)
            return 1
        accepted: list[str] = []
        for child in range(args.kills):
            path = logs / f"{child}.log"
            if path.exists():
                # The last line may be cut by the kill: only whole lines are accepted values.
                text = path.read_text()
                lines = text.split("\n")
                accepted += [line for line in lines[:-1] if line]
        seen, wrong_headers = read_back(cluster.bootstrap, args.partitions, args.headers)
        with Consumer(cluster.bootstrap) as probe:
            ends = probe.end_offsets([TopicPartition(TOPIC, p) for p in range(args.partitions)])
        print("end offsets", sum(ends.values()), "records read", sum(len(v) for v in seen.values()))
        opens, (proven, unproven, unsent, failed) = read_replays(logs / "replays.txt")
    counts = Counter(v for values in seen.values() for v in values)
    lost = [v for v in accepted if v not in counts]
    duplicated = sum(n - 1 for n in counts.values() if n > 1)
    reordered = 0
    for values in seen.values():
        last: dict[str, int] = {}
        for value in values:
            writer, seq = value.rsplit("-", 1)  # a child, or a worker of an async child
            if int(seq) < last.get(writer, -1) and counts[value] == 1:
                reordered += 1
            last[writer] = max(last.get(writer, -1), int(seq))
    print(
        f"seed {seed}, {args.client} client, {args.custody}: {args.kills} SIGKILLs"
        f" ({downs} with every broker down, {moved} with leaders moved),"
        f" {len(accepted):,} records accepted (produce() returned), {replayed:,} replayed at opens,"
        f" {sum(counts.values()):,} in Kafka; lost {len(lost)}, duplicated {duplicated},"
        f" reordered {reordered}"
        + (f", headers wrong {wrong_headers}" if args.headers else "")
        + f"; {time.monotonic() - started:.0f} s"
    )
    print(
        f"replays settled by {opens} opens: {proven:,} records re-sent as the same"
        f" idempotent batches (proven, not duplicated), {unproven:,} sent again unproven"
        f" (may be duplicated), {unsent:,} never sent before, {failed:,} failed"
    )
    if lost:
        print("lost, first ones:", lost[:10])
    return 1 if lost or reordered or wrong_headers else 0


if __name__ == "__main__":
    sys.exit(main())
