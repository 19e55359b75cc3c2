"""The journal store: lock, recovery order, roll, reclaim, the byte bound, group commit."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from pykaf._errors import JournalCorruptError, JournalFullError, JournalLockedError
from pykaf._producer.journal import Done, Identity, JournalRecord, JournalStore
from pykaf._producer.journal import _store_sync as store_sync_module
from pykaf._producer.journal._format import encode, walk
from pykaf._producer.journal._inspect import scan as scan_directory

CHILD = Path(__file__).with_name("_journal_child.py")
SEGMENT = 4096


def _record(serial: int, partition: int = 0, size: int = 100) -> JournalRecord:
    return JournalRecord(serial, "t", partition, serial, b"k", bytes([serial % 251]) * size, [])


def _reopen(store: JournalStore) -> JournalStore:
    store.close()
    again = JournalStore(store.directory, max_bytes=store.max_bytes, segment_bytes=SEGMENT)
    again.open()
    return again


def _segments(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.journal"))


def _entries_size(directory: Path) -> int:
    """The valid entries of the segments (the newest is allocated beyond them while open)."""
    return sum(walk(p.read_bytes(), newest=True).valid_bytes for p in directory.glob("*.journal"))


def test_a_second_open_in_the_same_process_is_refused(store: JournalStore) -> None:
    with pytest.raises(JournalLockedError) as caught:
        JournalStore(store.directory, max_bytes=1 << 20, segment_bytes=SEGMENT).open()
    assert caught.value.holder_pid == os.getpid()
    assert str(store.directory) in str(caught.value)
    store.close()  # released: the next one may open
    _open_and_close(store.directory)


def _open_and_close(directory: Path) -> None:
    journal = JournalStore(directory, max_bytes=1 << 20, segment_bytes=SEGMENT)
    journal.open()
    journal.close()


def test_an_open_from_another_process_is_refused_and_names_the_holder(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, str(CHILD), "hold", str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(JournalLockedError) as caught:
            JournalStore(tmp_path, max_bytes=1 << 20, segment_bytes=SEGMENT).open()
        assert caught.value.holder_pid == child.pid
        assert f"process {child.pid}" in str(caught.value)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)
    _open_and_close(tmp_path)  # released when the holder exited


def test_recovery_returns_pending_records_in_order_and_the_latest_identity(
    store: JournalStore,
) -> None:
    store.append([_record(s, partition=s % 3) for s in range(30)])
    store.append([Identity("t", 0, 9, 0, 0, 0, 12, 5), Identity("t", 0, 9, 0, 5, 15, 27, 5)])
    store.append([Done("t", 0, 0, 12), Done("t", 1, 0, 4), Done("t", 2, 29, 29)])
    store.sync()
    again = _reopen(store)
    try:
        pending = [(r.serial, r.partition) for r in again.read_pending(0, again.next_serial)]
        expected = [
            (s, s % 3)
            for s in range(30)
            if not ((s % 3 == 0 and s <= 12) or (s % 3 == 1 and s <= 4) or s == 29)
        ]
        assert pending == expected
        assert again.identities()[("t", 0)].base_sequence == 5
        assert again.next_serial == 30
        assert again.pending_records == len(expected)
    finally:
        again.close()


def test_recovery_reports_counts_per_partition(store: JournalStore) -> None:
    store.append([_record(s, partition=s % 2) for s in range(10)] + [Done("t", 1, 0, 5)])
    store.sync()
    store.close()
    again = JournalStore(store.directory, max_bytes=1 << 20, segment_bytes=SEGMENT)
    recovery = again.open()
    try:
        assert recovery.pending_by_partition == {("t", 0): 5, ("t", 1): 2}
        assert recovery.next_serial == 10
        assert recovery.torn_tail is None
    finally:
        again.close()


def test_segments_roll_at_segment_bytes_and_are_named_after_their_first_serial(
    store: JournalStore,
) -> None:
    for serial in range(100):
        store.append([_record(serial)])
    names = _segments(store.directory)
    assert len(names) > 2
    assert names[0] == f"{0:020d}.journal"
    for name in names:
        assert (store.directory / name).stat().st_size <= SEGMENT
    assert store.used_bytes == _entries_size(store.directory)
    store.close()  # cuts the newest segment to its entries
    assert store.used_bytes == sum((store.directory / n).stat().st_size for n in names)


def test_reclaim_deletes_the_oldest_done_segments_but_never_the_newest(
    store: JournalStore,
) -> None:
    for serial in range(100):
        store.append([_record(serial, partition=serial % 2)])
    before = _segments(store.directory)
    store.append([Done("t", 0, 0, 99)])
    assert store.reclaim() == 0  # every segment still holds a pending record of partition 1
    store.append([Done("t", 1, 0, 49)])
    removed = store.reclaim()
    after = _segments(store.directory)
    assert removed > 0
    assert after == before[removed:]
    store.append([Done("t", 1, 50, 99)])
    store.reclaim()
    assert _segments(store.directory) == [before[-1]]  # the newest stays
    again = _reopen(store)
    try:
        assert list(again.read_pending(0, again.next_serial)) == []
        assert again.next_serial == 100
    finally:
        again.close()


def test_a_segment_whose_done_entries_speak_for_older_segments_is_kept(
    store: JournalStore,
) -> None:
    # Partition 1 waits in the first segment; the later ones hold only done records and
    # DONE entries. Only whole prefixes go: a later segment may hold the DONE or IDENTITY
    # entries that speak for records in an older one, so it must not vanish first.
    store.append([_record(0, partition=1)])
    for serial in range(1, 100):
        store.append([_record(serial), Done("t", 0, serial, serial)])
    count = len(_segments(store.directory))
    assert count > 2
    assert store.reclaim() == 0
    store.append([Done("t", 1, 0, 0)])
    assert store.reclaim() == count - 1
    assert len(_segments(store.directory)) == 1


def test_out_of_order_done_ranges(store: JournalStore) -> None:
    store.append([_record(s) for s in range(10)])
    store.append([Done("t", 0, 5, 7), Done("t", 0, 0, 2), Done("t", 0, 6, 9)])
    assert [r.serial for r in store.read_pending(0, store.next_serial)] == [3, 4]
    assert store.pending_records == 2


def test_serials_must_increase_and_nothing_is_written_otherwise(store: JournalStore) -> None:
    store.append([_record(5)])
    size = store.used_bytes
    with pytest.raises(ValueError, match="serials must increase"):
        store.append([_record(6), _record(6)])
    assert store.used_bytes == size
    assert store.next_serial == 6


def test_full_raises_and_names_the_setting_and_writes_nothing(tmp_path: Path) -> None:
    store = JournalStore(tmp_path, max_bytes=16 * 1024, segment_bytes=SEGMENT)
    store.open()
    serial = 0
    entry_bytes = len(encode(_record(0, size=500)))
    while store.used_bytes + entry_bytes <= 16 * 1024:
        store.append([_record(serial, size=500)])
        serial += 1
    with pytest.raises(JournalFullError) as caught:
        store.append([_record(serial, size=500)])
    assert "journal_max_bytes" in str(caught.value)
    assert store.used_bytes <= 16 * 1024
    assert store.used_bytes == _entries_size(tmp_path)
    # DONE entries still fit (the headroom), and acknowledging frees the space.
    store.append([Done("t", 0, 0, serial - 1)])
    store.append([_record(serial, size=500)])
    store.close()


def test_sync_is_free_when_nothing_is_new(
    store: JournalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    store.append([_record(0)])
    store.sync()
    store.sync()
    store.sync()
    assert len(calls) == 1


def test_corruption_in_an_older_segment_refuses_to_open_and_keeps_the_file(
    store: JournalStore,
) -> None:
    for serial in range(60):
        store.append([_record(serial)])
    store.sync()
    store.close()
    oldest = store.directory / _segments(store.directory)[0]
    data = bytearray(oldest.read_bytes())
    data[len(data) // 2] ^= 0x40
    oldest.write_bytes(bytes(data))
    with pytest.raises(JournalCorruptError) as caught:
        JournalStore(store.directory, max_bytes=1 << 20, segment_bytes=SEGMENT).open()
    assert caught.value.path == str(oldest)
    assert oldest.read_bytes() == bytes(data)
    # The refusal released the lock.
    with pytest.raises(JournalCorruptError):
        JournalStore(store.directory, max_bytes=1 << 20, segment_bytes=SEGMENT).open()


def test_a_torn_tail_is_cut_reported_and_appends_go_on_after_it(store: JournalStore) -> None:
    store.append([_record(s) for s in range(3)])
    store.sync()
    store.close()
    newest = store.directory / _segments(store.directory)[-1]
    good = newest.stat().st_size
    with newest.open("ab") as handle:
        handle.write(encode(_record(3))[:-7])
    again = JournalStore(store.directory, max_bytes=1 << 20, segment_bytes=SEGMENT)
    recovery = again.open()
    try:
        assert recovery.torn_tail is not None
        assert recovery.torn_tail.position == good
        assert recovery.torn_tail.dropped_entries == 1
        assert newest.stat().st_size == good
        assert recovery.next_serial == 3
        again.append([_record(3)])
        assert [r.serial for r in again.read_pending(0, again.next_serial)] == [0, 1, 2, 3]
    finally:
        again.close()


def _killed_with_allocation(directory: Path, count: int, segment: int = SEGMENT) -> Path:
    """A journal whose writer died without closing: its newest segment still allocated."""
    store = JournalStore(directory, max_bytes=1 << 20, segment_bytes=segment)
    store.open()
    store.append([_record(s) for s in range(count)])
    store.sync()
    newest = directory / _segments(directory)[-1]
    valid = store.used_bytes
    store.close()
    with newest.open("r+b") as handle:  # what close cut: the zeros of the allocation
        handle.truncate(segment)
    assert walk(newest.read_bytes(), newest=True).valid_bytes == valid
    return newest


def test_zeros_after_the_entries_of_an_allocated_segment_are_a_clean_end(tmp_path: Path) -> None:
    newest = _killed_with_allocation(tmp_path, 3)
    store = JournalStore(tmp_path, max_bytes=1 << 20, segment_bytes=SEGMENT)
    recovery = store.open()
    try:
        assert (recovery.torn_tail, recovery.next_serial, recovery.pending_records) == (None, 3, 3)
        assert newest.stat().st_size == SEGMENT  # nothing cut: writing goes on in place
        store.append([_record(3)])
        assert [r.serial for r in store.read_pending(0, store.next_serial)] == [0, 1, 2, 3]
    finally:
        store.close()
    assert newest.stat().st_size == store.used_bytes  # closing cut the allocation


def test_a_torn_entry_in_an_allocated_segment_is_cut_and_writing_goes_on(tmp_path: Path) -> None:
    newest = _killed_with_allocation(tmp_path, 3)
    good = walk(newest.read_bytes(), newest=True).valid_bytes
    with newest.open("r+b") as handle:  # a copy into the map cut short by a kill
        handle.seek(good)
        handle.write(encode(_record(3))[:-7])
    store = JournalStore(tmp_path, max_bytes=1 << 20, segment_bytes=SEGMENT)
    recovery = store.open()
    try:
        assert recovery.torn_tail is not None
        assert (recovery.torn_tail.position, recovery.torn_tail.dropped_entries) == (good, 1)
        assert recovery.next_serial == 3
        store.append([_record(3)])
        assert [r.serial for r in store.read_pending(0, store.next_serial)] == [0, 1, 2, 3]
    finally:
        store.close()


def test_a_segment_written_by_plain_appends_recovers_and_takes_appends(tmp_path: Path) -> None:
    # The shape the writev journal left (and a closed store leaves): entries, no zeros.
    with (tmp_path / f"{0:020d}.journal").open("wb") as handle:
        handle.write(b"".join(encode(_record(s)) for s in range(3)))
    store = JournalStore(tmp_path, max_bytes=1 << 20, segment_bytes=SEGMENT)
    recovery = store.open()
    try:
        assert (recovery.torn_tail, recovery.next_serial) == (None, 3)
        store.append([_record(3)])
        store.append([_record(4), _record(5)])
        assert [r.serial for r in store.read_pending(0, store.next_serial)] == list(range(6))
    finally:
        store.close()


def test_a_record_out_of_range_is_refused_and_leaves_a_clean_end(store: JournalStore) -> None:
    store.append([_record(0)])
    size = store.used_bytes
    bad = JournalRecord(1, "t", 2**31, 0, None, b"v", [])
    with pytest.raises(ValueError, match="out of range"):
        store.append([bad])
    assert (store.used_bytes, store.next_serial) == (size, 1)
    store.append([_record(1)])
    again = _reopen(store)
    try:
        assert [r.serial for r in again.read_pending(0, again.next_serial)] == [0, 1]
    finally:
        again.close()


def test_inspecting_an_allocated_segment_counts_its_entries_not_its_zeros(
    tmp_path: Path,
) -> None:
    newest = _killed_with_allocation(tmp_path, 3)
    found = scan_directory(tmp_path)
    assert found.torn_tail is None
    assert [s.valid_bytes for s in found.segments] == [len(encode(_record(0))) * 3]
    assert (found.segments[0].records, newest.stat().st_size) == (3, SEGMENT)  # left as it was


def test_a_sparse_segment_is_allocated_before_it_is_written_through_the_map(
    tmp_path: Path,
) -> None:
    # A hole under the map would need its block at fault time: SIGBUS on a full disk.
    segment = 64 * 1024
    newest = _killed_with_allocation(tmp_path, 3, segment)  # its zeros: a hole (truncate)
    assert newest.stat().st_blocks * 512 < segment
    store = JournalStore(tmp_path, max_bytes=1 << 20, segment_bytes=segment)
    store.open()
    try:
        store.append([_record(3)])
        assert newest.stat().st_blocks * 512 >= segment
    finally:
        store.close()


def test_an_entry_larger_than_a_segment_gets_a_segment_of_its_own_size(
    store: JournalStore,
) -> None:
    store.append([_record(0)])
    store.append([_record(1, size=3 * SEGMENT)])
    store.append([_record(2)])
    names = _segments(store.directory)
    assert [int(n.split(".")[0]) for n in names] == [0, 1, 2]
    big = store.directory / names[1]
    assert big.stat().st_size == len(encode(_record(1, size=3 * SEGMENT)))  # cut at the roll
    again = _reopen(store)
    try:
        assert [r.serial for r in again.read_pending(0, again.next_serial)] == [0, 1, 2]
    finally:
        again.close()


def test_a_segment_that_cannot_roll_grows_its_allocation(store: JournalStore) -> None:
    # No record yet: the segment shares its name with the next, so it grows instead.
    dones = [Done("t", p, 0, 0) for p in range(400)]
    for done in dones:
        store.append([done])
    assert store.used_bytes > 2 * SEGMENT
    assert _segments(store.directory) == [f"{0:020d}.journal"]
    store.append([_record(0)])
    again = _reopen(store)
    try:
        assert [r.serial for r in again.read_pending(0, again.next_serial)] == [0]
        assert again.used_bytes == sum(len(encode(d)) for d in dones) + len(encode(_record(0)))
    finally:
        again.close()


def test_reclaim_syncs_outside_the_lock_so_appends_go_on(
    store: JournalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reclaim syncs the DONE entries that justify a deletion. Under the store's lock,
    # that fsync (of everything appended since the last one) held every produce().
    for serial in range(60):
        store.append([_record(serial)])
    store.append([Done("t", 0, 0, 59)])
    store.append([_record(60)])  # new since the last sync: reclaim's sync has work
    entered, release = threading.Event(), threading.Event()
    real = store_sync_module.fsync_ticket

    def slow_fsync(*args: Any) -> Any:
        entered.set()
        assert release.wait(10)
        return real(*args)

    monkeypatch.setattr(store_sync_module, "fsync_ticket", slow_fsync)
    removed: list[int] = []
    reclaimer = threading.Thread(target=lambda: removed.append(store.reclaim()))
    reclaimer.start()
    try:
        assert entered.wait(10)
        appender = threading.Thread(target=lambda: store.append([_record(61)]))
        appender.start()
        appender.join(5)
        assert not appender.is_alive()  # the append did not wait for the fsync
    finally:
        release.set()
        reclaimer.join(10)
    assert removed
    assert removed[0] > 0
    monkeypatch.undo()
    again = _reopen(store)
    try:
        assert [r.serial for r in again.read_pending(0, again.next_serial)] == [60, 61]
    finally:
        again.close()
