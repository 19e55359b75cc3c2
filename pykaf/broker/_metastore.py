"""The broker's small metadata file: topics, configs, log starts, producer ids, group blobs.

One JSON document, rewritten whole on every change (changes are rare: topic admin,
DeleteRecords, leader moves, producer id blocks; commits go to ``_offsets_log``). Also the
small file helpers the append logs share. Written atomically: a temporary
file in the same directory, fsync, rename over the old one, fsync of the directory; a crash
leaves either the old document or the new one, never half of one.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Final

__all__ = [
    "META_FILE",
    "DiskHealth",
    "append_whole",
    "fsync_directory",
    "read_metadata",
    "write_metadata",
]

log = logging.getLogger("pykaf.broker")

META_FILE: Final = "pykaf-broker-meta.json"
FORMAT_VERSION: Final = 1


def read_metadata(data_dir: Path) -> dict[str, Any] | None:
    """The stored document, or None if there is none yet (or it is unreadable)."""
    path = data_dir / META_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        # Cannot happen through write_metadata (atomic rename); an edited file could.
        log.error("%s is not valid JSON (%s); starting without it", path, exc)
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_VERSION:
        log.error("%s has an unknown format; starting without it", path)
        return None
    return doc


def write_metadata(data_dir: Path, doc: dict[str, Any]) -> None:
    """Replace the stored document atomically."""
    data_dir.mkdir(parents=True, exist_ok=True)
    final = data_dir / META_FILE
    temp = data_dir / (META_FILE + ".tmp")
    payload = json.dumps({**doc, "format": FORMAT_VERSION}, sort_keys=True, indent=1)
    with open(temp, "w", encoding="utf-8") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, final)
    fsync_directory(data_dir)


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable (its entry, not the data)."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def append_whole(fd: int, data: bytes | bytearray, *, size_before: int, fsync: bool) -> None:
    """Append all of ``data`` to the file at ``fd`` (opened O_APPEND), fsynced if asked.

    A failed write (disk full...) is undone (truncated back to ``size_before``) before the
    error propagates, so an append log never keeps half an entry in front of later ones.
    """
    view = memoryview(data)
    written = 0
    try:
        while written < len(view):  # regular files write fully; loop anyway
            written += os.write(fd, view[written:])
        if fsync:
            os.fsync(fd)
    except OSError:
        if written:
            os.ftruncate(fd, size_before)
        raise


class DiskHealth:
    """Whether appends to one file are failing: a WARNING when an episode starts (with its
    cause) and when it ends, not one per failed write. Mutable: a plain slotted class."""

    __slots__ = ("failing", "what")

    def __init__(self, what: str) -> None:
        self.what = what
        self.failing = False

    def failed(self, exc: OSError) -> None:
        if not self.failing:
            self.failing = True
            log.warning(
                "%s: cannot write (%s); refusing appends until it works again", self.what, exc
            )

    def ok(self) -> None:
        if self.failing:
            self.failing = False
            log.warning("%s: writing again", self.what)
