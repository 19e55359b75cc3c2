"""Ctrl-C never leaves the accumulator's lock held.

CPython runs a signal handler, and so raises Ctrl-C's ``KeyboardInterrupt``, at its first
check after a call returns: right after ``lock.acquire()``, before the ``try`` that would
release the lock. With the lock held for good, the loop thread's next charge or drain
blocked on it, and so did ``close()``: the process hung (3 of 30 runs of a script that
Ctrl-Cs a ``produce()`` loop, each stopped by a timeout). ``with lock:`` has no such
check between taking the lock and entering its block; the lock is taken that way only.

``Interrupting`` is the lock as the interrupt meets it: its ``acquire()`` raises once
the lock is taken (CPython's check after the call); ``with`` takes it as CPython does.
Before, every case left the lock held.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from pykaf._producer._producer import Producer
from pykaf._producer.journal._settling_lock import SettlingLock
from pykaf.broker import BlockingCluster


class Interrupting:
    def __init__(self, real: Any) -> None:
        self.real = real
        self.interrupts = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if not self.real.acquire(blocking, timeout):
            return False
        self.interrupts += 1
        raise KeyboardInterrupt  # the handler's, at the check after the call

    def release(self) -> None:
        self.real.release()

    def __enter__(self) -> bool:
        return self.real.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.real.__exit__(*exc)

    def _is_owned(self) -> bool:
        return bool(self.real._is_owned())


@pytest.fixture(scope="module")
def cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=1) as running:
        running.create_topic("t", 3)
        yield running


CALLS: dict[str, Callable[[Producer], object]] = {
    "produce": lambda p: p.produce("t", b"v"),
    "produce with a key": lambda p: p.produce("t", b"v", key=b"k"),
    "produce_batch of values": lambda p: p.produce_batch("t", [b"v"] * 600),
    "produce_batch of pairs": lambda p: p.produce_batch("t", [(b"k", b"v")] * 600),
    "produce_batch to a partition": lambda p: p.produce_batch("t", [b"v"] * 600, partition=1),
}


@pytest.mark.parametrize("custody", ["memory", "journal"])
@pytest.mark.parametrize("call", sorted(CALLS))
def test_an_interrupt_never_leaves_the_lock_held(
    cluster: BlockingCluster, tmp_path: Path, custody: str, call: str
) -> None:
    options: dict[str, Any] = {"custody": custody, "linger": 0.0}
    if custody != "memory":
        options["journal_dir"] = tmp_path
    with Producer(cluster.bootstrap, **options) as p:
        p.produce("t", b"warm")  # the topic known: its first produce asks the loop
        assert p.flush(10) == 0
        accumulator = p._accumulator
        real = accumulator._lock
        lock = Interrupting(real)
        accumulator._lock = lock  # type: ignore[assignment]
        held = []
        try:
            for _ in range(3):
                with contextlib.suppress(KeyboardInterrupt):
                    CALLS[call](p)
                held.append(real._is_owned())
                while real._is_owned():
                    real.release()  # for the failure to be reported, not hang the close
        finally:
            accumulator._lock = real
        assert held == [False] * 3
        assert p.flush(10) == 0  # and the producer goes on


def test_the_journal_store_s_lock_is_not_left_held_either() -> None:
    # The store's lock (SettlingLock) took its inner lock with acquire() before its try,
    # and ``with`` went through a Python __enter__ calling acquire(): a journaled
    # produce() loop hung at close, 1 Ctrl-C in 25. Here the interrupt lands where
    # CPython checks for it right after the lock is taken (the C acquire returning).
    settled: list[int] = []
    store_lock = SettlingLock(lambda: settled.append(1))
    here = SettlingLock.__module__.replace(".", "/") + ".py"

    def interrupt_once_taken(frame: FrameType, event: str, arg: Any) -> None:
        if event == "c_return" and frame.f_code.co_filename.endswith(here):
            sys.setprofile(None)
            raise KeyboardInterrupt

    for take in (store_lock.acquire, store_lock.__enter__):
        sys.setprofile(interrupt_once_taken)
        try:
            with pytest.raises(KeyboardInterrupt):
                take()
        finally:
            sys.setprofile(None)
        assert not store_lock._is_owned()
    with store_lock:  # and it is taken again, settling as ever
        assert store_lock._is_owned()
    assert settled == [1]


def test_an_interrupt_between_a_journaled_record_and_its_serial_breaks_nothing(
    cluster: BlockingCluster, tmp_path: Path
) -> None:
    # Where nothing defers Ctrl-C (an application's own SIGINT handler, or a second
    # press that escaped pykaf's: ``_ctrl_c``), it can land just after the journal took
    # a record and before the accumulator counted its serial. Before, the store refused
    # every later serial ("record serial N is below the next serial N+1"): each
    # produce() raised ValueError, for good.
    with Producer(cluster.bootstrap, custody="journal", journal_dir=tmp_path, linger=0.0) as p:
        p.produce("t", b"warm")
        assert p.flush(10) == 0
        accumulator: Any = p._accumulator
        store = accumulator.store
        journal = store.try_append_record.__code__
        interrupted: list[int] = []  # the serials journaled, then interrupted

        def interrupt_once_journaled(frame: FrameType, event: str, arg: Any) -> None:
            # The C tail's append (``fast_append``) returning where the entry ends, or
            # the locked path's (without the extension).
            written = (event == "c_return" and getattr(arg, "__self__", None) is store._tail) or (
                event == "return" and frame.f_code is journal
            )
            if written and store.next_serial > accumulator._next_record:
                sys.setprofile(None)
                interrupted.append(accumulator._next_record)
                raise KeyboardInterrupt

        for call in ("produce", "produce_batch of values"):
            sys.setprofile(interrupt_once_journaled)
            try:
                with pytest.raises(KeyboardInterrupt):
                    CALLS[call](p)
            finally:
                sys.setprofile(None)
            p.produce("t", b"after")  # before: ValueError, serials must increase
        assert p.flush(10) == 0
        assert len(interrupted) == 2
        # Withdrawn (their produce() raised): never sent by a restart, never keeping
        # their segment from reclaim.
        pending = {record.serial for record in store.read_pending(0, store.next_serial)}
        assert not pending & set(interrupted)
