"""The journal store's lock, which settles the lock-free tail each time it is taken.

The produce path's common append skips the store's lock (``JournalTail``, C, in
``_record_writer``), so a section under the lock must first take in what the tail wrote
without it, and stop it: then the section sees, and alone changes, the state. Taking the
lock does both, ``Condition.wait`` taking it again included (see ``_segments``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["SettlingLock"]


class SettlingLock:
    """The store's lock: a ``threading.Lock`` that settles the store's ``JournalTail``
    each time it is taken (``Condition.wait`` takes it again through ``acquire`` too).
    The tail writes without the lock, so a section under it must first take in what
    the tail wrote, and stop it: then the section sees, and alone changes, the state."""

    __slots__ = ("_lock", "_settle")

    def __init__(self, settle: Callable[[], None]) -> None:
        self._lock = threading.Lock()
        self._settle = settle

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        taken = self._lock.acquire(blocking, timeout)
        if taken:
            try:
                self._settle()
            except BaseException:
                self._lock.release()
                raise
        return taken

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
