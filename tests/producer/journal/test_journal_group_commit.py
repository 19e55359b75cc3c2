"""Group commit: a sync thread fsyncs while appends go on, and a failure there stops the
store for the appending thread too, with only what an earlier sync covered kept."""

from __future__ import annotations

import errno
import os
import threading
from functools import partial
from pathlib import Path

import pytest

from pykaf._errors import JournalDiskError, JournalFailedError, JournalSyncError
from pykaf._producer.journal import Done, JournalRecord, JournalStore

SEGMENT = 8192


def _record(serial: int) -> JournalRecord:
    return JournalRecord(serial, "t", serial % 4, serial, None, b"v" * 300, [])


def _syncing(store: JournalStore, stop: threading.Event, errors: list[BaseException]) -> None:
    seen = 0
    try:
        for _ in range(100_000):  # bounded; stopped by the event long before
            if stop.wait(0.001):
                return
            store.sync()
            assert store.synced_serial >= seen  # never goes back
            seen = store.synced_serial
    except BaseException as exc:
        errors.append(exc)


def test_a_sync_thread_and_an_appending_thread_lose_nothing(tmp_path: Path) -> None:
    store = JournalStore(tmp_path, max_bytes=64 << 20, segment_bytes=SEGMENT)
    store.open()
    stop = threading.Event()
    errors: list[BaseException] = []
    syncer = threading.Thread(target=_syncing, args=(store, stop, errors))
    syncer.start()
    try:
        for serial in range(3000):
            store.append([_record(serial)])
    finally:
        stop.set()
        syncer.join(timeout=30)
    assert errors == []
    store.sync()
    assert store.synced_serial == 3000
    store.close()
    again = JournalStore(tmp_path, max_bytes=64 << 20, segment_bytes=SEGMENT)
    recovery = again.open()
    try:
        assert recovery.torn_tail is None
        assert [r.serial for r in again.read_pending(0, again.next_serial)] == list(range(3000))
        assert len(list(tmp_path.glob("*.journal"))) > 10  # rolls happened meanwhile
    finally:
        again.close()


def test_concurrent_syncs_share_one_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = JournalStore(tmp_path, max_bytes=64 << 20, segment_bytes=SEGMENT)
    store.open()
    store.append([_record(0)])
    store.sync()  # the directory entry, out of the way
    calls: list[int] = []
    entered, release = threading.Event(), threading.Event()
    real = os.fdatasync

    def slow(fd: int) -> None:
        calls.append(fd)
        entered.set()
        assert release.wait(30)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", slow)
    store.append([_record(1)])
    first = threading.Thread(target=store.sync)
    first.start()
    assert entered.wait(30)
    others = [threading.Thread(target=store.sync) for _ in range(3)]
    for thread in others:
        thread.start()
    release.set()
    for thread in [first, *others]:
        thread.join(timeout=30)
    assert len(calls) == 1  # the three waited for the first and found nothing new
    assert store.synced_serial == 2
    store.close()


def test_a_failed_fsync_in_the_sync_thread_stops_appends_and_keeps_only_synced_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = JournalStore(tmp_path, max_bytes=64 << 20, segment_bytes=SEGMENT)
    store.open()
    store.append([_record(s) for s in range(5)])
    store.sync()
    store.append([_record(s) for s in range(5, 10)])

    def fail(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", fail)
    errors: list[BaseException] = []
    syncer = threading.Thread(target=lambda: _try(store.sync, errors))
    syncer.start()
    syncer.join(timeout=30)
    assert len(errors) == 1
    assert isinstance(errors[0], JournalSyncError)
    assert errors[0].first_unsynced_serial == 5
    monkeypatch.undo()
    with pytest.raises(JournalFailedError):
        store.append([_record(10)])
    store.close()
    again = JournalStore(tmp_path, max_bytes=64 << 20, segment_bytes=SEGMENT)
    again.open()
    try:
        assert [r.serial for r in again.read_pending(0, again.next_serial)] == list(range(5))
        again.append([_record(5)])  # open again, it goes on
        again.sync()
    finally:
        again.close()


def test_a_failed_fsync_while_rolling_cuts_the_unsynced_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = JournalStore(tmp_path, max_bytes=64 << 20, segment_bytes=SEGMENT)
    store.open()
    store.append([_record(0)])
    store.sync()
    monkeypatch.setattr(os, "fdatasync", lambda fd: _raise(errno.EIO))
    serial = 1
    with pytest.raises(JournalDiskError) as caught:  # noqa: PT012 (until the roll syncs)
        for serial in range(1, 1000):
            store.append([_record(serial)])
    assert isinstance(caught.value, JournalSyncError)
    monkeypatch.undo()
    store.close()
    again = JournalStore(tmp_path, max_bytes=64 << 20, segment_bytes=SEGMENT)
    again.open()
    try:
        assert [r.serial for r in again.read_pending(0, again.next_serial)] == [0]
        assert serial > 1  # records 1.. were appended, then cut: never synced
    finally:
        again.close()


def _raise(code: int) -> None:
    raise OSError(code, os.strerror(code))


def _try(call: object, errors: list[BaseException]) -> None:
    try:
        call()  # type: ignore[operator]
    except BaseException as exc:
        errors.append(exc)


def test_records_dones_syncs_and_reclaims_from_three_threads(tmp_path: Path) -> None:
    # The producer's shape: callers append records, the I/O side appends DONE entries as
    # answers come, a group-commit thread syncs and reclaims. Small segments: many rolls.
    store = JournalStore(tmp_path, max_bytes=64 << 20, segment_bytes=SEGMENT)
    store.open()
    acknowledged: list[int] = []
    ready = threading.Condition()
    finished = threading.Event()
    errors: list[BaseException] = []

    def answer() -> None:
        done = 0
        try:
            for _ in range(100_000):  # bounded
                with ready:
                    ready.wait_for(partial(_moved, acknowledged, done, finished), 5)
                    upto = len(acknowledged)
                if upto == done and finished.is_set():
                    return
                for serial in acknowledged[done:upto]:
                    if serial % 7 or serial < 1900:  # some late ones never get an answer
                        store.append([_done(serial)])
                done = upto
        except BaseException as exc:
            errors.append(exc)

    def commit() -> None:
        try:
            for turn in range(100_000):  # bounded
                if finished.wait(0.001):
                    return
                store.sync()
                if turn % 10 == 0:
                    store.reclaim()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=answer), threading.Thread(target=commit)]
    for thread in threads:
        thread.start()
    try:
        for serial in range(2000):
            store.append([_record(serial)])
            with ready:
                acknowledged.append(serial)
                ready.notify()
    finally:
        finished.set()
        with ready:
            ready.notify()
        for thread in threads:
            thread.join(timeout=30)
    assert errors == []
    store.reclaim()
    store.close()
    # Only whole prefixes are reclaimed: the oldest segment left holds a pending record.
    oldest = min(int(p.stem) for p in tmp_path.glob("*.journal"))
    assert 1850 < oldest <= 1904
    again = JournalStore(tmp_path, max_bytes=64 << 20, segment_bytes=SEGMENT)
    again.open()
    try:
        assert [r.serial for r in again.read_pending(0, again.next_serial)] == list(
            range(1904, 2000, 7)
        )
    finally:
        again.close()


def _moved(acknowledged: list[int], seen: int, finished: threading.Event) -> bool:
    return len(acknowledged) > seen or finished.is_set()


def _done(serial: int) -> Done:
    return Done("t", serial % 4, serial, serial)
