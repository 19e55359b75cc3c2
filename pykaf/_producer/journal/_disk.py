"""Disk failures of a journal, mapped once to typed errors and logged once per episode.

An ``OSError`` from the journal's files becomes a ``JournalDiskError`` naming the errno,
the file and the call, and saying whether the store can still be used; the first failure
of an episode is logged at WARNING with its cause, the first success after it at INFO (a
failing disk is never silent, and never logs once per append either).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from pykaf._client._episodes import Episodes
from pykaf._errors import JournalDiskError, JournalFailedError, JournalSyncError

__all__ = ["DiskHealth"]

log = logging.getLogger("pykaf.producer.journal")

_KEY = "disk"


class DiskHealth:
    """The failure episodes of one journal directory, and the error that stopped it."""

    __slots__ = ("_episodes", "_lock", "directory", "failure", "troubled")

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # The caller's thread and the group-commit thread can fail at once (one fsync
        # each): the episode's count and the stop are decided under this lock, so each
        # is said once.
        self._lock = threading.Lock()
        self.failure: JournalDiskError | None = None
        self.troubled = False  # an episode of failures is going on (read on every append)
        self._episodes = Episodes[str]()

    def error(self, exc: OSError, operation: str, path: Path, *, usable: bool) -> JournalDiskError:
        """The typed error for ``exc``; ``usable`` says whether the store goes on."""
        self._count(exc, operation, path)
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
        if not usable:
            self.stop(error)
        return error

    def sync_error(self, exc: OSError, path: Path, first_unsynced_serial: int) -> JournalSyncError:
        """The error of a failed fsync, which stops the store (see ``_segments``)."""
        self._count(exc, "fsync", path)
        error = JournalSyncError(
            f"journal fsync of {path} failed: {exc.strerror} (errno {exc.errno}); records from"
            f" serial {first_unsynced_serial} on may not be on disk. The journal store has"
            " stopped: close it and open it again",
            errno=exc.errno,
            path=path,
            first_unsynced_serial=first_unsynced_serial,
        )
        error.__cause__ = exc
        self.stop(error)
        return error

    def stop(self, error: JournalDiskError) -> None:
        with self._lock:
            first = self.failure is None
            if first:
                self.failure = error
        if first:
            log.warning("journal %s stopped: %s", self.directory, error)

    def check(self) -> None:
        """Raise ``JournalFailedError`` once the store has stopped."""
        if self.failure is not None:
            error = JournalFailedError(
                f"the journal store stopped after an earlier failure ({self.failure});"
                " close it and open it again",
                errno=self.failure.errno,
                path=self.failure.path,
                operation=self.failure.operation,
            )
            raise error from self.failure

    def ok(self) -> None:
        """A write went through: ends an episode of failures, if one was going on."""
        if not self.troubled:
            return
        with self._lock:
            self.troubled = False
            ended = self._episodes.ended(_KEY) is not None
        if ended:
            log.info("journal %s: writing again", self.directory)

    def _count(self, exc: OSError, operation: str, path: Path) -> None:
        with self._lock:
            self.troubled = True
            first = self._episodes.failed(_KEY, time.monotonic()).failures == 1
        if first:
            log.warning("journal %s: %s of %s failed: %s", self.directory, operation, path, exc)
