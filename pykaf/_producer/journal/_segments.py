"""The journal on disk: segment files, recovery, appends, group-commit syncs, reclaim.

Blocking file I/O, no event loop: the producer runs it where blocking is allowed.

A journal directory holds ``LOCK`` (see ``_lock``) and ``<first serial, 20 digits>.journal``
segments of entries (``_format``). A segment is named after the next serial when it was
started, so every record in it has a serial at least its name and below the next
segment's name; a segment is only rolled once it holds a record, which keeps names unique.

Durability rules, and why:
- ``append`` hands the bytes to the kernel with one ``os.writev`` per call: a killed
  process loses nothing appended; only an OS crash loses what ``sync`` did not cover.
- ``sync`` is ``fdatasync`` (plus the directory, when a segment was created since the last
  one) and returns at once when nothing is new: the caller groups commits.
- Rolling syncs the finished segment, so only the newest can end in a torn tail.
- A failed write is undone (truncated back): no half entry is ever counted as written.
  ENOSPC and EDQUOT leave the store usable (the caller backs off and retries); any other
  write error, or a failed undo, stops the store.
- A failed fsync stops the store for good (Postgres' "fsyncgate": after a failed fsync the
  kernel may have dropped the dirty pages, and a later fsync would succeed without them).
  What was appended since the last good sync is cut from the file, so that a reopen reads
  only what the disk holds, and ``JournalSyncError.first_unsynced_serial`` tells the caller
  which records are not in custody. Close and open again to go on.
- ``reclaim`` deletes the oldest segments whose records are all done (never the newest),
  after syncing the DONE entries that justify it; a segment is never deleted out of order,
  because its IDENTITY and DONE entries may speak for records in older ones.
- ``max_bytes`` bounds the files; RECORD appends beyond it raise ``JournalFullError``
  (after trying to reclaim). IDENTITY and DONE entries may use a small headroom above it,
  since writing DONE entries is how a full journal empties.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

from pykaf._client._episodes import Episodes
from pykaf._errors import (
    JournalDiskError,
    JournalFailedError,
    JournalFullError,
    JournalSyncError,
)
from pykaf._producer.journal._format import (
    RECORD,
    Done,
    Entry,
    Identity,
    JournalRecord,
    decode_frame,
    encode,
    encode_record,
    peek_record,
    walk,
)
from pykaf._producer.journal._lock import DirectoryLock
from pykaf._producer.journal._pending import PendingIndex
from pykaf._producer.journal._recovery import (
    Recovery,
    Segment,
    cut_torn_tail,
    read_segment,
    recover_segments,
    segment_name,
)

__all__ = ["JournalStore"]

log = logging.getLogger("pykaf.producer.journal")

_IOV_MAX: Final = 1024  # entries per writev; more are joined first
_RECOVERABLE_WRITE: Final = frozenset((errno.ENOSPC, errno.EDQUOT))


class JournalStore:
    """The segment files of one journal directory. Not thread-safe: one owner calls it."""

    def __init__(
        self, directory: str | os.PathLike[str], *, max_bytes: int, segment_bytes: int
    ) -> None:
        if segment_bytes < 4096:
            raise ValueError(f"journal_segment_bytes must be at least 4096, not {segment_bytes}")
        if max_bytes < segment_bytes:
            raise ValueError(
                f"journal_max_bytes ({max_bytes}) must be at least journal_segment_bytes"
                f" ({segment_bytes})"
            )
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        # Room above max_bytes for IDENTITY and DONE entries (see the module doc).
        self.headroom = max(64 * 1024, max_bytes // 64)
        self._lock: DirectoryLock | None = None
        self._segments: list[Segment] = []
        self._fd: int | None = None
        self._index = PendingIndex()
        self._identities: dict[tuple[str, int], Identity] = {}
        self._next_serial = 0
        self._used = 0
        self._unsynced = False  # bytes written since the last good sync
        self._directory_unsynced = False  # a segment created since the last good sync
        self._synced_size = 0  # of the newest segment
        self._synced_serial = 0  # next serial at the last good sync
        self._failure: JournalDiskError | None = None
        self._disk = Episodes[str]()

    # -- state ---------------------------------------------------------------------------

    @property
    def next_serial(self) -> int:
        """The serial the next RECORD must have (at least)."""
        return self._next_serial

    @property
    def used_bytes(self) -> int:
        return self._used

    @property
    def pending_records(self) -> int:
        return self._index.pending

    @property
    def failed(self) -> JournalDiskError | None:
        """The failure that stopped the store, or None while it works."""
        return self._failure

    def identities(self) -> dict[tuple[str, int], Identity]:
        return dict(self._identities)

    # -- open and recovery ---------------------------------------------------------------

    def open(self) -> Recovery:
        """Lock the directory (creating it), recover it, and say what it holds.

        A torn tail of the newest segment is cut (logged at WARNING, returned); any other
        damage raises ``JournalCorruptError`` with every file left as it was."""
        if self._lock is not None:
            raise RuntimeError("this journal store is open already")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._disk_error(exc, "mkdir", self.directory, usable=True) from exc
        self._lock = DirectoryLock.acquire(self.directory)
        try:
            return self._recover()
        except BaseException:
            self.close()
            raise

    def _recover(self) -> Recovery:
        try:
            segments, next_serial, torn = recover_segments(
                self.directory, self._index, self._identities
            )
            if torn is not None:
                cut_torn_tail(torn)  # only now: a refusal above leaves every file as it was
        except OSError as exc:
            where = Path(exc.filename) if exc.filename else self.directory
            raise self._disk_error(exc, "recovery", where, usable=True) from exc
        self._segments = segments
        self._next_serial = self._synced_serial = next_serial
        self._used = sum(segment.size for segment in segments)
        if segments:
            self._fd = self._open_segment(segments[-1].path)
            self._synced_size = segments[-1].size
        return Recovery(
            next_serial=next_serial,
            pending_records=self._index.pending,
            pending_by_partition=self._index.by_partition(),
            identities=dict(self._identities),
            segments=len(segments),
            torn_tail=torn,
        )

    def _open_segment(self, path: Path) -> int:
        try:
            return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise self._disk_error(exc, "open", path, usable=True) from exc

    # -- appends -------------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> int:
        """Write ``entries`` in order (one ``writev``, no sync) and return the newest
        segment's size after them. RECORD serials must increase from ``next_serial`` on
        (gaps are allowed); a bad serial raises ``ValueError`` before anything is written."""
        self._check_usable()
        chunks: list[bytes] = []
        serial = self._next_serial
        has_records = False
        for entry in entries:
            if isinstance(entry, JournalRecord):
                if entry.serial < serial:
                    raise ValueError(
                        f"record serial {entry.serial} is below the next serial {serial}:"
                        " serials must increase"
                    )
                serial = entry.serial + 1
                has_records = True
                chunks.append(encode_record(*entry))
            else:
                chunks.append(encode(entry))
        if not chunks:
            return self._segments[-1].size if self._segments else 0
        size = sum(map(len, chunks))
        self._make_room(size, has_records)
        segment = self._active(size)
        self._write(segment, chunks, size)
        segment.size += size
        self._used += size
        self._unsynced = True
        self._next_serial = serial
        index = self._index
        for entry in entries:
            if isinstance(entry, JournalRecord):
                index.add(entry.serial, entry.topic, entry.partition)
            elif isinstance(entry, Done):
                index.done(*entry)
            else:
                self._identities[entry.topic, entry.partition] = entry
        return segment.size

    def _make_room(self, size: int, has_records: bool) -> None:
        limit = self.max_bytes if has_records else self.max_bytes + self.headroom
        if self._used + size <= limit:
            return
        self.reclaim()
        if self._used + size > limit and self._index.pending == 0 and self._rollable():
            self._roll()  # the newest segment is all done: start another, free it
            self.reclaim()
        if self._used + size > limit:
            raise JournalFullError(self.directory, self._used, self.max_bytes, size)

    def _rollable(self) -> bool:
        # A segment holding no record shares its name with the next one: keep it.
        return bool(self._segments) and self._segments[-1].name < self._next_serial

    def _active(self, size: int) -> Segment:
        if not self._segments:
            return self._roll()
        segment = self._segments[-1]
        if segment.size and segment.size + size > self.segment_bytes and self._rollable():
            return self._roll()
        return segment

    def _roll(self) -> Segment:
        path = self.directory / segment_name(self._next_serial)
        if self._fd is not None:
            # Sync the finished segment: only the newest may ever end in a torn tail.
            self._sync_file()
        fd = self._open_segment(path)
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd
        segment = Segment(path, self._next_serial, 0)
        self._segments.append(segment)
        self._index.add_segment(segment.name)
        self._synced_size = 0
        self._directory_unsynced = True
        return segment

    def _write(self, segment: Segment, chunks: list[bytes], size: int) -> None:
        assert self._fd is not None
        try:
            if len(chunks) <= _IOV_MAX:
                written = os.writev(self._fd, chunks)
            else:
                written = os.write(self._fd, b"".join(chunks))
            if written < size:  # regular files write fully; finish anyway
                rest = memoryview(b"".join(chunks))[written:]
                while rest:
                    done = os.write(self._fd, rest)
                    rest = rest[done:]
        except OSError as exc:
            self._undo_write(segment, exc)
        if self._disk.ended("disk") is not None:
            log.warning("journal %s: writing again", self.directory)

    def _undo_write(self, segment: Segment, exc: OSError) -> None:
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, segment.size)
        except OSError:
            raise self._stop(exc, "write", segment.path) from exc
        if exc.errno in _RECOVERABLE_WRITE:
            raise self._disk_error(exc, "write", segment.path, usable=True) from exc
        raise self._stop(exc, "write", segment.path) from exc

    # -- sync ----------------------------------------------------------------------------

    def sync(self) -> None:
        """Make everything appended so far durable; returns at once when nothing is new."""
        self._check_usable()
        if self._unsynced:
            self._sync_file()
        if self._directory_unsynced:
            self._sync_directory()

    def _sync_file(self) -> None:
        assert self._fd is not None
        segment = self._segments[-1]
        try:
            os.fdatasync(self._fd)
        except OSError as exc:
            first = self._synced_serial
            with contextlib.suppress(OSError):  # see the module doc (fsyncgate)
                os.ftruncate(self._fd, self._synced_size)
            error = JournalSyncError(
                f"journal fsync of {segment.path} failed: {exc.strerror} (errno {exc.errno});"
                f" records from serial {first} on may not be on disk. The journal store has"
                " stopped: close it and open it again",
                errno=exc.errno,
                path=segment.path,
                first_unsynced_serial=first,
            )
            error.__cause__ = exc
            raise self._stop_with(error) from exc
        self._unsynced = False
        self._synced_size = segment.size
        self._synced_serial = self._next_serial

    def _sync_directory(self) -> None:
        try:
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise self._stop(exc, "fsync", self.directory) from exc
        self._directory_unsynced = False

    # -- reclaim -------------------------------------------------------------------------

    def reclaim(self) -> int:
        """Delete the oldest segments whose records are all done (never the newest);
        returns how many. Syncs first: the DONE entries must outlive the deletion."""
        self._check_usable()
        self.sync()
        removed = 0
        while len(self._segments) > 1 and self._index.pending_in(self._segments[0].name) == 0:
            segment = self._segments[0]
            try:
                segment.path.unlink(missing_ok=True)
            except OSError as exc:
                raise self._disk_error(exc, "unlink", segment.path, usable=True) from exc
            self._segments.pop(0)
            self._index.drop_segment(segment.name)
            self._used -= segment.size
            removed += 1
        if removed:
            self._directory_unsynced = True
            self._sync_directory()
        return removed

    # -- reading back --------------------------------------------------------------------

    def iter_pending(self) -> Iterator[JournalRecord]:
        """The records not done yet, in serial order (so in order per partition), read
        one segment at a time from disk."""
        for segment in list(self._segments):
            try:
                data = read_segment(segment.path, segment.size)
            except OSError as exc:
                raise self._disk_error(exc, "read", segment.path, usable=True) from exc
            path = str(segment.path)
            for frame in walk(data, path=path, newest=False).frames:
                if frame.kind != RECORD:
                    continue
                serial, topic, partition = peek_record(data, frame, path=path)
                if self._index.is_pending(serial, topic, partition):
                    record = decode_frame(data, frame, path=path)
                    assert isinstance(record, JournalRecord)
                    yield record

    # -- failures and close --------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._lock is None:
            raise RuntimeError("the journal store is not open")
        if self._failure is not None:
            error = JournalFailedError(
                f"the journal store stopped after an earlier failure ({self._failure});"
                " close it and open it again",
                errno=self._failure.errno,
                path=self._failure.path,
                operation=self._failure.operation,
            )
            raise error from self._failure

    def _disk_error(
        self, exc: OSError, operation: str, path: Path, *, usable: bool
    ) -> JournalDiskError:
        if self._disk.failures("disk") == 0:
            log.warning("journal %s: %s of %s failed: %s", self.directory, operation, path, exc)
        self._disk.failed("disk", time.monotonic())
        what = (
            "nothing of this call was kept and the journal is still usable: retry later"
            if usable
            else "the journal store has stopped: close it and open it again"
        )
        error = JournalDiskError(
            f"journal {operation} of {path} failed: {exc.strerror} (errno {exc.errno}); {what}",
            errno=exc.errno,
            path=path,
            operation=operation,
        )
        error.__cause__ = exc
        return error

    def _stop(self, exc: OSError, operation: str, path: Path) -> JournalDiskError:
        return self._stop_with(self._disk_error(exc, operation, path, usable=False))

    def _stop_with(self, error: JournalDiskError) -> JournalDiskError:
        if self._failure is None:
            log.warning("journal %s stopped: %s", self.directory, error)
            self._failure = error
        return error

    def close(self) -> None:
        """Close the files and release the lock. Does not sync: call ``sync`` first."""
        if self._fd is not None:
            with contextlib.suppress(OSError):  # the descriptor is gone either way
                os.close(self._fd)
            self._fd = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
