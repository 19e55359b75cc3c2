"""SIGINT (Ctrl-C) and SIGTERM (``kill``, ``docker stop``, systemd) ask a command to stop
cleanly: what it has taken is finished (a producer's records flushed, a consumer's
printed records committed), then it exits.

Why SIGTERM too: Python's default for it ends the process at once, without ``finally``
or exit hooks. ``pykaf produce`` then lost every record it had read and not yet sent
(buffered, or in requests without answers), with no word; ``pykaf consume -G`` committed
nothing it had printed (a restart printed it again) and left its group to time out.

A signal only marks the stop, except while the command waits (reading its input,
polling): there it raises ``KeyboardInterrupt`` at once, so a command idle on an empty
pipe stops too. So it never lands in the middle of handing records to a client or
writing them out, and a command knows exactly what it had taken. Installed from the main
thread only (signal handlers can be set nowhere else); a command run from another thread
keeps its caller's handlers.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TypeAlias

__all__ = ["Stop", "sigterm_as_ctrl_c", "stop_signals"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)

Handler: TypeAlias = Callable[[int, FrameType | None], None]


class Stop:
    """The handler of both signals, and what it was asked."""

    def __init__(self) -> None:
        self.signum = 0  # the signal that asked for the stop (0: none yet)
        self._waiting = False

    @property
    def requested(self) -> bool:
        return self.signum != 0

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        if self._waiting:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def waits(self) -> Iterator[None]:
        """Around a blocking wait: a stop asked before or during it raises
        ``KeyboardInterrupt`` (a signal between a loop's check and its wait included)."""
        self._waiting = True
        try:
            if self.signum:
                raise KeyboardInterrupt
            yield
        finally:
            self._waiting = False


@contextlib.contextmanager
def _handling(handler: Handler, signums: tuple[int, ...]) -> Iterator[None]:
    """``handler`` for ``signums`` while the block runs, the caller's back after; from
    the main thread only (signal handlers can be set nowhere else)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)


@contextlib.contextmanager
def stop_signals() -> Iterator[Stop]:
    """A ``Stop`` handling SIGINT and SIGTERM while the block runs (main thread only)."""
    stop = Stop()
    with _handling(stop, _SIGNALS):
        yield stop


@contextlib.contextmanager
def sigterm_as_ctrl_c() -> Iterator[Stop]:
    """While the block runs (main thread only), SIGTERM does what Ctrl-C does then: it
    calls SIGINT's handler of the moment (pykaf's own defers ``KeyboardInterrupt`` until
    a client's bookkeeping is whole; a command's ``stop_signals`` handle both anyway),
    or raises ``KeyboardInterrupt`` where SIGINT is ignored (a background job's). The
    ``Stop`` it yields tells whether SIGTERM came (for the exit status, 143)."""
    term = Stop()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        term.signum = signum
        handler = signal.getsignal(signal.SIGINT)
        if not callable(handler):
            raise KeyboardInterrupt
        handler(signal.SIGINT, frame)

    with _handling(on_sigterm, (signal.SIGTERM,)):
        yield term
