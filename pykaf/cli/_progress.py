"""A live progress bar for the terminal, and periodic plain lines when not on one."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

__all__ = ["Progress"]

_WIDTH = 30
_TTY_INTERVAL = 0.1  # seconds between redraws on a terminal
_LOG_STEP = 0.25  # fraction of the total between plain lines (logs, CI)


class Progress:
    """Counts work done; redraws at most every 0.1 s (a terminal) or every quarter (a pipe).

    ``advance`` is cheap (an add and a clock read), so callers can call it per batch.
    """

    def __init__(self, total: int | None, *, out: TextIO = sys.stdout, label: str = "") -> None:
        # total None: a stream of unknown length (pykaf produce); the count and rate only.
        self.total = total
        self.done = 0
        self.label = label
        self._out = out
        self._tty = out.isatty()
        self._started = time.perf_counter()
        self._last_draw = 0.0
        self._next_log = _LOG_STEP

    def __enter__(self) -> Progress:
        self._started = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._tty:
            self._draw(time.perf_counter())
            self._out.write("\n")
            self._out.flush()

    def advance(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self._tty:
            if now - self._last_draw >= _TTY_INTERVAL or (
                self.total is not None and self.done >= self.total
            ):
                self._draw(now)
        elif self.total and self.done / self.total >= self._next_log:
            while self._next_log <= self.done / self.total:
                self._next_log += _LOG_STEP
            self._out.write(self._line(now) + "\n")
            self._out.flush()

    def _line(self, now: float) -> str:
        elapsed = now - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total is None:
            return f"{self.label} {self.done:>12,}  {rate:>12,.0f} msg/s"
        fraction = self.done / self.total if self.total else 1.0
        filled = int(fraction * _WIDTH)
        bar = "#" * filled + "-" * (_WIDTH - filled)
        return (
            f"{self.label} [{bar}] {fraction:6.1%} {self.done:>12,}/{self.total:,}"
            f"  {rate:>12,.0f} msg/s"
        )

    def _draw(self, now: float) -> None:
        self._last_draw = now
        self._out.write("\r" + self._line(now))
        self._out.flush()
