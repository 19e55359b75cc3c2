"""Reading a journal directory back: its segment files, checked, indexed, torn tail cut
(the records still pending are read back later by ``_tail``, for the feed).

Every segment is walked entry by entry (``_format.walk``): records are indexed by serial,
topic and partition only (``peek_record``: a journal can be larger than memory, its keys
and values stay on disk until replayed), DONE entries mark them done, and the latest
IDENTITY per partition is kept (for inspection) as well as, when asked, every IDENTITY
still relevant to a replay (``_identities``). Serials must increase across the files,
within the range each file's name allows. A torn tail of the newest segment is cut only
once every file has been checked, so a refusal (``JournalCorruptError``) leaves every
file as it was. Disk errors surface as ``OSError``: the store maps them, once, to its
typed errors.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from pykaf._errors import JournalCorruptError
from pykaf._producer.journal._format import (
    IDENTITY,
    RECORD,
    Done,
    Identity,
    decode_frame,
    peek_record,
    walk,
)
from pykaf._producer.journal._identities import BatchIdentities
from pykaf._producer.journal._pending import PendingIndex

__all__ = [
    "SUFFIX",
    "Recovery",
    "Segment",
    "TornTail",
    "cut_torn_tail",
    "read_segment",
    "recover_segments",
    "segment_name",
]

log = logging.getLogger("pykaf.producer.journal")

SUFFIX: Final = ".journal"
_NAME_DIGITS: Final = 20


def segment_name(first_serial: int) -> str:
    return f"{first_serial:0{_NAME_DIGITS}d}{SUFFIX}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TornTail:
    """What recovery cut from the newest segment: an append that never finished."""

    path: Path
    position: int
    dropped_bytes: int
    dropped_entries: int  # entry headers seen in the cut bytes (best effort, at least 1)
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Recovery:
    """What ``JournalStore.open`` found. The pending records themselves are read lazily,
    a chunk at a time, with ``JournalStore.read_pending`` (a journal may be larger than
    memory)."""

    next_serial: int
    pending_records: int
    pending_by_partition: dict[tuple[str, int], int]
    identities: dict[tuple[str, int], Identity]  # the latest per partition
    segments: int
    torn_tail: TornTail | None
    # Per partition, in serial order: the identity of every batch sent before the crash
    # whose records are all pending (re-sent as the same batch: see ``_identities``).
    batch_identities: dict[tuple[str, int], tuple[Identity, ...]] = field(default_factory=dict)


class Segment:
    """One segment file: its name (the first serial it may hold) and its valid size."""

    # Mutable bookkeeping (grows with every append): a plain slotted class.
    __slots__ = ("name", "path", "size")

    def __init__(self, path: Path, name: int, size: int) -> None:
        self.path = path
        self.name = name
        self.size = size


def _segment_files(directory: Path) -> list[tuple[Path, int]]:
    found: list[tuple[Path, int]] = []
    for path in directory.glob(f"*{SUFFIX}"):
        if path.stem.isdigit() and len(path.stem) == _NAME_DIGITS:
            found.append((path, int(path.stem)))
        else:
            log.warning("ignoring a stray file in the journal: %s", path)
    return sorted(found, key=lambda item: item[1])


def read_segment(path: Path, size: int | None = None) -> bytes:
    """The bytes of a segment (its first ``size`` bytes when given)."""
    with path.open("rb") as handle:
        return handle.read() if size is None else handle.read(size)


def recover_segments(
    directory: Path,
    index: PendingIndex,
    identities: dict[tuple[str, int], Identity],
    batches: BatchIdentities | None = None,
) -> tuple[list[Segment], int, TornTail | None]:
    """Index every segment of ``directory`` into ``index``, ``identities`` (the latest
    per partition) and ``batches`` (every IDENTITY and DONE, when given); return the
    segments (sizes without a torn tail), the next serial and the torn tail, if any (not
    cut yet: see ``cut_torn_tail``)."""
    files = _segment_files(directory)
    segments: list[Segment] = []
    torn: TornTail | None = None
    next_serial = 0
    for position, (path, name) in enumerate(files):
        newest = position == len(files) - 1
        limit = None if newest else files[position + 1][1]
        data = read_segment(path)
        where = str(path)
        found = walk(data, path=where, newest=newest)
        index.add_segment(name)
        for frame in found.frames:
            if frame.kind == RECORD:
                serial, topic, partition = peek_record(data, frame, path=where)
                if serial < max(next_serial, name) or (limit is not None and serial >= limit):
                    raise JournalCorruptError(
                        path, frame.position, f"record serial {serial} out of order"
                    )
                index.add(serial, topic, partition)
                next_serial = serial + 1
                continue
            entry = decode_frame(data, frame, path=where)
            if frame.kind == IDENTITY:
                assert isinstance(entry, Identity)
                identities[entry.topic, entry.partition] = entry
                if batches is not None:
                    batches.add(entry)
            else:
                assert isinstance(entry, Done)
                index.done(*entry)
                if batches is not None:
                    batches.done(entry)
        if found.torn_tail_bytes:
            torn = TornTail(
                path=path,
                position=found.valid_bytes,
                dropped_bytes=found.torn_tail_bytes,
                dropped_entries=found.torn_entries,
                reason=found.reason,
            )
        segments.append(Segment(path, name, found.valid_bytes))
        # A segment is named after the next serial when it was started: never reuse one.
        next_serial = max(next_serial, name)
    return segments, next_serial, torn


def cut_torn_tail(torn: TornTail) -> None:
    """Truncate the newest segment before its torn tail, durably, and say so at WARNING."""
    fd = os.open(torn.path, os.O_WRONLY)
    try:
        os.ftruncate(fd, torn.position)
        os.fsync(fd)
    finally:
        os.close(fd)
    log.warning(
        "%s: cut a torn tail of %d bytes (%d entr%s) at byte %d (%s): an append that"
        " never finished, so never synced",
        torn.path,
        torn.dropped_bytes,
        torn.dropped_entries,
        "y" if torn.dropped_entries == 1 else "ies",
        torn.position,
        torn.reason,
    )
