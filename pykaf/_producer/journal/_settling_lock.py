"""The journal store's lock, which settles the lock-free tail each time it is taken.

The produce path's common append skips the store's lock (``JournalTail``, C, in
``_record_writer``), so a section under the lock must first take in what the tail wrote
without it, and stop it: then the section sees, and alone changes, the state. Taking the
lock does both, ``Condition.wait`` taking it again included (see ``_segments``).

Ctrl-C: CPython raises a signal handler's ``KeyboardInterrupt`` at its first check after
a call returns, and at the start of a Python function. The lock stayed held when one
landed just after the inner ``acquire()``, or at the start of a Python ``__exit__``
(``with`` does not call ``__exit__`` again): the journal's thread and ``close()`` then
waited for it forever (1 of 25 Ctrl-Cs of a journaled ``produce()`` loop hung). So the
lock is an ``RLock`` (C) itself, whose ``release`` and ``__exit__`` are C with no such
check, and the taking releases it on any exception while this thread holds it.
"""

from __future__ import annotations

import _thread
from collections.abc import Callable
from typing import Any

__all__ = ["SettlingLock"]


class SettlingLock(_thread.RLock):  # type: ignore[misc]  # final in typeshed only
    """The store's lock: a lock that settles the store's ``JournalTail`` each time it is
    taken (``Condition.wait`` takes it again through ``_acquire_restore``). The tail
    writes without the lock, so a section under it must first take in what the tail
    wrote, and stop it: then the section sees, and alone changes, the state. Never
    taken twice by one thread (reentrant only to know its owner, module doc)."""

    __slots__ = ("_settle",)

    def __new__(cls, settle: Callable[[], None]) -> SettlingLock:
        return super().__new__(cls)

    def __init__(self, settle: Callable[[], None]) -> None:
        self._settle = settle

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        try:
            if not super().acquire(blocking, timeout):
                return False
            self._settle()
        except BaseException:
            # The settling failed, or an interrupt landed just after the lock was taken.
            if self._is_owned():  # type: ignore[attr-defined]
                self.release()
            raise
        return True

    def held_here(self) -> bool:
        """Does this thread hold the lock?"""
        return bool(self._is_owned())  # type: ignore[attr-defined]

    # ``with`` takes it through ``acquire`` itself: a ``__enter__`` that called it would
    # meet the check after that call, the lock taken, and ``with`` would not release it.
    __enter__ = acquire

    def _acquire_restore(self, state: Any) -> None:
        # ``Condition.wait`` taking the lock back: settle as any taking does. Held by the
        # caller's ``with`` by contract, so an exception here leaves it to that release.
        super()._acquire_restore(state)  # type: ignore[misc]
        self._settle()
