"""Freezing a peer process (SIGSTOP) so that it surely answers nothing until thawed.

``kill(pid, SIGSTOP)`` returns before the process has stopped. The kernel hands the
signal to one of its threads, and only when that thread next runs does it stop the
others; until then they go on. On a loaded machine that thread may wait for a core for
milliseconds while the broker's network thread, already running, reads and answers
requests: "frozen" brokers acknowledged a producer's 1,500 records in 1 of 6 runs of
``test_custody_acks_lost.py`` with both cores busy (and in 1 of 4 CI runs with two
pytest workers). ``frozen`` waits until every thread of the process shows the stopped
state in ``/proc`` (Linux) before it returns."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["freeze", "frozen", "thread_states"]

STOP_WAIT = 10.0  # seconds a process may take to stop


def thread_states(pid: int) -> list[str]:
    """The scheduler state letter of each thread of ``pid`` ("T" when stopped); threads
    that end while being read are left out."""
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        # "tid (comm) S ...": the command may hold spaces and parentheses, the state
        # follows the last ")".
        states.append(stat[stat.rindex(")") + 2])
    return states


def freeze(pid: int, timeout: float = STOP_WAIT) -> None:
    """SIGSTOP ``pid`` and return once every thread of it has stopped; AssertionError
    (the process is left stopped) when that takes longer than ``timeout`` seconds."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while True:
        states = thread_states(pid)
        if states and all(state == "T" for state in states):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} did not stop within {timeout} s: {states}")
        time.sleep(0.001)


@contextmanager
def frozen(pid: int) -> Iterator[None]:
    """``freeze(pid)`` now; SIGCONT on the way out, however it is left (a test that fails
    must not leave the broker stopped for its fixture's close)."""
    try:
        freeze(pid)
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
