"""The data of classic consumer groups: states, members, groups, and the answers the
coordinator (``_groups``) gives to JoinGroup and SyncGroup.

A ``Group`` knows its members, which of them are static (KIP-345) or pending (KIP-394),
its generation, protocol and leader, and answers questions about itself (which protocols
all members support, which one they vote for, whether every member has rejoined); the
coordinator decides when things happen.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from typing import Final

__all__ = [
    "COORDINATOR_NOT_AVAILABLE",
    "FENCED_INSTANCE_ID",
    "GROUP_ID_NOT_FOUND",
    "ILLEGAL_GENERATION",
    "INCONSISTENT_GROUP_PROTOCOL",
    "INVALID_GROUP_ID",
    "INVALID_SESSION_TIMEOUT",
    "MEMBER_ID_REQUIRED",
    "NONE",
    "NON_EMPTY_GROUP",
    "NOT_COORDINATOR",
    "REBALANCE_IN_PROGRESS",
    "UNKNOWN_MEMBER_ID",
    "UNKNOWN_SERVER_ERROR",
    "Group",
    "GroupSettings",
    "GroupState",
    "JoinResult",
    "Member",
    "Protocols",
    "SyncResult",
]

NONE: Final = 0
COORDINATOR_NOT_AVAILABLE: Final = 15
NOT_COORDINATOR: Final = 16
ILLEGAL_GENERATION: Final = 22
INCONSISTENT_GROUP_PROTOCOL: Final = 23
INVALID_GROUP_ID: Final = 24
UNKNOWN_MEMBER_ID: Final = 25
INVALID_SESSION_TIMEOUT: Final = 26
REBALANCE_IN_PROGRESS: Final = 27
NON_EMPTY_GROUP: Final = 68
GROUP_ID_NOT_FOUND: Final = 69
MEMBER_ID_REQUIRED: Final = 79
FENCED_INSTANCE_ID: Final = 82
UNKNOWN_SERVER_ERROR: Final = -1


class GroupState(enum.Enum):
    """Kafka's classic group states; the value is the name DescribeGroups reports."""

    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupSettings:
    """Broker settings of the coordinator (seconds; Kafka's names in the comments).

    ``initial_rebalance_delay`` is 0.1 s rather than Kafka's 3 s: long enough for
    consumers started together to land in one generation, short enough for tests.
    """

    initial_rebalance_delay: float = 0.1  # group.initial.rebalance.delay.ms (Kafka: 3 s)
    min_session_timeout: float = 6.0  # group.min.session.timeout.ms
    max_session_timeout: float = 1800.0  # group.max.session.timeout.ms
    new_member_join_timeout: float = 300.0  # Kafka's fixed 5 minutes for new members
    max_metadata_size: int = 4096  # offset.metadata.max.bytes

    def __post_init__(self) -> None:
        if self.initial_rebalance_delay < 0 or self.new_member_join_timeout <= 0:
            raise ValueError("group delays must not be negative")
        if not 0 < self.min_session_timeout <= self.max_session_timeout:
            raise ValueError("need 0 < min_session_timeout <= max_session_timeout")


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinResult:
    """What a JoinGroup response carries."""

    error: int
    member_id: str
    generation: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    skip_assignment: bool = False
    # (member id, group instance id, metadata): the leader's view of the group.
    members: tuple[tuple[str, str | None, bytes], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncResult:
    """What a SyncGroup response carries."""

    error: int
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


Protocols = tuple[tuple[str, bytes], ...]


class Member:
    """One member of a group (mutable: it rejoins, syncs, heartbeats)."""

    __slots__ = (
        "assignment",
        "client_host",
        "client_id",
        "instance_id",
        "is_new",
        "join_future",
        "member_id",
        "protocol_type",
        "protocols",
        "rebalance_timeout_ms",
        "session_timeout_ms",
        "sync_future",
        "timer",
    )

    def __init__(
        self,
        member_id: str,
        *,
        instance_id: str | None,
        client_id: str,
        client_host: str,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocol_type: str,
        protocols: Protocols,
    ) -> None:
        self.member_id = member_id
        self.instance_id = instance_id
        self.client_id = client_id
        self.client_host = client_host
        self.session_timeout_ms = session_timeout_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.protocol_type = protocol_type
        self.protocols = protocols
        self.assignment = b""
        self.is_new = False
        # Set while a JoinGroup / SyncGroup response is held. A future cancelled because
        # its connection went away still counts, as Kafka's parked callbacks do.
        self.join_future: asyncio.Future[JoinResult] | None = None
        self.sync_future: asyncio.Future[SyncResult] | None = None
        self.timer: asyncio.TimerHandle | None = None

    def metadata(self, protocol: str | None) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        return b""

    def vote(self, candidates: set[str]) -> str:
        """The first of this member's protocols (its preference order) all support."""
        return next(name for name, _ in self.protocols if name in candidates)


class Group:
    """One classic group (mutable; owned by the coordinator)."""

    def __init__(self, group_id: str) -> None:
        self.group_id = group_id
        self.state = GroupState.EMPTY
        self.previous_state = GroupState.EMPTY
        self.generation = 0
        self.protocol_type: str | None = None
        self.protocol_name: str | None = None
        self.leader_id: str | None = None
        self.members: dict[str, Member] = {}
        self.static_members: dict[str, str] = {}  # group instance id -> member id
        self.pending_members: dict[str, asyncio.TimerHandle] = {}  # KIP-394, not yet joined
        self.pending_sync: set[str] = set()
        self.new_member_added = False
        self.join_timer: asyncio.TimerHandle | None = None
        self.sync_timer: asyncio.TimerHandle | None = None

    def transition(self, state: GroupState) -> None:
        self.previous_state, self.state = self.state, state

    @property
    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def all_joined(self) -> bool:
        return not self.pending_members and all(
            m.join_future is not None for m in self.members.values()
        )

    def candidate_protocols(self) -> set[str]:
        sets = [{name for name, _ in m.protocols} for m in self.members.values()]
        return set.intersection(*sets) if sets else set()

    def supports(self, protocol_type: str, protocols: Protocols) -> bool:
        if not self.members:  # Empty, or rebalancing with only pending members left
            return bool(protocol_type) and bool(protocols)
        candidates = self.candidate_protocols()
        return protocol_type == self.protocol_type and any(n in candidates for n, _ in protocols)

    def select_protocol(self) -> str:
        """Every member votes for its preferred candidate; the most votes win (ties:
        the leader's preference order, where Kafka leaves it to a hash map)."""
        candidates = self.candidate_protocols()
        votes: dict[str, int] = {}
        for member in self.members.values():
            choice = member.vote(candidates)
            votes[choice] = votes.get(choice, 0) + 1
        leader = self.members.get(self.leader_id or "")
        order = [n for n, _ in leader.protocols] if leader else sorted(votes)
        return max(votes, key=lambda name: (votes[name], -order.index(name)))

    def add(self, member: Member, future: asyncio.Future[JoinResult] | None) -> None:
        if member.instance_id is not None:
            self.static_members[member.instance_id] = member.member_id
        if not self.members:
            self.protocol_type = member.protocol_type
        if self.leader_id is None:
            self.leader_id = member.member_id
        self.members[member.member_id] = member
        member.join_future = future

    def remove(self, member_id: str) -> Member | None:
        member = self.members.pop(member_id, None)
        if (
            member is not None
            and member.instance_id is not None
            and self.static_members.get(member.instance_id) == member_id
        ):
            del self.static_members[member.instance_id]
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)
        self.pending_sync.discard(member_id)
        return member

    def validate_member(self, member_id: str, instance_id: str | None) -> int:
        """Kafka's validateCurrentMember: the instance id (if any) must map to the
        member id, and the member must exist."""
        if instance_id is not None:
            current = self.static_members.get(instance_id)
            if current is None:
                return UNKNOWN_MEMBER_ID
            return FENCED_INSTANCE_ID if current != member_id else NONE
        return NONE if member_id in self.members else UNKNOWN_MEMBER_ID

    def check(self, member_id: str, instance_id: str | None, generation: int) -> int:
        """``validate_member``, then the generation (ILLEGAL_GENERATION if stale)."""
        error = self.validate_member(member_id, instance_id)
        if error == NONE and generation != self.generation:
            return ILLEGAL_GENERATION
        return error

    def member_list(self) -> tuple[tuple[str, str | None, bytes], ...]:
        return tuple(
            (m.member_id, m.instance_id, m.metadata(self.protocol_name))
            for m in self.members.values()
        )

    def current(
        self, member_id: str, *, with_members: bool, leader: str | None = None
    ) -> JoinResult:
        """A JoinGroup answer describing the current generation."""
        return JoinResult(
            error=NONE,
            member_id=member_id,
            generation=self.generation,
            protocol_type=self.protocol_type,
            protocol_name=self.protocol_name,
            leader=(self.leader_id if leader is None else leader) or "",
            members=self.member_list() if with_members else (),
        )

    def subscribed_topics(self) -> set[str] | None:
        """Topics the members subscribe to (consumer protocol), or None if unknown."""
        if self.protocol_type != "consumer" or self.protocol_name is None:
            return None if self.members else set()
        topics: set[str] = set()
        for member in self.members.values():
            parsed = _subscription_topics(member.metadata(self.protocol_name))
            if parsed is None:
                return None
            topics |= parsed
        return topics


def _subscription_topics(data: bytes) -> set[str] | None:
    """The topics of a ConsumerProtocolSubscription (version, [topic], ...), or None."""
    try:
        count = int.from_bytes(data[2:6], "big", signed=True)
        pos, topics = 6, set()
        for _ in range(count):
            size = int.from_bytes(data[pos : pos + 2], "big", signed=True)
            if size < 0 or pos + 2 + size > len(data):
                return None
            topics.add(data[pos + 2 : pos + 2 + size].decode())
            pos += 2 + size
        return topics if count >= 0 else None
    except (UnicodeDecodeError, ValueError):
        return None
