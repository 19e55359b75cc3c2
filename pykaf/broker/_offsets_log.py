"""The committed offsets of consumer groups on disk: an append-only, compacted log.

Kafka keeps commits in the compacted topic ``__consumer_offsets``; this is the same idea in
one file, ``consumer-offsets.log`` in the data directory. A commit appends one entry (all
the partitions of that OffsetCommit together), so its cost does not depend on how many
groups are stored; rewriting a document of every group per commit made commits ~20x
slower with 200 groups and blocked the broker's loop for as long.

Entry: ``u32 length | u32 CRC32C of the payload | payload``, the payload being compact
JSON: ``[group, [[topic, partition, value or null], ...]]`` (null: that offset deleted) or
``[group, null]`` (the whole group deleted). Values are ``CommittedOffset.to_json()``.

Recovery: replays every entry. Like the segments, only a torn tail is cut (an entry the
process or the OS did not finish, after which no valid entry follows); damage with valid
entries after it raises ``LogCorruptionError`` naming the file and byte.

Compaction: once the file is more than twice the size it had after the last compaction
(and at least ``min_compact_bytes``), the live offsets are written to a new file (fsync,
rename over the old one, fsync of the directory): each compaction costs at most what was
appended since the previous one, so a commit costs O(1) bytes amortized, and the file
stays within about twice the live data.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final

from crc32c import crc32c

from pykaf.broker._metastore import DiskHealth, append_whole, fsync_directory
from pykaf.broker._segments import LogCorruptionError

__all__ = ["OFFSETS_LOG_FILE", "OffsetChange", "OffsetsLog", "Snapshot"]

log = logging.getLogger("pykaf.broker")

OFFSETS_LOG_FILE: Final = "consumer-offsets.log"
DEFAULT_MIN_COMPACT_BYTES: Final = 1024 * 1024
_ENTRY_HEAD: Final = struct.Struct(">II")  # payload length, CRC32C of the payload
# A single commit is bounded by the request frame (100 MiB at most); a length above that
# is damage, not an entry.
_MAX_ENTRY: Final = 128 * 1024 * 1024

#: ``(topic, partition, value)``; value None deletes the offset.
OffsetChange = tuple[str, int, list[Any] | None]
#: group -> topic -> partition -> value, what replaying the log gives.
Snapshot = dict[str, dict[str, dict[int, list[Any]]]]


def _encode(group: str, changes: list[OffsetChange] | None) -> bytes:
    body = None if changes is None else [list(c) for c in changes]
    payload = json.dumps([group, body], separators=(",", ":")).encode()
    return _ENTRY_HEAD.pack(len(payload), crc32c(payload)) + payload


def _apply(snapshot: Snapshot, group: str, changes: list[Any] | None) -> None:
    if changes is None:
        snapshot.pop(group, None)
        return
    topics = snapshot.setdefault(group, {})
    for topic, partition, value in changes:
        if value is None:
            partitions = topics.get(topic, {})
            partitions.pop(int(partition), None)
            if not partitions:
                topics.pop(topic, None)
        else:
            topics.setdefault(str(topic), {})[int(partition)] = list(value)
    if not topics:
        del snapshot[group]


def _entries(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """``(position, end, payload)`` of each valid entry from the start; stops at damage."""
    pos = 0
    while len(data) - pos >= _ENTRY_HEAD.size:
        length, crc = _ENTRY_HEAD.unpack_from(data, pos)
        end = pos + _ENTRY_HEAD.size + length
        if length > _MAX_ENTRY or end > len(data):
            return
        payload = data[pos + _ENTRY_HEAD.size : end]
        if crc32c(payload) != crc:
            return
        try:
            value = json.loads(payload)
        except ValueError:
            return
        if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)):
            return
        yield pos, end, value
        pos = end


def _valid_entry_after(data: bytes, start: int) -> bool:
    """Does a whole, CRC-valid entry start anywhere after ``start``? (Then the damage at
    ``start`` is not a torn tail.) Only failure paths pay for this scan."""
    for pos in range(start + 1, len(data) - _ENTRY_HEAD.size + 1):
        length, crc = _ENTRY_HEAD.unpack_from(data, pos)
        end = pos + _ENTRY_HEAD.size + length
        if length > 0 and end <= len(data) and crc32c(data[pos + _ENTRY_HEAD.size : end]) == crc:
            return True
    return False


class OffsetsLog:
    """The offsets file of one cluster (owned by its event loop). ``fsync=True``: every
    append is on disk before ``append`` returns."""

    def __init__(
        self,
        directory: Path,
        *,
        fsync: bool = False,
        min_compact_bytes: int = DEFAULT_MIN_COMPACT_BYTES,
    ) -> None:
        self.path = directory / OFFSETS_LOG_FILE
        self.fsync = fsync
        self.min_compact_bytes = min_compact_bytes
        #: Bytes written since open, compactions included (what a commit really costs).
        self.bytes_written = 0
        self.compactions = 0
        self.health = DiskHealth(str(self.path))
        self._size = 0
        self._compacted_size = 0
        self._fd: int | None = None

    def open(self) -> Snapshot:
        """Replay the file (cutting a torn tail, refusing other damage); the live offsets."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        snapshot: Snapshot = {}
        good = 0
        for pos, end, (group, changes) in _entries(data):
            try:
                _apply(snapshot, group, changes)
            except (TypeError, ValueError) as exc:  # CRC-valid, but not what we write
                raise LogCorruptionError(self.path, pos, f"unreadable entry: {exc}") from None
            good = end
        if good < len(data):
            if _valid_entry_after(data, good):
                raise LogCorruptionError(self.path, good, "an offsets entry fails its checks")
            log.warning(
                "%s: cut a torn tail of %d bytes at byte %d: a commit that never finished,"
                " so never acknowledged",
                self.path,
                len(data) - good,
                good,
            )
            os.truncate(self.path, good)
        self._size = self._compacted_size = good
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return snapshot

    def append(self, group: str, changes: list[OffsetChange] | None) -> None:
        """Persist one commit (or deletion) of ``group``: one write, one entry. A disk
        error is raised (and logged once per episode): the commit is not acknowledged."""
        if self._fd is None:
            raise RuntimeError("the offsets log is not open")
        entry = _encode(group, changes)
        try:
            append_whole(self._fd, entry, size_before=self._size, fsync=self.fsync)
        except OSError as exc:
            self.health.failed(exc)
            raise
        self.health.ok()
        self._size += len(entry)
        self.bytes_written += len(entry)

    def compaction_due(self) -> bool:
        return self._size >= max(self.min_compact_bytes, 2 * self._compacted_size)

    def compact(self, live: Iterable[tuple[str, list[OffsetChange]]]) -> None:
        """Replace the file with one entry per group of ``live`` (atomically)."""
        temp = self.path.with_name(self.path.name + ".compacting")
        size = 0
        with open(temp, "wb") as handle:
            for group, changes in live:
                entry = _encode(group, changes)
                handle.write(entry)
                size += len(entry)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, self.path)
        fsync_directory(self.path.parent)
        self.close()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND, 0o644)
        self._size = self._compacted_size = size
        self.bytes_written += size
        self.compactions += 1

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
