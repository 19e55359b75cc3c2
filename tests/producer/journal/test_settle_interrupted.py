"""A signal handler that raises while the store settles its ``JournalTail`` (Ctrl-C in
the producing thread: the store's lock is taken there too) loses nothing. The tail keeps
what it wrote until the store has taken it in, and taking it in again changes nothing
more. Before, a KeyboardInterrupt right after ``settle()`` returned left the segment's
size behind the tail's appends, and the next append overwrote records that produce()
had accepted."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pykaf._producer.journal import JournalStore
from pykaf._producer.journal._pending import PendingIndex
from pykaf._producer.journal._record_writer import JournalTail

pytestmark = pytest.mark.skipif(JournalTail is None, reason="the C journal tail is not built")

VALUE = os.urandom(100)


class _Interrupting:
    """The store's tail, with a KeyboardInterrupt raised where ``where`` says."""

    def __init__(self, real: Any, where: str) -> None:
        self.real = real
        self.where = where

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def settle(self) -> Any:
        state = self.real.settle()
        if self.where == "after settle":
            raise KeyboardInterrupt
        return state

    def applied(self) -> None:
        if self.where == "before applied":
            raise KeyboardInterrupt
        self.real.applied()


def _open(directory: Path) -> JournalStore:
    store = JournalStore(directory, max_bytes=1 << 28, segment_bytes=1 << 24)
    store.open()
    return store


@pytest.mark.parametrize("where", ["after settle", "in add_run", "before applied"])
def test_an_interrupted_settle_loses_and_doubles_nothing(
    tmp_path: Path, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _open(tmp_path)
    for serial in (0, 1):  # the locked path: the file, then the tail armed
        store.append_record(serial, "t", 0, 1, None, VALUE, None)
    for serial in range(2, 12):  # the tail, as produce() does: each accepted
        assert store.fast_append(serial, "t", serial % 2, 1, None, VALUE) >= 0
    real_tail = store._tail
    store._tail = _Interrupting(real_tail, where)  # type: ignore[assignment]
    if where == "in add_run":
        real_add_run = PendingIndex.add_run
        calls = 0

        def add_run(index: PendingIndex, *run: Any) -> None:
            nonlocal calls
            calls += 1
            if calls == 3:  # two runs taken in, then the signal
                raise KeyboardInterrupt
            real_add_run(index, *run)

        monkeypatch.setattr(PendingIndex, "add_run", add_run)
    with pytest.raises(KeyboardInterrupt):
        store.sync()  # takes the lock: settles
    store._tail = real_tail
    monkeypatch.undo()
    store.append_record(12, "t", 0, 1, None, b"after", None)  # settles again, first
    assert store.pending_records == 13
    assert store.used_bytes == sum(segment.size for segment in store._segments)
    store.sync()
    store.close()
    reopened = _open(tmp_path)
    try:
        assert [r.serial for r in reopened.read_pending(0, 100)] == list(range(13))
        assert reopened.pending_records == 13
    finally:
        reopened.close()
