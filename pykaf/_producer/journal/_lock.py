"""One journal directory, one writer: an exclusive ``flock`` on ``LOCK`` in the directory.

``flock`` belongs to the open file, so a second store in the same process is refused as
surely as one in another process, and the kernel drops the lock when the holder dies
(even by SIGKILL): a crash never leaves a stale lock behind. The holder writes its pid into
the file so that the refusal can name it. The file is never deleted: unlinking a lock file
while another process waits on the old inode is how two holders happen.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Final

from pykaf._errors import JournalDiskError, JournalLockedError

__all__ = ["DirectoryLock"]

LOCK_NAME: Final = "LOCK"


def _holder_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class DirectoryLock:
    """Held from ``acquire`` until ``release`` (or the process ends)."""

    __slots__ = ("_fd", "directory")

    def __init__(self, directory: Path, fd: int) -> None:
        self.directory = directory
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, directory: Path) -> DirectoryLock:
        """Lock ``directory`` (which exists) or raise ``JournalLockedError``."""
        path = directory / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise JournalDiskError(
                f"cannot open the journal lock {path}: {exc.strerror} (errno {exc.errno});"
                " journal_dir must be a writable directory",
                errno=exc.errno,
                path=path,
                operation="open",
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_pid(fd)
            os.close(fd)
            raise JournalLockedError(directory, holder) from None
        except OSError as exc:
            os.close(fd)
            raise JournalDiskError(
                f"cannot lock {path}: {exc.strerror} (errno {exc.errno})",
                errno=exc.errno,
                path=path,
                operation="flock",
            ) from exc
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the pid only makes a refusal more helpful; the lock itself is held
        return cls(directory, fd)

    def release(self) -> None:
        """Give the lock up (closing the file is what releases a ``flock``)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
