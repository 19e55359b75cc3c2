"""The journal store's lock, which settles the lock-free tail each time it is taken.

The produce path's common append skips the store's lock (``JournalTail``, C, in
``_record_writer``), so a section under the lock must first take in what the tail wrote
without it, and stop it: then the section sees, and alone changes, the state. Taking the
lock does both, ``Condition.wait`` taking it again included (see ``_segments``).

Ctrl-C: CPython raises the ``KeyboardInterrupt`` of a signal handler at its first check
after a call returns, so also right after the inner lock's ``acquire()`` took it. The
lock stayed held: the journal's thread and ``close()`` then waited for it forever (1 of
25 Ctrl-Cs of a journaled ``produce()`` loop hung). ``acquire`` releases it on any
exception while this thread holds it; the inner lock is an ``RLock`` only to know that.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["SettlingLock"]


class SettlingLock:
    """The store's lock: a lock that settles the store's ``JournalTail`` each time it is
    taken (``Condition.wait`` takes it again through ``acquire`` too). The tail writes
    without the lock, so a section under it must first take in what the tail wrote, and
    stop it: then the section sees, and alone changes, the state. Never taken twice by
    one thread (reentrant only to know its owner, module doc)."""

    __slots__ = ("_lock", "_settle")

    def __init__(self, settle: Callable[[], None]) -> None:
        self._lock = threading.RLock()
        self._settle = settle

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        lock = self._lock
        try:
            if not lock.acquire(blocking, timeout):
                return False
            self._settle()
        except BaseException:
            # The settling failed, or an interrupt landed just after the lock was taken.
            if lock._is_owned():  # type: ignore[attr-defined]
                lock.release()
            raise
        return True

    def release(self) -> None:
        self._lock.release()

    def _is_owned(self) -> bool:
        """For ``threading.Condition``, which asks the lock it was given."""
        return bool(self._lock._is_owned())  # type: ignore[attr-defined]

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
