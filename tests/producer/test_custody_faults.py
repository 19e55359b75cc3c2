"""Disk trouble under custody "journal"/"journal_sync" (issue 12): a full journal is
back-pressure (produce() blocks up to max_block, then ``JournalFullError``; the record was
not taken), a failed fsync stops the journal and produce() raises the typed error; each
episode is one WARNING; nothing is dropped in silence."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _custody_support import FAST, one_broker

from pykaf._errors import (
    JournalDiskError,
    JournalFailedError,
    JournalFullError,
    JournalSyncError,
)
from pykaf._producer._async_producer import AsyncProducer
from pykaf._producer._producer import Producer
from pykaf.broker import BlockingCluster


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with one_broker(1) as running:
        yield running


def wait_until(condition: Callable[[], bool], bound: float) -> None:
    """Poll ``condition`` (set by another thread) for at most ``bound`` seconds."""
    pause = threading.Event()
    deadline = time.monotonic() + bound
    while not condition() and time.monotonic() < deadline:
        pause.wait(0.005)


def warnings_about(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(1 for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage())


def test_a_full_journal_blocks_then_raises_and_takes_records_again_once_acknowledged(
    cluster: BlockingCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pykaf.producer.journal")
    delivered: list[bytes] = []
    settings = {
        **FAST,
        "max_block": 0.3,
        "journal_max_bytes": 8192,
        "journal_segment_bytes": 4096,
    }
    with Producer(cluster.bootstrap, custody="journal", journal_dir=tmp_path, **settings) as p:
        p.send("t", b"warm").result(30)
        hold = cluster.faults.hold_responses("Produce")
        taken = 0
        refused: JournalFullError | None = None
        for i in range(100):  # far more than 8 KiB of 1 KiB records
            value = b"%04d" % i + bytes(1020)
            try:
                p.produce("t", value, on_delivery=lambda m, e, v=value: delivered.append(v))
            except JournalFullError as exc:
                refused = exc
                break
            taken += 1
        assert refused is not None
        assert "journal_max_bytes" in str(refused)
        assert 0 < taken < 100
        with pytest.raises(JournalFullError):  # the same episode: no second warning
            p.produce("t", bytes(1024))
        assert warnings_about(caplog, "full") == 1
        hold.release()
        assert p.flush(30) == 0
        # Acknowledged records free the journal (DONE entries, reclaim): it takes more.
        for _ in range(50):
            try:
                p.produce("t", b"after")
                break
            except JournalFullError:
                continue
        else:
            pytest.fail("the journal never took a record again")
        assert p.flush(30) == 0
    assert len(delivered) == taken  # a refused record was not sent
    assert sorted(delivered) == delivered


def test_a_failed_fsync_stops_the_journal_with_typed_errors(
    cluster: BlockingCluster,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="pykaf.producer.journal")
    with Producer(
        cluster.bootstrap, custody="journal_sync", journal_dir=tmp_path, **{**FAST, "linger": 0.2}
    ) as p:
        p.produce("t", b"warm")  # still lingering when the disk fails

        def broken(fd: int) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(os, "fdatasync", broken)
        with pytest.raises(JournalSyncError, match="fsync"):
            p.produce("t", b"lost-custody")
        said = warnings_about(caplog, "fsync")
        assert said >= 1
        with pytest.raises(JournalFailedError):
            p.produce("t", b"refused")
        with pytest.raises(JournalFailedError):
            p.send("t", b"refused too")
        assert warnings_about(caplog, "fsync") == said  # one episode: said once
        monkeypatch.undo()
        assert p.flush(30) == 0
    # Nothing more once the batches in flight find the store stopped (their identities
    # cannot be journaled): the failed fsync and the stop, each said once, with the cause.
    disk = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and "journal" in r.getMessage()
    ]
    assert len(disk) == 2, disk
    assert "Input/output error" in disk[0]
    assert "stopped" in disk[1]


def test_journal_level_reports_a_failed_group_commit_on_the_next_produce(
    cluster: BlockingCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Producer(cluster.bootstrap, custody="journal", journal_dir=tmp_path, **FAST) as p:
        p.send("t", b"warm").result(30)

        def broken(fd: int) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(os, "fdatasync", broken)
        # The group-commit thread's fsync fails after this produce, or before it (the warm
        # record's DONE entry may still await its fsync): either way the store stops, typed.
        with contextlib.suppress(JournalSyncError, JournalFailedError):
            p.produce("t", b"appended")
        store = p._accumulator.store  # type: ignore[attr-defined]
        wait_until(lambda: store.failed is not None, 10.0)
        assert isinstance(store.failed, JournalSyncError)
        with pytest.raises(JournalFailedError):
            p.produce("t", b"refused")
        monkeypatch.undo()


def test_async_producer_waits_for_a_full_journal_then_raises(
    cluster: BlockingCluster, tmp_path: Path
) -> None:
    settings = {
        **FAST,
        "max_block": 0.3,
        "journal_max_bytes": 8192,
        "journal_segment_bytes": 4096,
    }

    async def main() -> int:
        async with AsyncProducer(
            cluster.bootstrap, custody="journal", journal_dir=tmp_path, **settings
        ) as producer:
            await producer.send("t", b"warm")
            hold = cluster.faults.hold_responses("Produce")
            taken = 0
            refused = None
            for _ in range(100):
                try:
                    await producer.produce("t", bytes(1024))
                except JournalFullError as exc:
                    refused = exc
                    break
                taken += 1
            assert refused is not None
            hold.release()
            assert await producer.flush(30) == 0
            for _ in range(50):  # room again once acknowledged records are reclaimed
                try:
                    await producer.produce("t", b"after")
                    break
                except JournalFullError:
                    continue
            else:
                pytest.fail("the journal never took a record again")
            assert await producer.flush(30) == 0
            return taken

    assert 0 < asyncio.run(main()) < 100


def test_fsync_reports_a_journal_stopped_by_a_failed_append(
    cluster: BlockingCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: with every record already synced, fsync() returned as if the journal
    # worked after an append had stopped it (EIO allocating the next segment), so a
    # health probe built on it (the gateway's /healthz) said "ok".
    async def run() -> None:
        async with AsyncProducer(
            cluster.bootstrap,
            custody="journal",
            journal_dir=tmp_path,
            journal_segment_bytes=64 * 1024,
            **FAST,
        ) as p:
            await p.produce("t", b"x" * 1000)
            await p.fsync()  # synced: nothing left for the next fsync to do

            def broken(fd: int, offset: int, length: int) -> None:
                raise OSError(errno.EIO, "Input/output error")

            async def past_the_segment() -> None:  # the next one cannot be allocated
                for _ in range(200):
                    await p.produce("t", b"x" * 1000)

            monkeypatch.setattr(os, "posix_fallocate", broken)
            with pytest.raises(JournalDiskError, match="allocate"):
                await past_the_segment()
            monkeypatch.undo()
            with pytest.raises(JournalDiskError, match="allocate"):
                await p.fsync()
            await p.flush(30)

    asyncio.run(run())
