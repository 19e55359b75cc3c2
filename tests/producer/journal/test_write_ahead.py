"""Writing the newest segment's next pages with zeros ahead of the appends
(``JournalStore.write_ahead``, the journal thread's step after each sync): the pages ahead
of the write position are in the page cache afterwards and hold zeros, nothing the
entries hold changes, an append never ends inside a step being written (the fence),
appends racing with it lose nothing, and a store with nothing to write ahead (no file
yet, closed) returns quietly."""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import threading
from pathlib import Path

import pytest
from peers.mock_cluster import MockCluster

from pykaf import Producer
from pykaf._producer.journal import JournalRecord, JournalStore, _store_sync
from pykaf._producer.journal._mapped import AHEAD_MARGIN, AHEAD_STEP, WRITE_AHEAD

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="mincore, to see the page cache, is Linux's"
)

_PAGE = mmap.PAGESIZE
_SEGMENT = 16 << 20


def _resident(path: Path, start: int, end: int) -> list[bool]:
    """Which pages of ``path`` in [start, end) the page cache holds (mincore)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int]
    libc.mmap.argtypes += [ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    start -= start % _PAGE
    length = end - start
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd, start)
        assert address not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        try:
            pages = ctypes.create_string_buffer(-(-length // _PAGE))
            assert libc.mincore(address, length, pages) == 0, ctypes.get_errno()
            return [bool(flag & 1) for flag in pages.raw]
        finally:
            libc.munmap(address, length)
    finally:
        os.close(fd)


def _record(serial: int, size: int = 1000) -> JournalRecord:
    return JournalRecord(serial, "t", serial % 3, 1_700_000_000_000, None, os.urandom(size), [])


def _append(store: JournalStore, record: JournalRecord) -> None:
    serial, topic, partition, stamp, key, value, _ = record
    if store.fast_append(serial, topic, partition, stamp, key, value) < 0:
        store.append_record(serial, topic, partition, stamp, key, value, None)


def _segment(directory: Path) -> Path:
    (path,) = directory.glob("*.journal")
    return path


def test_the_pages_ahead_of_the_end_are_written_with_zeros(tmp_path: Path) -> None:
    store = JournalStore(tmp_path, max_bytes=1 << 28, segment_bytes=_SEGMENT)
    store.open()
    try:
        for serial in range(300):
            _append(store, _record(serial))
        store.sync()
        path = _segment(tmp_path)
        end = store.used_bytes
        first = -(-(end + AHEAD_MARGIN) // _PAGE) * _PAGE
        ahead = (first, end + WRITE_AHEAD - _PAGE)
        # Allocated but never written nor read: not in the cache before (the appends'
        # faults read nothing ahead: the map is MADV_RANDOM).
        assert not any(_resident(path, *ahead))
        with path.open("rb") as file:
            entries = file.read(end)  # pages written already: reading them reads no more
        store.write_ahead()
        assert all(_resident(path, *ahead))
        with path.open("rb") as file:  # the entries as they were, zeros after them
            assert file.read(end) == entries
            assert file.read(WRITE_AHEAD) == bytes(WRITE_AHEAD)
        store.write_ahead()  # enough is written ahead already: nothing more to do
        for serial in range(300, 600):
            _append(store, _record(serial))
        store.sync()
    finally:
        store.close()
    reopened = JournalStore(tmp_path, max_bytes=1 << 28, segment_bytes=_SEGMENT)
    reopened.open()
    try:
        assert [r.serial for r in reopened.read_pending(0, 600)] == list(range(600))
    finally:
        reopened.close()


def test_appends_racing_with_writing_ahead_lose_nothing(tmp_path: Path) -> None:
    records = [_record(serial, 700) for serial in range(20_000)]
    store = JournalStore(tmp_path, max_bytes=1 << 28, segment_bytes=4 << 20)
    store.open()
    written = threading.Event()

    def writer() -> None:
        for _ in range(100_000):  # bounded: ends with the appends, or after this many
            if written.is_set():
                return
            store.sync()
            store.write_ahead()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for record in records:
            _append(store, record)
    finally:
        written.set()
        thread.join(30)
    assert not thread.is_alive()
    store.sync()
    store.close()
    reopened = JournalStore(tmp_path, max_bytes=1 << 28, segment_bytes=4 << 20)
    reopened.open()
    try:
        assert list(reopened.read_pending(0, len(records))) == records
    finally:
        reopened.close()


def test_no_entry_ends_inside_a_step_being_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a step's zeros are being written (held here), the lock-free append stops
    short of it and a locked append that would cross into it waits; released, both
    entries are whole and nothing after them was zeroed over."""
    store = JournalStore(tmp_path, max_bytes=1 << 28, segment_bytes=_SEGMENT)
    store.open()
    _append(store, _record(0))
    in_flight, release = threading.Event(), threading.Event()
    real_write = _store_sync.write_ahead

    def held_write(step: tuple[int, int, int]) -> None:
        in_flight.set()
        assert release.wait(30)
        real_write(step)

    monkeypatch.setattr(_store_sync, "write_ahead", held_write)
    ahead = threading.Thread(target=store.write_ahead)
    ahead.start()
    assert in_flight.wait(30)
    fence = store._file.fence  # type: ignore[attr-defined]
    assert fence == -(-(store.used_bytes + AHEAD_MARGIN) // _PAGE) * _PAGE
    # Appends up to the fence, then one the lock-free path must refuse.
    serial = 1
    while store.used_bytes + 1100 <= fence:
        _append(store, _record(serial))
        serial += 1
    crossing = _record(serial, 2000)
    _, topic, partition, stamp, key, value, _ = crossing
    assert store.fast_append(serial, topic, partition, stamp, key, value) == -1
    done = threading.Event()

    def locked_append() -> None:
        store.append_record(serial, topic, partition, stamp, key, value, None)
        done.set()

    appender = threading.Thread(target=locked_append)
    appender.start()
    try:
        assert not done.wait(0.3)  # it waits for the step
        release.set()
        assert done.wait(30)
    finally:
        release.set()
        appender.join(30)
        ahead.join(30)
    _append(store, _record(serial + 1))
    store.sync()
    store.close()
    reopened = JournalStore(tmp_path, max_bytes=1 << 28, segment_bytes=_SEGMENT)
    reopened.open()
    try:
        got = list(reopened.read_pending(0, serial + 2))
        assert [r.serial for r in got] == list(range(serial + 2))
        assert got[serial] == crossing
    finally:
        reopened.close()


def test_a_store_with_nothing_to_write_ahead_returns_quietly(tmp_path: Path) -> None:
    store = JournalStore(tmp_path, max_bytes=1 << 28, segment_bytes=_SEGMENT)
    store.write_ahead()  # not open
    store.open()
    store.write_ahead()  # no segment file yet
    _append(store, _record(0))
    store.close()
    store.write_ahead()  # closed


def test_the_journal_thread_writes_ahead_after_its_syncs(
    tmp_path: Path, mock_cluster_session: MockCluster
) -> None:
    topic = "write-ahead"
    mock_cluster_session.create_topic(topic, 1, 1)
    with Producer(
        mock_cluster_session.bootstrap,
        custody="journal",
        journal_dir=tmp_path,
        journal_fsync_interval=0.001,
    ) as producer:
        for _ in range(200):
            producer.produce(topic, b"x" * 1000)
        assert producer.flush(30) == 0
        path = _segment(tmp_path)
        end = producer._accumulator.store.used_bytes  # type: ignore[attr-defined]
        # From the margin on: the DONE entries still to come may move the end a little.
        first = -(-(end + 2 * AHEAD_MARGIN) // _PAGE) * _PAGE
        ahead = (first, first + AHEAD_STEP)
        for _ in range(500):  # bounded: the thread writes ahead after each sync
            if all(_resident(path, *ahead)):
                break
            threading.Event().wait(0.01)
        assert all(_resident(path, *ahead))
