"""The journal store's fsyncs: group commit outside the store's lock, and fsyncgate.

A part of ``JournalStore`` (``_segments``), apart for its size: ``StoreSync`` is its
base class and reads the store's state, declared below. The rules (``_segments``'s
module doc): ``sync`` takes a ``SyncTicket`` of what is new under the lock, fsyncs it
outside the lock (appends go on), and settles it under the lock again; syncs never
overlap (``_sync_mutex``, and a roll or a reclaim waits for the one in flight), so a
failure cannot be consumed by one fsync while another reports the same pages clean. A
failed fsync cuts what it covered from the files and stops the store for good. Here too:
``write_ahead``, which the journal's thread for it runs (``_mapped``, ``_write_ahead``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from pykaf._producer.journal._disk import DiskHealth
from pykaf._producer.journal._durability import SyncTicket, cut_unsynced, fsync_ticket
from pykaf._producer.journal._lock import DirectoryLock
from pykaf._producer.journal._mapped import AHEAD_STEP, WRITE_AHEAD, MappedSegment, write_ahead
from pykaf._producer.journal._recovery import Segment
from pykaf._producer.journal._settling_lock import SettlingLock

__all__ = ["StoreSync"]


class StoreSync:
    """``JournalStore``'s syncs (see the module doc). The state is the store's."""

    directory: Path
    _mutex: SettlingLock  # the store's lock
    _sync_mutex: threading.Lock  # one sync at a time; taken before ``_mutex``
    _idle: threading.Condition  # notified when an fsync settles
    _in_flight: bool  # an fsync runs outside the lock
    _ahead_turn: threading.Lock
    _ahead_in_flight: bool  # a step of ``write_ahead`` runs outside the lock
    _lock: DirectoryLock | None
    _health: DiskHealth
    _segments: list[Segment]
    _file: MappedSegment | None
    _next_serial: int
    _synced_serial: int
    _synced_size: int
    _created: int
    _directory_synced: int

    def _check_usable(self) -> None:
        raise NotImplementedError  # the store's

    def sync(self) -> None:
        """Make everything appended so far durable; returns at once when nothing is new.
        The fsync runs outside the store's lock: appends from other threads go on."""
        with self._sync_mutex:
            with self._mutex:
                ticket = self._ticket()
                if ticket is None:
                    return
                if self._file is not None:
                    # Before the fsync, not after: its writeback would otherwise
                    # write-protect each page still mapped, one TLB flush (an
                    # interrupt to the other cores) a page (``_mapped``'s module doc).
                    self._file.drop_behind(ticket.size)
                self._in_flight = True
            failure: tuple[OSError, Path] | None = None
            completed = False
            try:
                failure = fsync_ticket(ticket, self.directory)
                completed = True
            finally:
                ticket.close()
                with self._mutex:
                    # Settled before anyone waiting may sync: a failure must stop the
                    # store before another fsync could report the same pages clean.
                    try:
                        if completed:
                            self._settle(ticket, failure)
                    finally:
                        self._in_flight = False
                        self._idle.notify_all()

    def write_ahead(self) -> None:
        """Write zeros into the pages ahead of the newest segment's end, so that appends
        into them do not make the kernel prepare them holding the GIL (``_mapped``'s
        module doc). For the journal's thread that writes ahead: each step is written
        outside the lock (appends go on, up to the step's fence) and nothing raises; a
        second caller meanwhile returns at once."""
        if not self._ahead_turn.acquire(blocking=False):
            return
        try:
            for _ in range(WRITE_AHEAD // AHEAD_STEP + 1):  # bounded: a step at a time
                with self._mutex:
                    target = self._file
                    if target is None or self._lock is None or self._health.failure is not None:
                        return
                    step = target.plan_ahead(self._segments[-1].size)
                    if step is None:
                        return
                    self._ahead_in_flight = True
                try:
                    write_ahead(step)
                finally:
                    with self._mutex:
                        target.ahead_done()
                        self._ahead_in_flight = False
                        self._idle.notify_all()
        finally:
            self._ahead_turn.release()

    def _wait_idle(self) -> None:
        # With the lock held: let an fsync in flight settle first (the wait releases it),
        # and a step written ahead (a roll or a close cuts the file: not under it).
        while self._in_flight or self._ahead_in_flight:
            self._idle.wait()

    def _sync_locked(self) -> None:
        # The same sync, with the lock held throughout (a roll, a reclaim).
        self._wait_idle()
        ticket = self._ticket()
        if ticket is not None:
            try:
                self._settle(ticket, fsync_ticket(ticket, self.directory))
            finally:
                ticket.close()

    def _ticket(self) -> SyncTicket | None:
        self._check_usable()
        if not self._segments:
            return None
        segment = self._segments[-1]
        file_needed = segment.size > self._synced_size
        directory = self._created if self._created > self._directory_synced else -1
        if not file_needed and directory < 0:
            return None
        fd = -1
        if file_needed:
            assert self._file is not None  # something was written to it since the last sync
            try:
                fd = os.dup(self._file.fd)
            except OSError as exc:
                raise self._health.error(exc, "dup", segment.path, usable=True) from exc
        return SyncTicket(
            fd=fd,
            segment=segment,
            size=segment.size,
            serial=self._next_serial,
            synced_size=self._synced_size,
            synced_serial=self._synced_serial,
            directory=directory,
        )

    def _settle(self, ticket: SyncTicket, failure: tuple[OSError, Path] | None) -> None:
        if failure is not None:
            self._sync_failed(ticket, *failure)
        self._synced_serial = max(self._synced_serial, ticket.serial)
        if ticket.segment is self._segments[-1]:
            self._synced_size = max(self._synced_size, ticket.size)
        self._directory_synced = max(self._directory_synced, ticket.directory)

    def _sync_failed(self, ticket: SyncTicket, exc: OSError, path: Path) -> None:
        # fsyncgate: what this sync covered may be lost while the page cache still shows
        # it, and a later fsync would not say so. Cut it, and everything after it, so that
        # a reopen reads only what an earlier sync made durable; then stop.
        if self._health.failure is None:
            cut_unsynced(ticket, self._segments[self._segments.index(ticket.segment) + 1 :])
        raise self._health.sync_error(exc, path, ticket.synced_serial) from exc
