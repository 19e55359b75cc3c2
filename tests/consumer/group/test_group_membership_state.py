"""The pure membership state machine: what is given up before a join, what a join
changes, what each error code means, max_poll_interval, commit generations."""

from __future__ import annotations

import pytest

from pykaf._consumer._records import TopicPartition as TP
from pykaf._consumer.group._assignors import RebalanceProtocol
from pykaf._consumer.group._membership import (
    NO_GENERATION,
    ErrorAction,
    Generation,
    Membership,
    MemberState,
)
from pykaf._kafka_errors import FencedInstanceIdError

EAGER, COOPERATIVE = RebalanceProtocol.EAGER, RebalanceProtocol.COOPERATIVE
T0, T1, T2, U0 = TP("t", 0), TP("t", 1), TP("t", 2), TP("u", 0)


def stable(
    protocol: RebalanceProtocol, owned: set[TP], *, instance: str | None = None
) -> Membership:
    state = Membership(protocol=protocol, group_instance_id=instance, max_poll_interval=10, now=0)
    state.subscribe({"t", "u"})
    state.prepare_join()
    state.join_started()
    state.joined(generation_id=1, member_id="m-1", protocol="range")
    state.synced(owned)
    state.take_change()
    return state


def test_first_join() -> None:
    state = Membership(protocol=EAGER, group_instance_id=None, max_poll_interval=10, now=0)
    assert not state.rejoin_needed  # nothing subscribed yet
    assert state.commit_generation() == NO_GENERATION  # manual assignment: standalone commits
    state.subscribe(["t"])
    assert state.rejoin_needed
    assert state.prepare_join().revoked == frozenset()
    state.join_started()
    assert state.state is MemberState.REBALANCING
    assert not state.rejoin_needed
    assert state.commit_generation() is None  # owns nothing while rebalancing
    state.member_id_required("m-1")
    assert state.generation == Generation(member_id="m-1")
    state.joined(generation_id=3, member_id="m-1", protocol="range")
    assert state.synced({T0, T1}) == frozenset()
    change = state.take_change()
    assert change is not None
    assert (change.added, change.revoked, change.assignment, change.generation) == (
        {T0, T1},
        frozenset(),
        {T0, T1},
        3,
    )
    assert state.take_change() is None
    assert state.stable
    assert state.commit_generation() == Generation(
        generation_id=3, member_id="m-1", protocol="range"
    )


def test_eager_revokes_everything_before_a_join() -> None:
    state = stable(EAGER, {T0, U0})
    state.request_rejoin("test")
    assert state.prepare_join().revoked == {T0, U0}
    assert state.owned == frozenset()
    state.join_started()
    state.joined(generation_id=2, member_id="m-1", protocol="range")
    state.synced({T0, T1})
    change = state.take_change()
    assert change is not None
    # T0 went and came back between two takes: in both sets (its position is read again).
    assert (change.revoked, change.added) == ({T0, U0}, {T0, T1})


def test_cooperative_keeps_partitions_then_revokes_only_what_moved() -> None:
    state = stable(COOPERATIVE, {T0, T1, U0})
    state.subscribe({"t"})  # u dropped from the subscription
    assert state.prepare_join().revoked == {U0}
    state.join_started()
    assert state.commit_generation() == Generation(
        generation_id=1, member_id="m-1", protocol="range"
    )
    state.joined(generation_id=2, member_id="m-1", protocol="cooperative-sticky")
    assert state.synced({T0, T2}) == {T1}  # T1 moves to another member
    assert state.rejoin_needed  # the follow-up rebalance hands T1 over
    change = state.take_change()
    assert change is not None
    assert (change.revoked, change.added, change.assignment) == ({U0, T1}, {T2}, {T0, T2})


def test_a_reset_generation_means_lost_partitions() -> None:
    state = stable(COOPERATIVE, {T0, T1})
    sent = state.generation
    assert state.heartbeat_error(25, sent) is ErrorAction.REJOIN  # UNKNOWN_MEMBER_ID
    assert state.generation == NO_GENERATION
    assert state.commit_generation() is None
    revocation = state.prepare_join()
    assert (revocation.lost, revocation.revoked) == ({T0, T1}, frozenset())
    change = state.take_change()
    assert change is not None
    assert change.lost == {T0, T1}


def test_illegal_generation_keeps_the_member_id() -> None:
    state = stable(EAGER, {T0})
    assert state.heartbeat_error(22, state.generation) is ErrorAction.REJOIN
    assert state.generation == Generation(member_id="m-1")


def test_heartbeat_answers_about_an_older_generation_are_ignored() -> None:
    state = stable(EAGER, {T0})
    old = Generation(generation_id=0, member_id="m-1", protocol="range")
    assert state.heartbeat_error(22, old) is ErrorAction.RETRY
    assert state.heartbeat_error(82, old) is ErrorAction.RETRY
    assert state.stable


def test_heartbeat_rebalance_in_progress_and_coordinator_errors() -> None:
    state = stable(EAGER, {T0})
    assert state.heartbeat_error(16, state.generation) is ErrorAction.RETRY
    assert not state.rejoin_needed
    assert state.heartbeat_error(27, state.generation) is ErrorAction.RETRY
    assert state.rejoin_needed
    assert state.stable  # still a member until the join is sent


def test_fenced_static_member_is_fatal() -> None:
    state = stable(EAGER, {T0}, instance="i-1")
    assert state.heartbeat_error(82, state.generation) is ErrorAction.FATAL
    assert isinstance(state.fatal, FencedInstanceIdError)
    assert "'i-1'" in str(state.fatal)


@pytest.mark.parametrize(
    ("code", "action"),
    [(79, ErrorAction.REJOIN), (14, ErrorAction.RETRY), (15, ErrorAction.RETRY),
     (16, ErrorAction.RETRY), (27, ErrorAction.RETRY), (23, ErrorAction.FAIL),
     (26, ErrorAction.FAIL), (82, ErrorAction.FATAL)],
)  # fmt: skip
def test_join_errors(code: int, action: ErrorAction) -> None:
    state = Membership(protocol=EAGER, group_instance_id="i", max_poll_interval=10, now=0)
    assert state.join_error(code) is action


def test_sync_errors_all_mean_join_again() -> None:
    for code in (27, 16, 22, 25):
        state = stable(EAGER, set())
        assert state.sync_error(code) is ErrorAction.REJOIN
    state = stable(EAGER, set())
    state.sync_error(25)
    assert state.generation == NO_GENERATION


def test_commit_errors() -> None:
    state = stable(EAGER, {T0})
    sent = state.generation
    assert state.commit_error(14, sent) is ErrorAction.RETRY
    assert state.commit_error(27, sent) is ErrorAction.REJOIN
    assert state.rejoin_needed
    assert state.stable  # a rebalance, not the end of the generation
    assert state.commit_error(12, sent) is ErrorAction.FAIL  # OFFSET_METADATA_TOO_LARGE
    assert state.commit_error(22, sent) is ErrorAction.FAIL  # the generation is over
    assert not state.stable


def test_commit_errors_while_rejoining_are_rebalancing() -> None:
    state = stable(COOPERATIVE, {T0})
    sent = state.commit_generation()
    assert sent is not None
    state.request_rejoin("test")
    state.prepare_join()
    state.join_started()
    assert state.commit_error(22, sent) is ErrorAction.REJOIN


def test_poll_interval() -> None:
    state = Membership(protocol=EAGER, group_instance_id=None, max_poll_interval=5, now=100)
    assert state.poll_deadline() == 105
    assert not state.poll_expired(104.9)
    assert state.poll_expired(105)
    state.poll(110)
    assert not state.poll_expired(114)


def test_unsubscribe_stops_rejoining_and_leave_resets() -> None:
    state = stable(EAGER, {T0})
    assert state.revoke_all() == {T0}
    state.left()
    assert state.generation == NO_GENERATION
    state.unsubscribe()
    state.request_rejoin("x")
    assert not state.rejoin_needed
