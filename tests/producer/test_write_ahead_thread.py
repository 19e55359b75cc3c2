"""The journal's thread that writes pages ahead of the appends (``AheadWriter``): it keeps
ahead while the syncing thread is blocked in an fsync (it ran after each sync before, so a
slow disk let the appends outrun it and fault every page in, holding the GIL), it survives
a bug in a step (logged at ERROR once, then it goes on) and it ends with the producer."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _custody_support import FAST, SlowFsync, one_broker

from pykaf import Producer
from pykaf._producer._write_ahead import AheadWriter
from pykaf._producer.journal import JournalStore
from pykaf._producer.journal._mapped import DROP_STEP
from pykaf.broker import BlockingCluster

_VALUE = b"v" * (64 << 10)


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with one_broker(1) as running:
        yield running


def _until(condition: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # bounded by the deadline
        if condition():
            return True
        time.sleep(0.005)
    return bool(condition())


def test_pages_are_written_ahead_while_the_syncing_thread_waits_for_the_disk(
    cluster: BlockingCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A disk whose fsync takes long (held here until released): the appends go on (the
    # "journal" level does not wait for syncs) and the pages ahead of them must still be
    # written. Before, only the syncing thread wrote them, after its sync returned.
    disk = SlowFsync(monkeypatch)
    held, release = disk.held, disk.release
    with Producer(cluster.bootstrap, custody="journal", journal_dir=tmp_path, **FAST) as producer:
        store = producer._accumulator.store
        try:
            producer.produce("t", b"first")
            assert _until(held.is_set)  # the syncing thread is in its fsync now
            for _ in range(80):  # 5 MiB: a kick per DROP_STEP of them
                producer.produce("t", _VALUE)
            end = store.used_bytes
            assert end > 4 * DROP_STEP
            # Written ahead past the appends, with the fsync still held.
            assert _until(lambda: store._file.ahead_to > end + DROP_STEP)
            assert not release.is_set()
        finally:
            release.set()
        assert producer.flush(30) == 0


class _Bug:
    """``write_ahead`` that raises its first ``times`` calls, then counts real ones."""

    def __init__(self, real: Any, times: int) -> None:
        self.real = real
        self.left = times
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        if self.left > 0:
            self.left -= 1
            raise ValueError("a bug in writing ahead")
        self.real()


def test_a_bug_in_a_step_is_logged_once_and_the_thread_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = JournalStore(tmp_path, max_bytes=1 << 28, segment_bytes=16 << 20)
    store.open()
    bug = _Bug(store.write_ahead, times=3)
    store.write_ahead = bug  # type: ignore[method-assign]
    writer = AheadWriter(store)
    try:
        with caplog.at_level(logging.ERROR, logger="pykaf.producer.journal"):
            store.append_record(0, "t", 0, 1, None, b"x", None)  # a new file: a step is due
            for _ in range(50):  # bounded: until the bug has struck and a real step ran
                if store._file is not None and store._file.ahead_to > 0:
                    break
                store.ahead_due()  # as an append crossing a MiB does
                _until(lambda: bug.calls > 3 or bug.left == 0, 0.2)
            assert bug.left == 0
            assert _until(lambda: store._file is not None and store._file.ahead_to > 0)
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1  # once for the episode, with its traceback
        assert "a bug in writing ahead" in errors[0].getMessage()
        assert errors[0].exc_info
    finally:
        writer.close(5)
        store.close()


def test_close_ends_the_thread_and_nothing_writes_ahead_after_it(tmp_path: Path) -> None:
    store = JournalStore(tmp_path, max_bytes=1 << 28, segment_bytes=16 << 20)
    store.open()
    writer = AheadWriter(store)
    thread = writer._thread
    assert thread.name == "pykaf-journal-ahead"
    assert thread.is_alive()
    writer.close(5)
    assert not thread.is_alive()
    store.append_record(0, "t", 0, 1, None, b"x", None)  # asks for a step: nobody takes it
    assert store._file is not None
    assert store._file.ahead_to == 0  # nothing wrote ahead after the close
    store.close()
