"""The accumulator's flush bookkeeping: what a flush waits for and who waits.

A flush does not move records: it makes every batch ready now (``_flushing``) and waits
for the batches up to the newest serial at its start. That is counting, not appending or
draining, so it lives apart; ``ready`` and ``drain`` only read the ``_flushing`` count and
hand the watchers left here to the loop.
"""

from __future__ import annotations

from collections.abc import Callable

from pykaf._producer._accumulator_state import AccumulatorState

__all__ = ["FlushBookkeeping"]


class FlushBookkeeping(AccumulatorState):
    """The flush side of ``Accumulator`` (a mixin over its shared state)."""

    def begin_flush(self) -> int:
        """Every batch becomes ready now (until ``end_flush``); returns the serial of the
        newest batch so far: the flush waits for it and the older ones."""
        with self._lock:
            self._flushing += 1
            return self._serial

    def watch_flush(self, callback: Callable[[], object]) -> tuple[int, bool, bool]:
        """``begin_flush`` from any thread, leaving ``callback`` for the loop's next look
        (``ready``) instead of hopping to the loop to register it: the blocking flush
        then costs no wake at all when the append before it already woke the loop.

        Returns ``(target serial, registered, wake)``: not registered when there is
        nothing to wait for (or the accumulator is closed); ``wake`` says the caller must
        wake the loop (no wake is pending that would make it look).
        """
        with self._lock:
            self._flushing += 1
            target = self._serial
            if self._closed or not self._incomplete or next(iter(self._incomplete)) > target:
                return target, False, False
            self._flush_watchers.append((target, callback))
            return target, True, self._wake(True)

    def take_flush_watchers(self) -> list[tuple[int, Callable[[], object]]]:
        """The callbacks left by ``watch_flush`` not taken by ``ready`` yet (at close)."""
        with self._lock:
            taken, self._flush_watchers = self._flush_watchers, []
            return taken

    def end_flush(self) -> None:
        with self._lock:
            self._flushing -= 1

    def pending(self, up_to: int | None = None) -> int:
        """Records not finished yet (in batches with serial <= ``up_to``)."""
        with self._lock:
            return sum(
                len(b.records) for s, b in self._incomplete.items() if up_to is None or s <= up_to
            )

    def done_up_to(self, serial: int) -> bool:
        """Are all batches with serial <= ``serial`` finished?"""
        with self._lock:
            for first in self._incomplete:
                return first > serial
            return True
