"""``pykaf.journal.inspect_journal``: what a journal directory holds, read without the lock
and without changing a byte (a torn tail reported, not cut), even while a producer holds it.

Journals are built with the real store (``JournalStore``); where possible the store's own
recovery is the oracle for the figures."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pykaf._producer.journal import Done, Identity, JournalRecord, JournalStore
from pykaf._producer.journal._format import walk
from pykaf.errors import JournalCorruptError, JournalLockedError
from pykaf.journal import BatchIdentity, NotAJournalError, inspect_journal

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000_000  # record serial s has timestamp T0 + s seconds
NOW = T0 + 100_000
RECORDS = 60
PARTITIONS = 3
PER_APPEND = 10  # 10 records of ~150 bytes per append: 4 KiB segments roll every 3 appends
IDENTITY = Identity("orders", 1, 4242, 3, 17, 1, 28, 10)


@dataclass(frozen=True)
class BuiltJournal:
    """A journal of ``RECORDS`` records (serial s in partition s % 3); partition 0's
    records with serials 0..29 are done (10 of them); partition 1 has ``IDENTITY``."""

    directory: Path

    def segments(self) -> list[Path]:
        return sorted(self.directory.glob("*.journal"))


def store(directory: Path) -> JournalStore:
    return JournalStore(directory, max_bytes=1 << 20, segment_bytes=4096)


def build_journal(directory: Path) -> BuiltJournal:
    journal = store(directory)
    journal.open()
    try:
        for first in range(0, RECORDS, PER_APPEND):
            journal.append(
                [
                    JournalRecord(s, "orders", s % PARTITIONS, T0 + s * 1000, b"k", b"v" * 100, [])
                    for s in range(first, first + PER_APPEND)
                ]
            )
        journal.append([IDENTITY, Done("orders", 0, 0, 29)])
        journal.sync()
    finally:
        journal.close()
    return BuiltJournal(directory)


@pytest.fixture
def built(tmp_path: Path) -> BuiltJournal:
    return build_journal(tmp_path / "journal")


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and modification time: inspecting must leave both alone."""
    return {path.name: (path.read_bytes(), path.stat().st_mtime_ns) for path in directory.iterdir()}


def test_records_done_records_identities_and_age_are_counted(built: BuiltJournal) -> None:
    summary = inspect_journal(built.directory, now_ms=NOW)

    files = built.segments()
    assert len(files) >= 2  # the figures below span a roll
    assert [s.name for s in summary.segments] == [f.name for f in files]
    assert [s.first_serial for s in summary.segments] == [int(f.stem) for f in files]
    assert [s.size_bytes for s in summary.segments] == [f.stat().st_size for f in files]
    assert summary.size_bytes == sum(f.stat().st_size for f in files)
    assert sum(s.records for s in summary.segments) == summary.records == RECORDS
    assert sum(s.done_entries for s in summary.segments) == 1
    assert sum(s.identity_entries for s in summary.segments) == 1
    assert (summary.pending_records, summary.done_records) == (50, 10)
    assert summary.next_serial == RECORDS
    # Serial 0 is done (partition 0): the first pending is serial 1, the oldest too.
    assert summary.first_pending_serial == 1
    assert summary.oldest_pending_timestamp_ms == T0 + 1000
    assert summary.oldest_pending_age_s == 99.0
    assert [(p.topic, p.partition, p.pending_records) for p in summary.partitions] == [
        ("orders", 0, 10),
        ("orders", 1, 20),
        ("orders", 2, 20),
    ]
    assert summary.partitions[1].identity == BatchIdentity(
        producer_id=4242, epoch=3, base_sequence=17, first_serial=1, last_serial=28, record_count=10
    )
    assert summary.partitions[0].identity is None
    assert summary.torn_tail is None
    assert (summary.lock.held, summary.lock.pid) == (False, None)
    assert summary.inspected_at_ms == NOW

    # The store's own recovery agrees on what is pending.
    journal = store(built.directory)
    recovery = journal.open()
    journal.close()
    assert {(p.topic, p.partition): p.pending_records for p in summary.partitions} == (
        recovery.pending_by_partition
    )
    assert recovery.pending_records == summary.pending_records


def test_a_journal_opened_and_closed_empty_has_nothing_pending(tmp_path: Path) -> None:
    journal = store(tmp_path)
    journal.open()
    journal.close()
    summary = inspect_journal(tmp_path)
    assert summary.segments == ()
    assert (summary.records, summary.pending_records, summary.size_bytes) == (0, 0, 0)
    assert summary.oldest_pending_timestamp_ms is None
    assert summary.oldest_pending_age_s is None
    assert summary.partitions == ()


def test_a_torn_tail_is_reported_and_left_in_place(built: BuiltJournal) -> None:
    newest = built.segments()[-1]
    data = newest.read_bytes()
    last = walk(data, path=str(newest), newest=True).frames[-1]
    os.truncate(newest, len(data) - 5)  # the last entry (the DONE) loses its last 5 bytes
    before = snapshot(built.directory)

    summary = inspect_journal(built.directory, now_ms=NOW)

    assert snapshot(built.directory) == before
    torn = summary.torn_tail
    assert torn is not None
    assert (torn.segment, torn.position) == (newest.name, last.position)
    assert torn.size_bytes == last.end - last.position - 5
    assert torn.entries == 1
    assert "present" in torn.reason  # "an entry of N bytes with only M present"
    assert summary.segments[-1].size_bytes == last.position
    assert summary.size_bytes == sum(f.stat().st_size for f in built.segments())
    # Without the DONE, nothing is done: all 60 records pend.
    assert (summary.pending_records, summary.done_records) == (RECORDS, 0)
    # The tail is still there for the store to cut, at the same place.
    journal = store(built.directory)
    recovery = journal.open()
    journal.close()
    assert recovery.torn_tail is not None
    assert recovery.torn_tail.position == torn.position
    assert recovery.torn_tail.dropped_bytes == torn.size_bytes


def corrupt_first_segment(built: BuiltJournal) -> tuple[Path, int]:
    """Flip a byte in the middle of the oldest (complete) segment; return that file and
    the position of the entry the byte belongs to."""
    oldest = built.segments()[0]
    data = bytearray(oldest.read_bytes())
    middle = len(data) // 2
    frames = walk(data, path=str(oldest), newest=False).frames
    (damaged,) = [f for f in frames if f.position <= middle < f.end]
    data[middle] ^= 0x40
    oldest.write_bytes(data)
    return oldest, damaged.position


def test_corruption_names_the_file_and_byte_and_changes_nothing(built: BuiltJournal) -> None:
    path, position = corrupt_first_segment(built)
    before = snapshot(built.directory)
    with pytest.raises(JournalCorruptError) as raised:
        inspect_journal(built.directory)
    assert (raised.value.path, raised.value.position) == (str(path), position)
    assert f"{path} is damaged at byte {position}" in str(raised.value)
    assert snapshot(built.directory) == before


# Holds a journal's lock until its stdin closes (the store tests' child process).
CHILD = ROOT / "tests" / "producer" / "journal" / "_journal_child.py"


def child_env() -> dict[str, str]:
    """The environment for a child python: this tree's pykaf first."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))


@contextlib.contextmanager
def lock_held_elsewhere(directory: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``directory``'s lock until its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), "hold", str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"  # bounded by the test timeout
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def holder(built: BuiltJournal) -> Iterator[subprocess.Popen[str]]:
    with lock_held_elsewhere(built.directory) as proc:
        yield proc


def test_works_while_another_process_holds_the_lock_and_names_it(
    built: BuiltJournal, holder: subprocess.Popen[str]
) -> None:
    summary = inspect_journal(built.directory, now_ms=NOW)
    assert (summary.lock.held, summary.lock.pid) == (True, holder.pid)
    assert (summary.records, summary.pending_records) == (RECORDS, 50)
    # The holder still has it: inspecting took nothing from it.
    with pytest.raises(JournalLockedError):
        store(built.directory).open()
    assert holder.stdin is not None
    holder.stdin.close()
    assert holder.wait(timeout=10) == 0
    # LOCK still names the dead holder's pid, but nobody holds it any more.
    assert (built.directory / "LOCK").read_text().strip() == str(holder.pid)
    after = inspect_journal(built.directory)
    assert (after.lock.held, after.lock.pid) == (False, None)


def test_works_while_this_process_has_the_store_open(built: BuiltJournal) -> None:
    journal = store(built.directory)
    journal.open()
    try:
        journal.append([JournalRecord(RECORDS, "orders", 2, NOW, None, b"x", [])])
        summary = inspect_journal(built.directory, now_ms=NOW)
    finally:
        journal.close()
    assert (summary.lock.held, summary.lock.pid) == (True, os.getpid())
    assert (summary.records, summary.pending_records) == (RECORDS + 1, 51)


def test_a_path_that_is_not_a_journal_is_refused_clearly(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(NotAJournalError, match="no such file or directory"):
        inspect_journal(missing)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(NotAJournalError, match="it is not a directory"):
        inspect_journal(a_file)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.journal").write_text("not a segment name")
    with pytest.raises(NotAJournalError) as raised:
        inspect_journal(other)
    assert raised.value.path == str(other)
    assert f"{other} is not a journal directory: it holds neither LOCK nor any segment" in str(
        raised.value
    )


WRITER = """
import os, sys
from pykaf._producer.journal import Done, JournalRecord, JournalStore
store = JournalStore(sys.argv[1], max_bytes=1 << 20, segment_bytes=4096)
store.open()
print("locked", flush=True)
for step in range(100_000):  # until the parent says stop (bounded anyway)
    if os.path.exists(sys.argv[2]):
        break
    serial = store.next_serial
    store.append([JournalRecord(serial + i, "t", i % 2, i, None, b"v" * 200, []) for i in range(5)])
    store.append([Done("t", 0, serial, serial + 4), Done("t", 1, serial, serial + 4)])
    store.sync()
    store.reclaim()  # segments go while the parent reads them
store.close()
"""


def test_a_journal_being_written_and_reclaimed_is_read_consistently(tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path / "j"), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        seen = 0
        for _ in range(300):
            assert proc.poll() is None  # the writer goes on until told to stop
            summary = inspect_journal(tmp_path / "j")
            assert summary.lock.pid == proc.pid
            seen += 1
            # Every append pair leaves nothing pending, but a snapshot may fall between
            # the records and their DONE: at most one step's records pend.
            assert summary.pending_records <= 5
            assert summary.pending_records == sum(p.pending_records for p in summary.partitions)
            assert summary.records == sum(s.records for s in summary.segments)
        assert seen == 300
        stop.touch()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
