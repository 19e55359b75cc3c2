"""Record-level proofs for consumer groups (issue 6, Show): a group of blocking consumers,
each in its own thread, that commit after processing while members join and leave; a
member SIGKILLed mid-consumption (duplicates and takeover time measured); cooperative
rebalancing keeping kept partitions flowing (measured against eager ``range``); faults
on librdkafka's mock cluster (coordinator moved, errors on commit and join).

Every wait is on a condition with a deadline; measured numbers are printed (``-s``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from peers import MockCluster

from pykaf import Consumer, Producer, TopicPartition
from pykaf._errors import CommitFailedError, RebalancingCommitError
from pykaf.broker import (
    BlockingCluster,
    CallNext,
    GroupSettings,
    RequestContext,
    configure_groups,
)

LIMIT = 30.0
FAST: dict[str, Any] = {
    "retry_backoff": 0.02,
    "reconnect_backoff": 0.02,
    "reconnect_backoff_max": 0.2,
}
MEMBER: dict[str, Any] = {
    "session_timeout": 3.0,
    "heartbeat_interval": 0.2,
    "max_poll_interval": 15.0,
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    **FAST,
}
TOPIC = "work"
JOIN_GROUP, SYNC_GROUP, OFFSET_COMMIT, HEARTBEAT, LEAVE_GROUP = 11, 14, 8, 12, 13
FIND_COORDINATOR = 10
LOAD, REBALANCING = 14, 27  # COORDINATOR_LOAD_IN_PROGRESS, REBALANCE_IN_PROGRESS
PARTITIONS = 12

Seen = tuple[int, int]  # (partition, offset)


def until(condition: Callable[[], bool], what: str, limit: float = LIMIT) -> None:
    """Wait for ``condition`` (polled every 10 ms) or fail after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit:g}s waiting until {what}")
        time.sleep(0.01)


def produce(bootstrap: str, count: int, start: int = 0) -> None:
    """``count`` keyed records, round-robin over the partitions, every ack awaited."""
    with Producer(bootstrap, linger=0.005) as producer:
        for i in range(start, start + count):
            producer.produce(TOPIC, f"v{i}".encode(), f"k{i}".encode(), partition=i % PARTITIONS)
        assert producer.flush(LIMIT) == 0


def start_cluster(**groups: Any) -> BlockingCluster:
    cluster = BlockingCluster(brokers=1).start()
    # Lower the broker's minimum session timeout so a crashed member expires in 3 s.
    settings = GroupSettings(min_session_timeout=1.0, **groups)
    cluster.call(lambda: configure_groups(cluster.state, settings))
    cluster.create_topic(TOPIC, PARTITIONS)
    return cluster


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    running = start_cluster()
    try:
        yield running
    finally:
        running.close()


@dataclass
class Log:
    """What every member processed, in one global order (appends under a lock)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    records: list[tuple[float, str, int, int]] = field(default_factory=list)  # t, who, p, o

    def add(self, who: str, batch: list[Any]) -> None:
        now = time.monotonic()
        with self.lock:
            self.records += [(now, who, r.partition, r.offset) for r in batch]

    def seen(self, who: str | None = None) -> list[Seen]:
        with self.lock:
            return [(p, o) for _, w, p, o in self.records if who is None or w == who]

    def count(self, who: str | None = None) -> int:
        return len(self.seen(who))


class Worker:
    """A blocking Consumer in its own thread: processes each batch (logs it), then
    commits; commits again in ``on_revoked`` (so a clean handover loses and repeats
    nothing); keeps its assignment from the callbacks."""

    def __init__(
        self, bootstrap: str, group: str, who: str, log: Log, pause: float = 0.0, **extra: Any
    ) -> None:
        self.who, self.log, self.pause = who, log, pause
        self.consumer = Consumer(bootstrap, group_id=group, **{**MEMBER, **extra})
        self.owned: set[TopicPartition] = set()
        self.assigned_at: list[tuple[float, frozenset[TopicPartition]]] = []
        self.errors: list[BaseException] = []
        self.failed_commits: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=who, daemon=True)

    def start(self) -> Worker:
        self.thread.start()
        return self

    def _assigned(self, partitions: frozenset[TopicPartition]) -> None:
        self.owned |= partitions
        self.assigned_at.append((time.monotonic(), frozenset(partitions)))

    def _revoked(self, partitions: frozenset[TopicPartition]) -> None:
        try:
            self.consumer.commit()
        except RebalancingCommitError:  # the new owner may repeat what was not committed
            self.failed_commits.append("on_revoked")
        self.owned -= partitions

    def _lost(self, partitions: frozenset[TopicPartition]) -> None:
        self.owned -= partitions

    def _run(self) -> None:
        c = self.consumer
        try:
            c.subscribe(
                [TOPIC], on_assigned=self._assigned, on_revoked=self._revoked, on_lost=self._lost
            )
            while not self.stop.is_set():
                batch = c.poll(0.05, max_records=50)
                if batch:
                    self.log.add(self.who, batch)
                    if self.pause:
                        time.sleep(self.pause)  # the "processing"
                    try:
                        c.commit()
                    except RebalancingCommitError:
                        # A cooperative rebalance is under way: as the error says, the
                        # next poll rejoins and the next commit covers this batch too.
                        self.failed_commits.append("after batch")
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.errors.append(exc)
        finally:
            c.close()  # leaves: on_revoked commits what was processed

    def close(self) -> None:
        self.stop.set()
        self.thread.join(LIMIT)
        assert not self.thread.is_alive(), f"{self.who} did not close in {LIMIT}s"
        assert not self.errors, f"{self.who} failed: {self.errors!r}"


def settled(workers: list[Worker]) -> bool:
    """Every worker owns partitions, none twice, all 12 covered."""
    owned = [set(w.owned) for w in workers]
    every = set().union(*owned)
    return (
        all(owned)
        and sum(map(len, owned)) == PARTITIONS
        and every == {TopicPartition(TOPIC, p) for p in range(PARTITIONS)}
    )


def assert_in_order(seen: list[Seen]) -> None:
    last: dict[int, int] = {}
    for p, o in seen:
        assert o > last.get(p, -1), f"partition {p}: offset {o} after {last[p]}"
        last[p] = o


def expected(count: int) -> set[Seen]:
    return {(i % PARTITIONS, i // PARTITIONS) for i in range(count)}


# -- 1. members join and leave; commits after processing: nothing lost, nothing twice -----


def test_members_join_and_leave_exactly_once(cluster: BlockingCluster) -> None:
    log = Log()
    boot = cluster.bootstrap
    produce(boot, 10_000)
    a = Worker(boot, "churn", "a", log).start()
    workers = [a]
    try:
        until(lambda: log.count() >= 3_000, "the first member processed 3,000 records")
        b = Worker(boot, "churn", "b", log).start()
        c = Worker(boot, "churn", "c", log).start()
        workers += [b, c]
        until(lambda: settled([a, b, c]), "three members share the 12 partitions")
        produce(boot, 10_000, start=10_000)
        until(lambda: log.count("c") >= 500, "the third member processed records")
        c.close()  # a clean leave mid-consumption
        workers.remove(c)
        produce(boot, 10_000, start=20_000)
        until(lambda: log.count() >= 30_000, "30,000 records processed")
        until(lambda: settled([a, b]), "two members share the 12 partitions")
    finally:
        for w in workers:
            w.close()
    seen = log.seen()
    counts = {w: log.count(w) for w in "abc"}
    print(f"\n[churn] processed per member: {counts}, total {len(seen)}")
    assert len(seen) == len(set(seen)), f"{len(seen) - len(set(seen))} processed twice"
    assert set(seen) == expected(30_000)
    assert all(counts.values())
    assert_in_order(seen)  # the global processing order keeps each partition's order


# -- 2. a member SIGKILLed mid-consumption ---------------------------------------------------

CHILD = """
import ast, sys, time
from pykaf import Consumer
boot, group, options = sys.argv[1], sys.argv[2], ast.literal_eval(sys.argv[3])
out = sys.stdout
def assigned(partitions):
    out.write("A " + " ".join(str(tp.partition) for tp in partitions) + "\\n"); out.flush()
def revoked(partitions):
    consumer.commit()
    out.write("R " + " ".join(str(tp.partition) for tp in partitions) + "\\n"); out.flush()
consumer = Consumer(boot, group_id=group, **options)
consumer.subscribe(["work"], on_assigned=assigned, on_revoked=revoked)
while True:
    batch = consumer.poll(0.05, max_records=10)
    for r in batch:
        out.write(f"{r.partition} {r.offset}\\n"); out.flush()  # processed
    if batch:
        time.sleep(0.01)
        consumer.commit()
        out.write("C\\n"); out.flush()  # everything above is committed
"""


@dataclass
class Child:
    """The crash victim's stdout, parsed by a reader thread."""

    process: subprocess.Popen[str]
    lock: threading.Lock = field(default_factory=threading.Lock)
    processed: list[Seen] = field(default_factory=list)
    committed_upto: int = 0  # how many of ``processed`` a finished commit covers
    owned: set[int] = field(default_factory=set)

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            word, *rest = line.split()
            with self.lock:
                if word == "A":
                    self.owned |= {int(p) for p in rest}
                elif word == "R":
                    self.owned -= {int(p) for p in rest}
                elif word == "C":
                    self.committed_upto = len(self.processed)
                else:
                    self.processed.append((int(word), int(rest[0])))


def test_crashed_member_partitions_taken_over(cluster: BlockingCluster) -> None:
    log = Log()
    boot = cluster.bootstrap
    survivors = [Worker(boot, "crash", n, log).start() for n in ("s1", "s2")]
    process = subprocess.Popen(
        [sys.executable, "-c", CHILD, boot, "crash", repr(MEMBER)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    child = Child(process)
    reader = threading.Thread(target=child.read, daemon=True)
    reader.start()
    try:

        def three_way() -> bool:
            with child.lock:
                theirs = {TopicPartition(TOPIC, p) for p in child.owned}
            mine = [set(w.owned) for w in survivors]
            return bool(theirs) and all(mine) and settled_sets([theirs, *mine])

        until(three_way, "the child and two survivors share the partitions")
        produce(boot, 6_000)
        until(lambda: len(child.processed) >= 300, "the child processed 300 records")
        os.kill(process.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        process.wait(LIMIT)
        reader.join(LIMIT)
        victim = set(child.owned)
        until(lambda: settled(survivors), "the survivors took the child's partitions over")
        until(
            lambda: set(log.seen()) | set(child.processed) >= expected(6_000),
            "every record processed",
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(LIMIT)
        for w in survivors:
            w.close()
    theirs, ours = child.processed, log.seen()
    assert len(ours) == len(set(ours)), "the survivors processed records twice"
    assert set(ours) | set(theirs) == expected(6_000)  # nothing lost
    duplicates = set(ours) & set(theirs)
    uncommitted = set(theirs[child.committed_upto :])
    assert duplicates <= uncommitted, "a record the crashed member committed came again"
    reassigned = [t for w in survivors for t, tps in w.assigned_at if t > killed_at and tps]
    first_record = min(
        (t for t, _, p, _ in log.records if t > killed_at and p in victim), default=None
    )
    print(
        f"\n[crash] child processed {len(theirs)} (uncommitted at kill: {len(uncommitted)}),"
        f" duplicates {len(duplicates)}, partitions {sorted(victim)};"
        f" takeover: reassigned {min(reassigned) - killed_at:.2f}s after SIGKILL,"
        f" first record {(first_record or killed_at) - killed_at:.2f}s"
        f" (session_timeout {MEMBER['session_timeout']}s)"
    )


def settled_sets(owned: list[set[TopicPartition]]) -> bool:
    every = set().union(*owned)
    return sum(map(len, owned)) == PARTITIONS and len(every) == PARTITIONS


# -- 3. cooperative rebalancing keeps kept partitions flowing --------------------------------


def flow_during_join(cluster: BlockingCluster, group: str, strategy: str) -> tuple[int, float]:
    """Records the two existing members processed from partitions they kept while they
    took part in the rebalance a third member's join caused: from the first JoinGroup
    of an existing member (eager members have revoked everything by then) to the third
    member's first non-empty assignment. Returns the count and the window's length."""
    boot = cluster.bootstrap
    log = Log()
    stop = threading.Event()
    existing: set[str] = set()  # member ids seen in heartbeats before the third starts
    joins: list[float] = []
    armed = threading.Event()

    async def watch(ctx: RequestContext, request: Any, call_next: CallNext) -> Any:
        if not armed.is_set():
            if ctx.api_key == HEARTBEAT:
                existing.add(request.member_id)
        elif ctx.api_key == JOIN_GROUP and request.member_id in existing:
            joins.append(time.monotonic())
        return await call_next(ctx, request)

    cluster.set_interceptor(watch)

    def trickle() -> None:  # one record to each partition every 5 ms
        with Producer(boot, linger=0.002) as producer:
            i = 0
            while not stop.is_set():
                for p in range(PARTITIONS):
                    producer.produce(TOPIC, f"t{i}".encode(), partition=p)
                i += 1
                time.sleep(0.005)
            producer.flush(LIMIT)

    options: dict[str, Any] = {"partition_assignment_strategy": [strategy]}
    producer = threading.Thread(target=trickle, daemon=True)
    producer.start()
    a, b = (Worker(boot, group, n, log, **options).start() for n in "ab")
    workers = [a, b]
    try:
        until(lambda: settled([a, b]), "two members share the partitions")
        until(lambda: log.count() >= 200, "records flow to the two members")
        until(lambda: len(existing) == 2, "both members heartbeat")
        before = {w.who: set(w.owned) for w in (a, b)}
        armed.set()
        c = Worker(boot, group, "c", log, **options).start()
        workers.append(c)
        until(lambda: settled([a, b, c]), "three members share the partitions")
        done_at = min(t for t, tps in c.assigned_at if tps)
        joined_at = joins[0]
        after = {w.who: set(w.owned) for w in (a, b)}  # (close() empties them)
    finally:
        stop.set()
        for w in workers:
            w.close()
        producer.join(LIMIT)
        cluster.set_interceptor(None)
    kept = {who: {tp.partition for tp in before[who] & after[who]} for who in after}
    flowed = sum(
        1
        for t, who, p, _ in log.records
        if who in kept and p in kept[who] and joined_at <= t <= done_at
    )
    return flowed, done_at - joined_at


def test_cooperative_rebalance_keeps_partitions_flowing(cluster: BlockingCluster) -> None:
    cooperative, coop_window = flow_during_join(cluster, "coop", "cooperative-sticky")
    eager, eager_window = flow_during_join(cluster, "eager", "range")
    print(
        f"\n[rebalance] records from kept partitions during a join: cooperative-sticky"
        f" {cooperative} in {coop_window:.2f}s, range (eager) {eager} in {eager_window:.2f}s"
    )
    assert cooperative > 0


# -- 4. faults on librdkafka's mock cluster ------------------------------------------------

MOCK_TOTAL, MOCK_PARTITIONS = 2_000, 4


def mock_with_records(mock: MockCluster) -> list[TopicPartition]:
    # See tests/consumer/group/test_group_peers.py: the mock misreads the newest group versions.
    mock.set_apiversion(JOIN_GROUP, 0, 5)
    mock.set_apiversion(SYNC_GROUP, 0, 3)
    mock.set_apiversion(LEAVE_GROUP, 0, 2)
    mock.create_topic(TOPIC, MOCK_PARTITIONS)
    with Producer(mock.bootstrap, linger=0.005, **FAST) as producer:
        for i in range(MOCK_TOTAL):
            value, key = f"v{i}".encode(), f"k{i}".encode()
            producer.produce(TOPIC, value, key, partition=i % MOCK_PARTITIONS)
        assert producer.flush(LIMIT) == 0
    return [TopicPartition(TOPIC, p) for p in range(MOCK_PARTITIONS)]


@dataclass
class Fault:
    at: int  # fired once this many records were processed
    name: str
    action: Callable[[], None]
    settled: Callable[[], bool] = lambda: True  # the next fault waits for this


def consume_through_faults(
    mock: MockCluster, group: str, faults: list[Fault], **extra: Any
) -> None:
    """A group member reading the topic and committing after each batch while ``faults``
    fire; then: every record processed at least once, committed offsets at the end."""
    tps = mock_with_records(mock)
    want = {(i % MOCK_PARTITIONS, i // MOCK_PARTITIONS) for i in range(MOCK_TOTAL)}
    mock.push_request_errors(JOIN_GROUP, [REBALANCING, LOAD])
    seen: list[Seen] = []
    failed_commits: list[str] = []
    fired: list[str] = []
    waiting: Fault | None = None
    options: dict[str, Any] = {
        **MEMBER,
        "session_timeout": 2.0,
        "max_poll_interval": 8.0,  # (the retry budget of a join)
        **extra,
    }
    with Consumer(mock.bootstrap, group_id=group, topics=[TOPIC], **options) as consumer:
        deadline = time.monotonic() + 45
        while not set(seen) >= want:
            assert time.monotonic() < deadline, f"{len(set(seen))} of {MOCK_TOTAL} processed"
            batch = consumer.poll(0.1, max_records=20)
            seen += [(r.partition, r.offset) for r in batch]
            if batch:
                time.sleep(0.01)  # the "processing": the faults land mid-consumption
            if waiting is not None and waiting.settled():
                waiting = None
            if waiting is None and faults and len(seen) >= faults[0].at:
                waiting = faults.pop(0)
                waiting.action()
                fired.append(f"{waiting.name} at {len(seen)}")
            if batch:
                try:
                    consumer.commit()
                except CommitFailedError as exc:  # (RebalancingCommitError too)
                    failed_commits.append(type(exc).__name__)  # at-least-once: carry on
        for _ in range(50):  # the last commit may meet a rebalance too: again, bounded
            try:
                consumer.commit()
                break
            except CommitFailedError:
                consumer.poll(0.1)
        committed = consumer.committed(tps)
        ends = consumer.end_offsets(tps)
    print(
        f"\n[mock faults] {fired}; processed {len(seen)} for {MOCK_TOTAL} records"
        f" ({len(seen) - len(set(seen))} again), failed commits {failed_commits}"
    )
    assert not faults, f"faults never fired: {[f.name for f in faults]}"
    assert set(seen) == want  # no offset skipped
    assert committed == ends == dict.fromkeys(tps, MOCK_TOTAL // MOCK_PARTITIONS)


def coordinator_found_again(mock: MockCluster) -> Callable[[], bool]:
    """Settled once the member sent FindCoordinator after now (a heartbeat met
    NOT_COORDINATOR): the move was noticed."""
    mock.clear_requests()
    return lambda: any(r.api_key == FIND_COORDINATOR for r in mock.get_requests())


@pytest.mark.peer
def test_mock_coordinator_moved_and_errors_no_offset_skipped(mock_cluster: MockCluster) -> None:
    mock = mock_cluster
    mock.start_request_tracking()

    def move_to(broker: int, at: int) -> Fault:
        def action() -> None:
            mock.set_coordinator("group", "faulty", broker)
            fault.settled = coordinator_found_again(mock)

        fault = Fault(at=at, name=f"coordinator to {broker}", action=action)
        return fault

    def push(api: int, codes: list[int]) -> Callable[[], None]:
        return lambda: mock.push_request_errors(api, codes)

    def rejoin() -> Fault:  # REBALANCE_IN_PROGRESS on a commit makes the member rejoin
        return Fault(at=0, name="commit: rebalance", action=push(OFFSET_COMMIT, [REBALANCING]))

    faults = [
        Fault(at=250, name="commit: load, rebal.", action=push(OFFSET_COMMIT, [LOAD, REBALANCING])),
        Fault(at=500, name="join: rebalance, load", action=push(JOIN_GROUP, [REBALANCING, LOAD])),
        replace(rejoin(), at=600),
        move_to(3, at=800),
        replace(rejoin(), at=1_000),
        move_to(2, at=1_200),
        Fault(at=1_400, name="join: load, load", action=push(JOIN_GROUP, [LOAD, LOAD])),
        replace(rejoin(), at=1_450),
    ]
    consume_through_faults(mock, "faulty", faults)


@pytest.mark.peer
def test_mock_rejoin_right_after_coordinator_moved(mock_cluster: MockCluster) -> None:
    """A rejoin right after the coordinator moved: the old coordinator (the mock) answers
    JoinGroup NOT_COORDINATOR with a null protocol_name, unreadable; the client must then
    forget the cached coordinator and find the new one (it used to retry the old one until
    the rebalance timeout)."""
    mock = mock_cluster
    faults = [
        # No heartbeat in between: the rejoin is the first to meet the old coordinator.
        Fault(
            at=300,
            name="coordinator to 3, commit: rebalance",
            action=lambda: move_and_rejoin(mock),
        ),
    ]
    # Heartbeats rarer, so that none meets the old coordinator first (which would find
    # the new one, and the path under test would not run).
    consume_through_faults(mock, "moved", faults, heartbeat_interval=0.6)


def move_and_rejoin(mock: MockCluster) -> None:
    mock.set_coordinator("group", "moved", 3)
    mock.push_request_errors(OFFSET_COMMIT, [REBALANCING])
