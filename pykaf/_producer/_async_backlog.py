"""The backlog of an ``AsyncProducer``: appends that cannot be taken at once (the topic's
metadata not known yet, ``buffer_memory`` or the journal full) wait here, in call order, and
one task takes them as they can be, so a later record never overtakes an earlier one. A
base class of ``AsyncProducer``: its ``produce()`` looks at ``_backlog`` (a deque) on every
call, and a base class keeps that one attribute look, where a separate object would add a
call a record."""

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

    __slots__ = ("args", "done", "report", "started")

    def __init__(
        self,
        args: tuple[Any, ...],
        report: Any,
        done: asyncio.Future[None] | None,
        started: float,
    ) -> None:
        self.args = args  # (topic, value, key, partition, headers, timestamp)
        self.report = report
        self.done = done
        self.started = started


# How often an append waiting for a full journal looks again (reclaim frees it elsewhere).
_JOURNAL_FULL_POLL: Final = 0.01


class AsyncBacklog:
    """The backlog's part of ``AsyncProducer`` (see the module doc)."""

    _backlog: deque[Waiting]
    _backlog_task: asyncio.Task[None] | None
    _closed: bool
    _custody: Custody | None
    _append: Callable[..., None]
    settings: ProducerSettings

    def _start(self) -> ProducerEngine:
        raise NotImplementedError

    def _wait(self, args: tuple[Any, ...], report: Any, done: asyncio.Future[None] | None) -> None:
        if self._closed:
            raise ProducerClosedError("the producer is closed")
        engine = self._start()
        self._backlog.append(Waiting(args, report, done, engine.loop.time()))
        if self._backlog_task is None:
            self._backlog_task = engine.loop.create_task(self._run_backlog())

    async def _run_backlog(self) -> None:
        engine = self._start()
        backlog = self._backlog
        try:
            while backlog:
                item = backlog[0]
                if item.done is not None and item.done.cancelled():
                    backlog.popleft()  # its caller gave up before it was taken
                    continue
                try:
                    await self._append_waiting(engine, item)
                except Exception as exc:
                    self._fail_waiting(item, exc)
                else:
                    if item.done is not None and not item.done.done():
                        item.done.set_result(None)
                backlog.popleft()
        finally:
            self._backlog_task = None

    async def _append_waiting(self, engine: ProducerEngine, item: Waiting) -> None:
        deadline = item.started + self.settings.max_block
        topic, value, key, partition, headers, timestamp = item.args
        while True:
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
