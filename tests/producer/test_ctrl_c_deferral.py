"""``_ctrl_c``: a blocking producer defers Ctrl-C while an append runs (the end-to-end
proof is tests/client/test_ctrl_c_anywhere.py's journaled sweep, which failed without
it: the journal refused every serial after an interrupted append)."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType, SimpleNamespace

import pytest

from pykaf._client import _ctrl_c
from pykaf._client._ctrl_c import deferred, whole
from pykaf._producer._producer import Producer

pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread() or sys.platform == "win32",
    reason="SIGINT handlers belong to the main thread",
)


@whole
def _marked() -> FrameType:
    return _inner()


def _inner() -> FrameType:
    return sys._getframe()


@whole
def _waiting_in_marked() -> list[bool]:
    seen: list[bool] = []
    condition = threading.Condition()
    with condition:
        condition.wait_for(lambda: seen.append(deferred(sys._getframe())) or True, 1.0)
    return seen


def test_an_interrupt_inside_a_marked_function_is_deferred() -> None:
    assert deferred(_marked())  # a frame below the marked one
    assert not deferred(_inner())  # not called from it
    assert not deferred(None)


def test_an_interrupt_in_a_wait_of_a_marked_function_is_not_deferred() -> None:
    assert _waiting_in_marked() == [False]  # the caller must be able to stop waiting


@pytest.fixture
def default_handler() -> Iterator[None]:
    # No holder left over by an earlier test of this process (an async client that test
    # did not close keeps the handler, as it would in a program).
    before, users = signal.getsignal(signal.SIGINT), _ctrl_c._users
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _ctrl_c._users = 0
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
        _ctrl_c._users = users


def _producer() -> Producer:
    return Producer("127.0.0.1:1", request_timeout=1.0, close_timeout=1.0)


def test_producers_install_the_handler_and_the_last_one_closed_restores_the_default(
    default_handler: None,
) -> None:
    first, second = _producer(), _producer()
    assert signal.getsignal(signal.SIGINT) is _ctrl_c._handler
    first.close(0.1)
    assert signal.getsignal(signal.SIGINT) is _ctrl_c._handler
    second.close(0.1)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_application_s_own_handler_is_left_alone(default_handler: None) -> None:
    def own(signum: int, frame: FrameType | None) -> None:
        pass

    signal.signal(signal.SIGINT, own)
    producer = _producer()
    assert signal.getsignal(signal.SIGINT) is own
    producer.close(0.1)
    assert signal.getsignal(signal.SIGINT) is own


def test_outside_an_append_ctrl_c_is_python_s_keyboard_interrupt(default_handler: None) -> None:
    producer = _producer()
    try:
        with pytest.raises(KeyboardInterrupt):  # at the check after the call
            signal.raise_signal(signal.SIGINT)
    finally:
        producer.close(0.1)


@whole
def _long_append(presses: int) -> int:
    """A marked function that takes a while (a long produce_batch, no wait for room):
    Ctrl-C pressed ``presses`` times in it; returns how many threads ran at its end."""
    for _ in range(presses):
        signal.raise_signal(signal.SIGINT)
    ends = time.monotonic() + 0.05
    while time.monotonic() < ends:  # busy, as an append is (a wait would take it)
        pass
    return threading.active_count()


def test_a_deferred_ctrl_c_comes_once_the_marked_function_returns_from_one_watcher(
    default_handler: None,
) -> None:
    producer = _producer()
    counts: list[int] = []

    def press_then_wait() -> None:
        counts.append(_long_append(3))  # nothing raised in there...
        threading.Event().wait(5.0)  # ... but here, at once: bounded if it were not

    try:
        before = threading.active_count()
        with pytest.raises(KeyboardInterrupt):
            press_then_wait()
        assert counts == [before + 1]  # one watcher, however many presses and looks
    finally:
        producer.close(0.1)


@whole
def _pressed_in_an_append() -> list[str]:
    steps = ["pressed"]
    signal.raise_signal(signal.SIGINT)  # the handler runs at the check after this call
    steps.append("whole")  # a journaled append's serial, counted after its record
    return steps


class _PressedAgainInStart(threading.Thread):
    """The watcher, and Ctrl-C again while the handler waits in its ``start``: under
    load the watcher's own first look sent it there (it saw that wait, the handler's,
    and took it for the append's), and the second handler raised out of the first one,
    mid-append. Here the press comes from another thread once the wait has begun."""

    def start(self) -> None:
        super().start()
        waiting = threading.Condition()
        main = threading.get_ident()

        def press() -> None:
            with waiting:  # taken once the handler's wait let it go
                signal.pthread_kill(main, signal.SIGINT)
                waiting.notify()

        with waiting:
            threading.Thread(target=press).start()
            waiting.wait(5.0)


def test_ctrl_c_again_while_the_handler_starts_its_watcher_still_waits_for_the_append(
    default_handler: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    producer = _producer()
    monkeypatch.setattr(
        _ctrl_c, "threading", SimpleNamespace(**{**vars(threading), "Thread": _PressedAgainInStart})
    )
    steps: list[str] = []

    def press_then_wait() -> None:
        steps.extend(_pressed_in_an_append())  # nothing raised in there...
        threading.Event().wait(5.0)  # ... but here: bounded if it were not

    try:
        with pytest.raises(KeyboardInterrupt):
            press_then_wait()
        assert steps == ["pressed", "whole"]  # before: [] (raised just after "pressed")
    finally:
        watcher = _ctrl_c.redelivery
        if watcher is not None:
            # Before the fix, its press came after the failure: not into the session.
            with contextlib.suppress(KeyboardInterrupt):
                watcher.join(5.0)
                threading.Event().wait(0.1)
        _ctrl_c.redelivery = None
        monkeypatch.undo()
        producer.close(0.1)
