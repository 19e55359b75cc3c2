"""Reading a journal directory without owning it: what ``pykaf.journal`` reports.

Nothing here locks, writes, truncates or deletes: an operator may look at a journal while
a producer appends to it. ``recover_segments`` indexes and checks every segment exactly
as ``JournalStore.open`` would (so the same damage is refused the same way), but its torn
tail is only returned, never cut. A second pass over each segment's valid bytes counts
entries and reads the timestamps of the records still pending.

Whether a live process holds ``LOCK`` is read from ``/proc/locks`` (Linux): trying the
``flock`` ourselves, even shared and for an instant, could make a producer starting at that
moment fail with ``JournalLockedError``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pykaf._producer.journal._format import (
    DONE,
    IDENTITY,
    RECORD,
    Identity,
    JournalRecord,
    decode_frame,
    peek_record,
    walk,
)
from pykaf._producer.journal._lock import LOCK_NAME
from pykaf._producer.journal._pending import PendingIndex
from pykaf._producer.journal._recovery import (
    SUFFIX,
    TornTail,
    read_segment,
    recover_segments,
    segment_name,
)

__all__ = ["DirectoryScan", "LockProbe", "SegmentScan", "looks_like_journal", "probe_lock", "scan"]

_PROC_LOCKS = Path("/proc/locks")


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentScan:
    """One segment's valid bytes, counted (a torn tail is not part of them)."""

    path: Path
    first_serial: int
    valid_bytes: int
    records: int
    pending_records: int
    done_entries: int
    identity_entries: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectoryScan:
    """What a journal directory holds, as recovery would see it (torn tail not cut)."""

    segments: list[SegmentScan]
    next_serial: int
    pending_by_partition: dict[tuple[str, int], int]
    identities: dict[tuple[str, int], Identity]
    oldest_pending_timestamp_ms: int | None  # the smallest timestamp among pending records
    first_pending_serial: int | None
    torn_tail: TornTail | None


@dataclass(frozen=True, slots=True, kw_only=True)
class LockProbe:
    """``held`` is None when it cannot be told (no ``/proc/locks``); ``pid`` is the holder's."""

    held: bool | None
    pid: int | None


def looks_like_journal(directory: Path) -> bool:
    """A journal directory holds ``LOCK`` (every store that opened it left one) or at
    least one segment file."""
    if (directory / LOCK_NAME).exists():
        return True
    return any(
        path.stem.isdigit() and path.name == segment_name(int(path.stem))
        for path in directory.glob(f"*{SUFFIX}")
    )


def scan(directory: Path) -> DirectoryScan:
    """Index and count every segment of ``directory``; ``JournalCorruptError`` on damage
    that is not a torn tail, ``OSError`` when a file cannot be read (or vanished: a
    producer reclaimed it meanwhile)."""
    index = PendingIndex()
    identities: dict[tuple[str, int], Identity] = {}
    segments, next_serial, torn = recover_segments(directory, index, identities)
    found: list[SegmentScan] = []
    oldest: int | None = None
    first_pending: int | None = None
    for segment in segments:
        data = read_segment(segment.path, segment.size)
        where = str(segment.path)
        records = dones = idents = pending = 0
        for frame in walk(data, path=where, newest=False).frames:
            if frame.kind == DONE:
                dones += 1
            elif frame.kind == IDENTITY:
                idents += 1
            elif frame.kind == RECORD:
                records += 1
                serial, topic, partition = peek_record(data, frame, path=where)
                if not index.is_pending(serial, topic, partition):
                    continue
                pending += 1
                # Only pending records are decoded: their timestamp is what ages a journal.
                record = decode_frame(data, frame, path=where)
                assert isinstance(record, JournalRecord)
                timestamp = record.timestamp_ms
                oldest = timestamp if oldest is None else min(oldest, timestamp)
                first_pending = serial if first_pending is None else first_pending
        found.append(
            SegmentScan(
                path=segment.path,
                first_serial=segment.name,
                valid_bytes=segment.size,
                records=records,
                pending_records=pending,
                done_entries=dones,
                identity_entries=idents,
            )
        )
    return DirectoryScan(
        segments=found,
        next_serial=next_serial,
        pending_by_partition=index.by_partition(),
        identities=identities,
        oldest_pending_timestamp_ms=oldest,
        first_pending_serial=first_pending,
        torn_tail=torn,
    )


def probe_lock(directory: Path) -> LockProbe:
    """Who holds ``directory``'s lock, read from the kernel's table of locks (not taken)."""
    try:
        stat = (directory / LOCK_NAME).stat()
    except FileNotFoundError:
        return LockProbe(held=False, pid=None)
    try:
        table = _PROC_LOCKS.read_text()
    except OSError:
        return LockProbe(held=None, pid=None)
    # "1: FLOCK  ADVISORY  WRITE 4242 fe:00:2146341 0 EOF": major and minor in hex.
    wanted = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
            pid = fields[4]
            return LockProbe(held=True, pid=int(pid) if pid.isdigit() and pid != "0" else None)
    return LockProbe(held=False, pid=None)
