"""Append-only segment files of one partition, and their recovery after a crash.

A partition directory holds ``<base offset, 20 digits>.log`` files with the raw batches as
they were stored (offsets already assigned), back to back: Kafka's own segment layout,
without the index files (the index is rebuilt in memory on open). Writes go straight to the
OS with ``os.write`` (no Python buffering), so a killed process loses nothing it
acknowledged; only an OS crash can lose what the page cache held (no fsync per append: the
broker is for tests and development, and an fsync per batch would cap throughput).

Recovery: every batch is checked on open (length, magic, CRC32C). The first bad one ends
the log: the file is truncated there and later segment files are deleted. A crash
mid-write leaves exactly such a torn tail.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pykaf._errors import CorruptRecordError, UnsupportedMagicError
from pykaf.protocol._records import BatchHeader, iter_batch_headers

__all__ = ["DEFAULT_SEGMENT_BYTES", "LoadedBatch", "SegmentStore"]

log = logging.getLogger("pykaf.broker")

DEFAULT_SEGMENT_BYTES: Final = 64 * 1024 * 1024
_SUFFIX: Final = ".log"


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedBatch:
    data: bytes
    header: BatchHeader


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


def _scan(data: bytes, path: Path, base_offset: int) -> tuple[list[LoadedBatch], int]:
    """The valid batches at the start of ``data`` and the byte count they cover.

    The base offset and leader epoch sit outside the CRC, so they are checked against
    their neighbours: offsets run on without a gap from the file's base offset, epochs
    never decrease.
    """
    batches: list[LoadedBatch] = []
    good = 0
    reason = ""
    expected = base_offset
    epoch = -1
    view = memoryview(data)
    try:
        for pos, header in iter_batch_headers(view):
            if header.base_offset != expected or header.partition_leader_epoch < epoch:
                reason = (
                    f"batch at byte {pos} has base offset {header.base_offset} and leader"
                    f" epoch {header.partition_leader_epoch}; expected offset {expected}"
                    f" and an epoch of at least {epoch}"
                )
                break
            end = pos + header.size
            batches.append(LoadedBatch(data=bytes(view[pos:end]), header=header))
            good = end
            expected = header.next_offset
            epoch = header.partition_leader_epoch
    except (CorruptRecordError, UnsupportedMagicError) as exc:
        reason = str(exc)
    if good < len(data):
        log.warning(
            "%s: cutting a torn or corrupt tail of %d bytes at byte %d (%s)",
            path,
            len(data) - good,
            good,
            reason or "truncated batch",
        )
    return batches, good


class SegmentStore:
    """The files of one partition directory. Not thread-safe: the broker's loop owns it."""

    def __init__(self, directory: Path, *, segment_bytes: int = DEFAULT_SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self._segments: list[_Segment] = []
        self._fd: int | None = None

    def open(self) -> list[LoadedBatch]:
        """Create the directory or recover it; return every valid stored batch in order."""
        self.directory.mkdir(parents=True, exist_ok=True)
        paths = sorted(self.directory.glob(f"*{_SUFFIX}"))
        loaded: list[LoadedBatch] = []
        for index, path in enumerate(paths):
            try:
                base = int(path.stem)
            except ValueError:
                log.warning("ignoring stray file %s", path)
                continue
            data = path.read_bytes()
            batches, good = _scan(data, path, base)
            next_offset = batches[-1].header.next_offset if batches else base
            loaded.extend(batches)
            self._segments.append(_Segment(path, base, next_offset, good))
            if good < len(data):
                os.truncate(path, good)
                for later in paths[index + 1 :]:
                    log.warning("removing %s, past a corrupt batch", later)
                    later.unlink()
                break
        return loaded

    def append(self, data: bytes | bytearray, base_offset: int, next_offset: int) -> None:
        """Write one batch (already holding its offsets) at the end of the log."""
        active = self._segments[-1] if self._segments else None
        if active is None or (active.size and active.size + len(data) > self.segment_bytes):
            active = self._roll(base_offset)
        fd = self._fd
        if fd is None:
            fd = self._fd = os.open(active.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        view = memoryview(data)
        written = 0
        while written < len(view):  # regular files write fully; loop anyway, it costs nothing
            written += os.write(fd, view[written:])
        active.size += len(data)
        active.next_offset = next_offset

    def _roll(self, base_offset: int) -> _Segment:
        self._close_fd()
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
