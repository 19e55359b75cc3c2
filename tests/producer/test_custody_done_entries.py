"""DONE entries are written when the reports come, not at the journal thread's next
round: a record acknowledged is out of the journal a killed process leaves, even while
that thread waits for a slow fsync. Before, the entries waited behind the fsync (10 to 80
ms under load), and after a SIGKILL the records acknowledged meanwhile were sent again;
past the broker's five-batch window, as duplicates (``chaos/custody_kills.py --custody
journal --pad 16384``: 195 to 598 of 30 kills)."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _custody_support import FAST, SlowFsync, one_broker

from pykaf import Producer
from pykaf._producer.journal import Done, JournalStore
from pykaf.broker import BlockingCluster


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with one_broker(1) as running:
        yield running


def _pending_after_a_kill(journal: Path, copy: Path) -> int:
    """What a new producer would replay had the process been killed now: the journal's
    files as they are (the page cache: what a SIGKILL leaves), recovered in a copy."""
    shutil.copytree(journal, copy, ignore=shutil.ignore_patterns("LOCK"))
    store = JournalStore(copy, max_bytes=1 << 30, segment_bytes=64 << 20)
    try:
        return store.open().pending_records
    finally:
        store.close()


def test_acknowledged_records_leave_the_journal_while_an_fsync_is_slow(
    cluster: BlockingCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = SlowFsync(monkeypatch)
    held, release = disk.held, disk.release
    journal = tmp_path / "journal"
    with Producer(cluster.bootstrap, custody="journal", journal_dir=journal, **FAST) as producer:
        try:
            producer.send("t", b"first").result(10)
            deadline = time.monotonic() + 10
            while not held.is_set() and time.monotonic() < deadline:  # bounded
                time.sleep(0.005)
            assert held.is_set()  # the journal's thread is in its fsync now
            for i in range(20):
                producer.send("t", b"%d" % i).result(10)  # acknowledged, one at a time
            assert not release.is_set()
            assert _pending_after_a_kill(journal, tmp_path / "killed") == 0
        finally:
            release.set()
        assert producer.flush(30) == 0


def test_the_store_writes_done_entries_now_or_says_it_cannot(tmp_path: Path) -> None:
    store = JournalStore(tmp_path, max_bytes=1 << 28, segment_bytes=1 << 20)
    store.open()
    try:
        done = Done("t", 0, 0, 0)
        assert not store.try_append_dones([done])  # no segment file yet: the thread's job
        store.append_record(0, "t", 0, 1, None, b"x", None)
        store.append_record(1, "t", 0, 1, None, b"y", None)
        size = store.used_bytes
        taken, let_go = threading.Event(), threading.Event()

        def hold() -> None:
            with store._mutex:
                taken.set()
                let_go.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        try:
            assert taken.wait(5)
            assert not store.try_append_dones([done])  # the lock is busy: no wait
        finally:
            let_go.set()
            holder.join(5)
        assert store.used_bytes == size  # nothing written
        assert store.pending_records == 2
        assert store.try_append_dones([done])
        assert store.pending_records == 1
        assert store.used_bytes > size
        store.sync()
    finally:
        store.close()
    reopened = JournalStore(tmp_path, max_bytes=1 << 28, segment_bytes=1 << 20)
    try:
        assert reopened.open().pending_records == 1  # record 1 only
    finally:
        reopened.close()


def test_a_thread_inside_a_section_of_the_store_does_not_start_another(tmp_path: Path) -> None:
    # The store's lock is reentrant (to know its owner): taken again by its owner, the
    # DONE entries would be written in the middle of the owner's own section.
    store = JournalStore(tmp_path, max_bytes=1 << 28, segment_bytes=1 << 20)
    store.open()
    try:
        store.append_record(0, "t", 0, 1, None, b"x", None)
        with store._mutex:
            assert not store.try_append_dones([Done("t", 0, 0, 0)])
        assert store.pending_records == 1
    finally:
        store.close()


def test_no_batch_is_sent_while_an_acknowledged_one_has_no_done_entry(
    cluster: BlockingCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The store refuses to write DONE entries at once whenever its lock is busy (a roll,
    # a larger map, a step written ahead: often with large records), and they wait for
    # the journal's thread, which may sit in a slow fsync. Meanwhile the sender went on:
    # after a SIGKILL, records acknowledged long ago were replayed, past the broker's
    # five-batch window, so as new records: duplicates (``chaos/custody_kills.py --custody
    # journal --pad 16384 --moves 0.3``: 75-135 of 100 kills). Now the sender writes the
    # waiting DONE entries before the identities of the next batches it sends, so what
    # a kill leaves pending is never more than the batches in flight.
    monkeypatch.setattr(JournalStore, "try_append_dones", lambda self, dones: False)
    disk = SlowFsync(monkeypatch)
    journal = tmp_path / "journal"
    with Producer(cluster.bootstrap, custody="journal", journal_dir=journal, **FAST) as producer:
        try:
            producer.send("t", b"first", partition=0).result(10)
            deadline = time.monotonic() + 10
            while not disk.held.is_set() and time.monotonic() < deadline:  # bounded
                time.sleep(0.005)
            assert disk.held.is_set()  # the journal's thread is in its fsync now
            for i in range(20):
                # Acknowledged one at a time, each in a batch of its own.
                producer.send("t", b"%d" % i, partition=0).result(10)
            assert not disk.release.is_set()
            # Only the last one's entry may wait: nothing was sent after its report.
            assert _pending_after_a_kill(journal, tmp_path / "killed") <= 1
        finally:
            disk.release.set()
        assert producer.flush(30) == 0
