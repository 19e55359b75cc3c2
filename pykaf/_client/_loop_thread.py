"""A private asyncio event loop in a daemon thread, and bounded blocking calls into it."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from pykaf._client._fork import refusal, watch
from pykaf._errors import ClientClosedError, KafkaTimeoutError, WrongEventLoopError

__all__ = ["LoopThread", "on_a_loop_thread", "start_on_loop", "waits_for_itself"]

_T = TypeVar("_T")

# How long the interpreter's exit waits for each loop thread still running (``_stop_at_exit``).
_EXIT_STOP = 1.0
# A stopping loop's leftover tasks are cancelled in this many rounds, within this long.
_LEFTOVERS_ROUNDS = 5
_LEFTOVERS_WAIT = 1.0


# The idents of the loop threads running now: a blocking wait there (a delivery
# callback calling ``send().result()``, ``flush()`` or ``close()``) would wait for the
# very thread it blocks, so it is refused at once (``on_a_loop_thread``).
_LOOP_IDENTS: set[int] = set()


def on_a_loop_thread() -> bool:
    """Whether the calling thread runs a pykaf client's event loop (its callbacks do)."""
    return threading.get_ident() in _LOOP_IDENTS


def waits_for_itself(call: str) -> WrongEventLoopError:
    """The error for a blocking wait (``call``) on a producer's own loop thread."""
    return WrongEventLoopError(
        f"{call}() was called on the producer's own thread (a delivery callback), where the"
        " wait would hold the thread it waits for: call it from elsewhere (in a callback,"
        " produce or send and return)"
    )


def start_on_loop(
    loop: asyncio.AbstractEventLoop, make: Callable[[], Coroutine[Any, Any, _T]]
) -> concurrent.futures.Future[_T]:
    """``asyncio.run_coroutine_threadsafe`` for ``make()``, with the coroutine made on the
    loop, not in the calling thread.

    Ctrl-C's ``KeyboardInterrupt`` lands in the main thread at any call: a coroutine made
    there and interrupted before it was handed over was never awaited, and Python said
    so on stderr ("coroutine ... was never awaited", a CLI's clean Ctrl-C exit). So was
    one handed over as the loop stopped. Made on the loop, a coroutine exists only as a
    task, and a stopping loop cancels its tasks (``LoopThread``). Cancelling the returned
    future cancels the task; cancelled before the loop got to it, nothing is made.
    """
    future: concurrent.futures.Future[_T] = concurrent.futures.Future()

    def settle(task: asyncio.Task[_T]) -> None:
        if task.cancelled():
            future.cancel()
        elif future.set_running_or_notify_cancel():
            exc = task.exception()
            if exc is None:
                future.set_result(task.result())
            else:
                future.set_exception(exc)

    def start() -> None:
        if future.cancelled():
            return
        try:
            task = loop.create_task(make())
        except BaseException as exc:
            if future.set_running_or_notify_cancel():
                future.set_exception(exc)
            raise
        task.add_done_callback(settle)
        future.add_done_callback(
            lambda done: loop.call_soon_threadsafe(task.cancel) if done.cancelled() else None
        )

    loop.call_soon_threadsafe(start)
    return future


class LoopThread:
    """Runs coroutines on a loop owned by one daemon thread.

    Daemon, so a program that forgets ``close()`` still exits; ``stop()`` is bounded, so
    one that remembers never hangs in it.
    """

    def __init__(self, name: str = "pykaf-client") -> None:
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stopped = False
        # Calls submitted and not finished: a call that raced stop() (submitted as the
        # loop stopped, so never started) is cancelled by stop() instead of hanging.
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._forked_from = 0  # in a forked child: the pid of the process that forked it
        self._thread.start()
        self._started.wait()
        _RUNNING.add(self)
        watch(self)

    def forked(self, parent_pid: int) -> None:
        # In a forked child, where the thread does not run: a call would wait forever.
        self._forked_from = parent_pid
        self._stopped = True
        self._pending.clear()  # the parent's calls: not this process's to cancel

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        ident = threading.get_ident()
        _LOOP_IDENTS.add(ident)
        try:
            self.loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                self._cancel_leftovers()
            self.loop.close()
            _LOOP_IDENTS.discard(ident)

    def _cancel_leftovers(self) -> None:
        # A task may start another as it unwinds (a fetcher cancelled mid-fetch asks for
        # metadata): that one is cancelled in the next round. Bounded: a few rounds, one
        # second in all (pykaf's tasks never refuse cancellation; the bound guards anyway).
        deadline = self.loop.time() + _LEFTOVERS_WAIT
        for _ in range(_LEFTOVERS_ROUNDS):
            tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            remaining = deadline - self.loop.time()
            if not tasks or remaining <= 0:
                return
            for task in tasks:
                task.cancel()
            gather = asyncio.gather(*tasks, return_exceptions=True)
            self.loop.run_until_complete(asyncio.wait_for(gather, remaining))

    @property
    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def run(self, make: Callable[[], Coroutine[Any, Any, _T]], timeout: float | None) -> _T:
        """Run ``make()`` on the loop and wait for it, at most ``timeout`` seconds (None:
        unbounded; callers pass the operation's own timeout plus a margin). On timeout the
        coroutine is cancelled and ``KafkaTimeoutError`` raised. ``make`` (a
        ``functools.partial`` of a coroutine function) is called on the loop:
        ``start_on_loop`` says why."""
        if self._stopped:
            raise self._closed_error()
        if self.in_loop_thread:
            raise RuntimeError(
                "a blocking pykaf Client was called from its own event loop thread;"
                " use AsyncClient in async code"
            )
        return self.wait(self.submit(make), timeout)

    def submit(self, make: Callable[[], Coroutine[Any, Any, _T]]) -> concurrent.futures.Future[_T]:
        """Start ``make()`` on the loop; ``wait`` for its future (``run`` does both)."""
        if self._forked_from:
            raise self._closed_error()
        future = start_on_loop(self.loop, make)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)
        return future

    def wait(self, future: concurrent.futures.Future[_T], timeout: float | None) -> _T:
        """``run``'s wait: at most ``timeout`` s, then cancel and ``KafkaTimeoutError``."""
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            # On 3.11+ this is the builtin TimeoutError, which the coroutine's own
            # KafkaTimeoutError also is: only a future still running means *our* wait ran out.
            if future.done():
                raise
            future.cancel()
            raise KafkaTimeoutError(f"the operation did not finish within {timeout:g}s") from None
        except concurrent.futures.CancelledError:
            raise ClientClosedError("the client was closed during the call") from None

    def _closed_error(self) -> ClientClosedError:
        if self._forked_from:
            return refusal("client", self._forked_from)
        return ClientClosedError("the client is closed")

    def stop(self, timeout: float) -> None:
        """Stop the loop and join the thread, waiting at most ``timeout`` seconds."""
        if self._stopped:
            return
        self._ask_to_stop()
        self._join(timeout)

    def _ask_to_stop(self) -> None:
        self._stopped = True
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)

    def _join(self, timeout: float) -> None:
        if not self.in_loop_thread:
            self._thread.join(timeout)
        for future in list(self._pending):
            future.cancel()


# Loop threads still running when the interpreter exits (their client was never closed).
# A daemon thread is not stopped at exit, only abandoned: its loop's pending tasks were
# then destroyed as the interpreter finalised, and asyncio said so at ERROR ("Task was
# destroyed but it is pending!", a Consumer left open by a script whose broker had gone).
# Stopped here instead, their tasks end cancelled. Registered at import, before the
# producers' exit hook (``_producer``), so it runs after it (atexit is last in, first
# out): an open producer flushes through its loop first.
_RUNNING: weakref.WeakSet[LoopThread] = weakref.WeakSet()


@atexit.register
def _stop_at_exit() -> None:
    # All are asked first, then joined within one ``_EXIT_STOP`` from now: a loop stuck
    # in a callback no longer makes the next ones wait their own turn as well.
    running = [loop_thread for loop_thread in list(_RUNNING) if not loop_thread._stopped]
    for loop_thread in running:
        with contextlib.suppress(Exception):
            loop_thread._ask_to_stop()
    ends_at = time.monotonic() + _EXIT_STOP
    for loop_thread in running:
        with contextlib.suppress(Exception):
            loop_thread._join(max(0.0, ends_at - time.monotonic()))
