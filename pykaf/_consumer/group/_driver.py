"""``GroupMembership``: one consumer's membership of a classic consumer group, in asyncio.

Kafka's Java ``ConsumerCoordinator`` in shape. The coordinator is found through the
client (``to=Coordinator(group_id)``: FindCoordinator, cached, forgotten on
NOT_COORDINATOR or a broken connection). A join (JoinGroup, MEMBER_ID_REQUIRED answered
with the given id, the assignment when this member leads, SyncGroup) runs in a background
task, retried with bounded backoff; once the member is stable its session
(``_session.Session``: heartbeats, ``max_poll_interval``, LeaveGroup) runs in another, so
slow processing does not cost the membership -- up to ``max_poll_interval`` without
``poll_happened()``, after which the member leaves and rejoins once the application polls
again. A third task (``_topic_watch.TopicWatch``) follows the metadata: new topics matching
a pattern, partitions added to the group's topics.

The rebalance callbacks (``on_assigned``, ``on_revoked``, ``on_lost``) run in the caller's
task, inside ``ensure_active`` (and ``leave``/``close``/``unsubscribe``); what they get and
how a failing one is handled is ``_rebalance_callbacks``'. Each completed join, loss, leave
and commit is told on the client's telemetry bus (``_telemetry.GroupTelemetry``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final, TypeAlias

from pykaf._client._async_client import AsyncClient
from pykaf._client._backoff import Backoff
from pykaf._client._targets import Coordinator
from pykaf._consumer._health import Health
from pykaf._consumer._records import OffsetAndMetadata, TopicPartition
from pykaf._consumer._settings import ConsumerSettings
from pykaf._consumer.group._assignors import RebalanceProtocol, assignor_for, rebalance_protocol_for
from pykaf._consumer.group._commit import CommitOrder, Retry, commit_offsets, read_committed
from pykaf._consumer.group._join import JoinOutcome, JoinSpec, join_with_retries
from pykaf._consumer.group._membership import (
    LOST_GENERATION,
    AssignmentChange,
    Generation,
    Membership,
)
from pykaf._consumer.group._rebalance_callbacks import (
    RebalanceCallback,
    call_rebalance_callback,
    partition_names,
)
from pykaf._consumer.group._session import Session
from pykaf._consumer.group._task_watch import TaskWatch
from pykaf._consumer.group._telemetry import GroupTelemetry
from pykaf._consumer.group._topic_watch import TopicWatch
from pykaf._errors import ClientClosedError, PykafError

__all__ = ["GroupMembership"]

log = logging.getLogger("pykaf.consumer")

PositionsSource: TypeAlias = Callable[[], Mapping[TopicPartition, int | OffsetAndMetadata]]

_BACKOFF_MIN: Final = 0.01
_BACKOFF_MAX: Final = 1.0  # Java's retry.backoff.max.ms


class GroupMembership:
    """Membership of ``group_id`` for one consumer (see the module doc).

    The consumer calls ``poll_happened()`` whenever the application polls,
    ``ensure_active()`` before handing out records (it returns what changed in the
    assignment), ``commit()`` / ``committed()`` for offsets, and ``close()`` at the end.
    ``current_positions`` (optional) gives the positions handed to the application,
    committed before partitions are revoked when auto-commit is on.
    """

    def __init__(
        self,
        client: AsyncClient,
        settings: ConsumerSettings,
        *,
        group_id: str,
        on_assigned: RebalanceCallback | None = None,
        on_revoked: RebalanceCallback | None = None,
        on_lost: RebalanceCallback | None = None,
        current_positions: PositionsSource | None = None,
        rand: Callable[[], float] = random.random,
        health: Health | None = None,
    ) -> None:
        if not isinstance(group_id, str) or not group_id:
            raise ValueError(f"group_id must be a non-empty str, not {group_id!r}")
        self._client = client
        self._settings = settings
        self.group_id = group_id
        self._coordinator = Coordinator(group_id)
        # Public: the consumer may set them again when the application subscribes.
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        self.on_lost = on_lost
        # ``ensure_active(announce=False)``: the joins whose on_assigned waits.
        self._unannounced: list[frozenset[TopicPartition]] = []
        self._current_positions = current_positions
        self._rand = rand
        self._health = health or Health(log, None)
        names = list(settings.partition_assignment_strategy)
        self._assignors = [assignor_for(name) for name in names]
        self.protocol = rebalance_protocol_for(names)
        self._rebalance_timeout = settings.rebalance_timeout or settings.max_poll_interval
        self._auto_commit = settings.auto_commit(group_id)
        self._state = Membership(
            protocol=self.protocol,
            group_instance_id=settings.group_instance_id,
            max_poll_interval=settings.max_poll_interval,
            now=time.monotonic(),
        )
        # A floor under the client's retry_backoff (which may be 0): a coordinator that
        # answers LOAD_IN_PROGRESS must not be asked again in a tight loop.
        retry = max(client.settings.retry_backoff, _BACKOFF_MIN)
        self._backoff = Backoff(initial=retry, maximum=max(retry, _BACKOFF_MAX))
        self._retry = Retry(backoff=self._backoff, rand=rand)
        self._commit_order = CommitOrder()
        self._spec = JoinSpec(
            group_id=group_id,
            group_instance_id=settings.group_instance_id,
            session_timeout=settings.session_timeout,
            rebalance_timeout=self._rebalance_timeout,
            assignors=self._assignors,
        )
        self._session = Session(
            client,
            settings,
            self._state,
            group_id=group_id,
            coordinator=self._coordinator,
            backoff=self._backoff,
            rand=rand,
            health=self._health,
        )
        self._telemetry = GroupTelemetry(
            client.events, client_id=client.settings.client_id, group_id=group_id
        )
        # The join under way: when it began (monotonic), what was revoked before it.
        self._join_began = 0.0
        self._revoked_for_join: frozenset[TopicPartition] = frozenset()
        self._fatal_told = False
        self._topics = TopicWatch(
            client, self._state, group_id=group_id, is_leader=lambda: self.is_leader
        )
        self._lock = asyncio.Lock()
        self._join_task: asyncio.Task[JoinOutcome] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._leader = False
        self._closing = False  # no more joins (close() is under way)
        self._closed = False  # nothing at all any more
        self._task_watch = TaskWatch(group_id, lambda: self._closing or self._closed)

    # -- what the consumer reads ----------------------------------------------------------

    @property
    def rebalance_timeout(self) -> float:
        """The budget of one join (seconds), retries included."""
        return self._rebalance_timeout

    @property
    def fatal(self) -> BaseException | None:
        """The error that ended this membership for good (fenced...), if any."""
        return self._state.fatal

    @property
    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this member owns now."""
        return self._state.owned

    @property
    def generation(self) -> Generation:
        return self._state.generation

    @property
    def member_id(self) -> str:
        return self._state.generation.member_id

    @property
    def is_leader(self) -> bool:
        """Did this member compute the assignment of the current generation?"""
        return self._leader and self._state.stable

    @property
    def rejoin_needed(self) -> bool:
        """True when the next ``ensure_active`` will (re)join the group."""
        return self._state.rejoin_needed

    @property
    def subscription(self) -> frozenset[str]:
        """The topics subscribed to (for a pattern: those it matched last time)."""
        return self._state.subscription

    def poll_happened(self) -> None:
        """The application polled: resets the ``max_poll_interval`` clock."""
        self._state.poll(time.monotonic())

    # -- subscribing ----------------------------------------------------------------------

    async def subscribe(self, topics: Collection[str] | re.Pattern[str]) -> None:
        """Subscribe to ``topics`` or to every topic a pattern matches in full (internal
        topics excluded, as Java); the join happens at the next ``ensure_active``. A
        pattern that matches nothing is no error: the member joins with no topics (and
        follows new topics as metadata ages). An empty list unsubscribes."""
        self._check_usable()
        if isinstance(topics, re.Pattern):
            # Looked up before the pattern is set: a subscribe() cancelled in the lookup
            # changes nothing (the topic watch followed the half-set pattern before).
            matched = await self._topics.matching_topics(topics)
            self._topics.pattern = topics
            if not matched:
                log.warning(
                    "group %r: the pattern %r matches no topic (yet); joining with none",
                    self.group_id,
                    topics.pattern,
                )
            self._state.subscribe(matched)
        else:
            if isinstance(topics, str):
                raise TypeError("topics is a list of names; wrap a single name in a list")
            names = frozenset(topics)
            for name in names:
                if not isinstance(name, str) or not name:
                    raise ValueError(f"a topic name is a non-empty str, not {name!r}")
            if not names:
                await self.unsubscribe()
                return
            self._topics.pattern = None
            self._state.subscribe(names)
        if self._watch_task is None:
            self._start_topic_watch()

    def _start_topic_watch(self) -> None:
        task = asyncio.create_task(self._topics.run(), name=f"pykaf group {self.group_id} metadata")
        self._watch_task = task

        def restart() -> None:
            if self._watch_task is task:  # not stopped meanwhile (unsubscribe, close)
                self._start_topic_watch()

        self._task_watch.watch(task, "metadata", restart)

    async def unsubscribe(self) -> None:
        """Give everything up (``on_revoked``) and leave the group."""
        self._check_usable()
        await self.leave("the consumer unsubscribed")
        self._state.unsubscribe()
        self._topics.pattern = None
        await _cancel(self._watch_task)
        self._watch_task = None

    # -- joining --------------------------------------------------------------------------

    async def ensure_active(
        self, timeout: float | None = None, *, announce: bool = True
    ) -> AssignmentChange | None:
        """Join or rejoin if needed; return what changed in the assignment since the last
        call (None: nothing). Waits for a join up to ``timeout`` seconds (None: until it
        completes or fails) -- except while this member still owns partitions
        (cooperative), when the join goes on in the background and this returns at once.
        Raises what made the last join fail (then the next call tries again), and for
        ever once the member is fenced. ``announce=False``: ``on_assigned`` waits for
        ``announce_assigned()``, which the consumer calls once it has applied the change
        (so the callback may seek and ask positions, as Java's and aiokafka's may)."""
        self._check_usable()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + max(0.0, timeout)
        state = self._state
        async with self._lock:
            while True:
                self._check_usable(joining=True)
                if self._join_task is not None and self._join_task.done():
                    await self._finish_join(announce)
                if state.fatal is not None:
                    self._tell_fatal()
                    raise state.fatal
                if self._join_task is None:
                    if not state.rejoin_needed or state.poll_expired(time.monotonic()):
                        break  # (after a poll timeout: rejoin once the application polls)
                    await self._start_join()
                    continue
                if state.owned and self.protocol is RebalanceProtocol.COOPERATIVE:
                    break
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    break
                # The task, not the attribute: close() (another task) empties the
                # attribute meanwhile, and the look after the wait raised AttributeError.
                join = self._join_task
                await asyncio.wait({join}, timeout=remaining)
                if not join.done():
                    break
        return state.take_change()

    async def _start_join(self) -> None:
        state = self._state
        self._join_began = time.monotonic()
        lost_reason, state.lost_reason = state.lost_reason, None
        revocation = state.prepare_join()
        self._revoked_for_join = revocation.revoked
        if revocation.lost or lost_reason is not None:
            self._telemetry.lost(lost_reason or LOST_GENERATION, revocation.lost)
        if revocation.lost:
            await call_rebalance_callback(
                self.on_lost, "on_lost", revocation.lost, group_id=self.group_id
            )
        if revocation.revoked:
            await self._revoke(revocation.revoked)
        reason = state.rejoin_reason or "rejoining"
        state.join_started()
        await _cancel(self._heartbeat_task)
        self._heartbeat_task = None
        self._join_task = asyncio.create_task(
            self._join(reason), name=f"pykaf group {self.group_id} join"
        )

    async def _finish_join(self, announce: bool) -> None:
        task, self._join_task = self._join_task, None
        assert task is not None
        try:
            outcome = task.result()
        except asyncio.CancelledError:
            self._state.request_rejoin("the join was cancelled")
            return
        except BaseException:
            self._state.request_rejoin("the last join failed")
            raise
        self._health.recovered("join", f"group {self.group_id!r}: joined again")
        self._health.recovered("join budget", None)  # the consumer's report; told above
        if outcome.revoked:
            await self._revoke(outcome.revoked)
        log.info(
            "group %r: generation %d, member %r, assigned %s",
            self.group_id,
            self._state.generation.generation_id,
            self._state.generation.member_id,
            partition_names(self._state.owned),
        )
        if announce:
            await call_rebalance_callback(
                self.on_assigned, "on_assigned", outcome.added, group_id=self.group_id
            )
        else:
            self._unannounced.append(outcome.added)

    async def announce_assigned(self) -> None:
        """``on_assigned`` for each join that ``ensure_active(announce=False)`` finished,
        in order: the caller has applied their changes."""
        while self._unannounced:
            added = self._unannounced.pop(0)
            await call_rebalance_callback(
                self.on_assigned, "on_assigned", added, group_id=self.group_id
            )

    async def _join(self, reason: str) -> JoinOutcome:
        """The join task: attempts until one completes (then the session starts), a fatal
        error, or the retry budget (the rebalance timeout) runs out."""
        outcome = await join_with_retries(
            self._client,
            self._state,
            self._spec,
            reason,
            budget=self._rebalance_timeout,
            backoff=self._backoff,
            rand=self._rand,
            health=self._health,
        )
        state = self._state
        self._telemetry.joined(
            member_id=state.generation.member_id,
            generation=state.generation.generation_id,
            assignment=state.owned,
            revoked=self._revoked_for_join | outcome.revoked,
            added=outcome.added,
            duration=time.monotonic() - self._join_began,
        )
        self._session.versions = outcome.versions
        self._leader = outcome.leader
        self._topics.snapshot = outcome.snapshot
        heartbeats = asyncio.create_task(
            self._session.heartbeats(self._state.generation),
            name=f"pykaf group {self.group_id} heartbeat",
        )
        self._heartbeat_task = heartbeats

        def rejoin() -> None:
            # The next poll joins again, and a new generation's heartbeats start: a
            # rebalance now rather than an eviction a session timeout later.
            if self._heartbeat_task is heartbeats:
                self._state.request_rejoin("its heartbeat task stopped on an unexpected error")

        self._task_watch.watch(heartbeats, "heartbeat", rejoin)
        return outcome

    # -- offsets --------------------------------------------------------------------------

    async def commit(
        self,
        offsets: Mapping[TopicPartition, OffsetAndMetadata | int],
        *,
        timeout: float | None = None,
    ) -> None:
        """Commit ``offsets`` (the next offset to read, per partition) in this member's
        generation, retrying retriable errors until ``timeout`` (default: the client's
        ``request_timeout``; then ``KafkaTimeoutError``). ``RebalancingCommitError``
        (retriable) while the group rebalances: poll, then commit what is still assigned;
        ``CommitFailedError`` when the generation is over (the partitions may be another
        member's now). Not subscribed (partitions assigned by hand): a commit outside
        any generation, as Java's."""
        self._check_usable()
        pending = {tp: _offset(value) for tp, value in offsets.items()}
        if not pending:
            return
        began = time.monotonic()
        try:
            await commit_offsets(
                self._client,
                self._state,
                group_id=self.group_id,
                group_instance_id=self._settings.group_instance_id,
                offsets=pending,
                timeout=self._client.settings.request_timeout if timeout is None else timeout,
                retry=self._retry,
                order=self._commit_order,
            )
        except PykafError as exc:
            self._telemetry.commit_failed(exc)
            raise
        self._telemetry.commit_done(len(pending), time.monotonic() - began)

    async def committed(
        self, partitions: Collection[TopicPartition], *, timeout: float | None = None
    ) -> dict[TopicPartition, OffsetAndMetadata | None]:
        """The group's committed offsets (None: nothing committed), waiting for pending
        transactional commits (KIP-447) and retrying retriable errors until ``timeout``."""
        self._check_usable()
        return await read_committed(
            self._client,
            group_id=self.group_id,
            partitions=partitions,
            timeout=self._client.settings.request_timeout if timeout is None else timeout,
            retry=self._retry,
        )

    # -- leaving --------------------------------------------------------------------------

    async def leave(self, reason: str = "the consumer is leaving", *, commit: bool = True) -> None:
        """Give the partitions up (``on_revoked``, or ``on_lost`` if the generation is
        already over) and leave the group (LeaveGroup; a static member sends none and
        keeps its place until its session expires, as Java). If still subscribed, the
        next ``ensure_active`` joins again."""
        state = self._state
        await _cancel(self._join_task)
        self._join_task = None
        await _cancel(self._heartbeat_task)
        self._heartbeat_task = None
        if state.owned:
            if state.generation.valid:
                began = time.monotonic()
                revoked = state.revoke_all()
                await self._revoke(
                    revoked, timeout=self._client.settings.close_timeout, commit=commit
                )
                self._telemetry.rebalanced(
                    revoked=revoked, assigned=(), duration=time.monotonic() - began
                )
            else:
                lost = state.lose_all()
                if state.fatal is None or not self._fatal_told:
                    self._telemetry.lost(state.lost_reason or LOST_GENERATION, lost)
                state.lost_reason = None
                await call_rebalance_callback(self.on_lost, "on_lost", lost, group_id=self.group_id)
        await self._session.send_leave(reason)
        state.left()
        state.request_rejoin("left the group")

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self, *, commit_first: bool = True) -> None:
        """Leave the group (see ``leave``; ``commit_first=False``: the caller made the
        final auto-commit itself) and stop the background tasks; bounded by the client's
        ``close_timeout`` plus the callbacks' own time."""
        if self._closing:
            return
        self._closing = True
        try:
            if not self._client.closed:
                with contextlib.suppress(PykafError):
                    await self.leave("the consumer is closing", commit=commit_first)
        finally:
            self._closed = True
            for task in (self._join_task, self._heartbeat_task, self._watch_task):
                await _cancel(task)
            self._join_task = self._heartbeat_task = self._watch_task = None

    # -- helpers --------------------------------------------------------------------------

    def _tell_fatal(self) -> None:
        """The member is fenced: its partitions are lost (told once; they are given to
        ``on_lost`` when the consumer closes)."""
        if not self._fatal_told:
            self._fatal_told = True
            self._telemetry.lost(self._state.lost_reason or LOST_GENERATION, self._state.owned)

    def _check_usable(self, *, joining: bool = False) -> None:
        # While closing, the callbacks may still commit; nothing may join any more.
        if self._closed or (joining and self._closing):
            raise ClientClosedError(f"the membership of group {self.group_id!r} was closed")

    async def _revoke(
        self,
        partitions: frozenset[TopicPartition],
        *,
        timeout: float | None = None,
        commit: bool = True,
    ) -> None:
        log.info("group %r: revoking %s", self.group_id, partition_names(partitions))
        if commit and self._auto_commit and self._current_positions is not None:
            positions = self._current_positions()
            offsets = {tp: positions[tp] for tp in partitions if tp in positions}
            if offsets:
                try:
                    await self.commit(offsets, timeout=timeout)
                except PykafError as exc:
                    log.warning(
                        "group %r: auto-commit before revoking failed: %s", self.group_id, exc
                    )
        await call_rebalance_callback(
            self.on_revoked, "on_revoked", partitions, group_id=self.group_id
        )


def _offset(value: OffsetAndMetadata | int) -> OffsetAndMetadata:
    if isinstance(value, OffsetAndMetadata):
        return value
    return OffsetAndMetadata(value)


async def _cancel(task: asyncio.Task[Any] | None) -> None:
    if task is None:
        return
    if task.done():
        if not task.cancelled():
            task.exception()  # seen: asyncio must not print it as "never retrieved"
        return
    if task is asyncio.current_task():
        return  # the heartbeat task leaving the group itself
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
