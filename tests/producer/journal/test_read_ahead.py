"""Reading the newest segment's next pages into the page cache (``JournalStore.read_ahead``,
the journal thread's step after each sync): the pages ahead of the write position are in
the cache afterwards, nothing in the files changes, appends racing with it lose nothing,
and a store with nothing to read ahead (no file yet, closed) returns quietly."""

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
from pykaf._producer.journal import JournalRecord, JournalStore
from pykaf._producer.journal._mapped import READ_AHEAD, READ_STEP

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


def test_the_pages_ahead_of_the_end_are_read_into_the_page_cache(tmp_path: Path) -> None:
    store = JournalStore(tmp_path, max_bytes=1 << 28, segment_bytes=_SEGMENT)
    store.open()
    try:
        for serial in range(300):
            _append(store, _record(serial))
        store.sync()
        path = _segment(tmp_path)
        end = store.used_bytes
        ahead = (end - end % _PAGE + _PAGE, end + READ_AHEAD - READ_STEP)
        # Allocated but never written nor read: not in the cache before (the appends'
        # faults read nothing ahead: the map is MADV_RANDOM).
        assert not any(_resident(path, *ahead))
        with path.open("rb") as file:
            entries = file.read(end)  # pages written already: reading them reads no more
        store.read_ahead()
        assert all(_resident(path, *ahead))
        with path.open("rb") as file:  # read, never written
            assert file.read(end) == entries
            assert file.read(READ_AHEAD) == bytes(READ_AHEAD)
        store.read_ahead()  # enough is read ahead already: nothing more to do
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


def test_appends_racing_with_reading_ahead_lose_nothing(tmp_path: Path) -> None:
    records = [_record(serial, 700) for serial in range(20_000)]
    store = JournalStore(tmp_path, max_bytes=1 << 28, segment_bytes=4 << 20)
    store.open()
    written = threading.Event()

    def reader() -> None:
        for _ in range(100_000):  # bounded: ends with the writer, or after this many
            if written.is_set():
                return
            store.sync()
            store.read_ahead()

    thread = threading.Thread(target=reader)
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


def test_a_store_with_nothing_to_read_ahead_returns_quietly(tmp_path: Path) -> None:
    store = JournalStore(tmp_path, max_bytes=1 << 28, segment_bytes=_SEGMENT)
    store.read_ahead()  # not open
    store.open()
    store.read_ahead()  # no segment file yet
    _append(store, _record(0))
    store.close()
    store.read_ahead()  # closed


def test_the_journal_thread_reads_ahead_after_its_syncs(
    tmp_path: Path, mock_cluster_session: MockCluster
) -> None:
    topic = "read-ahead"
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
        # From two pages on: the DONE entries still to come may touch the next one.
        ahead = (end - end % _PAGE + 2 * _PAGE, end + READ_STEP)
        for _ in range(500):  # bounded: the thread reads ahead after each sync
            if all(_resident(path, *ahead)):
                break
            threading.Event().wait(0.01)
        assert all(_resident(path, *ahead))
