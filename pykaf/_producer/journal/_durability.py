"""One sync of the journal: what it covers, the fsyncs, and what a failed one must cut.

The store takes a ``SyncTicket`` under its lock (a dup of the newest segment's descriptor,
since a roll may close the original; the size and serial it covers; whether the directory
needs syncing too), runs ``fsync_ticket`` outside the lock so that appends go on, and
settles the result under the lock again.

A failed fsync is Postgres' "fsyncgate": the kernel may have dropped the dirty pages and
marked them clean, so the page cache still shows data the disk does not hold and a later
fsync succeeds without writing it. ``cut_unsynced`` cuts the files back to what the last
good sync covered, so that a reopen reads only what is really on disk.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from pykaf._producer.journal._recovery import Segment

__all__ = ["SyncTicket", "cut_unsynced", "fsync_ticket"]


@dataclass(frozen=True, slots=True)
class SyncTicket:
    """What one sync covers, taken under the store's lock."""

    fd: int  # a dup of the newest segment's descriptor, or -1 (the file needs no sync)
    segment: Segment
    size: int
    serial: int  # the next serial when taken: records below it are covered
    synced_size: int  # the segment's last good sync, and the serial then (for a failure)
    synced_serial: int
    directory: int  # segments created when taken (-1: the directory needs no sync)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)


def fsync_ticket(ticket: SyncTicket, directory: Path) -> tuple[OSError, Path] | None:
    """Run the fsyncs a ticket asks for; the error and the path that failed, or None."""
    try:
        if ticket.fd >= 0:
            os.fdatasync(ticket.fd)  # the data and the size: all an append log needs
    except OSError as exc:
        return exc, ticket.segment.path
    if ticket.directory >= 0:
        try:
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            return exc, directory
    return None


def cut_unsynced(ticket: SyncTicket, later: list[Segment]) -> None:
    """After a failed sync: cut the ticket's segment back to its last good sync, and empty
    any segment started after it. Best effort: the store stops either way."""
    with contextlib.suppress(OSError):
        os.truncate(ticket.segment.path, ticket.synced_size)
    for segment in later:
        with contextlib.suppress(OSError):
            os.truncate(segment.path, 0)
