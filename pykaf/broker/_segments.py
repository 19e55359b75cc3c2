"""Append-only segment files of one partition, and their recovery after a crash.

A partition directory holds ``<base offset, 20 digits>.log`` files with the raw batches as
they were stored (offsets already assigned), back to back: Kafka's own segment layout,
without the index files (the index is rebuilt in memory on open). Writes go straight to the
OS with ``os.write`` (no Python buffering), so a killed process loses nothing it
acknowledged; only an OS crash can lose what the page cache held. Segments are not fsynced
per append unless asked (``fsync=True``): Kafka by default relies on replication, and an
fsync per batch caps throughput. A segment is always fsynced when it is rolled, so only the
newest one can ever hold a torn tail.

Recovery checks every batch on open (length, magic, CRC32C, offsets running on without a
gap). Only a genuinely torn tail is cut: damage in the newest segment after which no whole,
valid batch follows (an append the process or the OS did not finish). Anything else (a bad
batch followed by good ones, damage in an older segment, offsets that jump) is refused with
``LogCorruptionError`` naming the file and byte, rather than silently dropping acknowledged
records. What a cut drops is logged at WARNING and kept in ``SegmentStore.torn_tail``.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pykaf._errors import CorruptRecordError, PykafError, UnsupportedMagicError
from pykaf.broker._metastore import DiskHealth, append_whole, fsync_directory
from pykaf.protocol._records import BATCH_OVERHEAD, BatchHeader, iter_batch_headers

__all__ = ["DEFAULT_SEGMENT_BYTES", "LoadedBatch", "LogCorruptionError", "SegmentStore", "TornTail"]

log = logging.getLogger("pykaf.broker")

DEFAULT_SEGMENT_BYTES: Final = 64 * 1024 * 1024
_SUFFIX: Final = ".log"
_MAGIC_POS: Final = 16
_MAGIC_BYTE: Final = b"\x02"  # magic 2: the record batch format


class LogCorruptionError(PykafError):
    """A stored log is damaged somewhere other than its torn tail; nothing was cut.

    ``path`` and ``position`` (a byte offset in that file) name the damage. To start anyway,
    accepting the loss of everything from there on, truncate the file at ``position`` and
    move the later segment files of the partition away.
    """

    def __init__(self, path: Path, position: int, reason: str) -> None:
        self.path = path
        self.position = position
        self.reason = reason
        super().__init__(
            f"{path}: damaged at byte {position} ({reason}); valid data follows, so this is"
            " not a torn tail and nothing was cut. To accept losing everything from there,"
            f" truncate the file to {position} bytes and move later segments away."
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedBatch:
    data: bytes
    header: BatchHeader


@dataclass(frozen=True, slots=True, kw_only=True)
class TornTail:
    """What recovery cut from the newest segment: never acknowledged (see the module doc)."""

    path: Path
    position: int
    dropped_bytes: int
    first_offset: int  # the offset the unfinished batch would have started at
    reason: str


class _Segment:
    # Mutable bookkeeping (grows with every append): a plain slotted class.
    __slots__ = ("base_offset", "next_offset", "path", "size")

    def __init__(self, path: Path, base_offset: int, next_offset: int, size: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self.next_offset = next_offset
        self.size = size


def _segment_name(base_offset: int) -> str:
    return f"{base_offset:020d}{_SUFFIX}"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Scan:
    batches: list[LoadedBatch]
    good: int  # bytes covered by the valid batches
    reason: str  # why the scan stopped before the end ("" if it did not)
    offset_jump: bool  # stopped at a whole, CRC-valid batch with the wrong base offset


def _scan(data: bytes, path: Path, base_offset: int) -> _Scan:
    """The valid batches at the start of ``data``, and why the scan stopped early.

    The base offset sits outside the CRC, so it is checked against the neighbours: offsets
    run on without a gap from the file's base offset. The leader epoch is outside the CRC
    too; an epoch going down is what an old broker wrote after a restart (it did not
    persist epochs), not damage: those batches are kept, with a warning.
    """
    batches: list[LoadedBatch] = []
    good = 0
    reason = ""
    offset_jump = False
    expected = base_offset
    epoch = -1
    view = memoryview(data)
    try:
        for pos, header in iter_batch_headers(view):
            if header.base_offset != expected:
                reason = f"batch has base offset {header.base_offset}, expected {expected}"
                offset_jump = True
                break
            if header.partition_leader_epoch < epoch:
                log.warning(
                    "%s: batch at byte %d (offset %d) has leader epoch %d after epoch %d;"
                    " kept (written by a broker that let epochs go back)",
                    path,
                    pos,
                    header.base_offset,
                    header.partition_leader_epoch,
                    epoch,
                )
            end = pos + header.size
            batches.append(LoadedBatch(data=bytes(view[pos:end]), header=header))
            good = end
            expected = header.next_offset
            epoch = max(epoch, header.partition_leader_epoch)
    except (CorruptRecordError, UnsupportedMagicError) as exc:
        reason = str(exc)
    if good < len(data) and not reason:
        reason = "an incomplete batch"
    return _Scan(batches=batches, good=good, reason=reason, offset_jump=offset_jump)


def _valid_batch_after(data: bytes, start: int, min_offset: int) -> int | None:
    """Byte position of a whole, CRC-valid batch at or after ``start`` (offsets from
    ``min_offset`` on), or None. Finding one means the damage before it is not a torn
    tail. Candidates are the positions holding magic 2, so zero-filled pages (what an OS
    crash leaves of unwritten data) cost nothing to skip."""
    view = memoryview(data)
    at = data.find(_MAGIC_BYTE, start + 1 + _MAGIC_POS)
    while at != -1:
        pos = at - _MAGIC_POS
        if len(data) - pos >= BATCH_OVERHEAD:
            try:
                found = next(iter_batch_headers(view[pos:]), None)
            except (CorruptRecordError, UnsupportedMagicError):
                found = None
            if found is not None and found[1].base_offset >= min_offset:
                return pos
        at = data.find(_MAGIC_BYTE, at + 1)
    return None


class SegmentStore:
    """The files of one partition directory. Not thread-safe: the broker's loop owns it.

    ``fsync=True`` makes every append durable before it returns (see the module doc).
    """

    def __init__(
        self, directory: Path, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES, fsync: bool = False
    ) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.torn_tail: TornTail | None = None
        self.health = DiskHealth(str(directory))
        self._segments: list[_Segment] = []
        self._fd: int | None = None

    def open(self) -> list[LoadedBatch]:
        """Create the directory or recover it; return every stored batch in order.

        Cuts a torn tail of the newest segment (see the module doc); raises
        ``LogCorruptionError`` for any other damage, leaving every file as it was.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        segments: list[tuple[Path, int]] = []
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            try:
                segments.append((path, int(path.stem)))
            except ValueError:
                log.warning("ignoring stray file %s", path)
        loaded: list[LoadedBatch] = []
        expected = -1
        for index, (path, base) in enumerate(segments):
            if base < expected:
                raise LogCorruptionError(
                    path, 0, f"the segment starts at offset {base}, inside the previous one"
                )
            data = path.read_bytes()
            scan = _scan(data, path, base)
            next_offset = scan.batches[-1].header.next_offset if scan.batches else base
            if scan.good < len(data):
                newest = index == len(segments) - 1
                if scan.offset_jump or not newest:
                    raise LogCorruptionError(path, scan.good, scan.reason)
                if _valid_batch_after(data, scan.good, next_offset) is not None:
                    raise LogCorruptionError(path, scan.good, scan.reason)
                self.torn_tail = TornTail(
                    path=path,
                    position=scan.good,
                    dropped_bytes=len(data) - scan.good,
                    first_offset=next_offset,
                    reason=scan.reason,
                )
            loaded.extend(scan.batches)
            self._segments.append(_Segment(path, base, next_offset, scan.good))
            expected = next_offset
        tail = self.torn_tail
        if tail is not None:
            # Checked everything first: a refusal above leaves the files untouched.
            os.truncate(tail.path, tail.position)
            log.warning(
                "%s: cut a torn tail of %d bytes at byte %d (%s): an append that never"
                " finished, so never acknowledged; the log now ends at offset %d",
                tail.path,
                tail.dropped_bytes,
                tail.position,
                tail.reason,
                tail.first_offset,
            )
        return loaded

    def append(self, data: bytes | bytearray, base_offset: int, next_offset: int) -> None:
        """Write one batch (already holding its offsets) at the end of the log; a failed
        write leaves no half batch behind (``append_whole``)."""
        try:
            active = self._active_for(base_offset, len(data))
            append_whole(self._open_fd(active), data, size_before=active.size, fsync=self.fsync)
        except OSError as exc:
            self.health.failed(exc)
            raise
        if self.health.failing:
            self.health.ok()
        active.size += len(data)
        active.next_offset = next_offset

    def _active_for(self, base_offset: int, size: int) -> _Segment:
        active = self._segments[-1] if self._segments else None
        if (
            active is None
            or base_offset != active.next_offset  # the log start moved past the end
            or (active.size and active.size + size > self.segment_bytes)
        ):
            active = self._roll(base_offset)
        return active

    def _open_fd(self, active: _Segment) -> int:
        if self._fd is None:
            self._fd = os.open(active.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if self.fsync and active.size == 0:
                fsync_directory(self.directory)  # the new file's name must last too
        return self._fd

    def _roll(self, base_offset: int) -> _Segment:
        if self._fd is not None:
            # The finished segment goes to disk now, so that only the newest segment can
            # ever have a torn tail (recovery refuses damage anywhere else).
            os.fsync(self._fd)
        self._close_fd()
        if self._segments and self._segments[-1].size == 0:
            self._segments.pop().path.unlink(missing_ok=True)  # an empty one left by a cut
        segment = _Segment(self.directory / _segment_name(base_offset), base_offset, base_offset, 0)
        self._segments.append(segment)
        return segment

    def drop_before(self, offset: int) -> None:
        """Delete whole segments whose batches all sit below ``offset`` (never the active one)."""
        while len(self._segments) > 1 and self._segments[0].next_offset <= offset:
            self._segments.pop(0).path.unlink(missing_ok=True)

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        self._close_fd()

    def remove(self) -> None:
        """Close and delete the whole partition directory (the topic was deleted)."""
        self._close_fd()
        self._segments.clear()
        shutil.rmtree(self.directory, ignore_errors=True)
