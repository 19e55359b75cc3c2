"""The slow-head deadlines of one event loop's connections, checked by one timer.

Every request head on a connection is timed (``LimitSettings.header_timeout``: a client
that sends its head a byte at a time, or nothing at all, gets 408). A timer per head,
``call_later`` then ``cancel`` once the head is complete, cost about 5% of the server's CPU
on ``/async`` (py-spy: the timer handle, the heap push, the cancelled handles the loop
sweeps later). Here a head costs a clock read and a dict entry, and one timer per loop
runs while any head is open, every quarter of the timeout: a slow head is refused after
between 1 and 1.25 times ``header_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import Final

__all__ = ["HeadClock"]

log = logging.getLogger("pykaf.gateway")

_CHECKS_PER_TIMEOUT: Final = 4
_SHORTEST_PERIOD: Final = 0.01  # seconds: a tiny timeout does not spin the loop


class HeadClock:
    """Deadlines of open request heads on one loop (``watch``/``unwatch``); ``expired``
    is called for each that passes its deadline, once, and it is forgotten then."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        # Weak: ``_CLOCKS`` is keyed by the loop, and a value that held its key would keep
        # every loop (and its clocks) alive for good.
        self._loop = weakref.ref(loop)
        self.timeout = timeout
        self.period = max(timeout / _CHECKS_PER_TIMEOUT, _SHORTEST_PERIOD)
        self.open: dict[Callable[[], None], float] = {}  # expired callback -> deadline
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop, timeout: float) -> HeadClock:
        """The clock of ``loop`` for ``timeout`` (one per loop and timeout)."""
        clocks = _CLOCKS.get(loop)
        if clocks is None:
            clocks = _CLOCKS[loop] = {}
        clock = clocks.get(timeout)
        if clock is None:
            clock = clocks[timeout] = cls(loop, timeout)
        return clock

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop()
        assert loop is not None  # called on the loop, which is alive then
        return loop

    def watch(self, expired: Callable[[], None]) -> None:
        loop = self.loop
        self.open[expired] = loop.time() + self.timeout
        if self._timer is None:
            self._timer = loop.call_later(self.period, self._check)

    def unwatch(self, expired: Callable[[], None]) -> None:
        self.open.pop(expired, None)

    def _check(self) -> None:
        self._timer = None
        loop = self.loop
        now = loop.time()
        late = [expired for expired, deadline in self.open.items() if deadline <= now]
        for expired in late:
            del self.open[expired]
        if self.open:
            self._timer = loop.call_later(self.period, self._check)
        for expired in late:
            try:
                expired()
            except Exception:  # one connection's trouble must not spare the others
                log.exception("refusing a slow request head failed")


# Each loop's clocks, by timeout (a server's settings give one), gone with the loop.
_CLOCKS: Final[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, HeadClock]]] = (
    weakref.WeakKeyDictionary()
)
