"""Ctrl-C waits until pykaf's bookkeeping is whole (a blocking producer's appends, and
whatever an event loop of the main thread runs for an async client).

Here, under the client layer, so that the producer and the consumer both use it.

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
an interrupt is as safe as ever and the caller must be able to stop waiting), a watcher
thread sends the signal again (to the main thread: a wait is interrupted too) once the
marked function has returned or entered its wait, looking every millisecond; anywhere
else it raises ``KeyboardInterrupt`` as the default handler does. The appends cost
nothing more: the handler does the work, when Ctrl-C comes. The last holder closed puts
the default handler back, if it is still ours (``asyncio.run`` installs its own only
over the default one).

An async client (``AsyncClient.hold_ctrl_c``: at its first call, and at the start of the
``AsyncProducer`` or ``AsyncConsumer`` that owns it) whose loop runs in the main
thread under Python's default handler (``loop.run_until_complete``, ``run_forever``; not
``asyncio.run``, whose own handler cancels the main task instead) installs it as well,
until it is closed. There a Ctrl-C landed wherever the loop was: in a pykaf callback (a
batch taken from its partition's queue and never put in its request), in a task (the
producer's metadata watch ended by the exception for good), in a request's bookkeeping
(a connection's in-flight slot never given back), in asyncio's own steps between a
socket read and the protocol that takes the bytes, or in ``run_until_complete``'s
cleanup. So while the loop runs in this thread (``run_until_complete``, ``run_forever``,
``_run_once`` on the stack), anywhere but its wait for I/O (a selector's ``select``),
the interrupt waits, thread waits inside a loop step included (a step never waits long):
it comes while the loop waits, where every callback and task is as it was, and leaves
through the loop's own cleanup. It waits for a wait with nothing ready to run, for up to
``_PATIENCE`` looks (a loop never idle takes a busy one then): a future done just before
has its callbacks scheduled and not run, and ``run_until_complete``'s stop callback, run
by the next run, stopped it at once ("Event loop stopped before Future completed").

Not installed, the sections keep their own guards (``_accumulator_state``: the lock is
released if an exception leaves it held).
"""

from __future__ import annotations

import _thread
import asyncio.base_events
import selectors
import signal
import sys
import threading
import time
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
# The loop running in this thread (its steps and its own start and stop), and its wait
# for I/O within a step (module doc).
_LOOP: frozenset[CodeType] = frozenset(
    method.__code__
    for method in (
        asyncio.base_events.BaseEventLoop._run_once,  # type: ignore[attr-defined]
        asyncio.base_events.BaseEventLoop.run_forever,
        asyncio.base_events.BaseEventLoop.run_until_complete,
    )
)
_SELECTS: frozenset[CodeType] = frozenset(
    kind.select.__code__
    for name in ("SelectSelector", "PollSelector", "EpollSelector", "KqueueSelector")
    if (kind := getattr(selectors, name, None)) is not None
)
_users = 0  # holders (producers, async clients) that asked for it and have not released it
_lock = threading.Lock()


def whole(fn: _F) -> _F:
    """Mark ``fn``: an interrupt while it runs (outside its waits) waits for its return."""
    _WHOLE.add(fn.__code__)
    return fn


# A deferred Ctrl-C's watcher looks this often whether the marked function has returned
# (most take microseconds; a long produce_batch without a wait for room, longer)...
_LOOK_EVERY = 0.001
# ... this many times at most, then sends it anyway (every loop here is bounded).
_LOOKS = 600_000
# On an event loop, a deferred Ctrl-C waits this many looks for the loop to wait with
# nothing ready (its ``select`` with a timeout), then takes any wait for I/O (module doc).
_PATIENCE = 100
# The thread waiting to send a deferred Ctrl-C again (tests join it).
redelivery: threading.Thread | None = None
_urgent = False  # the redelivery ran out of patience: a busy loop's wait will do
_starting = False  # a handler is starting the watcher (``_handler``)


def deferred(frame: FrameType | None, *, busy_wait_will_do: bool = False) -> bool:
    """Is ``frame`` (the interrupted one) inside a marked function, not in its wait, or
    inside this thread's running event loop, not in its wait for I/O? A wait for I/O
    with callbacks ready to run (``select(0)``) counts only if ``busy_wait_will_do``:
    a future done then has its callbacks scheduled and not run, and one of
    ``run_until_complete`` stopped the next run at once ("Event loop stopped before
    Future completed")."""
    in_wait = False  # a thread wait: interrupted at once, unless a loop step holds it
    while frame is not None:
        code = frame.f_code
        if code in _WAITS:
            in_wait = True
        elif code is _handler.__code__:
            # The waits above are the handler's own (its watcher's ``start`` waits for
            # the thread to run), not the interrupted code's, which is below. Before, a
            # second press in that wait (under load, the watcher's first look sends it:
            # it took the wait for the append's) raised out of the deferring handler,
            # mid-append: between a record journaled and the serial that counts it, and
            # the journal refused every later produce() ("serials must increase").
            in_wait = False
        elif code in _SELECTS:
            return not busy_wait_will_do and frame.f_locals.get("timeout") == 0
        elif code in _WHOLE:
            return not in_wait
        elif code in _LOOP:
            return True  # a loop step never waits long: whatever it runs is whole
        frame = frame.f_back
    return False


def _handler(signum: int, frame: FrameType | None) -> None:
    global redelivery, _urgent, _starting
    if not deferred(frame, busy_wait_will_do=_urgent):
        _urgent = False
        raise KeyboardInterrupt
    # Again, once the function has returned. Not from here: the handler itself would
    # meet it at its next check, recursing. One watcher at a time (presses meanwhile
    # count once), not a thread per look; a press while this handler starts it (nested
    # here, in ``start``'s wait, where ``is_alive`` is still False) counts once too.
    if _starting or (redelivery is not None and redelivery.is_alive()):
        return
    _starting = True
    try:
        redelivery = threading.Thread(
            target=_send_once_whole, args=(signum,), name="pykaf-ctrl-c", daemon=True
        )
        redelivery.start()
    finally:
        _starting = False


def _send_once_whole(signum: int) -> None:
    """The deferred Ctrl-C, sent again to the main thread once it has left the marked
    function (or entered its wait): a real signal, so that a wait is interrupted too."""
    global _urgent
    main = threading.main_thread().ident or 0
    for look in range(_LOOKS):
        time.sleep(_LOOK_EVERY)
        if look == _PATIENCE:
            _urgent = True
        if not deferred(sys._current_frames().get(main), busy_wait_will_do=_urgent):
            break
    try:
        signal.pthread_kill(main, signum)
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
