"""Log lines that may come in a storm: at most one per key per interval, the rest counted.

During an outage or a leader move the same thing happens to many batches or commits in a
short time (every batch of a dead broker is retried, every fire-and-forget record past its
deadline fails): a line for each would bury the lines that matter. Per key (say, the
error's class), ``LogLimiter`` lets the first line of a window through at once, holds the
lines that follow in the window back, and counts them: the count (and a summed
``weight``, such as records) is told by a summary line when the window ends (``schedule``
arms a timer for it) or, with no timer, by the next line of the key or by ``flush()``
(at close). Nothing is dropped without being counted.

Pure bookkeeping (time comes from ``clock``), so the wording and counting are tested exactly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["LogLimiter"]

DEFAULT_INTERVAL: Final = 10.0
# A key's window is forgotten when it ends; this bounds the keys of windows still open.
_MAX_KEYS: Final = 1024

Schedule = Callable[[float, Callable[[], object]], object]


@dataclass(slots=True)
class _Window:
    since: float
    level: int
    held: int = 0  # lines held back since ``since``
    weight: int = 0  # their summed weight
    last: tuple[str, tuple[Any, ...]] = ("", ())  # the last line held back (formatted late)
    timed: bool = False  # a timer will end this window


class LogLimiter:
    """Rate-limited lines of ``logger`` (see the module doc)."""

    __slots__ = ("_clock", "_logger", "_windows", "interval", "schedule", "unit")

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = DEFAULT_INTERVAL,
        unit: str = "",
        clock: Callable[[], float] = time.monotonic,
        schedule: Schedule | None = None,
    ) -> None:
        self._logger = logger
        self.interval = interval
        self.unit = unit  # what ``weight`` counts ("record(s)"), named in summaries
        self._clock = clock
        # ``schedule(delay, callback)`` (``loop.call_later``): ends a window on time.
        self.schedule = schedule
        self._windows: dict[Hashable, _Window] = {}

    def log(
        self,
        level: int,
        key: Hashable,
        message: str,
        *args: Any,
        weight: int = 0,
        exc_info: bool = False,
    ) -> bool:
        """Log ``message % args`` at ``level`` unless a line of ``key`` was logged less
        than ``interval`` s ago (then count it). True if it was logged."""
        if not self._logger.isEnabledFor(level):
            return False
        now = self._clock()
        window = self._windows.get(key)
        if window is not None and now - window.since < self.interval:
            window.held += 1
            window.weight += weight
            window.last = (message, args)
            if self.schedule is not None and not window.timed:
                window.timed = True
                self.schedule(window.since + self.interval - now, lambda: self._end(key))
            return False
        told = ""
        if window is not None and window.held:
            told = f" [{self._held(window)} since the line before]"
        if window is None and len(self._windows) >= _MAX_KEYS:
            self.flush()
        self._windows[key] = _Window(since=now, level=level)
        self._logger.log(level, message + "%s", *args, told, exc_info=exc_info)
        return True

    def _held(self, window: _Window) -> str:
        lines = f"{window.held} more like it held back"
        if window.weight and self.unit:
            return f"{lines}, {window.weight} {self.unit} in all"
        return lines

    def _end(self, key: Hashable) -> None:
        window = self._windows.get(key)
        if window is None or not window.held:
            return
        if self._clock() - window.since < self.interval:
            window.timed = False  # a new window began meanwhile: its own timer
            return
        self._summary(key, window)

    def _summary(self, key: Hashable, window: _Window) -> None:
        del self._windows[key]
        seconds = self._clock() - window.since
        message, args = window.last
        self._logger.log(
            window.level,
            "%s in %.0f s (the last: %s)",
            self._held(window),
            seconds,
            message % args if args else message,
        )

    def flush(self) -> None:
        """Tell every count held back now (a summary line per key), and forget the keys."""
        for key, window in list(self._windows.items()):
            if window.held:
                self._summary(key, window)
        self._windows.clear()
