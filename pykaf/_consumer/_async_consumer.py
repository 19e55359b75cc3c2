"""``AsyncConsumer``: records from Kafka, by assignment or as a group member, with asyncio.

The fetcher (``_fetcher``) keeps fetches in flight ahead of the application; records are
decoded when handed out (``_consumer._fetch_state``). Two ways to read: ``poll()``/``getmany()``
(a list, the batch read, fastest) and ``async for`` (one record at a time). With
``stop_at_end=True`` iteration ends, and poll returns ``[]`` at once, when every assigned
partition reached the end of its log as of when the consumer got there.

Iteration hands records out chunk by chunk (``_consumer._hand_out``): commits and positions
never run ahead of what the application received, with no per-record bookkeeping.

Here: the consumer's life (start, close) and its read path (poll, iteration). Every other
public method is a line handing the work to a helper object, one per concern: assignment
and group membership (``_assignment``; the group itself is ``group._driver``), seeking and
log bounds (``_positions``), commits (``_offset_commits``). Composition, not mixins: what
each helper touches is visible in its constructor, and this class stays the one place to
read the API from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Final, Self

from pykaf._client._async_client import AsyncClient
from pykaf._client._loop_bound import elsewhere
from pykaf._client._validate import settings_or_options
from pykaf._consumer._assignment import AssignedPartitions, Callback, parse_subscription
from pykaf._consumer._fetch_state import EARLIEST, LATEST, FetchState
from pykaf._consumer._fetcher import Fetcher
from pykaf._consumer._hand_out import CHUNK, HandOut, HandOutTracker
from pykaf._consumer._health import ConsumerErrorCallback, Health, check_on_error
from pykaf._consumer._offset_commits import OffsetCommits, Offsets
from pykaf._consumer._partition_state import PartitionState
from pykaf._consumer._positions import Positions
from pykaf._consumer._records import ConsumerRecord, TopicPartition
from pykaf._consumer._settings import ConsumerSettings
from pykaf._consumer._start import InitialTopics
from pykaf._consumer.group._health import close_group
from pykaf._errors import (
    ClientClosedError,
    CommitFailedError,
    ConsumerClosedError,
    ConsumerStateError,
    PykafError,
)

__all__ = ["AsyncConsumer"]

logger = logging.getLogger("pykaf.consumer")
_CLOSED_DURING: Final = "the consumer was closed during the call"


class AsyncConsumer:
    """Reads records from Kafka (see the module doc).

    ``AsyncConsumer(bootstrap, group_id=None, topics=None, on_error=None, **settings)``:
    with ``topics`` and no group, every partition of those topics is assigned on first
    use; with a ``group_id``, ``topics`` (names or a pattern) is subscribed. Settings are
    ``ConsumerSettings`` names plus any ``ClientSettings`` name.

    ``on_error(error)`` hears of what fails in the background while ``poll`` keeps
    returning within its timeout: ``ConsumerStartError`` (the topics could not be looked
    up yet), ``GroupJoinError`` (the group could not be joined within its rebalance
    timeout), ``FinalCommitError`` (``close`` could not commit); called in the loop's
    thread. Each failing episode is also logged once at WARNING ("pykaf.consumer").

    Telemetry (``on_event=``, or ``events.subscribe``; ``pykaf.events``): besides the
    client's connection and request events, ``GroupJoined`` and ``GroupRebalanced`` per
    join, ``GroupLost`` (also logged at ERROR), ``CommitDone`` / ``CommitFailed`` per
    commit, ``FetchDone`` per fetch answer (records, bytes, lag per partition); never per
    record, and nothing is built while nobody listens.
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
        self.settings = settings_or_options(settings, options, ConsumerSettings.from_options)
        self._health = Health(logger, check_on_error(on_error))
        if group_id is not None and (not isinstance(group_id, str) or not group_id):
            raise ValueError(f"group_id must be a non-empty str or None, not {group_id!r}")
        self.group_id = group_id
        initial = None if topics is None else parse_subscription(topics)
        if isinstance(initial, re.Pattern) and group_id is None:
            raise ConsumerStateError("a topic pattern needs a group_id (subscribe is for groups)")
        self._client = client = AsyncClient(bootstrap, settings=self.settings.client)
        client.kind = ("AsyncConsumer", "pykaf.Consumer")
        self._loop: asyncio.AbstractEventLoop | None = None  # its own (``_here``)
        self.events = client.events  # telemetry (pykaf.events): the client's bus
        self.stats = client.stats  # telemetry: a Stats snapshot (pykaf.telemetry)
        s = self.settings
        self._state = state = FetchState(
            max_partition_bytes=s.max_partition_fetch_bytes,
            buffer_max_bytes=s.buffer_max_bytes,
            read_committed=s.read_committed,
            verify_crc=s.check_crcs,
            reset_policy=s.auto_offset_reset,
            retry_backoff=s.client.retry_backoff,
            max_decompressed_batch_bytes=s.max_decompressed_batch_bytes,
        )
        self._fetcher = fetcher = Fetcher(
            client, s, state, on_data=self._data_arrived, health=self._health
        )
        # Looks up the topics given to the constructor, in the background: a poll waits
        # for it only up to its own timeout.
        self._startup = InitialTopics(
            initial,
            self._apply_initial,
            health=self._health,
            retry_backoff=s.client.retry_backoff,
            on_done=self._data_arrived,
        )
        self._data: asyncio.Event | None = None
        self.data_hooks: list[Callable[[], None]] = []  # the blocking twin's wakeup
        # The chunk being handed out, shared with the blocking twin's iteration.
        self.handed: HandOutTracker[PartitionState] = HandOutTracker(state, fetcher.wake)
        handed = self.handed
        self._assignment = assignment = AssignedPartitions(
            client, s, state, fetcher, handed, group_id=group_id, health=self._health
        )
        self._positions = Positions(
            client,
            s,
            state,
            fetcher,
            assignment,
            handed,
            check_open=self._check_open,
            start=self._start,
        )
        self._commits = OffsetCommits(
            s,
            assignment,
            handed,
            group_id=group_id,
            check_open=self._check_open,
            health=self._health,
        )
        self._started = False
        self._handed_since_turn = 0  # records poll() returned since it gave the loop a turn
        self._closed = False
        self._closing = False  # close() began (its group part first, then _closed)
        self._teardown: asyncio.Future[None] | None = None  # close()'s last part, running

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._state.partitions)} partitions"
        return f"<AsyncConsumer group={self.group_id!r} {state}>"

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> Self:
        await self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- starting -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ConsumerClosedError(
                "this consumer is closed and cannot be used again; create a new consumer"
            )

    def _here(self) -> None:
        """Refuse a call outside the consumer's event loop, the one of its first call
        (``_loop_bound``): its positions, buffers and tasks are that loop's alone."""
        loop = asyncio._get_running_loop()
        if loop is not self._loop:
            if self._loop is not None or loop is None:
                raise elsewhere("AsyncConsumer", "pykaf.Consumer", self._loop)
            self._loop = loop

    @contextlib.contextmanager
    def _closed_during(self) -> Iterator[None]:
        """A call that close() (another task or thread) ends midway raises the consumer's
        own ``ConsumerClosedError``, whatever layer noticed: the group's membership and
        the client said ``ClientClosedError``, which ``except ConsumerClosedError`` misses
        (and a poll waiting for a join cut short raised AttributeError)."""
        self._here()
        try:
            yield
        except (ClientClosedError, CommitFailedError) as exc:
            if self._closed_meanwhile(exc):
                raise ConsumerClosedError(_CLOSED_DURING) from exc
            raise

    def _closed_meanwhile(self, exc: PykafError) -> bool:
        """Whether ``exc`` came because close() began meanwhile. (A commit the group
        refused as the member left it said "rebalancing: poll, then commit again", which
        a closed consumer cannot.)"""
        return self._closing and not isinstance(exc, ConsumerClosedError)

    async def _start(self) -> None:
        self._check_open()
        self._here()
        if self._started:
            return
        self._started = True
        # Ctrl-C on a loop of the main thread waits for the loop's wait (``_ctrl_c``).
        self._client.hold_ctrl_c()
        self._data = asyncio.Event()
        self._fetcher.start()
        self._commits.start_clock(asyncio.get_running_loop().time())
        self._startup.begin()

    async def _apply_initial(self, topics: list[str] | re.Pattern[str]) -> None:
        if self.group_id is not None:
            await self._assignment.subscribe(topics)
        else:
            assert isinstance(topics, list)
            await self._assignment.assign_topics(topics)

    async def _ready(self, timeout: float | None, *, wait_retries: bool = True) -> bool:
        """Are the constructor's topics assigned or subscribed (waiting up to ``timeout``)?"""
        return await self._startup.ready(timeout, wait_retries=wait_retries)

    def _data_arrived(self) -> None:
        if self._data is not None:
            self._data.set()
        for hook in self.data_hooks:
            hook()

    # -- assignment and groups (``_assignment``) ----------------------------------------

    async def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Read exactly ``partitions`` (replacing any earlier assignment). New ones start
        at their committed offset (with a group_id) or per ``auto_offset_reset``."""
        await self._start()
        await self._startup.settle()
        await self._assignment.assign(partitions)

    def assignment(self) -> set[TopicPartition]:
        """The partitions this consumer reads now."""
        return set(self._state.partitions)

    async def subscribe(
        self,
        topics: Iterable[str] | str | re.Pattern[str],
        *,
        on_assigned: Callback | None = None,
        on_revoked: Callback | None = None,
        on_lost: Callback | None = None,
    ) -> None:
        """Join the group for ``topics`` (names or a pattern); partitions come and go with
        rebalances. Callbacks get a set of TopicPartition (sync or async functions);
        ``on_revoked`` runs before partitions are taken away (commit there)."""
        subscription = parse_subscription(topics)
        await self._start()
        await self._startup.settle()
        await self._assignment.subscribe(subscription, on_assigned, on_revoked, on_lost)

    async def unsubscribe(self) -> None:
        """Give the partitions up (``on_revoked``; auto-commit first) and leave the group."""
        self._check_open()
        self._here()
        await self._startup.drop()  # the constructor's topics, if not subscribed yet
        await self._assignment.unsubscribe()

    @property
    def has_membership(self) -> bool:
        """Is there a group membership (subscribed, or made for commits) to keep up?"""
        return self._assignment.membership is not None

    async def group_step(self, timeout: float | None = None) -> None:
        """Before handing records out: keep membership current (waiting up to ``timeout``
        for a join), apply what changed, and auto-commit when due (in the background,
        what was handed out)."""
        if self._assignment.membership is None:
            return
        await self._assignment.follow_group(timeout)
        self._commits.auto_commit_if_due()

    # -- handing records out ------------------------------------------------------------

    def handed_positions(self) -> dict[TopicPartition, int]:
        """The position of every positioned partition after what was handed out."""
        return self.handed.positions()

    async def poll(
        self, timeout: float | None = None, max_records: int | None = None
    ) -> list[ConsumerRecord]:
        """Records available within ``timeout`` seconds (None: wait for some), at most
        ``max_records`` (default ``max_poll_records``); ``[]`` when none came in time, or
        at once at the end of the log with ``stop_at_end``."""
        await self._start()
        limit = self.settings.max_poll_records if max_records is None else max_records
        if type(limit) is not int or limit < 1:
            raise ValueError(f"max_records must be an int >= 1, not {max_records!r}")
        if timeout is not None and not timeout >= 0:
            raise ValueError(f"timeout must be >= 0 seconds or None, not {timeout!r}")
        self.handed.abandon()
        self.look_for_end_again()
        if self._handed_since_turn >= CHUNK:
            # Buffered records return without awaiting anything: a loop of poll() calls
            # would hold the loop (its fetches, other tasks, Ctrl-C) until the buffer
            # ran dry. A turn first, once per CHUNK records (a cancel here takes none).
            self._handed_since_turn = 0
            await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        assert self._data is not None
        data = self._data
        while True:
            data.clear()
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            # try/except, not ``_closed_during``: a context manager per poll costs a
            # generator; a try costs nothing until it raises.
            try:
                if await self._ready(remaining):
                    await self.group_step(
                        None if deadline is None else max(0.0, deadline - loop.time())
                    )
            except (ClientClosedError, CommitFailedError) as exc:
                if self._closed_meanwhile(exc):
                    raise ConsumerClosedError(_CLOSED_DURING) from exc
                raise
            data.clear()
            # Again after the awaits: an ``async for`` of this consumer in another task
            # may have taken a chunk meanwhile. Cut now, before this poll takes later
            # records of its partition: cut after, the re-fetch from the first record it
            # had not handed handed those later records twice (168 of 20,000).
            self.handed.abandon()
            records = self._state.take(limit)
            if records:
                self._handed_since_turn += len(records)
                return records
            self._raise_failure()
            if self.settings.stop_at_end and self._state.all_at_end():
                return []
            if deadline is None:
                await data.wait()
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            try:
                async with asyncio.timeout(remaining):
                    await data.wait()
            except TimeoutError:
                return []

    getmany = poll

    def look_for_end_again(self) -> None:
        """stop_at_end: a poll after the end was reached looks for it again (new records
        may have come), so the next ``[]`` is as of now."""
        if self.settings.stop_at_end and self._state.all_at_end():
            self._state.restart_end_detection()
            self._fetcher.wake()

    def _raise_failure(self) -> None:
        self._check_open()
        failure = self._fetcher.failure
        if failure is not None:
            raise PykafError(f"the fetcher stopped: {failure!r}") from failure

    def __aiter__(self) -> AsyncIterator[ConsumerRecord]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ConsumerRecord]:
        await self._start()
        handed = self.handed
        handed.abandon()
        state = self._state
        stop_at_end = self.settings.stop_at_end
        if stop_at_end:
            state.restart_end_detection()
            self._fetcher.wake()
        assert self._data is not None
        data = self._data
        chunk: HandOut[PartitionState] | None = None
        try:
            while True:
                data.clear()
                if await self._ready(None):
                    await self.group_step()
                data.clear()
                # Another iteration's chunk, mid-way, is cut first (as poll() does): else
                # this one's replaced it untracked, and the position went past its records
                # not handed yet.
                handed.abandon()
                got = state.take_chunk(CHUNK)
                if got is None:
                    self._raise_failure()
                    if stop_at_end and state.all_at_end():
                        return
                    await data.wait()
                    continue
                chunk = handed.current = HandOut(*got)
                for record in chunk.iterator:
                    yield record
                if handed.current is chunk:
                    handed.current = None
                # The loop's turn between chunks, as poll() gives it: from the buffer the
                # iteration awaits nothing, and held the loop until the buffer ran dry.
                await asyncio.sleep(0)
        finally:
            # Left mid-chunk (break, error): what was not handed is fetched again. Only
            # this iteration's own chunk: an async generator is finalised late, maybe
            # after another iteration began.
            if not self._closed and chunk is not None and handed.current is chunk:
                handed.abandon()

    # -- positions (``_positions``) -----------------------------------------------------

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        """Read ``tp`` from ``offset`` next. Past the end of the log, the next fetch meets
        OFFSET_OUT_OF_RANGE and ``auto_offset_reset`` decides (as in Kafka)."""
        self._here()
        self._positions.seek(tp, offset)

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        """Read from the earliest offset (of ``tps``; none given: every assigned one)."""
        self._here()
        self._positions.reset(tps, EARLIEST)

    async def seek_to_end(self, *tps: TopicPartition) -> None:
        """Read only what is written from now on (of ``tps``; none given: all)."""
        self._here()
        self._positions.reset(tps, LATEST)

    async def seek_to_timestamp(
        self, tp_or_mapping: TopicPartition | Mapping[TopicPartition, int], ts_ms: int | None = None
    ) -> None:
        """Read from the first record at or after ``ts_ms`` (ms since the epoch); a time
        after every record means the end of the log."""
        with self._closed_during():
            await self._positions.seek_to_timestamp(tp_or_mapping, ts_ms)

    async def position(self, tp: TopicPartition) -> int:
        """The offset of the next record this consumer will hand out for ``tp`` (waits,
        up to request_timeout, for a position still being looked up)."""
        with self._closed_during():
            return await self._positions.position(tp)

    def pause(self, *tps: TopicPartition) -> None:
        """Stop handing out (and fetching) ``tps`` until ``resume``; their buffered
        records are kept. Plain method: no I/O."""
        self._positions.pause(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self._positions.resume(tps)

    def paused(self) -> set[TopicPartition]:
        return self._positions.paused()

    async def beginning_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        with self._closed_during():
            return await self._positions.beginning_offsets(tps)

    async def end_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The offset after the last record (the last stable one for read_committed)."""
        with self._closed_during():
            return await self._positions.end_offsets(tps)

    async def earliest_offset(self, tp: TopicPartition) -> int:
        return (await self.beginning_offsets([tp]))[tp]

    async def latest_offset(self, tp: TopicPartition) -> int:
        return (await self.end_offsets([tp]))[tp]

    async def offsets_for_times(
        self, timestamps: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, tuple[int, int] | None]:
        """The first record at or after each timestamp (ms): ``(offset, timestamp)``, or
        None when every record is older."""
        with self._closed_during():
            return await self._positions.offsets_for_times(timestamps)

    # -- commits (``_offset_commits``) --------------------------------------------------

    async def commit(self, offsets: Offsets | None = None) -> None:
        """Commit ``offsets`` (the next offset to read per partition), or the positions
        after what was handed out; waits for the coordinator's answer."""
        with self._closed_during():
            await self._commits.commit(offsets)

    async def commit_async(
        self, offsets: Offsets | None = None, callback: Callback | None = None
    ) -> None:
        """Start a commit and return; ``callback(offsets, error_or_None)`` when done."""
        self._here()
        self._commits.commit_async(offsets, callback)

    async def committed(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        """The committed offsets of ``tps`` (None: nothing committed)."""
        with self._closed_during():
            return await self._commits.committed(tps)

    # -- closing ------------------------------------------------------------------------

    async def close(self, timeout: float | None = None) -> None:
        """Final auto-commit, leave the group, stop fetching, close connections. The
        commit and the leaving are each bounded by ``timeout`` (default: the client's
        ``close_timeout``), the connections by ``close_timeout``; a final commit that
        could not be made is logged at WARNING and given to ``on_error``
        (``FinalCommitError``)."""
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
        ):
            raise ValueError(f"close timeout must be > 0 seconds or None, not {timeout!r}")
        if self._closed:
            if self._teardown is not None:  # a close() that was cancelled: wait for its end
                await asyncio.shield(self._teardown)
            return
        self._here()
        bound = self.settings.client.close_timeout if timeout is None else float(timeout)
        membership = self._assignment.membership
        self._closing = True
        try:
            if membership is not None:
                await close_group(
                    membership,
                    self._health,
                    offsets=self._commits.final_offsets(),
                    commits_in_flight=self._commits.in_flight,
                    bound=bound,
                )
        finally:
            self._closed = True
            self.handed.current = None
            # The rest runs to its end even when this call is cancelled (``wait_for``
            # around close()), in a task of its own: a cancel that landed in one of its
            # awaits skipped the others, and the connections stayed open for good (a
            # second close() returned at once: 4 of 52 cancelled closes in a sweep).
            self._teardown = asyncio.ensure_future(self._tear_down())
            self._teardown.add_done_callback(_retrieved)
            await asyncio.shield(self._teardown)

    async def _tear_down(self) -> None:
        try:
            await self._stop_tasks()
        finally:
            try:
                await self._fetcher.close()
            finally:
                await self._client.close()
                self._data_arrived()  # wake whoever waits, so they see the close

    async def _stop_tasks(self) -> None:
        """Cancel what still runs in the background and collect the outcomes: asyncio
        must not print a pending task or an exception nobody retrieved."""
        await self._startup.stop()
        await self._commits.stop()
        membership = self._assignment.membership
        if membership is not None and not membership.closed:
            await membership.close(commit_first=False)


def _retrieved(task: asyncio.Future[None]) -> None:
    """A teardown nobody awaits any more (its close() was cancelled): its error is
    logged here, not as "exception was never retrieved"."""
    if not task.cancelled() and task.exception() is not None:
        logger.warning("closing the consumer failed: %r", task.exception())
