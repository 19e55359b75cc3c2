"""Partition assignors of the classic consumer protocol: ``range``, ``roundrobin`` and
``cooperative-sticky``. Pure and deterministic: the group leader runs one of them on every
member's subscription and the topics' partition counts.

Members are ordered as Java's ``MemberInfo``: static members (KIP-345) first, by group
instance id, then dynamic members by member id; strings compare as Java's
``String.compareTo`` (UTF-16 code units), so a Java, librdkafka or pykaf leader gives the
same ranges to the same group.

- ``range``: per topic, the partitions in contiguous ranges over the members subscribed
  to it, the first ``partitions % members`` members one partition more.
- ``roundrobin``: every subscribed partition (topics by name, then partition), dealt in
  turn over the members, skipping a member not subscribed to that partition's topic.
- ``cooperative-sticky``: members keep what they own where they still may; the rest
  goes to the least loaded; then partitions move from the most to the least loaded
  until no member has two more than one that could take one. KIP-429: a partition that
  moves from one member to another is assigned to nobody in this generation; its old
  owner sees it gone, revokes it and rejoins, and the follow-up rebalance hands it over.
  Our own algorithm (not Java's), with the same guarantees: valid, balanced to within one
  for equal subscriptions, and sticky (a member leaving moves only its partitions).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from pykaf._consumer._records import TopicPartition
from pykaf._consumer.group._protocol import Subscription

__all__ = [
    "ASSIGNORS",
    "Assignor",
    "CooperativeStickyAssignor",
    "MemberSubscription",
    "RangeAssignor",
    "RebalanceProtocol",
    "RoundRobinAssignor",
    "assignor_for",
    "member_sort_key",
    "rebalance_protocol_for",
]


class RebalanceProtocol(enum.Enum):
    """How members give partitions up: all before every rebalance (eager), or only
    those that move (cooperative, KIP-429)."""

    EAGER = "eager"
    COOPERATIVE = "cooperative"


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberSubscription:
    """One member as the leader sees it in the JoinGroup response."""

    member_id: str
    group_instance_id: str | None
    subscription: Subscription


def _java_order(text: str) -> bytes:
    # Java compares UTF-16 code units; Python compares code points. They differ only for
    # characters above U+FFFF against U+E000..U+FFFF: the big-endian UTF-16 bytes match Java.
    return text.encode("utf-16-be", "surrogatepass")


def member_sort_key(member: MemberSubscription) -> tuple[int, bytes]:
    """Java's ``MemberInfo`` order: static members first by instance id, then member id."""
    if member.group_instance_id is not None:
        return (0, _java_order(member.group_instance_id))
    return (1, _java_order(member.member_id))


Assignments = dict[str, tuple[TopicPartition, ...]]


class Assignor(Protocol):
    """A partition assignor: its protocol name, the rebalance protocols it supports, the
    user data its members send, and the assignment the leader computes."""

    @property
    def name(self) -> str: ...

    @property
    def protocols(self) -> frozenset[RebalanceProtocol]: ...

    def user_data(self, *, generation: int) -> bytes | None:
        """The subscription's user data for a member in ``generation`` (-1: none)."""
        ...

    def assign(
        self, partitions_per_topic: Mapping[str, int], members: Sequence[MemberSubscription]
    ) -> Assignments:
        """member id -> its partitions (sorted), for every member (empty tuples included).
        Topics missing from ``partitions_per_topic`` (unknown to the cluster) are skipped."""
        ...


def _ordered(members: Sequence[MemberSubscription]) -> list[MemberSubscription]:
    return sorted(members, key=member_sort_key)


def _topics_of(member: MemberSubscription, partitions_per_topic: Mapping[str, int]) -> set[str]:
    return {t for t in member.subscription.topics if partitions_per_topic.get(t, 0) > 0}


def _result(
    members: Iterable[MemberSubscription], chosen: Mapping[str, Iterable[TopicPartition]]
) -> Assignments:
    return {m.member_id: tuple(sorted(chosen.get(m.member_id, ()))) for m in members}


@dataclass(frozen=True, slots=True)
class RangeAssignor:
    """Kafka's ``range`` (the Java default's first choice): contiguous ranges per topic."""

    name: str = "range"
    protocols: frozenset[RebalanceProtocol] = frozenset({RebalanceProtocol.EAGER})

    def user_data(self, *, generation: int) -> bytes | None:
        return None

    def assign(
        self, partitions_per_topic: Mapping[str, int], members: Sequence[MemberSubscription]
    ) -> Assignments:
        ordered = _ordered(members)
        chosen: dict[str, list[TopicPartition]] = {m.member_id: [] for m in ordered}
        by_topic: dict[str, list[MemberSubscription]] = {}
        for member in ordered:
            for topic in _topics_of(member, partitions_per_topic):
                by_topic.setdefault(topic, []).append(member)
        for topic in sorted(by_topic):
            consumers = by_topic[topic]
            count = partitions_per_topic[topic]
            per_member, extra = divmod(count, len(consumers))
            for index, member in enumerate(consumers):
                start = index * per_member + min(index, extra)
                length = per_member + (1 if index < extra else 0)
                chosen[member.member_id].extend(
                    TopicPartition(topic, p) for p in range(start, start + length)
                )
        return _result(ordered, chosen)


@dataclass(frozen=True, slots=True)
class RoundRobinAssignor:
    """Kafka's ``roundrobin``: all partitions dealt over all members in turn."""

    name: str = "roundrobin"
    protocols: frozenset[RebalanceProtocol] = frozenset({RebalanceProtocol.EAGER})

    def user_data(self, *, generation: int) -> bytes | None:
        return None

    def assign(
        self, partitions_per_topic: Mapping[str, int], members: Sequence[MemberSubscription]
    ) -> Assignments:
        ordered = _ordered(members)
        chosen: dict[str, list[TopicPartition]] = {m.member_id: [] for m in ordered}
        topics_of = {m.member_id: _topics_of(m, partitions_per_topic) for m in ordered}
        all_topics = sorted(set().union(*topics_of.values())) if ordered else []
        turn = 0  # index of the next member in the circle
        for topic in all_topics:
            for partition in range(partitions_per_topic[topic]):
                # Someone subscribes to every topic in all_topics: the walk ends.
                while topic not in topics_of[ordered[turn].member_id]:
                    turn = (turn + 1) % len(ordered)
                chosen[ordered[turn].member_id].append(TopicPartition(topic, partition))
                turn = (turn + 1) % len(ordered)
        return _result(ordered, chosen)


_GENERATION_BYTES: Final = 4


def _claimed_generation(subscription: Subscription) -> int:
    """The generation a member's owned partitions are from: the v2+ field, else the
    4-byte user data Java's CooperativeStickyAssignor writes for older protocol versions."""
    if subscription.generation >= 0:
        return subscription.generation
    data = subscription.user_data
    if data is not None and len(data) == _GENERATION_BYTES:
        return int.from_bytes(data, "big", signed=True)
    return -1


@dataclass(frozen=True, slots=True)
class CooperativeStickyAssignor:
    """``cooperative-sticky``: balanced, sticky, incremental (see the module doc)."""

    name: str = "cooperative-sticky"
    protocols: frozenset[RebalanceProtocol] = frozenset(
        {RebalanceProtocol.EAGER, RebalanceProtocol.COOPERATIVE}
    )

    def user_data(self, *, generation: int) -> bytes | None:
        # As Java: the generation, for leaders that read only subscription v0/v1.
        return generation.to_bytes(_GENERATION_BYTES, "big", signed=True)

    def assign(
        self, partitions_per_topic: Mapping[str, int], members: Sequence[MemberSubscription]
    ) -> Assignments:
        ordered = _ordered(members)
        ids = [m.member_id for m in ordered]
        rank = {member_id: i for i, member_id in enumerate(ids)}
        eligible_topics = {m.member_id: _topics_of(m, partitions_per_topic) for m in ordered}
        all_partitions = [
            TopicPartition(topic, p)
            for topic in sorted(set().union(*eligible_topics.values()) if ordered else ())
            for p in range(partitions_per_topic[topic])
        ]
        previous = self._previous_owners(ordered, partitions_per_topic, eligible_topics)
        owned: dict[str, set[TopicPartition]] = {member_id: set() for member_id in ids}
        for tp, member_id in previous.items():
            owned[member_id].add(tp)
        subscribers: dict[str, list[str]] = {}
        for member_id in ids:
            for topic in eligible_topics[member_id]:
                subscribers.setdefault(topic, []).append(member_id)

        # 1. Every partition nobody keeps goes to its least loaded subscriber.
        for tp in all_partitions:
            if tp not in previous:
                receiver = min(subscribers[tp.topic], key=lambda m: (len(owned[m]), rank[m]))
                owned[receiver].add(tp)

        # 2. Move from the most loaded to a less loaded subscriber while the gap is 2 or
        # more. Each move lowers the sum of squared counts, so this ends; fresh partitions
        # (not owned before) move first, since moving them revokes nothing.
        while self._move_one(owned, ids, rank, subscribers, previous):
            pass

        # 3. KIP-429: a partition changing hands goes to nobody this generation.
        final = {
            member_id: [tp for tp in parts if previous.get(tp, member_id) == member_id]
            for member_id, parts in owned.items()
        }
        return _result(ordered, final)

    @staticmethod
    def _previous_owners(
        ordered: list[MemberSubscription],
        partitions_per_topic: Mapping[str, int],
        eligible_topics: Mapping[str, set[str]],
    ) -> dict[TopicPartition, str]:
        """Who owns each partition now: a member that claims it and may still have it
        (subscribed, partition exists). Two claims: the newer generation wins (the other
        member missed a rebalance); a tie goes to the first member in order."""
        owners: dict[TopicPartition, tuple[int, str]] = {}
        for member in ordered:
            generation = _claimed_generation(member.subscription)
            for tp in member.subscription.owned_partitions:
                if tp.topic not in eligible_topics[member.member_id]:
                    continue
                if tp.partition >= partitions_per_topic[tp.topic]:
                    continue
                current = owners.get(tp)
                if current is None or generation > current[0]:
                    owners[tp] = (generation, member.member_id)
        return {tp: member_id for tp, (_, member_id) in owners.items()}

    @staticmethod
    def _move_one(
        owned: dict[str, set[TopicPartition]],
        ids: list[str],
        rank: Mapping[str, int],
        subscribers: Mapping[str, list[str]],
        previous: Mapping[TopicPartition, str],
    ) -> bool:
        floor = min(len(parts) for parts in owned.values())
        for donor in sorted(ids, key=lambda m: (-len(owned[m]), rank[m])):
            load = len(owned[donor])
            if load - floor <= 1:
                return False  # nobody, this donor or any after it, can give to anyone
            receivers: dict[str, str] = {}
            for topic in {tp.topic for tp in owned[donor]}:
                receiver = min(subscribers[topic], key=lambda m: (len(owned[m]), rank[m]))
                if load - len(owned[receiver]) > 1:
                    receivers[topic] = receiver
            if not receivers:
                continue
            # Fresh partitions first, then the lowest: deterministic and cheap.
            tp = min(
                (p for p in owned[donor] if p.topic in receivers),
                key=lambda p: (previous.get(p) == donor, p),
            )
            owned[donor].remove(tp)
            owned[receivers[tp.topic]].add(tp)
            return True
        return False


ASSIGNORS: Final[Mapping[str, Assignor]] = {
    a.name: a for a in (RangeAssignor(), RoundRobinAssignor(), CooperativeStickyAssignor())
}


def assignor_for(name: str) -> Assignor:
    """The assignor called ``name``; ValueError naming the known ones otherwise."""
    try:
        return ASSIGNORS[name]
    except KeyError:
        known = ", ".join(repr(n) for n in ASSIGNORS)
        raise ValueError(f"unknown partition assignor {name!r}; known: {known}") from None


def rebalance_protocol_for(names: Sequence[str]) -> RebalanceProtocol:
    """The protocol a member with these assignors follows, as Java picks it: cooperative
    only when every assignor supports it (``["range", "cooperative-sticky"]`` is eager)."""
    if not names:
        raise ValueError("at least one partition assignor is needed")
    common = frozenset(RebalanceProtocol)
    for name in names:
        common &= assignor_for(name).protocols
    if RebalanceProtocol.COOPERATIVE in common:
        return RebalanceProtocol.COOPERATIVE
    return RebalanceProtocol.EAGER
