"""The backlog of an ``AsyncProducer``: appends that cannot be taken at once (the topic's
metadata not known yet, ``buffer_memory`` or the journal full) wait here, in call order, and
only the head of the line is taken, so a later record never overtakes an earlier one. A
base class of ``AsyncProducer``: its ``produce()`` looks at ``_backlog`` (a deque) on every
call, and a base class keeps that one attribute look, where a separate object would add a
call a record.

Who takes the head: an awaited call (``produce()``, ``produce_batch()``) takes its own
record, in its own task, once its turn comes (``_take_in_turn``); a ``send()``, which
returns at once, leaves it to the backlog's task. Why the caller: a cancel (``wait_for``
around ``produce()``, a task cancelled) lands at one of the caller's awaits, and at every
one of them its record is not taken yet, so a cancelled call took nothing, as
``asyncio.Queue.get`` and ``Lock.acquire`` promise. When the backlog's task took every
record, a record was sometimes taken in the same turn of the loop as the cancel, or after
it: 45-73 of 3,000 calls under random timeouts raised ``CancelledError`` and their records
were sent and reported all the same (a caller that produced them again sent them twice).
A ``send()`` whose future is cancelled before its record is taken takes nothing either."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from pykaf._errors import BufferFullError, JournalDiskError, JournalFullError, ProducerClosedError
from pykaf._producer._batches import TopicUnknownError
from pykaf._producer._custody import Custody
from pykaf._producer._engine import ProducerEngine
from pykaf._producer._settings import ProducerSettings
from pykaf._producer._when_full import room_wait

__all__ = ["AsyncBacklog", "Waiting"]


class Waiting:
    """An append that waits (for metadata or memory) in the backlog."""

    __slots__ = ("args", "done", "dropped", "report", "started")

    def __init__(
        self,
        args: tuple[Any, ...],
        report: Any,
        done: asyncio.Future[None] | None,
        started: float,
    ) -> None:
        self.args = args  # (topic, value, key, partition, headers, timestamp)
        self.report = report
        # An awaited call's turn: resolved when the append is at the head (its caller
        # takes it); None for a send() (the backlog's task takes it).
        self.done = done
        self.started = started
        self.dropped = False  # close() took it out of the backlog: never taken


def _given_up(item: Waiting) -> bool:
    """A send() whose future was cancelled: not to be taken (if not taken yet)."""
    report = item.report
    return item.done is None and isinstance(report, asyncio.Future) and report.cancelled()


# How often an append waiting for a full journal looks again (reclaim frees it elsewhere).
_JOURNAL_FULL_POLL: Final = 0.01


class AsyncBacklog:
    """The backlog's part of ``AsyncProducer`` (see the module doc)."""

    _backlog: deque[Waiting]
    _backlog_task: asyncio.Task[None] | None
    _backlog_empty: list[asyncio.Future[None]]  # flush() and close() waiting for it
    _closed: bool
    _custody: Custody | None
    _append: Callable[..., None]
    settings: ProducerSettings

    def _start(self) -> ProducerEngine:
        raise NotImplementedError

    def _wait(
        self, args: tuple[Any, ...], report: Any, done: asyncio.Future[None] | None
    ) -> Waiting:
        if self._closed:
            raise ProducerClosedError("the producer is closed")
        engine = self._start()
        item = Waiting(args, report, done, engine.loop.time())
        self._backlog.append(item)
        if len(self._backlog) == 1:
            self._wake_head()
        return item

    async def _take_in_turn(
        self, engine: ProducerEngine, args: tuple[Any, ...], report: Any
    ) -> None:
        """Wait behind the appends before this one, then take it in this task (see the
        module doc); raises as the append does after ``max_block``."""
        turn: asyncio.Future[None] = engine.loop.create_future()
        item = self._wait(args, report, turn)
        try:
            await turn
            await self._append_waiting(engine, item)
        finally:
            self._pass_turn(item)

    def _pass_turn(self, item: Waiting) -> None:
        # Taken, failed or given up. Not at the head: cancelled while others were before
        # it (``_wake_head`` drops it when it comes), or close() took it out.
        backlog = self._backlog
        if backlog and backlog[0] is item:
            backlog.popleft()
            self._wake_head()

    def _wake_head(self) -> None:
        """Hand the head of the backlog to whoever takes it: its caller, or the
        backlog's task for a send(); drop the heads whose caller gave up."""
        backlog = self._backlog
        while backlog:
            item = backlog[0]
            turn = item.done
            if turn is None:
                if not _given_up(item):
                    if self._backlog_task is None:
                        self._backlog_task = self._start().loop.create_task(self._run_backlog())
                    return
            elif not turn.cancelled():
                if not turn.done():
                    turn.set_result(None)
                return
            backlog.popleft()  # cancelled before its turn: not taken
        for waiter in self._backlog_empty:
            if not waiter.done():
                waiter.set_result(None)
        self._backlog_empty.clear()

    async def _run_backlog(self) -> None:
        """Take the send()s at the head of the backlog, in order, until an awaited call's
        turn comes (its caller takes it) or the backlog is empty."""
        engine = self._start()
        backlog = self._backlog
        try:
            while backlog and backlog[0].done is None:
                item = backlog[0]
                try:
                    await self._append_waiting(engine, item)
                except Exception as exc:
                    self._fail_waiting(item, exc)
                if backlog and backlog[0] is item:  # (close() empties it meanwhile)
                    backlog.popleft()
        finally:
            self._backlog_task = None
        self._wake_head()

    async def _backlog_drained(self, deadline: float | None) -> None:
        """Return once the backlog is empty (each append taken, failed or given up), or
        raise ``TimeoutError`` at ``deadline`` (the loop's clock; None: no bound)."""
        loop = self._start().loop
        async with asyncio.timeout_at(deadline):
            while self._backlog:
                waiter: asyncio.Future[None] = loop.create_future()
                self._backlog_empty.append(waiter)
                await waiter

    def _drop_backlog(self) -> int:
        """close(): fail every append still waiting (a produce() waiting raises, a send()
        future fails); returns how many."""
        if self._backlog_task is not None:
            self._backlog_task.cancel()
        failed = 0
        while self._backlog:
            item = self._backlog.popleft()
            item.dropped = True
            failed += 1
            self._fail_waiting(item, ProducerClosedError("the producer was closed"))
        return failed

    async def _append_waiting(self, engine: ProducerEngine, item: Waiting) -> None:
        deadline = item.started + self.settings.max_block
        topic, value, key, partition, headers, timestamp = item.args
        while True:
            if item.dropped:  # close() came while this append waited
                raise ProducerClosedError("the producer was closed")
            if _given_up(item):  # a send() whose future was cancelled meanwhile
                return
            remaining = deadline - engine.loop.time()
            try:
                self._append(
                    topic,
                    value,
                    key,
                    partition=partition,
                    headers=headers,
                    timestamp=timestamp,
                    on_delivery=item.report,
                )
                return
            except TopicUnknownError:
                await engine.ensure_topic(topic, max(remaining, 0.001))
            except BufferFullError as exc:
                wait = room_wait(exc, remaining)
                if wait is None:
                    raise
                await engine.wait_for_space(wait)
            except (JournalFullError, JournalDiskError) as exc:
                if remaining <= 0 or not self._room_may_return(exc):
                    raise
                # Room returns as acknowledged segments are reclaimed (on the journal's
                # thread, which does not signal this loop): look again shortly.
                await asyncio.sleep(min(remaining, _JOURNAL_FULL_POLL))

    def _room_may_return(self, exc: Exception) -> bool:
        # A full journal, or a disk error the journal goes on after (ENOSPC, EDQUOT):
        # reclaim frees room as records are delivered. A stopped journal (EIO, a failed
        # fsync) never takes a record again: no waiting helps.
        custody = self._custody
        return not isinstance(exc, JournalDiskError) or (
            custody is not None and custody.store.failed is None
        )

    @staticmethod
    def _fail_waiting(item: Waiting, exc: BaseException) -> None:
        report = item.report
        if item.done is not None:
            if not item.done.done():
                item.done.set_exception(exc)
        elif isinstance(report, asyncio.Future) and not report.done():
            report.set_exception(exc)
