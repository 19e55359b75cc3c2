"""SIGKILL mid-append, then recovery: every record acknowledged after its sync is there,
every acknowledged DONE holds, and the journal opens again (a torn tail at most)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from pykaf._producer.journal import JournalStore

CHILD = Path(__file__).with_name("_journal_child.py")
ROUNDS = 6


def _run_and_kill(
    directory: Path, seed: int, rng: random.Random, mode: str = "append"
) -> list[str]:
    """Start a child appending to ``directory``, read a random number of its acknowledged
    lines, SIGKILL it (it is mid-append or mid-sync), and return what it acknowledged."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, str(CHILD), mode, str(directory), str(seed), "100000"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: list[str] = []
    try:
        assert child.stdout is not None
        assert child.stdout.readline().startswith("open ")
        want = rng.randint(5, 400)
        deadline = time.monotonic() + 60
        while len(lines) < want and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
        child.send_signal(signal.SIGKILL)
        # What it printed before the kill was acknowledged too: read the pipe to its end.
        lines.extend(line.strip() for line in child.stdout)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return lines


def test_sigkill_mid_append_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(12)
    acknowledged: dict[int, int] = {}  # serial -> partition, of records acknowledged
    done: set[int] = set()  # serials whose DONE was acknowledged
    maybe_done: set[int] = set()  # serials whose DONE was being appended
    torn = 0
    for round_ in range(ROUNDS):
        for line in _run_and_kill(tmp_path, seed=round_, rng=rng):
            kind, *numbers = line.split()
            if kind == "R":
                acknowledged[int(numbers[0])] = int(numbers[1])
            elif kind in "DT":
                partition, first, last = map(int, numbers)
                (done if kind == "D" else maybe_done).update(
                    s for s, p in acknowledged.items() if p == partition and first <= s <= last
                )
        store = JournalStore(tmp_path, max_bytes=64 << 20, segment_bytes=16 * 1024)
        recovery = store.open()
        try:
            torn += recovery.torn_tail is not None
            pending = {r.serial: r.partition for r in store.read_pending(0, store.next_serial)}
            excused = done | maybe_done
            missing = [s for s in acknowledged if s not in excused and s not in pending]
            assert missing == []
            assert not (done & set(pending))  # an acknowledged DONE holds
            assert list(pending) == sorted(pending)
            for serial, partition in pending.items():
                # Records appended but killed before their acknowledgement may survive:
                # the next child knows them as pending, and may mark them done.
                acknowledged.setdefault(serial, partition)
        finally:
            store.close()
    assert len(acknowledged) > ROUNDS * 5


def test_sigkill_loses_no_append_even_unsynced(tmp_path: Path) -> None:
    # The mapped segment: an append is a copy into the page cache, which outlives the
    # process, so every record acknowledged right after its append (no sync) is there.
    rng = random.Random(13)
    acknowledged: set[int] = set()
    for round_ in range(ROUNDS):
        for line in _run_and_kill(tmp_path, seed=round_, rng=rng, mode="unsynced"):
            kind, serial = line.split()
            assert kind == "R"
            acknowledged.add(int(serial))
        files = sorted(tmp_path.glob("*.journal"))
        # The killed child left its newest segment allocated beyond its entries (mapped).
        assert files[-1].stat().st_size == 16 * 1024
        store = JournalStore(tmp_path, max_bytes=64 << 20, segment_bytes=16 * 1024)
        store.open()
        try:
            pending = [r.serial for r in store.read_pending(0, store.next_serial)]
            assert sorted(acknowledged - set(pending)) == []
            assert pending == sorted(pending)
            acknowledged.update(pending)
        finally:
            store.close()
    assert len(acknowledged) > ROUNDS * 5
