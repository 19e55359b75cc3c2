"""Disk faults: a small filesystem that fills up (a real 1 MiB tmpfs, mounted when the test
runs as root with CAP_SYS_ADMIN, skipped otherwise), a read-only filesystem (the same
tmpfs remounted read-only: root ignores chmod, a read-only mount it cannot), EIO when a
segment is allocated and a failed fsync (neither can be provoked on tmpfs, so ``os`` is
patched for those). Segments are allocated in full and written through a memory map: a full
disk must show as ENOSPC when allocating, never as a SIGBUS that would kill the process."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from pykaf._errors import JournalDiskError, JournalFailedError, JournalSyncError
from pykaf._producer.journal import Done, JournalRecord, JournalStore
from pykaf._producer.journal._format import walk

SEGMENT = 64 * 1024


def _record(serial: int, size: int = 1000) -> JournalRecord:
    return JournalRecord(serial, "t", 0, serial, None, b"x" * size, [])


def _files_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("*.journal"))


def _entries_size(directory: Path) -> int:
    """The valid entries of the segments (the newest is allocated beyond them while open)."""
    return sum(walk(p.read_bytes(), newest=True).valid_bytes for p in directory.glob("*.journal"))


def test_a_full_disk_is_a_typed_error_with_no_half_entry_and_the_store_goes_on(
    small_fs: Path,
) -> None:
    store = JournalStore(small_fs / "j", max_bytes=64 << 20, segment_bytes=4 << 20)
    store.open()
    serial = 0
    with pytest.raises(JournalDiskError) as caught:  # noqa: PT012 (fill until it breaks)
        for serial in range(10_000):
            store.append([_record(serial, size=3000)])
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.path.endswith(".journal")
    assert "still usable" in str(caught.value)
    assert store.failed is None
    assert _entries_size(store.directory) == store.used_bytes  # the failed entry was undone
    store.sync()
    store.close()
    assert _files_size(store.directory) == store.used_bytes  # closing cut the allocation
    again = JournalStore(small_fs / "j", max_bytes=64 << 20, segment_bytes=4 << 20)
    recovery = again.open()
    assert recovery.torn_tail is None
    assert recovery.pending_records == serial
    # Space comes back (a DONE fits in what a 3000-byte record did not), appends go on.
    again.append([Done("t", 0, 0, serial - 1)])
    again.append([_record(serial, size=100)])
    again.sync()
    again.close()


def test_a_read_only_filesystem_is_a_typed_error(small_fs: Path) -> None:
    store = JournalStore(small_fs / "j", max_bytes=1 << 20, segment_bytes=SEGMENT)
    store.open()
    store.append([_record(0)])
    store.sync()
    store.close()
    if not _remount_read_only(small_fs):
        pytest.skip("cannot remount the tmpfs read-only here")
    try:
        with pytest.raises(JournalDiskError) as caught:
            JournalStore(small_fs / "j", max_bytes=1 << 20, segment_bytes=SEGMENT).open()
        assert caught.value.errno == errno.EROFS
        assert "journal_dir must be a writable directory" in str(caught.value)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=False, timeout=30)


def _remount_read_only(target: Path) -> bool:
    done = subprocess.run(
        ["mount", "-o", "remount,ro", str(target)], capture_output=True, check=False, timeout=30
    )
    return done.returncode == 0


def _failing(code: int) -> object:
    def fail(*args: object) -> int:
        raise OSError(code, os.strerror(code))

    return fail


def test_a_segment_larger_than_the_free_space_is_allocated_as_far_as_appends_need(
    small_fs: Path,
) -> None:
    # 4 MiB segments on a 1 MiB filesystem: the whole capacity never fits, each append
    # allocates the pages it needs (DONE entries must fit while a few pages are free).
    store = JournalStore(small_fs / "j", max_bytes=64 << 20, segment_bytes=4 << 20)
    store.open()
    store.append([_record(0)])
    newest = store.directory / f"{0:020d}.journal"
    assert 0 < newest.stat().st_size < 4 << 20
    store.append([_record(s) for s in range(1, 20)])
    store.sync()
    store.close()
    again = JournalStore(small_fs / "j", max_bytes=64 << 20, segment_bytes=4 << 20)
    recovery = again.open()
    assert (recovery.pending_records, recovery.torn_tail) == (20, None)
    again.close()


def test_no_space_for_a_new_segment_is_a_typed_error_not_a_sigbus(small_fs: Path) -> None:
    store = JournalStore(small_fs / "j", max_bytes=64 << 20, segment_bytes=SEGMENT)
    store.open()
    store.append([_record(0)])
    filler = small_fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with pytest.raises(OSError) as full:  # noqa: PT012 (fill until it breaks)
            for _ in range(1024):  # 1 MiB of 1 KiB writes fills a 1 MiB filesystem
                os.write(fd, b"\xff" * 1024)
    finally:
        os.close(fd)
    assert full.value.errno == errno.ENOSPC
    with pytest.raises(JournalDiskError) as caught:  # noqa: PT012 (roll until it breaks)
        for serial in range(1, 1000):
            store.append([_record(serial, size=2000)])
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.operation == "allocate"
    assert "still usable" in str(caught.value)
    assert store.failed is None
    filler.unlink()  # space comes back: appends go on where they stopped
    store.append([_record(serial, size=2000)])
    store.sync()
    assert [r.serial for r in store.read_pending(0, store.next_serial)] == list(range(serial + 1))
    store.close()


def test_eio_when_allocating_writes_nothing_and_stops_the_store(
    store: JournalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "posix_fallocate", _failing(errno.EIO))
    with pytest.raises(JournalDiskError) as caught:
        store.append([_record(0)])
    assert caught.value.errno == errno.EIO
    assert "stopped" in str(caught.value)
    monkeypatch.undo()
    assert _files_size(store.directory) == 0
    with pytest.raises(JournalFailedError):
        store.append([_record(0)])
    with pytest.raises(JournalFailedError):
        store.sync()


def test_enospc_when_allocating_keeps_the_store_usable(
    store: JournalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.append([_record(0)])
    store.append([_record(1, size=2 * SEGMENT)])  # its own segment, allocated to its size
    monkeypatch.setattr(os, "posix_fallocate", _failing(errno.ENOSPC))
    with pytest.raises(JournalDiskError) as caught:
        store.append([_record(2)])
    assert caught.value.errno == errno.ENOSPC
    monkeypatch.undo()
    store.append([_record(2)])
    store.sync()
    assert [r.serial for r in store.read_pending(0, store.next_serial)] == [0, 1, 2]


def test_a_failed_fsync_stops_the_store_and_cuts_what_it_did_not_cover(
    store: JournalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.append([_record(s) for s in range(3)])
    store.sync()
    store.append([_record(s) for s in range(3, 6)])
    monkeypatch.setattr(os, "fdatasync", _failing(errno.EIO))
    with pytest.raises(JournalSyncError) as caught:
        store.sync()
    assert caught.value.errno == errno.EIO
    assert caught.value.first_unsynced_serial == 3
    monkeypatch.undo()
    # No later sync may pretend to cover what the failed one did not (fsyncgate).
    with pytest.raises(JournalFailedError) as again:
        store.sync()
    assert again.value.__cause__ is caught.value
    with pytest.raises(JournalFailedError):
        store.append([_record(6)])
    store.close()
    reopened = JournalStore(store.directory, max_bytes=1 << 20, segment_bytes=SEGMENT)
    recovery = reopened.open()
    try:
        assert [r.serial for r in reopened.read_pending(0, reopened.next_serial)] == [0, 1, 2]
        assert recovery.next_serial == 3
    finally:
        reopened.close()


def _fill(store: JournalStore, first: int) -> int:
    """Append 1000-byte records from ``first`` until the disk is full; the next serial."""
    serial = first
    with pytest.raises(JournalDiskError) as caught:  # noqa: PT012 (fill until it breaks)
        for serial in range(first, first + 10_000):
            store.append([_record(serial)])
    assert caught.value.errno == errno.ENOSPC
    return serial


def test_records_done_in_memory_let_reclaim_free_a_full_disk(small_fs: Path) -> None:
    # The disk filled up with records; once they were acknowledged, their DONE entries
    # did not fit either, nothing was ever reclaimed and the journal refused every
    # record for good. Marked done in memory (``mark_done``), their segments go.
    store = JournalStore(small_fs / "j", max_bytes=64 << 20, segment_bytes=SEGMENT)
    store.open()
    full_at = _fill(store, 0)
    store.mark_done([Done("t", 0, 0, full_at - 1)])
    assert store.reclaim() > 0
    _fill(store, full_at)  # as much room again, in the segments reclaim freed
    store.close()


def test_a_full_disk_rolls_past_a_newest_segment_that_is_all_done(small_fs: Path) -> None:
    # One segment larger than the disk: reclaim never deletes the newest, so the next
    # append starts a new segment and the old one goes.
    store = JournalStore(small_fs / "j", max_bytes=64 << 20, segment_bytes=4 << 20)
    store.open()
    full_at = _fill(store, 0)
    assert len(list(store.directory.glob("*.journal"))) == 1
    store.mark_done([Done("t", 0, 0, full_at - 1)])
    store.append([_record(full_at)])
    assert [p.name for p in store.directory.glob("*.journal")] == [f"{full_at:020d}.journal"]
    store.sync()
    assert [r.serial for r in store.read_pending(0, store.next_serial)] == [full_at]
    store.close()


def test_a_full_disk_keeps_a_newest_segment_with_records_pending(small_fs: Path) -> None:
    store = JournalStore(small_fs / "j", max_bytes=64 << 20, segment_bytes=4 << 20)
    store.open()
    full_at = _fill(store, 0)
    store.mark_done([Done("t", 0, 0, full_at - 2)])  # the last record still pending
    with pytest.raises(JournalDiskError):
        store.append([_record(full_at)])
    assert [r.serial for r in store.read_pending(0, store.next_serial)] == [full_at - 1]
    store.close()
