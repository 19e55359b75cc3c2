"""The journal's own thread (``GroupCommit``) survives an unexpected exception (a bug in a
step it runs: a sync, reclaim, a DONE entry): it logs it at ERROR with its traceback,
once per episode, puts back what it had taken (DONE entries, waiters) and goes on. Before,
the thread died: "journal_sync" callers on an event loop waited forever, no later record
was fsynced, no DONE entry written, nothing reclaimed, and only threading's excepthook
said so, on stderr."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _custody_support import FAST, one_broker

from pykaf._errors import JournalError
from pykaf._producer._async_producer import AsyncProducer
from pykaf._producer.journal import Done
from pykaf.broker import BlockingCluster


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with one_broker(1) as running:
        yield running


def _errors_about(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(1 for r in caplog.records if r.levelno == logging.ERROR and text in r.getMessage())


class _Bug:
    """Stands in for a store method: raises ``times`` times (None: always), in the thread
    named ``thread`` only when given, else calls the real one."""

    def __init__(self, real: Any, times: int | None, thread: str | None = None) -> None:
        self.real = real
        self.left = times
        self.thread = thread
        self.raised = 0

    def __call__(self, *args: Any) -> Any:
        mine = self.thread is None or threading.current_thread().name == self.thread
        if mine and (self.left is None or self.left > 0):
            if self.left is not None:
                self.left -= 1
            self.raised += 1
            raise ValueError("a bug in a journal step")
        return self.real(*args)


def _errors_with(
    cluster: BlockingCluster,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    custody: str,
    body: Callable[[AsyncProducer, Any], Awaitable[None]],
) -> int:
    """Run ``body(producer, store)`` on a warmed-up AsyncProducer; the ERROR records the
    injected bug left in the journal's log."""

    async def main() -> None:
        async with AsyncProducer(
            cluster.bootstrap, custody=custody, journal_dir=tmp_path, **FAST
        ) as producer:
            await producer.send("t", b"warm")
            await body(producer, producer._accumulator.store)

    with caplog.at_level(logging.ERROR, logger="pykaf.producer.journal"):
        asyncio.run(main())
    assert all(r.exc_info for r in caplog.records if r.levelno == logging.ERROR)
    return _errors_about(caplog, "a bug in a journal step")


def test_journal_sync_goes_on_after_an_unexpected_error_in_the_journal_thread(
    cluster: BlockingCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(producer: AsyncProducer, store: Any) -> None:
        bug = _Bug(store.reclaim, times=None)
        store.reclaim = bug
        # "journal_sync": each returns after the fsync covering it. Reclaim runs every
        # half second: produce until the bug has struck, and a few more after it.
        after = 0
        for i in range(2000):  # bounded (about 3 ms each, and 50 ms after a strike)
            await asyncio.wait_for(producer.produce("t", b"%d" % i), 10)
            after += bug.raised > 0
            if after >= 20:
                break
        assert bug.raised >= 1
        assert store.synced_serial >= store.next_serial  # every record fsynced
        store.reclaim = bug.real
        assert await producer.flush(30) == 0

    # Once for the episode, however often it raised.
    assert _errors_with(cluster, tmp_path, caplog, "journal_sync", body) == 1


def test_done_entries_taken_before_an_unexpected_error_are_written_later(
    cluster: BlockingCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The error strikes after the thread took the queued DONE entries: they go back to the
    # queue, so the acknowledged records leave the journal (nothing pending at the end).
    async def body(producer: AsyncProducer, store: Any) -> None:
        store.try_append_dones = lambda dones: False  # queued for the thread, as when busy
        bug = _Bug(store.append, times=1, thread="pykaf-journal")
        store.append = bug
        for i in range(10):
            await producer.send("t", b"%d" % i)
        assert await producer.flush(30) == 0
        for _ in range(200):  # bounded: the thread writes the DONE entries soon
            if store.pending_records == 0:
                break
            await asyncio.sleep(0.01)
        assert bug.raised == 1
        assert store.pending_records == 0

    assert _errors_with(cluster, tmp_path, caplog, "journal", body) == 1


def test_an_unexpected_error_journaling_identities_never_stops_the_sender(
    cluster: BlockingCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The sender journals each batch's identity before its Produce request. A bug there
    # raised out of the event loop's pump, mid-send: the batches were never sent, and
    # flush() waited for them forever. Now: logged at ERROR once, and the batches go
    # (a crash would then send them again unproven, as for a full journal).
    async def body(producer: AsyncProducer, store: Any) -> None:
        store.fast_identity = lambda *fields: -1
        bug = _Bug(store.append, times=None, thread="MainThread")  # the loop: the sender
        store.append = bug
        sent = [producer.send("t", b"%d" % i) for i in range(10)]
        assert await asyncio.wait_for(producer.flush(30), 40) == 0
        assert all(f.done() and f.exception() is None for f in sent)
        assert bug.raised >= 1
        store.append = bug.real

    assert _errors_with(cluster, tmp_path, caplog, "journal", body) == 1


def test_work_done_before_an_unexpected_error_is_not_done_again(
    cluster: BlockingCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A step after the DONE entries were written fails every round (the sync): the
    # rounds go on, and each DONE entry is written once, not once per retry.
    async def body(producer: AsyncProducer, store: Any) -> None:
        written: list[Any] = []
        real_append = store.append

        def append(entries: Any) -> int:
            written.extend(e for e in entries if isinstance(e, Done))
            return int(real_append(entries))

        store.append = append
        store.try_append_dones = lambda dones: False  # queued for the thread, as when busy
        bug = _Bug(store.sync, times=None, thread="pykaf-journal")
        store.sync = bug
        for i in range(200):  # bounded: until a few rounds have failed after their DONEs
            await producer.send("t", b"%d" % i)
            assert await producer.flush(30) == 0
            if bug.raised >= 3:
                break
            await asyncio.sleep(0.02)
        for _ in range(300):  # bounded: the thread writes the last DONE entries soon
            if store.pending_records == 0:
                break
            await asyncio.sleep(0.01)
        assert bug.raised >= 3
        assert store.pending_records == 0
        assert written
        assert len(written) == len(set(written))  # none twice
        store.sync = bug.real

    assert _errors_with(cluster, tmp_path, caplog, "journal", body) == 1


def test_a_close_under_a_persistent_error_ends_the_thread_and_answers_its_waiters(
    cluster: BlockingCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Every sync raises (a bug): a "journal_sync" caller waits; the producer closes. The
    # journal's thread must end (not retry without pause for good) and the caller get
    # an error instead of waiting forever.
    async def main() -> None:
        producer = AsyncProducer(
            cluster.bootstrap, custody="journal_sync", journal_dir=tmp_path, **FAST
        )
        await producer.send("t", b"warm")
        store = producer._accumulator.store
        assert producer._custody is not None
        thread = producer._custody.commit._thread
        bug = _Bug(store.sync, times=None, thread="pykaf-journal")
        store.sync = bug
        waiting = asyncio.ensure_future(producer.produce("t", b"never synced"))
        for _ in range(200):  # bounded: the bug strikes within a round or two
            if bug.raised:
                break
            await asyncio.sleep(0.01)
        assert bug.raised
        assert not waiting.done()
        await producer.close(2)
        thread.join(10)
        assert not thread.is_alive()
        with pytest.raises(JournalError, match="a bug in a journal step"):
            await asyncio.wait_for(waiting, 10)

    with caplog.at_level(logging.ERROR, logger="pykaf.producer.journal"):
        asyncio.run(main())
