"""What an append does when ``buffer_memory`` is full: the back-pressure policy.

Separate from the accumulator because it is a choice, not a mechanism: the accumulator
knows how much memory its batches hold; this policy decides what a caller who finds no
room experiences (block, then ``BufferFullError``, today; spill to a disk journal, the
custody levels' seam). Swapping it must not touch the append path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from pykaf._errors import BufferFullError

__all__ = ["BlockWhenFull", "WhenFull", "room_wait"]


class WhenFull(Protocol):
    """What an append does when ``buffer_memory`` has no room for a new batch.

    The seam for custody levels: blocking is today's policy; a journal policy would write
    the record to disk and let the append go on. Called with the accumulator's lock held
    (``space`` is a condition on it); return once ``fits()`` holds, or raise."""

    def wait(
        self, space: threading.Condition, fits: Callable[[], bool], need: int, max_block: float
    ) -> None: ...


class BlockWhenFull:
    """Block up to ``max_block`` seconds for memory to free, then ``BufferFullError``.

    ``can_block()`` False (the thread that frees memory is the caller) raises at once."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        can_block: Callable[[], bool] | None = None,
    ) -> None:
        self._clock = clock
        self._can_block = can_block

    def wait(
        self, space: threading.Condition, fits: Callable[[], bool], need: int, max_block: float
    ) -> None:
        if self._can_block is not None and max_block > 0 and not self._can_block():
            max_block = 0.0
        deadline = self._clock() + max_block
        while not fits():
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise BufferFullError(
                    f"buffer_memory is full: no room for {need} more bytes within"
                    f" max_block ({max_block:g}s); the record was not taken (raise"
                    " buffer_memory or max_block, or produce more slowly)"
                )
            space.wait(remaining)


def room_wait(exc: BufferFullError, remaining: float) -> float | None:
    """Seconds to await room before one more try (None: raise). A journal's ``RoomSoon``
    says its own (within ``max_block``; the journal takes the record after it)."""
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        return float(retry_after)
    return remaining if remaining > 0 else None
