"""One member of a classic consumer group, as a pure state machine.

Follows Kafka's Java ``AbstractCoordinator`` / ``ConsumerCoordinator``: the member id and
generation, what the member owns, when it must rejoin, what it gives up before a join
(everything when eager; with KIP-429 cooperative rebalancing only what it no longer
subscribes to, and after the join what moved away), what each error code of JoinGroup,
SyncGroup, Heartbeat and OffsetCommit means for it, and the ``max_poll_interval`` bound.

Nothing here awaits or reads a clock: the asyncio driver (``pykaf._consumer.group._driver``)
sends the requests, passes the answers and the time in, and acts on what comes out. Changes to the
assignment accumulate until the consumer takes them (``take_change``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from pykaf._consumer._records import TopicPartition
from pykaf._consumer.group._assignors import RebalanceProtocol
from pykaf._error_codes import error_for_code

__all__ = [
    "LOST_COORDINATOR",
    "LOST_FENCED",
    "LOST_GENERATION",
    "LOST_POLL_TIMEOUT",
    "LOST_SESSION_TIMEOUT",
    "NO_GENERATION",
    "AssignmentChange",
    "ErrorAction",
    "Generation",
    "MemberState",
    "Membership",
    "Revocation",
]

NONE: Final = 0
REQUEST_TIMED_OUT: Final = 7
COORDINATOR_LOAD_IN_PROGRESS: Final = 14
COORDINATOR_NOT_AVAILABLE: Final = 15
NOT_COORDINATOR: Final = 16
ILLEGAL_GENERATION: Final = 22
UNKNOWN_MEMBER_ID: Final = 25
REBALANCE_IN_PROGRESS: Final = 27
MEMBER_ID_REQUIRED: Final = 79
FENCED_INSTANCE_ID: Final = 82
# Codes after which the same request may simply be sent again (after a backoff); the
# client forgets the coordinator itself on the last two.
_RETRY_CODES: Final = frozenset(
    {REQUEST_TIMED_OUT, COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR}
)

_EMPTY: Final[frozenset[TopicPartition]] = frozenset()

# Why a membership was lost (the ``reason`` of the GroupLost event): short, stable words a
# dashboard can count by.
LOST_SESSION_TIMEOUT: Final = "session timeout"  # the coordinator forgot the member
LOST_GENERATION: Final = "generation over"  # the group moved on without this member
LOST_POLL_TIMEOUT: Final = "poll timeout"  # max_poll_interval passed without a poll
LOST_FENCED: Final = "fenced"  # another process has this static member's place
LOST_COORDINATOR: Final = "coordinator gone"  # forgotten while the coordinator was away


class MemberState(enum.Enum):
    UNJOINED = "unjoined"  # no generation: never joined, left, or kicked out
    REBALANCING = "rebalancing"  # JoinGroup / SyncGroup under way
    STABLE = "stable"  # in a generation, with its assignment


@dataclass(frozen=True, slots=True, kw_only=True)
class Generation:
    """A member id in one generation of the group (Java's ``Generation``)."""

    generation_id: int = -1
    member_id: str = ""
    protocol: str | None = None

    @property
    def valid(self) -> bool:
        return self.generation_id >= 0


NO_GENERATION: Final = Generation()


class ErrorAction(enum.Enum):
    """What to do after an error code."""

    RETRY = "retry"  # send the same request again after a backoff
    REJOIN = "rejoin"  # start the join over now (the state says with which member id)
    FAIL = "fail"  # raise to the caller: this request cannot succeed as it stands
    FATAL = "fatal"  # the member cannot go on (fenced): ``fatal`` is set, raised from now on


@dataclass(frozen=True, slots=True, kw_only=True)
class Revocation:
    """What a member gives up before it joins: ``revoked`` (it may still commit their
    offsets, the callback runs first) or ``lost`` (its generation is gone: too late)."""

    revoked: frozenset[TopicPartition] = _EMPTY
    lost: frozenset[TopicPartition] = _EMPTY


@dataclass(frozen=True, slots=True, kw_only=True)
class AssignmentChange:
    """What changed in the assignment since the consumer last asked. Apply ``revoked``
    and ``lost`` first (stop fetching, drop buffered records), then ``added`` (fetch
    from the committed offsets): a partition can be in both when it left and came back
    between two calls, and its position must then be read again."""

    added: frozenset[TopicPartition] = _EMPTY
    revoked: frozenset[TopicPartition] = _EMPTY
    lost: frozenset[TopicPartition] = _EMPTY
    assignment: frozenset[TopicPartition] = _EMPTY
    generation: int = -1

    def __bool__(self) -> bool:
        return bool(self.added or self.revoked or self.lost)


class Membership:
    """The state of one group member (mutable on purpose: it changes on every answer).

    ``now`` arguments are seconds on any monotonic clock.
    """

    def __init__(
        self,
        *,
        protocol: RebalanceProtocol,
        group_instance_id: str | None,
        max_poll_interval: float,
        now: float,
    ) -> None:
        self.protocol = protocol
        self.group_instance_id = group_instance_id
        self.max_poll_interval = max_poll_interval
        self.state = MemberState.UNJOINED
        self.generation = NO_GENERATION
        self.owned: frozenset[TopicPartition] = _EMPTY
        self.subscription: frozenset[str] = frozenset()
        self.subscribed = False
        #: Why the member must (re)join, or None when it need not.
        self.rejoin_reason: str | None = None
        #: Set once the member cannot go on (fenced...): raised on every later call.
        self.fatal: BaseException | None = None
        #: Why the generation was lost (``LOST_*``), until the driver reports it.
        self.lost_reason: str | None = None
        self.last_poll = now
        # The generation of the last completed join, kept while the member rejoins.
        self._stable_generation = NO_GENERATION
        self._added: set[TopicPartition] = set()
        self._revoked: set[TopicPartition] = set()
        self._lost: set[TopicPartition] = set()

    # -- what the consumer asks -----------------------------------------------------------

    @property
    def rejoin_needed(self) -> bool:
        return self.subscribed and self.rejoin_reason is not None

    @property
    def stable(self) -> bool:
        return self.state is MemberState.STABLE and self.generation.valid

    @property
    def dynamic(self) -> bool:
        return self.group_instance_id is None

    def commit_generation(self) -> Generation | None:
        """The generation to commit offsets in, or None when no commit can succeed now.

        Not subscribed (partitions assigned by hand): no generation, as Java's
        standalone commits. Stable: the current one. Rejoining while still holding
        partitions (cooperative): the last stable one, which the coordinator accepts until
        the next generation forms -- so that partitions that keep flowing can commit."""
        if not self.subscribed:
            return NO_GENERATION
        if self.stable:
            return self.generation
        if self.state is MemberState.REBALANCING and self.owned and self._stable_generation.valid:
            return self._stable_generation
        return None

    def subscribe(self, topics: Iterable[str]) -> bool:
        """Set the topics subscribed to; True (and a rejoin requested) if they changed."""
        wanted = frozenset(topics)
        changed = not self.subscribed or wanted != self.subscription
        self.subscription = wanted
        self.subscribed = True
        if changed:
            self.request_rejoin("the subscription changed")
        return changed

    def unsubscribe(self) -> None:
        self.subscribed = False
        self.subscription = frozenset()
        self.rejoin_reason = None

    def poll(self, now: float) -> None:
        self.last_poll = now

    def poll_deadline(self) -> float:
        return self.last_poll + self.max_poll_interval

    def poll_expired(self, now: float) -> bool:
        return now >= self.poll_deadline()

    def request_rejoin(self, reason: str) -> None:
        if self.rejoin_reason is None:
            self.rejoin_reason = reason

    def take_change(self) -> AssignmentChange | None:
        """The accumulated change since the last call, or None if nothing changed."""
        if not (self._added or self._revoked or self._lost):
            return None
        change = AssignmentChange(
            added=frozenset(self._added),
            revoked=frozenset(self._revoked),
            lost=frozenset(self._lost),
            assignment=self.owned,
            generation=self.generation.generation_id,
        )
        self._added.clear()
        self._revoked.clear()
        self._lost.clear()
        return change

    # -- the join -------------------------------------------------------------------------

    def prepare_join(self) -> Revocation:
        """What to give up before joining (Java's ``onJoinPrepare``); ``owned`` shrinks
        accordingly. The caller runs the callbacks, then starts the join."""
        if not self.generation.valid or not self.generation.member_id:
            result = Revocation(lost=self.owned)  # kicked out: somebody else may own them
        elif self.protocol is RebalanceProtocol.EAGER:
            result = Revocation(revoked=self.owned)
        else:
            gone = frozenset(tp for tp in self.owned if tp.topic not in self.subscription)
            result = Revocation(revoked=gone)
        self._give_up(result.revoked, self._revoked)
        self._give_up(result.lost, self._lost)
        return result

    def lose_all(self) -> frozenset[TopicPartition]:
        """Give up everything as lost (fenced, closing after the generation ended)."""
        lost = self.owned
        self._give_up(lost, self._lost)
        return lost

    def revoke_all(self) -> frozenset[TopicPartition]:
        """Give up everything as revoked (leaving the group on purpose)."""
        revoked = self.owned
        self._give_up(revoked, self._revoked)
        return revoked

    def _give_up(self, partitions: frozenset[TopicPartition], into: set[TopicPartition]) -> None:
        if partitions:
            self.owned -= partitions
            into.update(partitions)
            self._added.difference_update(partitions)

    def join_started(self) -> None:
        self.state = MemberState.REBALANCING
        self.rejoin_reason = None

    def member_id_required(self, member_id: str) -> None:
        """MEMBER_ID_REQUIRED (KIP-394): join again at once with the id given."""
        self.generation = Generation(member_id=member_id)

    def joined(self, *, generation_id: int, member_id: str, protocol: str | None) -> None:
        """JoinGroup succeeded; SyncGroup comes next."""
        self.generation = Generation(
            generation_id=generation_id, member_id=member_id, protocol=protocol
        )

    def synced(self, assigned: Iterable[TopicPartition]) -> frozenset[TopicPartition]:
        """SyncGroup succeeded with this assignment: the member is stable. Returns the
        partitions revoked by it (cooperative: they moved to another member; the caller
        runs on_revoked for them, and a follow-up rebalance is requested)."""
        assignment = frozenset(assigned)
        revoked = self.owned - assignment
        added = assignment - self.owned
        if revoked:
            self._give_up(revoked, self._revoked)
            if self.protocol is RebalanceProtocol.COOPERATIVE:
                self.request_rejoin("partitions were revoked: rejoin to hand them over")
        self.owned = assignment
        self._added.update(added)
        self.state = MemberState.STABLE
        self._stable_generation = self.generation
        return revoked

    def reset_generation(
        self, reason: str, *, keep_member_id: bool = False, lost: str = LOST_GENERATION
    ) -> None:
        """The generation is over for this member (Java's ``resetStateAndRejoin``): what
        it owns is lost (``lost``: why, one of ``LOST_*``), declared so at the next
        ``prepare_join``."""
        self.lost_reason = lost
        member_id = self.generation.member_id if keep_member_id else ""
        self.generation = Generation(member_id=member_id)
        self._stable_generation = NO_GENERATION
        self.state = MemberState.UNJOINED
        self.request_rejoin(reason)

    def left(self) -> None:
        """After LeaveGroup (or in place of it, for a static member)."""
        self.generation = NO_GENERATION
        self._stable_generation = NO_GENERATION
        self.state = MemberState.UNJOINED

    def fail(self, error: BaseException) -> None:
        """Fenced: another process has this member's place; what it owns is lost."""
        self.fatal = error
        self.lost_reason = LOST_FENCED
        self.generation = NO_GENERATION
        self._stable_generation = NO_GENERATION
        self.state = MemberState.UNJOINED

    # -- error codes ----------------------------------------------------------------------

    def join_error(self, code: int) -> ErrorAction:
        """A JoinGroup error (Java's ``JoinGroupResponseHandler``)."""
        if code == MEMBER_ID_REQUIRED:
            return ErrorAction.REJOIN  # the caller stored the id with member_id_required
        if code == UNKNOWN_MEMBER_ID:
            self.generation = NO_GENERATION
            return ErrorAction.REJOIN
        if code == ILLEGAL_GENERATION:
            self.generation = Generation(member_id=self.generation.member_id)
            return ErrorAction.REJOIN
        if code in _RETRY_CODES or code == REBALANCE_IN_PROGRESS:
            return ErrorAction.RETRY
        return self._fatal_or_fail(code, "JoinGroup")

    def sync_error(self, code: int) -> ErrorAction:
        """A SyncGroup error (Java's ``SyncGroupResponseHandler``): every one means join
        again, from a reset generation when the member id or generation was refused."""
        if code == UNKNOWN_MEMBER_ID:
            self.generation = NO_GENERATION
            return ErrorAction.REJOIN
        if code == ILLEGAL_GENERATION:
            self.generation = Generation(member_id=self.generation.member_id)
            return ErrorAction.REJOIN
        if code in _RETRY_CODES or code == REBALANCE_IN_PROGRESS:
            return ErrorAction.REJOIN  # the group moved on meanwhile: join it again
        return self._fatal_or_fail(code, "SyncGroup")

    def heartbeat_error(self, code: int, sent: Generation) -> ErrorAction:
        """A Heartbeat error (Java's ``HeartbeatResponseHandler``). Answers about an
        older generation than the current one are ignored (RETRY: keep beating)."""
        if code in _RETRY_CODES:
            return ErrorAction.RETRY
        if code == REBALANCE_IN_PROGRESS:
            if self.state is MemberState.STABLE:
                self.request_rejoin("the group is rebalancing")
            return ErrorAction.RETRY  # keep the session alive until the join is sent
        if code in (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID):
            if sent == self.generation:
                name = "ILLEGAL_GENERATION" if code == ILLEGAL_GENERATION else "UNKNOWN_MEMBER_ID"
                self.reset_generation(
                    f"Heartbeat answered {name}",
                    keep_member_id=code == ILLEGAL_GENERATION,
                    lost=_lost_reason(code),
                )
                return ErrorAction.REJOIN
            return ErrorAction.RETRY
        if code == FENCED_INSTANCE_ID and sent != self.generation:
            return ErrorAction.RETRY
        return self._fatal_or_fail(code, "Heartbeat")

    def commit_error(self, code: int, sent: Generation) -> ErrorAction:
        """An OffsetCommit error (Java's ``OffsetCommitResponseHandler``).

        REJOIN: the group is rebalancing (or this member is rejoining, and the answer is
        about the generation it is leaving): retriable once the rejoin is done. FAIL with
        ILLEGAL_GENERATION or UNKNOWN_MEMBER_ID: this member's generation is over (it is
        reset here; the next ensure_active rejoins and reports its partitions lost).
        """
        if code == REBALANCE_IN_PROGRESS:
            self.request_rejoin("an offset commit met a rebalance")
            return ErrorAction.REJOIN
        if code in (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID):
            if not (sent == self.generation and sent.valid and self.state is MemberState.STABLE):
                return ErrorAction.REJOIN
            name = "ILLEGAL_GENERATION" if code == ILLEGAL_GENERATION else "UNKNOWN_MEMBER_ID"
            self.reset_generation(
                f"OffsetCommit answered {name}",
                keep_member_id=code == ILLEGAL_GENERATION,
                lost=_lost_reason(code),
            )
            return ErrorAction.FAIL
        if code in _RETRY_CODES:
            return ErrorAction.RETRY
        return self._fatal_or_fail(code, "OffsetCommit")

    def _fatal_or_fail(self, code: int, api: str) -> ErrorAction:
        # Only a fenced static member is beyond repair (another process has its id);
        # other refusals (authorization, a bad session timeout...) are raised to the
        # caller each time, and the next call tries again, as Java's poll does.
        if code == FENCED_INSTANCE_ID:
            self.fail(
                error_for_code(
                    code,
                    f"({api}: group_instance_id {self.group_instance_id!r} is in use by"
                    " another member; give every consumer its own group_instance_id)",
                )
            )
            return ErrorAction.FATAL
        if error_for_code(code).retriable:
            return ErrorAction.RETRY
        return ErrorAction.FAIL


def _lost_reason(code: int) -> str:
    # UNKNOWN_MEMBER_ID: the coordinator removed the member (its session expired);
    # ILLEGAL_GENERATION: it knows the member, but a new generation formed without it.
    return LOST_SESSION_TIMEOUT if code == UNKNOWN_MEMBER_ID else LOST_GENERATION
