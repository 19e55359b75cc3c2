"""Which partitions an ``AsyncConsumer`` reads, and how it got them: by hand, or from a group.

Apart from ``_async_consumer`` because it changes at a different pace from the poll path:
``assign()``/``subscribe()``/``unsubscribe()`` are rare calls, and a group's rebalances
reach the consumer only through ``follow_group``, once per poll (or iteration chunk),
never per record. Here: the topics looked up (an unknown topic or partition is the
caller's error, at once), the fetch cursors added and removed, the group membership
(``group._driver.GroupMembership``, created on first need) and its assignment changes,
and new partitions positioned at their committed offsets or per ``auto_offset_reset``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pykaf._client._async_client import AsyncClient
from pykaf._consumer._fetch_state import EARLIEST, LATEST, FetchState
from pykaf._consumer._fetcher import Fetcher
from pykaf._consumer._hand_out import HandOutTracker
from pykaf._consumer._health import Health
from pykaf._consumer._partition_state import PartitionState
from pykaf._consumer._records import OffsetAndMetadata, TopicPartition
from pykaf._consumer._settings import ConsumerSettings
from pykaf._consumer.group._health import ensure_active_reported
from pykaf._errors import ConsumerStateError, InvalidRegexError, NoOffsetError
from pykaf._kafka_errors import UnknownTopicOrPartitionError

__all__ = ["AssignedPartitions", "Callback", "parse_subscription"]

# A rebalance or commit callback of the application: sync or async, any arguments.
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


class AssignedPartitions:
    """One consumer's assignment (see the module doc): ``membership`` once a group is
    needed, ``subscribed`` while it follows one, ``manual`` while ``assign()`` set it."""

    def __init__(
        self,
        client: AsyncClient,
        settings: ConsumerSettings,
        state: FetchState,
        fetcher: Fetcher,
        handed: HandOutTracker[PartitionState],
        *,
        group_id: str | None,
        health: Health,
    ) -> None:
        self._client = client
        self._settings = settings
        self._state = state
        self._fetcher = fetcher
        self._handed = handed
        self._group_id = group_id
        self._health = health
        self.membership: Any = None
        self.subscribed = False
        self.manual = False
        # Assigned, not positioned yet (committed offsets to read).
        self.unpositioned: set[TopicPartition] = set()

    async def topics_metadata(self, topics: Iterable[str]) -> dict[str, Any]:
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

    async def assign_topics(self, topics: list[str]) -> None:
        """Assign every partition of ``topics`` (the constructor's topics, no group)."""
        meta = await self.topics_metadata(topics)
        await self.assign(
            [TopicPartition(t, p.partition) for t in topics for p in meta[t].partitions]
        )

    async def assign(self, partitions: Iterable[TopicPartition]) -> None:
        if self.subscribed:
            raise ConsumerStateError("this consumer subscribed; unsubscribe() before assign()")
        tps = list(partitions)
        for tp in tps:
            if not isinstance(tp, TopicPartition):
                raise TypeError(f"assign takes TopicPartition(topic, partition), not {tp!r}")
        meta = await self.topics_metadata(tp.topic for tp in tps)
        for tp in tps:
            count = len(meta[tp.topic].partitions)
            if tp.partition >= count:
                raise UnknownTopicOrPartitionError(
                    f"(partition {tp} does not exist: topic {tp.topic!r} has {count}"
                    f" partition(s), 0..{count - 1})"
                )
        self._handed.abandon()
        self.unpositioned |= {tp for tp in tps if tp not in self._state.partitions}
        self._state.assign(tps)
        self.manual = bool(tps)
        await self.position_new()

    async def position_new(self) -> None:
        """Start new partitions at their committed offsets, or per auto_offset_reset. If
        the committed offsets cannot be read now, the next poll tries again."""
        self.unpositioned &= set(self._state.partitions)
        tps = sorted(self.unpositioned)
        if not tps:
            return
        committed: Mapping[TopicPartition, OffsetAndMetadata | None] = {}
        if self._group_id is not None:
            committed = await self.group().committed(tps)
        self.unpositioned.difference_update(tps)
        reset_policy = self._settings.auto_offset_reset
        for tp in tps:
            if tp not in self._state.partitions:
                continue
            found = committed.get(tp)
            if found is not None:
                self._state.seek(tp, found.offset, found.leader_epoch)
            elif reset_policy == "error":
                with self._state.lock:
                    self._state.partitions[tp].error = NoOffsetError(
                        f"{tp} has no committed offset and auto_offset_reset is 'error':"
                        " seek() to an offset first"
                    )
                    self._state.partitions[tp].retry_at = float("inf")
            else:
                self._state.request_reset(tp, EARLIEST if reset_policy == "earliest" else LATEST)
        self._fetcher.wake()

    def group(self) -> Any:
        """The group membership, created on first need (a commit, committed offsets, a
        subscription); a consumer without a ``group_id`` has none."""
        if self._group_id is None:
            raise ConsumerStateError(
                "this needs a consumer group: create the consumer with group_id=..."
            )
        if self.membership is None:
            from pykaf._consumer.group._driver import GroupMembership  # noqa: PLC0415  (optional seam)

            self.membership = GroupMembership(
                self._client,
                self._settings,
                group_id=self._group_id,
                current_positions=self._handed.to_commit,
                health=self._health,
            )
        return self.membership

    async def subscribe(
        self,
        subscription: list[str] | re.Pattern[str],
        on_assigned: Callback | None = None,
        on_revoked: Callback | None = None,
        on_lost: Callback | None = None,
    ) -> None:
        membership = self.group()
        if self.manual:
            raise ConsumerStateError("this consumer has an assign()ment; assign([]) first")
        if not isinstance(subscription, re.Pattern):
            await self.topics_metadata(subscription)
        # A pattern matching nothing is no error: the membership warns and follows the
        # topics created later.
        await membership.subscribe(subscription)
        # After the awaits: a subscribe() cancelled in one of them changes nothing.
        membership.on_assigned, membership.on_revoked = on_assigned, on_revoked
        membership.on_lost = on_lost
        self.subscribed = True

    async def unsubscribe(self) -> None:
        """Give the partitions up (``on_revoked``; auto-commit first) and leave the group."""
        self._handed.abandon()
        if self.membership is not None and self.subscribed:
            await self.membership.unsubscribe()
        self.subscribed = False
        self._state.assign([])

    async def follow_group(self, timeout: float | None) -> None:
        """Keep membership current (waiting up to ``timeout`` for a join), apply what
        changed to the fetch cursors, and position the partitions that came."""
        membership = self.membership
        if self.subscribed:
            membership.poll_happened()
            change = await ensure_active_reported(membership, self._health, timeout, announce=False)
            if change:
                gone = set(change.revoked) | set(change.lost)
                for tp in gone:
                    self._handed.cut(tp)
                self._state.remove(gone)
                self._state.add(change.added)
                self.unpositioned |= set(change.added)
            # Once the partitions are the consumer's: on_assigned may seek (which the
            # committed offsets then do not override) and ask positions. Before, it ran
            # first, and seek() or position() there raised NotAssignedError.
            await membership.announce_assigned()
        await self.position_new()
