"""Records appended while the producer spills are indexed only when fed
(``JournalStore.defer_index``): the index does not grow with an outage, the records are
pending all the same (read back, never reclaimed), and a reopen finds every one."""

from __future__ import annotations

from pathlib import Path

from pykaf._producer.journal import Done, JournalRecord, JournalStore


def record(serial: int, partition: int = 0) -> JournalRecord:
    return JournalRecord(serial, "t", partition, 1_000 + serial, None, bytes(200), [])


def open_store(directory: Path) -> JournalStore:
    store = JournalStore(directory, max_bytes=64 << 20, segment_bytes=8192)
    store.open()
    return store


def test_deferred_records_stay_out_of_the_index_but_are_pending(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    try:
        for serial in range(10):
            store.append((record(serial),))
        store.defer_index(10)
        for serial in range(10, 400):  # many segments of 8 KiB
            store.append((record(serial, serial % 2),))
        assert store.pending_records == 10  # the index holds the first ten only
        assert [r.serial for r in store.read_pending(0, 400)] == list(range(400))
        # The first ten are acknowledged: their segment goes, none holding deferred ones.
        store.append((Done("t", 0, 0, 9),))
        store.reclaim()
        assert [r.serial for r in store.read_pending(0, 400)] == list(range(10, 400))
        assert len(list(tmp_path.glob("*.journal"))) > 10
    finally:
        store.close()


def test_fed_records_enter_the_index_and_are_reclaimed_once_done(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    try:
        store.defer_index(0)
        for serial in range(300):
            store.append((record(serial, serial % 2),))
        segments = len(list(tmp_path.glob("*.journal")))
        assert store.reclaim() == 0  # every segment may hold a deferred record
        for serial in range(300):
            store.index_fed(serial, "t", serial % 2)
        store.resume_index()
        assert store.pending_records == 300
        store.append((Done("t", 0, 0, 299), Done("t", 1, 0, 299)))
        store.append((record(300),))  # the newest segment is never deleted
        assert store.reclaim() >= segments - 1
        assert store.pending_records == 1
    finally:
        store.close()


def test_a_reopen_finds_every_deferred_record(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.defer_index(0)
    for serial in range(50):
        store.append((record(serial, serial % 3),))
    store.sync()
    store.close()
    again = open_store(tmp_path)
    try:
        assert again.pending_records == 50
        assert [r.serial for r in again.read_pending(0, 50)] == list(range(50))
    finally:
        again.close()
