"""Looking inside a producer's journal directory (``journal_dir``, issue 12), read-only.

``inspect_journal(directory)`` says what the journal holds: its segment files, the records
still awaiting their final report per (topic, partition), how old the oldest of them is,
the idempotent identity last journaled per partition, a torn tail if the newest segment
ends in one, and whether a live process holds the journal's lock::

    from pykaf.journal import inspect_journal

    summary = inspect_journal("/var/lib/app/journal")
    print(summary.pending_records, summary.oldest_pending_age_s)

It takes no lock and changes nothing (a torn tail is reported, not cut), so it can run
while a producer uses the directory; what it reports is then a snapshot. Damage other
than a torn tail raises ``JournalCorruptError`` (``path`` and ``position`` name it), a
path that is not a journal directory ``NotAJournalError``; a file that cannot be read
raises ``OSError``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pykaf._errors import JournalCorruptError, NotAJournalError
from pykaf._producer.journal._inspect import DirectoryScan, looks_like_journal, probe_lock, scan

__all__ = [
    "BatchIdentity",
    "JournalCorruptError",
    "JournalSummary",
    "LockInfo",
    "NotAJournalError",
    "PartitionBacklog",
    "SegmentInfo",
    "TornTailInfo",
    "inspect_journal",
]

# A producer may reclaim a segment between listing and reading it: look again. Measured
# against a writer that reclaims after every append (the worst case), 1 look in 10 needed
# a second one and none a third; a backlog large enough to make reading slow is one
# that is not being reclaimed.
_ATTEMPTS: Final = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentInfo:
    """One segment file. ``size_bytes`` counts its valid entries (a torn tail is apart)."""

    name: str
    first_serial: int  # every record in it has a serial at least this
    size_bytes: int
    records: int
    pending_records: int
    done_entries: int
    identity_entries: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchIdentity:
    """The producer id, epoch and base sequence a batch of the partition was sent with
    (journaled before sending, so a replay re-sends the same idempotent batch)."""

    producer_id: int
    epoch: int
    base_sequence: int
    first_serial: int
    last_serial: int
    record_count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionBacklog:
    """A partition with records pending, or with a journaled identity (or both)."""

    topic: str
    partition: int
    pending_records: int
    identity: BatchIdentity | None  # the latest journaled for this partition


@dataclass(frozen=True, slots=True, kw_only=True)
class TornTailInfo:
    """Bytes after the newest segment's last valid entry: an append that never finished
    (or, while a producer holds the lock, one in progress). A producer opening the journal
    cuts them; inspecting does not."""

    segment: str
    position: int  # where the valid entries end, in that segment
    size_bytes: int
    entries: int  # entry headers seen in those bytes (best effort, at least 1)
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LockInfo:
    """``held`` is True while a live process holds the journal's lock, None when that
    cannot be told (no ``/proc/locks``: not Linux); ``pid`` is the holder's, if known."""

    held: bool | None
    pid: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalSummary:
    """What a journal directory holds, at ``inspected_at_ms`` (Unix time, ms)."""

    directory: str
    segments: tuple[SegmentInfo, ...]  # oldest first
    size_bytes: int  # every segment file, torn tail included
    records: int  # journaled and not reclaimed yet
    pending_records: int  # awaiting their final report: a replay would send these
    done_records: int
    next_serial: int
    first_pending_serial: int | None
    oldest_pending_timestamp_ms: int | None  # the smallest record timestamp pending
    oldest_pending_age_s: float | None  # inspected_at_ms minus that, in seconds
    partitions: tuple[PartitionBacklog, ...]  # sorted by topic, then partition
    torn_tail: TornTailInfo | None
    lock: LockInfo
    inspected_at_ms: int


def inspect_journal(
    directory: str | os.PathLike[str], *, now_ms: int | None = None
) -> JournalSummary:
    """What the journal in ``directory`` holds (see the module doc); ``now_ms`` is the
    time the oldest pending record's age is measured at (default: now)."""
    path = Path(directory)
    if not path.exists():
        raise NotAJournalError(path, "no such file or directory")
    if not path.is_dir():
        raise NotAJournalError(path, "it is not a directory")
    if not looks_like_journal(path):
        raise NotAJournalError(path, "it holds neither LOCK nor any segment file")
    for attempt in range(1, _ATTEMPTS + 1):
        lock = probe_lock(path)
        try:
            found = scan(path)
            break
        except (FileNotFoundError, JournalCorruptError):
            # A producer at work may delete (reclaim) a segment while it is read, or be
            # half way through an append: only then is looking again worth it.
            if attempt == _ATTEMPTS or not lock.held:
                raise
    at = int(time.time() * 1000) if now_ms is None else now_ms
    return _summary(path, found, LockInfo(held=lock.held, pid=lock.pid), at)


def _summary(path: Path, found: DirectoryScan, lock: LockInfo, at: int) -> JournalSummary:
    segments = tuple(
        SegmentInfo(
            name=segment.path.name,
            first_serial=segment.first_serial,
            size_bytes=segment.valid_bytes,
            records=segment.records,
            pending_records=segment.pending_records,
            done_entries=segment.done_entries,
            identity_entries=segment.identity_entries,
        )
        for segment in found.segments
    )
    torn = found.torn_tail
    torn_info = (
        None
        if torn is None
        else TornTailInfo(
            segment=torn.path.name,
            position=torn.position,
            size_bytes=torn.dropped_bytes,
            entries=torn.dropped_entries,
            reason=torn.reason,
        )
    )
    keys = sorted(found.pending_by_partition.keys() | found.identities.keys())
    partitions = tuple(
        PartitionBacklog(
            topic=topic,
            partition=partition,
            pending_records=found.pending_by_partition.get((topic, partition), 0),
            identity=_identity(found, topic, partition),
        )
        for topic, partition in keys
    )
    records = sum(segment.records for segment in segments)
    pending = sum(segment.pending_records for segment in segments)
    oldest = found.oldest_pending_timestamp_ms
    return JournalSummary(
        directory=str(path),
        segments=segments,
        size_bytes=sum(s.size_bytes for s in segments) + (torn.dropped_bytes if torn else 0),
        records=records,
        pending_records=pending,
        done_records=records - pending,
        next_serial=found.next_serial,
        first_pending_serial=found.first_pending_serial,
        oldest_pending_timestamp_ms=oldest,
        oldest_pending_age_s=None if oldest is None else (at - oldest) / 1000,
        partitions=partitions,
        torn_tail=torn_info,
        lock=lock,
        inspected_at_ms=at,
    )


def _identity(found: DirectoryScan, topic: str, partition: int) -> BatchIdentity | None:
    identity = found.identities.get((topic, partition))
    if identity is None:
        return None
    return BatchIdentity(
        producer_id=identity.producer_id,
        epoch=identity.epoch,
        base_sequence=identity.base_sequence,
        first_serial=identity.first_serial,
        last_serial=identity.last_serial,
        record_count=identity.record_count,
    )
