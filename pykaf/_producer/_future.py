"""``DeliveryFuture``: the blocking producer's ``send()`` future, made cheap.

A ``concurrent.futures.Future`` builds a ``threading.Condition`` in its constructor
(an RLock, a deque and half a dozen bound methods copied into its dict): ~7 µs and
~1.6 KB per future, measured here, which made ``send()`` twenty times slower than
``produce()`` and a million pending sends cost 1.6 GB. Nearly all of that is for a
caller who waits, and most futures are resolved before anybody looks at them.

``DeliveryFuture`` is a real subclass (``isinstance`` checks, ``concurrent.futures.wait``
and ``as_completed``, ``add_done_callback``, ``cancel`` all work) whose condition and
lists are created on first use. The one race that matters -- a waiter creating the
condition while the producer's thread resolves the future -- is closed by one
module-wide lock: the condition is only ever created under it, and the resolve fast path
sets the state under it only when no condition exists yet; otherwise the standard path
(state change and ``notify_all`` under the condition) runs.

The attribute names are ``concurrent.futures.Future``'s own (``_condition``, ``_state``,
``_result``, ``_exception``, ``_waiters``, ``_done_callbacks``), unchanged since Python
3.2; ``tests/producer/test_future.py`` holds the behaviour to the standard future's.
"""

from __future__ import annotations

import concurrent.futures
import threading
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
)
from typing import Any, Final, TypeVar

from pykaf._client._loop_thread import on_a_loop_thread, waits_for_itself

__all__ = ["DeliveryFuture", "resolve_many"]

T = TypeVar("T")

_LAZY: Final = threading.Lock()
_DONE: Final = frozenset({CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED})


class DeliveryFuture(concurrent.futures.Future[T]):
    """A ``concurrent.futures.Future`` whose machinery is built only when used."""

    # Slots: a fresh future allocates no dict at all (the base class's __dict__ exists
    # but stays unmade). The base class's names are properties over these.
    __slots__ = ("_callbacks_list", "_cond", "_exception", "_result", "_state", "_waiters_list")

    def __init__(self) -> None:  # deliberately not calling super().__init__ (see above)
        self._state = PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._cond: threading.Condition | None = None
        self._waiters_list: list[Any] | None = None
        self._callbacks_list: list[Any] | None = None

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        cond = self._cond
        if cond is None:
            with _LAZY:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition()
        return cond

    # The two lists are only touched under the condition by the standard methods
    # (wait(), as_completed(), add_done_callback, the slow resolve), so made once.
    @property
    def _waiters(self) -> list[Any]:  # type: ignore[override]  # the base's instance attribute
        waiters = self._waiters_list
        if waiters is None:
            waiters = self._waiters_list = []
        return waiters

    @property
    def _done_callbacks(self) -> list[Any]:
        callbacks = self._callbacks_list
        if callbacks is None:
            callbacks = self._callbacks_list = []
        return callbacks

    # -- lock-free reads: one attribute read is atomic -----------------------------------

    def done(self) -> bool:
        return self._state in _DONE

    def cancelled(self) -> bool:
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED)

    def running(self) -> bool:
        return self._state == RUNNING

    def result(self, timeout: float | None = None) -> T:
        if self._state == FINISHED and self._exception is None:
            return self._result  # type: ignore[no-any-return]
        if self._state != FINISHED and on_a_loop_thread():
            raise waits_for_itself("result")
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state == FINISHED:
            return self._exception
        if on_a_loop_thread():
            raise waits_for_itself("exception")
        return super().exception(timeout)

    # -- resolving (the producer's thread) -----------------------------------------------

    def set_result(self, result: T) -> None:
        if not self._resolve(result, None):
            super().set_result(result)

    def set_exception(self, exception: BaseException | None) -> None:
        if not self._resolve(None, exception):
            super().set_exception(exception)

    def try_set_result(self, result: T) -> None:
        """``set_result``, or nothing if the future is done already (cancelled by its
        caller): the producer's reporter must not fail on a caller's cancel."""
        try:  # noqa: SIM105 -- try/except costs nothing here; suppress() makes an object
            self.set_result(result)
        except concurrent.futures.InvalidStateError:
            pass

    def try_set_exception(self, exception: BaseException) -> None:
        """``set_exception``, or nothing if the future is done already."""
        try:  # noqa: SIM105 -- as above
            self.set_exception(exception)
        except concurrent.futures.InvalidStateError:
            pass

    def _resolve(self, result: Any, exception: BaseException | None) -> bool:
        """The fast path: True if done here (nobody ever waited, no callbacks)."""
        with _LAZY:
            if self._cond is not None:
                return False  # somebody may wait or have added a callback
            if self._state in _DONE:
                raise concurrent.futures.InvalidStateError(f"{self._state}: {self!r}")
            self._result = result
            self._exception = exception
            self._state = FINISHED
            return True

    def __repr__(self) -> str:
        state = self._state
        if state == FINISHED:
            if self._exception is not None:
                return f"<DeliveryFuture finished raised {type(self._exception).__name__}>"
            return f"<DeliveryFuture finished returned {type(self._result).__name__}>"
        return f"<DeliveryFuture {state.lower()}>"


def resolve_many(pairs: list[tuple[DeliveryFuture[Any], Any]]) -> None:
    """``try_set_result`` for many futures, taking the lazy lock once for all of those
    nobody waits on (the common case: one lock round trip per batch, not per record)."""
    slow = []
    with _LAZY:
        for future, value in pairs:
            if future._cond is None and future._state == PENDING:
                future._result = value
                future._state = FINISHED
            else:
                slow.append((future, value))
    for future, value in slow:
        future.try_set_result(value)
