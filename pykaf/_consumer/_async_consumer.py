"""``AsyncConsumer``: records from Kafka, by assignment or as a group member, with asyncio.

The fetcher (``_fetcher``) keeps fetches in flight ahead of the application; records are
decoded when handed out (``_consumer._fetch_state``). Two ways to read: ``poll()``/``getmany()``
(a list, the batch read, fastest) and ``async for`` (one record at a time). With
``stop_at_end=True`` iteration ends, and poll returns ``[]`` at once, when every assigned
partition reached the end of its log as of when the consumer got there.

Iteration hands records out chunk by chunk (``_consumer._hand_out``): commits and positions
never run ahead of what the application received, with no per-record bookkeeping.

With a ``group_id``, membership is ``_consumer.group._driver.GroupMembership`` (joins, heartbeats,
assignors); this module applies its assignment changes, positions new partitions at their
committed offsets, and auto-commits what was handed out.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Final, Self

from pykaf._client._async_client import AsyncClient
from pykaf._client._validate import settings_or_options
from pykaf._consumer._fetch_state import EARLIEST, LATEST, FetchState
from pykaf._consumer._fetcher import Fetcher
from pykaf._consumer._hand_out import CHUNK, HandOut
from pykaf._consumer._health import ConsumerErrorCallback, Health, check_on_error
from pykaf._consumer._offsets import lookup_offsets
from pykaf._consumer._partition_state import PartitionState
from pykaf._consumer._records import ConsumerRecord, OffsetAndMetadata, TopicPartition
from pykaf._consumer._settings import ConsumerSettings
from pykaf._consumer._start import InitialTopics
from pykaf._consumer.group._health import close_group, ensure_active_reported
from pykaf._errors import (
    ConsumerClosedError,
    ConsumerStateError,
    InvalidRegexError,
    KafkaTimeoutError,
    NoOffsetError,
    NotAssignedError,
    PykafError,
)
from pykaf._kafka_errors import UnknownTopicOrPartitionError

__all__ = ["AsyncConsumer", "Offsets", "parse_subscription"]

_POSITION_NAP: Final = 0.005

logger = logging.getLogger("pykaf.consumer")

Offsets = Mapping[TopicPartition, int | OffsetAndMetadata]
Callback = Callable[..., Any]


def parse_subscription(topics: object) -> list[str] | re.Pattern[str]:
    """A list of topic names, or a pattern (``re.Pattern`` or a str starting with "^")."""
    if isinstance(topics, re.Pattern):
        return topics
    if isinstance(topics, str):
        if topics.startswith("^"):
            try:
                return re.compile(topics)
            except re.error as exc:
                raise InvalidRegexError(f"invalid topic pattern {topics!r}: {exc}") from None
        return [topics]
    if isinstance(topics, Iterable):
        names = list(topics)
        if names and all(isinstance(t, str) and t for t in names):
            return names
    raise ValueError(
        f"subscribe to a list of topic names or a pattern (re.compile(...) or a str starting"
        f" with '^'), not {topics!r}"
    )


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
        self._initial = None if topics is None else parse_subscription(topics)
        if isinstance(self._initial, re.Pattern) and group_id is None:
            raise ConsumerStateError("a topic pattern needs a group_id (subscribe is for groups)")
        self._client = AsyncClient(bootstrap, settings=self.settings.client)
        s = self.settings
        self._state = FetchState(
            max_partition_bytes=s.max_partition_fetch_bytes,
            buffer_max_bytes=s.buffer_max_bytes,
            read_committed=s.read_committed,
            verify_crc=s.check_crcs,
            reset_policy=s.auto_offset_reset,
            retry_backoff=s.client.retry_backoff,
            max_decompressed_batch_bytes=s.max_decompressed_batch_bytes,
        )
        self._fetcher = Fetcher(
            self._client, s, self._state, on_data=self._data_arrived, health=self._health
        )
        # Looks up the topics given to the constructor, in the background: a poll waits
        # for it only up to its own timeout.
        self._startup = InitialTopics(
            self._apply_initial,
            health=self._health,
            retry_backoff=s.client.retry_backoff,
            on_done=self._data_arrived,
        )
        self._data: asyncio.Event | None = None
        self.data_hooks: list[Callable[[], None]] = []  # the blocking twin's wakeup
        self._membership: Any = None
        self._subscribed = False
        self._assigned_manually = False
        self._auto_commit = s.auto_commit(group_id)
        self._next_auto_commit = 0.0
        self._commit_tasks: set[asyncio.Task[None]] = set()
        self.current: HandOut[PartitionState] | None = None
        # Assigned, not positioned yet (committed offsets to read).
        self._unpositioned: set[TopicPartition] = set()
        self._started = False
        self._closed = False

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

    async def _start(self) -> None:
        self._check_open()
        if self._started:
            return
        self._started = True
        self._data = asyncio.Event()
        self._fetcher.start()
        self._next_auto_commit = asyncio.get_running_loop().time() + (
            self.settings.auto_commit_interval
        )
        if self._initial is not None:
            self._startup.launch()

    async def _apply_initial(self) -> None:
        initial = self._initial
        assert initial is not None
        if self.group_id is not None:
            await self._subscribe(initial)
        else:
            assert isinstance(initial, list)
            meta = await self._topics_metadata(initial)
            await self._assign(
                [TopicPartition(t, p.partition) for t in initial for p in meta[t].partitions]
            )
        self._initial = None

    async def _settle_startup(self) -> None:
        """Before an explicit assign/subscribe: let the constructor's topics be applied
        (an unknown topic raises), or, brokers out of reach, drop them: the call made
        now supersedes them."""
        if not await self._ready(None, wait_retries=False):
            await self._startup.stop()
            self._initial = None

    async def _ready(self, timeout: float | None, *, wait_retries: bool = True) -> bool:
        """Are the constructor's topics assigned or subscribed (waiting up to ``timeout``)?"""
        return await self._startup.ready(timeout, wait_retries=wait_retries)

    def _data_arrived(self) -> None:
        if self._data is not None:
            self._data.set()
        for hook in self.data_hooks:
            hook()

    # -- assignment ---------------------------------------------------------------------

    async def _topics_metadata(self, topics: Iterable[str]) -> dict[str, Any]:
        names = sorted(set(topics))
        view = await self._client.metadata(names)
        out = {}
        for name in names:
            info = view.topics.get(name)
            if info is None or info.error_code or not info.partitions:
                raise UnknownTopicOrPartitionError(
                    f"(topic {name!r} does not exist: check the name, or create the topic first)"
                )
            out[name] = info
        return out

    async def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Read exactly ``partitions`` (replacing any earlier assignment). New ones start
        at their committed offset (with a group_id) or per ``auto_offset_reset``."""
        await self._start()
        await self._settle_startup()
        await self._assign(partitions)

    async def _assign(self, partitions: Iterable[TopicPartition]) -> None:
        if self._subscribed:
            raise ConsumerStateError("this consumer subscribed; unsubscribe() before assign()")
        tps = list(partitions)
        for tp in tps:
            if not isinstance(tp, TopicPartition):
                raise TypeError(f"assign takes TopicPartition(topic, partition), not {tp!r}")
        meta = await self._topics_metadata(tp.topic for tp in tps)
        for tp in tps:
            count = len(meta[tp.topic].partitions)
            if tp.partition >= count:
                raise UnknownTopicOrPartitionError(
                    f"(partition {tp} does not exist: topic {tp.topic!r} has {count}"
                    f" partition(s), 0..{count - 1})"
                )
        self._abandon_current()
        self._unpositioned |= {tp for tp in tps if tp not in self._state.partitions}
        self._state.assign(tps)
        self._assigned_manually = bool(tps)
        await self._position_new()

    def assignment(self) -> set[TopicPartition]:
        """The partitions this consumer reads now."""
        return set(self._state.partitions)

    async def _position_new(self) -> None:
        """Start new partitions at their committed offsets, or per auto_offset_reset. If
        the committed offsets cannot be read now, the next poll tries again."""
        self._unpositioned &= set(self._state.partitions)
        tps = sorted(self._unpositioned)
        if not tps:
            return
        committed: Mapping[TopicPartition, OffsetAndMetadata | None] = {}
        if self.group_id is not None:
            committed = await self._group().committed(tps)
        self._unpositioned.difference_update(tps)
        for tp in tps:
            if tp not in self._state.partitions:
                continue
            found = committed.get(tp)
            if found is not None:
                self._state.seek(tp, found.offset, found.leader_epoch)
            elif self.settings.auto_offset_reset == "error":
                with self._state.lock:
                    self._state.partitions[tp].error = NoOffsetError(
                        f"{tp} has no committed offset and auto_offset_reset is 'error':"
                        " seek() to an offset first"
                    )
                    self._state.partitions[tp].retry_at = float("inf")
            else:
                self._state.request_reset(
                    tp, EARLIEST if self.settings.auto_offset_reset == "earliest" else LATEST
                )
        self._fetcher.wake()

    # -- groups -------------------------------------------------------------------------

    def _group(self) -> Any:
        if self.group_id is None:
            raise ConsumerStateError(
                "this needs a consumer group: create the consumer with group_id=..."
            )
        if self._membership is None:
            from pykaf._consumer.group._driver import GroupMembership  # noqa: PLC0415  (optional seam)

            self._membership = GroupMembership(
                self._client,
                self.settings,
                group_id=self.group_id,
                current_positions=lambda: self._as_commit(self.handed_positions()),
                health=self._health,
            )
        return self._membership

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
        await self._settle_startup()
        await self._subscribe(subscription, on_assigned, on_revoked, on_lost)

    async def _subscribe(
        self,
        subscription: list[str] | re.Pattern[str],
        on_assigned: Callback | None = None,
        on_revoked: Callback | None = None,
        on_lost: Callback | None = None,
    ) -> None:
        membership = self._group()
        if self._assigned_manually:
            raise ConsumerStateError("this consumer has an assign()ment; assign([]) first")
        membership.on_assigned, membership.on_revoked = on_assigned, on_revoked
        membership.on_lost = on_lost
        if not isinstance(subscription, re.Pattern):
            await self._topics_metadata(subscription)
        # A pattern matching nothing is no error: the membership warns and follows the
        # topics created later.
        await membership.subscribe(subscription)
        self._subscribed = True

    async def unsubscribe(self) -> None:
        """Give the partitions up (``on_revoked``; auto-commit first) and leave the group."""
        self._check_open()
        await self._startup.stop()  # the constructor's topics, if not subscribed yet
        self._initial = None
        self._abandon_current()
        if self._membership is not None and self._subscribed:
            await self._membership.unsubscribe()
        self._subscribed = False
        self._state.assign([])

    async def group_step(self, timeout: float | None = None) -> None:
        """Before handing records out: keep membership current (waiting up to ``timeout``
        for a join), apply what changed, and auto-commit when due (in the background,
        what was handed out)."""
        membership = self._membership
        if membership is None:
            return
        if self._subscribed:
            membership.poll_happened()
            change = await ensure_active_reported(membership, self._health, timeout)
            if change:
                gone = set(change.revoked) | set(change.lost)
                for tp in gone:
                    self._cut(tp)
                self._state.remove(gone)
                self._state.add(change.added)
                self._unpositioned |= set(change.added)
        await self._position_new()
        self._auto_commit_if_due()

    def _auto_commit_if_due(self) -> None:
        if not self._auto_commit:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now < self._next_auto_commit:
            return
        self._next_auto_commit = now + self.settings.auto_commit_interval
        offsets = self._as_commit(self.handed_positions())
        if offsets:
            task = loop.create_task(self._background_commit(offsets, None))
            self._commit_tasks.add(task)
            task.add_done_callback(self._commit_tasks.discard)

    async def _background_commit(
        self, offsets: dict[TopicPartition, OffsetAndMetadata], callback: Callback | None
    ) -> None:
        error: BaseException | None = None
        try:
            await self._group().commit(offsets)
        except PykafError as exc:
            error = exc
            if callback is None:
                logger.warning("auto-commit failed (retried at the next one): %s", exc)
        if callback is not None:
            result = callback(offsets, error)
            if asyncio.iscoroutine(result):
                await result

    # -- handing records out ------------------------------------------------------------

    def handed_positions(self) -> dict[TopicPartition, int]:
        """The position of every positioned partition after what was handed out."""
        out = {tp: p for tp, (p, _) in self._state.positions().items() if p is not None}
        current = self.current
        if current is not None:
            handed = current.handed()
            if handed is not None and current.state.tp in out:
                out[current.state.tp] = handed[0]
        return out

    def _as_commit(
        self, positions: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        epochs = {tp: e for tp, (_, e) in self._state.positions().items()}
        current = self.current
        out = {}
        for tp, offset in positions.items():
            epoch = epochs.get(tp)
            if current is not None and current.state.tp == tp:
                handed = current.handed()
                if handed is not None:
                    epoch = handed[1]
            out[tp] = OffsetAndMetadata(offset, "", epoch)
        return out

    def _cut(self, tp: TopicPartition) -> None:
        """Stop handing out ``tp``'s current chunk; re-fetch from what was not handed."""
        current = self.current
        if current is None or current.state.tp != tp:
            return
        self.current = None
        back = current.cut()
        if back is not None and tp in self._state.partitions:
            self._state.seek(tp, back[0], back[1])
            self._fetcher.wake()

    def _abandon_current(self) -> None:
        current = self.current
        if current is not None:
            self._cut(current.state.tp)

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
        self._abandon_current()
        self.look_for_end_again()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        assert self._data is not None
        data = self._data
        while True:
            data.clear()
            remaining = None if deadline is None else max(0.0, deadline - loop.time())
            if await self._ready(remaining):
                await self.group_step(
                    None if deadline is None else max(0.0, deadline - loop.time())
                )
            data.clear()
            records = self._state.take(limit)
            if records:
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
        self._abandon_current()
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
                got = state.take_chunk(CHUNK)
                if got is None:
                    self._raise_failure()
                    if stop_at_end and state.all_at_end():
                        return
                    await data.wait()
                    continue
                chunk = self.current = HandOut(*got)
                for record in chunk.iterator:
                    yield record
                if self.current is chunk:
                    self.current = None
        finally:
            # Left mid-chunk (break, error): what was not handed is fetched again. Only
            # this iteration's own chunk: an async generator is finalised late, maybe
            # after another iteration began.
            if not self._closed and chunk is not None and self.current is chunk:
                self._abandon_current()

    # -- positions ----------------------------------------------------------------------

    def _assigned(self, tp: TopicPartition) -> PartitionState:
        self._check_open()
        if not isinstance(tp, TopicPartition):
            raise TypeError(f"expected a TopicPartition(topic, partition), not {tp!r}")
        state = self._state.partitions.get(tp)
        if state is None:
            raise NotAssignedError(
                f"{tp} is not assigned to this consumer: assign() or subscribe() first"
                f" (assigned: {', '.join(map(str, sorted(self._state.partitions))) or 'none'})"
            )
        return state

    def _targets(self, tps: tuple[TopicPartition, ...]) -> list[TopicPartition]:
        for tp in tps:
            self._assigned(tp)
        return list(tps) if tps else list(self._state.partitions)

    async def seek(self, tp: TopicPartition, offset: int) -> None:
        """Read ``tp`` from ``offset`` next. Past the end of the log, the next fetch meets
        OFFSET_OUT_OF_RANGE and ``auto_offset_reset`` decides (as in Kafka)."""
        self._assigned(tp)
        if type(offset) is not int or offset < 0:
            raise ValueError(f"seek needs an offset >= 0, not {offset!r}")
        self._cut(tp)
        self._state.seek(tp, offset)
        self._fetcher.wake()

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        """Read from the earliest offset (of ``tps``; none given: every assigned one)."""
        for tp in self._targets(tps):
            self._cut(tp)
            self._state.request_reset(tp, EARLIEST)
        self._fetcher.wake()

    async def seek_to_end(self, *tps: TopicPartition) -> None:
        """Read only what is written from now on (of ``tps``; none given: all)."""
        for tp in self._targets(tps):
            self._cut(tp)
            self._state.request_reset(tp, LATEST)
        self._fetcher.wake()

    async def seek_to_timestamp(
        self, tp_or_mapping: TopicPartition | Mapping[TopicPartition, int], ts_ms: int | None = None
    ) -> None:
        """Read from the first record at or after ``ts_ms`` (ms since the epoch); a time
        after every record means the end of the log."""
        if isinstance(tp_or_mapping, TopicPartition):
            if ts_ms is None:
                raise ValueError("seek_to_timestamp(tp, ts_ms) needs the timestamp")
            mapping: Mapping[TopicPartition, int] = {tp_or_mapping: ts_ms}
        else:
            mapping = tp_or_mapping
        for tp, ts in mapping.items():
            self._assigned(tp)
            if type(ts) is not int or ts < 0:
                raise ValueError(f"a timestamp is milliseconds since the epoch >= 0, not {ts!r}")
        found = await self.offsets_for_times(mapping)
        ends = [tp for tp, hit in found.items() if hit is None]
        end_offsets = await self.end_offsets(ends) if ends else {}
        for tp in mapping:
            self._cut(tp)
            hit = found[tp]
            self._state.seek(tp, hit[0] if hit is not None else end_offsets[tp])
        self._fetcher.wake()

    async def position(self, tp: TopicPartition) -> int:
        """The offset of the next record this consumer will hand out for ``tp`` (waits,
        up to request_timeout, for a position still being looked up)."""
        state = self._assigned(tp)
        await self._start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.client.request_timeout
        assert self._data is not None
        while True:
            positions = self.handed_positions()
            if tp in positions and state.reset is None:
                return positions[tp]
            if state.error is not None:
                error, state.error = state.error, None
                raise error
            if loop.time() >= deadline:
                raise KafkaTimeoutError(f"the position of {tp} was not found within the timeout")
            if tp in self._unpositioned:
                await self._position_new()
            # A short nap, not the data event: a poll waiting on it must not miss a wakeup.
            await asyncio.sleep(_POSITION_NAP)

    def pause(self, *tps: TopicPartition) -> None:
        """Stop handing out (and fetching) ``tps`` until ``resume``; their buffered
        records are kept. Plain method: no I/O."""
        for tp in tps:
            self._assigned(tp)
            self._cut(tp)
            self._state.pause(tp)

    def resume(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self._assigned(tp)
            self._state.resume(tp)

    def paused(self) -> set[TopicPartition]:
        return {tp for tp, s in self._state.partitions.items() if s.paused}

    # -- offsets ------------------------------------------------------------------------

    async def _offsets(
        self, queries: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, tuple[int, int, int | None]]:
        self._check_open()
        for tp in queries:
            if not isinstance(tp, TopicPartition):
                raise TypeError(f"expected a TopicPartition(topic, partition), not {tp!r}")
        await self._topics_metadata(tp.topic for tp in queries)
        return await lookup_offsets(
            self._client,
            queries,
            isolation_level=self.settings.isolation_code,
            timeout=self.settings.client.request_timeout,
            retry_backoff=self.settings.client.retry_backoff,
        )

    async def beginning_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        found = await self._offsets(dict.fromkeys(tps, EARLIEST))
        return {tp: v[0] for tp, v in found.items()}

    async def end_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The offset after the last record (the last stable one for read_committed)."""
        found = await self._offsets(dict.fromkeys(tps, LATEST))
        return {tp: v[0] for tp, v in found.items()}

    async def earliest_offset(self, tp: TopicPartition) -> int:
        return (await self.beginning_offsets([tp]))[tp]

    async def latest_offset(self, tp: TopicPartition) -> int:
        return (await self.end_offsets([tp]))[tp]

    async def offsets_for_times(
        self, timestamps: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, tuple[int, int] | None]:
        """The first record at or after each timestamp (ms): ``(offset, timestamp)``, or
        None when every record is older."""
        for ts in timestamps.values():
            if type(ts) is not int or ts < 0:
                raise ValueError(f"a timestamp is milliseconds since the epoch >= 0, not {ts!r}")
        found = await self._offsets(timestamps)
        return {tp: (v[0], v[1]) if v[0] >= 0 else None for tp, v in found.items()}

    # -- commits ------------------------------------------------------------------------

    def _commit_offsets(self, offsets: Offsets | None) -> dict[TopicPartition, OffsetAndMetadata]:
        self._check_open()
        self._group()  # a commit needs a group
        if offsets is None:
            return self._as_commit(self.handed_positions())
        out = {}
        for tp, value in offsets.items():
            if not isinstance(tp, TopicPartition):
                raise TypeError(f"commit keys are TopicPartition, not {tp!r}")
            out[tp] = value if isinstance(value, OffsetAndMetadata) else OffsetAndMetadata(value)
        return out

    async def commit(self, offsets: Offsets | None = None) -> None:
        """Commit ``offsets`` (the next offset to read per partition), or the positions
        after what was handed out; waits for the coordinator's answer."""
        chosen = self._commit_offsets(offsets)
        if chosen:
            await self._group().commit(chosen)

    async def commit_async(
        self, offsets: Offsets | None = None, callback: Callback | None = None
    ) -> None:
        """Start a commit and return; ``callback(offsets, error_or_None)`` when done."""
        chosen = self._commit_offsets(offsets)
        if not chosen:
            return
        task = asyncio.get_running_loop().create_task(self._background_commit(chosen, callback))
        self._commit_tasks.add(task)
        task.add_done_callback(self._commit_tasks.discard)

    async def committed(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        """The committed offsets of ``tps`` (None: nothing committed)."""
        self._check_open()
        found = await self._group().committed(list(tps))
        return {tp: (None if v is None else v.offset) for tp, v in found.items()}

    def _final_offsets(self) -> dict[TopicPartition, OffsetAndMetadata]:
        """What auto-commit still owes at close: the positions after what was handed out
        (a subscribed member's, of the partitions it owns)."""
        if not self._auto_commit or self._membership is None:
            return {}
        offsets = self._as_commit(self.handed_positions())
        if self._subscribed:
            owned = self._membership.assignment
            offsets = {tp: o for tp, o in offsets.items() if tp in owned}
        return offsets

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
            return
        bound = self.settings.client.close_timeout if timeout is None else float(timeout)
        try:
            if self._membership is not None:
                await close_group(
                    self._membership,
                    self._health,
                    offsets=self._final_offsets(),
                    commits_in_flight=self._commit_tasks,
                    bound=bound,
                )
        finally:
            self._closed = True
            self.current = None
            await self._stop_tasks()
            await self._fetcher.close()
            await self._client.close()
            self._data_arrived()  # wake whoever waits, so they see the close

    async def _stop_tasks(self) -> None:
        """Cancel what still runs in the background and collect the outcomes: asyncio
        must not print a pending task or an exception nobody retrieved."""
        await self._startup.stop()
        tasks = list(self._commit_tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._membership is not None and not self._membership.closed:
            await self._membership.close(commit_first=False)
