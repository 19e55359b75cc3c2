"""Break the gateway on purpose: SIGKILL ``pykaf gateway`` again and again, then count.

    python chaos/gateway_kills.py [--kills 50] [--writers 4] [--partitions 4] [--seed N]
                                  [--down 0.3] [--custody journal_sync|journal]
                                  [--route kafboy|v3]

The embedded broker (three brokers) runs in this process. Each round starts ``pykaf
gateway --journal-dir D`` on the same journal (it replays what the previous one left),
and ``--writers`` HTTP clients post numbered records to the ``/safe`` routes (answered
202 only after the journal's fsync), one request at a time each, one record in four as a
batch of three lines; a writer notes a value once it is answered 202. With ``--custody
journal`` they post to ``/async`` and ``/batch/async`` with ``?custody=journal``: answered
once appended to the journal, before its fsync, which a killed process must not lose
either (the append is in the page cache; only an OS crash may lose it). The gateway is
SIGKILLed at a random moment. With ``--route v3`` the writers post Confluent v3 streams
instead, 20 common records (a BINARY value, nothing else: the route's receipt path) a
request, to a topic of one partition (the route places them), with ``?custody=``; a
record counts once its report says 200 (acknowledged) or 504 (not yet, kept in
custody): both must arrive. The gateway is SIGKILLed at a random moment; with
probability ``--down`` every broker goes down first (the answers then come from the
journal alone) and comes back after the kill. After the
last kill one more gateway drains the journal and stops with SIGTERM.

Then every partition is read back and counted, per writer:
  lost        values answered 202 that are not in Kafka: must be 0
  duplicated  values present more than once (a re-send after a crash; counted)
  reordered   values below one already read from the writer's partition (must be 0)
  in flight   requests the kill cut short: their records may or may not be in Kafka
Exit status 1 if anything was lost or reordered. Random moments, so this is a tool to
break things with, not a test: its bound is ``--kills`` gateways of a second or two.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from pykaf.broker import BlockingCluster

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "gateway"))

# The tests' process helpers (``pykaf gateway`` by pid, counting what arrived).
from _processes import (
    GatewayProcess,
    count_arrivals,
    patient_config,
    read_topic,
)

TOPIC = "gateway-chaos"
BROKERS = 3


class Writers:
    """The HTTP clients of every round: what each writer had answered 202, in order."""

    def __init__(self, count: int, partitions: int, custody: str, route: str = "kafboy") -> None:
        self.count = count
        self.route = route
        self.custody = custody
        self.prefix = "/safe" if custody == "journal_sync" else ""
        self.query = "" if custody == "journal_sync" else f"&custody={custody}"
        self.partitions = partitions
        self.acked: dict[int, list[bytes]] = {n: [] for n in range(count)}
        self.next_seq = dict.fromkeys(range(count), 0)
        self.in_flight = 0
        self.answered_now = 0
        # Per round: each writer's first sequence number then, and whether brokers were
        # down (to say where a lost record was written).
        self.rounds: list[tuple[dict[int, int], bool]] = []

    def tag(self, number: int) -> bytes:
        return b"w%d" % number

    async def run(self, url: str, number: int) -> None:
        if self.route == "v3":
            await self._run_v3(url, number)
            return
        partition = number % self.partitions
        mine = self.acked[number]
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            for _ in range(1_000_000):
                seq = self.next_seq[number]
                if seq % 4 == 3:  # a batch of three lines
                    values = [self._value(number, partition, seq + n) for n in range(3)]
                    path = f"{self.prefix}/batch/async"
                else:
                    values = [self._value(number, partition, seq)]
                    path = f"{self.prefix}/async"
                try:
                    answer = await http.post(
                        f"{path}/{TOPIC}?partition={partition}{self.query}",
                        content=b"\n".join(values),
                    )
                except httpx.TransportError:
                    self.in_flight += 1  # the kill: this request's records may be in
                    self.next_seq[number] = seq + len(values)
                    return
                if answer.status_code != 202:
                    raise SystemExit(f"writer {number}: {answer.status_code} {answer.text}")
                mine.extend(values)
                self.answered_now += len(values)
                self.next_seq[number] = seq + len(values)

    async def _run_v3(self, url: str, number: int) -> None:
        mine = self.acked[number]
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            try:
                cluster = (await http.get("/v3/clusters")).json()["data"][0]["cluster_id"]
            except httpx.TransportError:
                return  # killed before a first request
            path = f"/v3/clusters/{cluster}/topics/{TOPIC}/records?custody={self.custody}"
            for _ in range(1_000_000):
                seq = self.next_seq[number]
                values = [self._value(number, 0, seq + n) for n in range(20)]
                body = b"".join(
                    b'{"value": {"type": "BINARY", "data": "%s"}}\n' % base64.b64encode(v)
                    for v in values
                )
                try:
                    answer = await http.post(path, content=body)
                except httpx.TransportError:
                    self.in_flight += 1  # the kill: this request's records may be in
                    self.next_seq[number] = seq + len(values)
                    return
                codes = [json.loads(line)["error_code"] for line in answer.text.splitlines()]
                if answer.status_code != 200 or len(codes) != len(values):
                    raise SystemExit(f"writer {number}: {answer.status_code} {answer.text}")
                for value, code in zip(values, codes, strict=True):
                    if code not in (200, 504):  # delivered, or kept in custody
                        raise SystemExit(f"writer {number}: {value!r} answered {code}")
                mine.extend(values)
                self.answered_now += len(values)
                self.next_seq[number] = seq + len(values)

    def _value(self, number: int, partition: int, seq: int) -> bytes:
        return b"%s:%d:%d" % (self.tag(number), partition, seq)


async def one_round(
    gateway: GatewayProcess,
    writers: Writers,
    rng: random.Random,
    go_down: Callable[[], None] | None,
) -> None:
    """Writers post until the gateway is SIGKILLed at a random moment (after at least one
    answer, so every round writes)."""
    writers.answered_now = 0
    writers.rounds.append((dict(writers.next_seq), go_down is not None))
    tasks = [asyncio.ensure_future(writers.run(gateway.url, n)) for n in range(writers.count)]
    deadline = time.monotonic() + 30
    while writers.answered_now == 0:
        if time.monotonic() > deadline or all(t.done() for t in tasks):
            for task in tasks:
                task.cancel()
            raise SystemExit(
                f"no answer within 30 s; the gateway's log:\n{gateway.log.read_text()}"
            )
        await asyncio.sleep(0.01)
    if go_down is not None:
        await asyncio.sleep(rng.uniform(0.0, 0.3))
        go_down()
    await asyncio.sleep(rng.uniform(0.0, 0.8))
    gateway.kill()
    await asyncio.wait_for(asyncio.gather(*tasks), 30)


def start_gateway(bootstrap: str, scratch: Path) -> GatewayProcess:
    args = ["-b", bootstrap, "--port", "0", "--journal-dir", str(scratch / "journal")]
    args += ["--config", patient_config(scratch)]
    return GatewayProcess.start(args, scratch / "gateway.log")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--down", type=float, default=0.3, help="share of kills with brokers down")
    parser.add_argument("--custody", choices=("journal_sync", "journal"), default="journal_sync")
    parser.add_argument("--route", choices=("kafboy", "v3"), default="kafboy")
    args = parser.parse_args()
    if args.route == "v3":
        args.partitions = 1  # the route places the records: one partition keeps each order
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    started = time.monotonic()
    writers = Writers(args.writers, args.partitions, args.custody, args.route)
    downs = 0
    with tempfile.TemporaryDirectory() as directory, BlockingCluster(brokers=BROKERS) as cluster:
        scratch = Path(directory)
        cluster.create_topic(TOPIC, args.partitions)

        def all_down() -> None:
            for node in range(1, BROKERS + 1):
                cluster.faults.broker_down(node)

        for _ in range(args.kills):
            gateway = start_gateway(cluster.bootstrap, scratch)
            down = rng.random() < args.down
            downs += down
            asyncio.run(one_round(gateway, writers, rng, all_down if down else None))
            if down:
                for node in range(1, BROKERS + 1):
                    cluster.faults.broker_up(node)
        total = sum(len(values) for values in writers.acked.values())
        gateway = start_gateway(cluster.bootstrap, scratch)  # drains what the journal holds
        try:
            answered = [value for values in writers.acked.values() for value in values]
            records = read_topic(
                cluster.bootstrap, TOPIC, args.partitions, until=answered, timeout=120
            )
        finally:
            status = gateway.terminate()
        lost = duplicated = reordered = strangers = 0
        present = {record.value for record in records}
        missing = [v for values in writers.acked.values() for v in values if v not in present]
        for number, values in writers.acked.items():
            expected = {number % args.partitions: values}
            arrivals = count_arrivals(records, expected, tag=writers.tag(number))
            lost += arrivals.total_lost
            duplicated += arrivals.total_duplicated
            reordered += arrivals.total_reordered
            strangers += arrivals.unexpected
        log = (scratch / "gateway.log").read_text()
    print(
        f"seed {seed}: {args.kills} SIGKILLs of the gateway ({downs} with every broker down),"
        f" {total:,} records answered (custody {args.custody}, route {args.route}),"
        f" {len(records):,} in Kafka;"
        f" lost {lost}, duplicated {duplicated}, reordered {reordered};"
        f" {writers.in_flight} requests cut short by a kill ({strangers} of their records"
        f" arrived); the last gateway stopped with status {status};"
        f" {time.monotonic() - started:.0f} s"
    )
    if missing:
        print("lost, first ones:", *missing[:10])
        for value in missing[:10]:
            tag, _, seq = value.decode().split(":")
            number = int(tag[1:])
            rounds = enumerate(writers.rounds)
            which = max(i for i, (firsts, _) in rounds if firsts[number] <= int(seq))
            print(f"  {value.decode()}: round {which}, brokers down: {writers.rounds[which][1]}")
    # What the gateways warned of, each message once with its count (numbers and paths
    # masked): a broker, group or disk failing shows once per episode, not per record.
    warnings = Counter(
        re.sub(r"/tmp/\S+|\d+", "#", line) for line in log.splitlines() if " WARNING " in line
    )
    print(f"the gateways' WARNING lines ({sum(warnings.values())}), by message:")
    for message, count in warnings.most_common():
        print(f"  {count:5} {message[:160]}")
    errors = [line for line in log.splitlines() if "ERROR" in line or "Traceback" in line]
    if errors:
        print(
            f"the gateways logged {len(errors)} ERROR line(s), first ones:", *errors[:5], sep="\n"
        )
    return 1 if lost or reordered or status != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
