"""``Consumer``: the blocking twin of ``AsyncConsumer``, on a private loop in a daemon thread.

The fetcher runs on the private loop; records are handed out in the caller's thread,
straight from the shared fetch buffer (``FetchState`` takes a lock), so ``poll()`` and
iteration cost no thread hop unless there is group work to do: waiting for data is a
``threading.Event`` the fetcher sets.

The GIL: while the application works through records, the loop thread needs the GIL for
every socket read, and a thread that waits for it gets it only when the holder blocks or
after the switch interval (5 ms): reading answers would crawl. So every poll and every
iteration chunk starts with ``sleep(0)``, which hands the GIL over if the loop waits for
it (a microsecond when it does not), and the fetcher reads answers in large chunks.

Group callbacks (``on_assigned``, ``on_revoked``, ``on_lost``, commit callbacks) run in the
caller's thread, as in Kafka's Java client: while the caller waits for the loop, it serves
the callbacks the loop hands it, so a callback may call ``commit()`` itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import queue
import re
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from functools import partial
from time import sleep
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from pykaf._client._loop_thread import LoopThread
from pykaf._consumer._assignment import Callback
from pykaf._consumer._async_consumer import AsyncConsumer
from pykaf._consumer._hand_out import CHUNK, HandOut
from pykaf._consumer._health import ConsumerErrorCallback
from pykaf._consumer._offset_commits import Offsets
from pykaf._consumer._partition_state import PartitionState
from pykaf._consumer._records import ConsumerRecord, TopicPartition
from pykaf._consumer._settings import ConsumerSettings
from pykaf._errors import ClientForkedError, ConsumerClosedError, KafkaTimeoutError

__all__ = ["Consumer"]

_T = TypeVar("_T")

logger = logging.getLogger("pykaf.consumer")
# On top of an operation's own bound, before the blocking side gives up on the loop.
_MARGIN: Final = 1.0
# Group upkeep (a hop to the loop) at most this often while records flow.
_GROUP_STEP_INTERVAL: Final = 0.05
# A waiting poll or iteration looks at the group and at close() this often.
_IDLE_WAKE: Final = 0.5
_DONE: Final = object()
_CALLS: Final = object()


class Consumer:
    """Blocking consumer: ``for record in consumer``, ``consumer.poll(timeout)``...; every
    method is the blocking twin of ``AsyncConsumer``'s (see there).

    Not for concurrent use from several threads (as Kafka's consumers), except
    ``close()``, which may be called from any thread. ``on_error(error)`` runs in the
    consumer's loop thread (keep it short; it must not call the consumer).
    """

    def __init__(
        self,
        bootstrap: str | Iterable[str | tuple[str, int]],
        *,
        group_id: str | None = None,
        topics: Iterable[str] | str | re.Pattern[str] | None = None,
        settings: ConsumerSettings | None = None,
        on_error: ConsumerErrorCallback | None = None,
        **options: Any,
    ) -> None:
        # Validated in the caller's thread, before a thread starts.
        self._async = AsyncConsumer(
            bootstrap,
            group_id=group_id,
            topics=topics,
            settings=settings,
            on_error=on_error,
            **options,
        )
        self.settings = self._async.settings
        self.events = self._async.events  # telemetry (pykaf.events): the client's bus
        self.stats = self._async.stats  # telemetry: a Stats snapshot (pykaf.telemetry)
        self.group_id = group_id
        self._event = threading.Event()
        self._async.data_hooks.append(self._event.set)
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._waiting: set[queue.SimpleQueue[object]] = set()
        self._waiting_lock = threading.Lock()
        self._loop = LoopThread(name="pykaf-consumer")
        # A program that never calls close() (or ends while a poll raised) still stops
        # the loop at exit, cancelling its tasks: asyncio prints no "Task was destroyed".
        self._finalizer = weakref.finalize(self, self._loop.stop, _MARGIN)
        self._started = False
        self._next_group_step = 0.0
        self._close_lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._async.assignment())} partitions"
        return f"<Consumer group={self.group_id!r} {state}>"

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Self:
        self._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- running on the loop ------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ConsumerClosedError(
                "this consumer is closed and cannot be used again; create a new Consumer"
            )

    def _run(self, make: Callable[[], Coroutine[Any, Any, _T]], timeout: float | None = None) -> _T:
        """Run ``make()`` on the loop, serving callbacks meanwhile; bounded by ``timeout``
        (default: request_timeout) plus a margin. ``make`` is called on the loop, so a
        Ctrl-C here never leaves a coroutine nobody awaits (``start_on_loop``)."""
        self._check_open()
        if timeout is None:
            timeout = self.settings.client.request_timeout
        if self._loop.in_loop_thread:
            raise RuntimeError("a blocking Consumer was called from its own loop thread")
        future = self._loop.submit(make)  # (raises ClientForkedError in a forked child)
        # This call's own wakeups: its end, and "a callback is waiting" (_CALLS).
        wake: queue.SimpleQueue[object] = queue.SimpleQueue()
        future.add_done_callback(lambda _: wake.put(_DONE))
        with self._waiting_lock:
            self._waiting.add(wake)
        deadline = time.monotonic() + timeout + _MARGIN
        try:
            self._serve_calls()  # any left from before this call
            while True:
                try:
                    item = wake.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    future.cancel()
                    raise KafkaTimeoutError(
                        f"the operation did not finish within {timeout:g}s"
                    ) from None
                if item is _DONE:
                    break
                self._serve_calls()
        finally:
            with self._waiting_lock:
                self._waiting.discard(wake)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            self._check_open()
            raise ConsumerClosedError("the consumer was closed during the call") from None

    def _serve_calls(self) -> None:
        """Run the callbacks the loop handed over, here in the caller's thread."""
        while True:
            try:
                fn, args, reply = self._calls.get_nowait()
            except queue.Empty:
                return
            try:
                result = fn(*args)
            except BaseException as exc:
                if not reply.done():
                    reply.set_exception(exc)  # the loop's side logs it, as any callback's
                    continue
                if not isinstance(exc, Exception):
                    raise  # Ctrl-C in a callback the close cancelled: the caller's still
                logger.warning("a consumer callback raised after the consumer closed", exc_info=exc)
                continue
            # A callback that closed the consumer (or unsubscribed) cancelled its own
            # reply: before, setting it raised InvalidStateError out of the caller's poll.
            if not reply.done():
                reply.set_result(result)

    def _in_caller(self, fn: Callback | None) -> Callback | None:
        """``fn`` wrapped to run in the caller's thread (see the module doc): queued, and
        every blocking call waiting on the loop is told; if none waits, the next one
        (a poll's group step at the latest) runs it."""
        if fn is None:
            return None

        async def call(*args: Any) -> Any:
            reply: concurrent.futures.Future[Any] = concurrent.futures.Future()
            self._calls.put((fn, args, reply))
            with self._waiting_lock:
                waiting = list(self._waiting)
            for wake in waiting:
                wake.put(_CALLS)
            return await asyncio.wrap_future(reply)

        return call

    def _start(self) -> None:
        if not self._started:
            self._run(self._async._start, self._group_bound())
            self._started = True

    def _group_bound(self) -> float:
        s = self.settings
        return max(s.client.request_timeout, s.rebalance_timeout or 0.0) + _MARGIN

    def _ready(self, deadline: float) -> bool:
        """Are the constructor's topics assigned or subscribed? Waits for it until
        ``deadline`` (``time.monotonic``), a little at a time (close() may come)."""
        a = self._async
        if not a._startup.pending:
            return True
        wait = min(_IDLE_WAKE, max(0.0, deadline - time.monotonic()))
        return self._run(partial(a._ready, wait), wait)

    def _group_step(self, force: bool, deadline: float = math.inf) -> None:
        """The group upkeep, on the loop: waits for a join up to ``deadline``
        (``time.monotonic``), serving the callbacks meanwhile."""
        a = self._async
        if a.group_id is None or not a.has_membership:
            return
        now = time.monotonic()
        if force or now >= self._next_group_step:
            self._next_group_step = now + _GROUP_STEP_INTERVAL
            wait = None if deadline == math.inf else max(0.0, deadline - now)
            self._run(partial(a.group_step, wait), self._group_bound())

    # -- assignment ---------------------------------------------------------------------

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        self._check_open()
        self._start()
        self._run(partial(self._async.assign, list(partitions)))

    def assignment(self) -> set[TopicPartition]:
        return self._async.assignment()

    def subscribe(
        self,
        topics: Iterable[str] | str | re.Pattern[str],
        *,
        on_assigned: Callback | None = None,
        on_revoked: Callback | None = None,
        on_lost: Callback | None = None,
    ) -> None:
        """Join the group for ``topics``; callbacks run in this thread, inside ``poll``
        (or the iteration step) that notices the change."""
        self._check_open()
        self._start()
        if not isinstance(topics, str | re.Pattern):
            topics = list(topics)
        make = partial(
            self._async.subscribe,
            topics,
            on_assigned=self._in_caller(on_assigned),
            on_revoked=self._in_caller(on_revoked),
            on_lost=self._in_caller(on_lost),
        )
        self._run(make, self._group_bound())

    def unsubscribe(self) -> None:
        self._check_open()
        self._run(self._async.unsubscribe, self._group_bound())

    # -- reading ------------------------------------------------------------------------

    def poll(
        self, timeout: float | None = None, max_records: int | None = None
    ) -> list[ConsumerRecord]:
        """Blocking ``AsyncConsumer.poll``: a list of records, ``[]`` if none in time."""
        self._check_open()
        self._start()
        a = self._async
        limit = self.settings.max_poll_records if max_records is None else max_records
        if type(limit) is not int or limit < 1:
            raise ValueError(f"max_records must be an int >= 1, not {max_records!r}")
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be >= 0 seconds or None, not {timeout!r}")
        a.handed.abandon()
        a.look_for_end_again()
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        state, event = a._state, self._event
        stop_at_end = self.settings.stop_at_end
        force = True
        while True:
            if self._ready(deadline):
                self._group_step(force, deadline)
                force = False
            sleep(0)  # hand the GIL to the loop thread if it waits for it (module doc)
            event.clear()
            records = state.take(limit)
            if records:
                return records
            a._raise_failure()
            if stop_at_end and state.all_at_end():
                return []
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            event.wait(min(remaining, _IDLE_WAKE))

    def __iter__(self) -> Iterator[ConsumerRecord]:
        return self._iterate()

    def _iterate(self) -> Iterator[ConsumerRecord]:
        self._check_open()
        self._start()
        a = self._async
        handed = a.handed
        handed.abandon()
        state, event = a._state, self._event
        stop_at_end = self.settings.stop_at_end
        if stop_at_end:
            state.restart_end_detection()
            a._fetcher.wake()
        take_chunk = state.take_chunk
        chunk: HandOut[PartitionState] | None = None
        try:
            while True:
                if self._ready(math.inf):
                    self._group_step(False)
                # Hand the GIL to the loop thread if it waits for it (module doc).
                sleep(0)
                event.clear()
                got = take_chunk(CHUNK)
                if got is None:
                    a._raise_failure()
                    if stop_at_end and state.all_at_end():
                        return
                    event.wait(_IDLE_WAKE)
                    continue
                chunk = handed.current = HandOut(*got)
                yield from chunk.iterator
                if handed.current is chunk:
                    handed.current = None
        finally:
            # Left mid-chunk (break, error): what was not handed is fetched again.
            if not a.closed and chunk is not None and handed.current is chunk:
                handed.abandon()

    # -- positions ----------------------------------------------------------------------

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._run(partial(self._async.seek, tp, offset))

    def seek_to_beginning(self, *tps: TopicPartition) -> None:
        self._run(partial(self._async.seek_to_beginning, *tps))

    def seek_to_end(self, *tps: TopicPartition) -> None:
        self._run(partial(self._async.seek_to_end, *tps))

    def seek_to_timestamp(
        self, tp_or_mapping: TopicPartition | Mapping[TopicPartition, int], ts_ms: int | None = None
    ) -> None:
        if not isinstance(tp_or_mapping, TopicPartition):
            tp_or_mapping = dict(tp_or_mapping)
        self._run(partial(self._async.seek_to_timestamp, tp_or_mapping, ts_ms))

    def position(self, tp: TopicPartition) -> int:
        return self._run(partial(self._async.position, tp))

    def pause(self, *tps: TopicPartition) -> None:
        self._check_open()
        self._async.pause(*tps)

    def resume(self, *tps: TopicPartition) -> None:
        self._check_open()
        self._async.resume(*tps)

    def paused(self) -> set[TopicPartition]:
        return self._async.paused()

    # -- offsets ------------------------------------------------------------------------

    def beginning_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._run(partial(self._async.beginning_offsets, list(tps)))

    def end_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return self._run(partial(self._async.end_offsets, list(tps)))

    def earliest_offset(self, tp: TopicPartition) -> int:
        return self._run(partial(self._async.earliest_offset, tp))

    def latest_offset(self, tp: TopicPartition) -> int:
        return self._run(partial(self._async.latest_offset, tp))

    def offsets_for_times(
        self, timestamps: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, tuple[int, int] | None]:
        return self._run(partial(self._async.offsets_for_times, dict(timestamps)))

    # -- commits ------------------------------------------------------------------------

    def commit(self, offsets: Offsets | None = None) -> None:
        self._run(partial(self._async.commit, None if offsets is None else dict(offsets)))

    def commit_async(
        self,
        offsets: Offsets | None = None,
        callback: Callable[[Any, BaseException | None], Any] | None = None,
    ) -> None:
        """Start a commit; ``callback(offsets, error)`` runs in this thread during a later
        call (poll, iteration, commit...)."""
        make = partial(
            self._async.commit_async,
            None if offsets is None else dict(offsets),
            self._in_caller(callback),
        )
        self._run(make)

    def committed(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        return self._run(partial(self._async.committed, list(tps)))

    # -- closing ------------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Blocking ``AsyncConsumer.close``: final auto-commit, leave the group, close
        connections, stop the loop; bounded (see there for ``timeout``)."""
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
        ):
            raise ValueError(f"close timeout must be > 0 seconds or None, not {timeout!r}")
        with self._close_lock:
            if self._closed:
                return
            try:
                close_timeout = self.settings.client.close_timeout
                step = close_timeout if timeout is None else timeout
                # The commit, the leaving, then the connections (see AsyncConsumer.close).
                bound = 2 * step + close_timeout + _MARGIN
                # A loop too stuck to close in time is abandoned: close() returns.
                # A copy in a forked child (ClientForkedError) has nothing of its own to close.
                with contextlib.suppress(KafkaTimeoutError, ConsumerClosedError, ClientForkedError):
                    self._run(partial(self._async.close, timeout), bound)
            finally:
                self._closed = True
                self._event.set()
                self._finalizer()  # stops the loop
