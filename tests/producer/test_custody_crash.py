"""SIGKILL of a real producer process with custody "journal_sync" (issue 12), then a new
producer on the same journal: every record whose produce() had returned reaches Kafka
(lost = 0), in order per partition, none twice (records the broker had written but not
acknowledged before the kill go again as the same idempotent batches, which it drops).
Also: the lock refuses a second producer in another process, and is free again once that
one is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from _custody_support import FAST, one_broker
from _produce_readback import read_topic

from pykaf._errors import JournalLockedError
from pykaf._producer._producer import Producer
from pykaf.broker import BlockingCluster

CHILD = Path(__file__).with_name("_custody_child.py")


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with one_broker(3) as running:
        yield running


class Child:
    """The producer process (see ``_custody_child``), killed by the test only."""

    def __init__(self, directory: Path, bootstrap: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self.process = subprocess.Popen(
            [sys.executable, str(CHILD), str(directory), bootstrap, "journal_sync"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.strip() == "ready", line

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def read_returned(self, count: int) -> list[int]:
        """Lines ``R i`` until ``count`` are read (bounded in time), then SIGKILL; and
        whatever it printed before dying (acknowledged too)."""
        assert self.process.stdout is not None
        returned: list[int] = []
        deadline = time.monotonic() + 60
        while len(returned) < count and time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            returned.append(int(line.split()[1]))
        self.kill()
        returned.extend(int(line.split()[1]) for line in self.process.stdout)
        return returned

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


def recover_and_check(cluster: BlockingCluster, directory: Path, returned: list[int]) -> int:
    """A new producer on the journal delivers every returned record; returns the number of
    duplicates found in the log."""
    replayed: list[BaseException | None] = []
    with Producer(
        cluster.bootstrap,
        custody="journal_sync",
        journal_dir=directory,
        on_replayed_delivery=lambda m, e: replayed.append(e),
        **FAST,
    ) as producer:
        recovered = producer.recovered()
        producer.produce("t", b"after", partition=0)
        assert producer.flush(60) == 0
    assert all(error is None for error in replayed)
    assert len(replayed) == sum(recovered.values())
    written = read_topic(cluster.bootstrap, "t")
    counts: Counter[int] = Counter()
    for partition, records in written.items():
        numbers = [int(r.value[1:]) for r in records if r.value and r.value.startswith(b"c")]
        counts.update(numbers)
        assert all(n % 3 == partition for n in numbers)  # the partition it was journaled for
        first_seen = list(dict.fromkeys(numbers))
        assert first_seen == sorted(first_seen)  # order per partition
        assert records[-1].value == b"after" or partition != 0
    lost = [n for n in returned if counts[n] == 0]
    assert lost == []
    return sum(n - 1 for n in counts.values())


@pytest.mark.parametrize("fault", ["broker_down", "answers_held"])
def test_sigkill_loses_no_record_whose_produce_returned(
    cluster: BlockingCluster, tmp_path: Path, fault: str
) -> None:
    child = Child(tmp_path, cluster.bootstrap)
    try:
        hold = None
        if fault == "broker_down":
            cluster.faults.broker_down(1)
        else:
            hold = cluster.faults.hold_responses("Produce")
        child.go()
        returned = child.read_returned(300)
    finally:
        child.kill()
    assert len(returned) >= 300
    if hold is not None:
        hold.release()
    else:
        cluster.faults.broker_up(1)
    duplicates = recover_and_check(cluster, tmp_path, returned)
    # Brokers down: nothing reached Kafka before the kill, so nothing is sent twice.
    # Answers held: what the broker wrote was never acknowledged, so it is sent again as
    # the same idempotent batches (their IDENTITY entries) and the broker drops the copy.
    print(f"{fault}: {len(returned)} returned, lost 0, duplicates {duplicates}")
    assert duplicates == 0


def test_the_lock_refuses_a_second_process_and_frees_on_sigkill(
    cluster: BlockingCluster, tmp_path: Path
) -> None:
    child = Child(tmp_path, cluster.bootstrap)
    try:
        with pytest.raises(JournalLockedError, match=str(child.process.pid)):
            Producer(cluster.bootstrap, custody="journal", journal_dir=tmp_path)
    finally:
        child.kill()
    with Producer(cluster.bootstrap, custody="journal", journal_dir=tmp_path, **FAST) as p:
        # Its one record was acknowledged; its DONE entry may not have been written yet.
        assert p.recovered() in ({}, {("t", 0): 1})
        assert p.flush(30) == 0
