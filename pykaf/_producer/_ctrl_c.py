"""Ctrl-C waits until a blocking producer's bookkeeping is whole.

CPython raises a signal handler's ``KeyboardInterrupt`` in the main thread wherever it
next checks for signals: at the start of any Python function and just after any call
returns. Inside ``produce()`` that can be between a record written to the journal and the
serial that counts it (the store then refused every later serial: each ``produce()``
raised), or between a lock taken and the ``try`` that releases it. Python code cannot
make such a section whole by itself.

So, like trio's protection of its own internals, a blocking ``Producer`` created in the
main thread while SIGINT has Python's default handler replaces it with ``_handler``. It
looks at the interrupted thread's frames: inside one of the functions marked
``@whole`` (the producer's appends), and not inside a wait (a ``Condition.wait``, where
an interrupt is as safe as ever and the caller must be able to stop waiting), it sends
the signal again a millisecond later (to the main thread: a wait it entered meanwhile is
interrupted too), by when the marked function has returned; anywhere else it raises
``KeyboardInterrupt`` as the default handler does. The appends cost nothing more: the
handler does the work, when Ctrl-C comes. The last producer closed puts the default
handler back, if it is still ours (``asyncio.run`` installs its own only over the
default one).

Not installed, the sections keep their own guards (``_accumulator_state``: the lock is
released if an exception leaves it held).
"""

from __future__ import annotations

import _thread
import signal
import threading
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any, TypeVar

__all__ = ["defer_in_main_thread", "release_handler", "whole"]

_F = TypeVar("_F", bound=Callable[..., Any])

_WHOLE: set[CodeType] = set()  # the marked functions' code
# Where an interrupt is delivered at once, even inside a marked function: its waits.
_WAITS: frozenset[CodeType] = frozenset(
    (threading.Condition.wait.__code__, threading.Condition.wait_for.__code__)
)
_users = 0  # producers that asked for the handler and have not released it
_lock = threading.Lock()


def whole(fn: _F) -> _F:
    """Mark ``fn``: an interrupt while it runs (outside its waits) waits for its return."""
    _WHOLE.add(fn.__code__)
    return fn


# Ctrl-C deferred is sent again this long after (a marked function takes microseconds).
_AGAIN_AFTER = 0.001
# The thread that sends a deferred Ctrl-C again, while it waits (tests join it).
redelivery: threading.Timer | None = None


def deferred(frame: FrameType | None) -> bool:
    """Is ``frame`` (the interrupted one) inside a marked function, not in its wait?"""
    while frame is not None:
        code = frame.f_code
        if code in _WAITS:
            return False
        if code in _WHOLE:
            return True
        frame = frame.f_back
    return False


def _handler(signum: int, frame: FrameType | None) -> None:
    global redelivery
    if not deferred(frame):
        raise KeyboardInterrupt
    # Again, once the function has returned. Not from here: the handler itself would
    # meet it at its next check, recursing. A real signal to the main thread, so that a
    # wait it has entered meanwhile is interrupted too.
    redelivery = threading.Timer(_AGAIN_AFTER, _send_again, (signum,))
    redelivery.daemon = True
    redelivery.start()


def _send_again(signum: int) -> None:
    try:
        signal.pthread_kill(threading.main_thread().ident or 0, signum)
    except (AttributeError, OSError):  # no pthread_kill (Windows), or the thread is gone
        _thread.interrupt_main(signal.Signals(signum))


def defer_in_main_thread() -> bool:
    """Install ``_handler`` (once for all producers) if this is the main thread and SIGINT
    has Python's default handler, or ours already. Returns whether this caller holds it
    (and must ``release_handler``)."""
    global _users
    if threading.current_thread() is not threading.main_thread():
        return False
    with _lock:
        current = signal.getsignal(signal.SIGINT)
        if current is signal.default_int_handler:
            signal.signal(signal.SIGINT, _handler)
        elif current is not _handler:
            return False  # the application's own: left alone
        _users += 1
        return True


def release_handler() -> None:
    """A producer that held the handler is closed: the last one puts the default back,
    if ours is still installed (from the main thread: elsewhere it stays)."""
    global _users
    with _lock:
        _users -= 1
        if _users > 0 or threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGINT) is _handler:
            signal.signal(signal.SIGINT, signal.default_int_handler)
