"""The bytes one broker may hold in partially received request frames (Kafka's
``queued.max.request.bytes``).

Kafka reserves a request's whole declared size from a memory pool once its size prefix has
arrived; when the pool is spent, connections that need a reservation are muted (not read)
until requests complete and free space. The pool is not strict: a reservation succeeds
while any space is left, so one frame larger than the free space (or the whole pool) still
gets through instead of waiting forever; the overshoot is bounded by one maximum frame.
Only frames that straddle reads take a reservation: a request that arrived whole is
decoded at once, so a client sending small requests keeps being served while the pool is
spent.
"""

from __future__ import annotations

import asyncio
import logging

__all__ = ["ReadBudget"]

log = logging.getLogger("pykaf.broker")


class ReadBudget:
    """Reservations of request bytes shared by the connections of one listener."""

    def __init__(self, capacity: int, *, owner: str) -> None:
        if type(capacity) is not int or capacity < 1:
            raise ValueError(f"queued_max_request_bytes must be a positive int, not {capacity!r}")
        self.capacity = capacity
        self._owner = owner
        self._reserved = 0
        self._waiters: list[asyncio.Future[None]] = []
        self._spent_reported = False

    @property
    def reserved(self) -> int:
        """Bytes reserved now by partially received frames."""
        return self._reserved

    @property
    def waiting(self) -> int:
        """Connections paused until space frees."""
        return sum(1 for waiter in self._waiters if not waiter.done())

    def try_reserve(self, size: int) -> bool:
        if self._reserved >= self.capacity:
            if not self._spent_reported:
                self._spent_reported = True
                log.warning(
                    "%s: %d bytes of partial requests held (queued_max_request_bytes=%d);"
                    " pausing reads from connections with partial frames until space frees",
                    self._owner,
                    self._reserved,
                    self.capacity,
                )
            return False
        self._reserved += size
        return True

    def release(self, size: int) -> None:
        self._reserved -= size
        if self._reserved >= self.capacity:
            return
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        # The episode ends when space frees with nobody waiting for it (woken waiters
        # may spend it again at once: that is still the same episode).
        if self._spent_reported and not waiters:
            self._spent_reported = False
            log.info("%s: partial requests fit the budget again; reads resumed", self._owner)

    async def wait_for_space(self) -> None:
        """Return once a release has brought the reservations under the capacity."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
