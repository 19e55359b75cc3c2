"""How a classic group rebalances: the join phase, the sync phase, and the timers.

``Rebalancer`` is the mechanics under ``GroupCoordinator`` (``_groups``), after Kafka's
GroupCoordinator: a rebalance moves a group to PreparingRebalance and waits until every
member has rejoined or the rebalance timeout (KIP-62) ends it, dropping the dynamic
members that did not come back; the first rebalance of an Empty group waits
``initial_rebalance_delay`` and again while new members keep arriving (KIP-134). Then
the generation is bumped, the protocol chosen, the held JoinGroup responses are sent and
the group waits in CompletingRebalance for the leader's SyncGroup; members that never
sync are removed after the rebalance timeout. Session timers remove silent members.

Timers are ``loop.call_later`` handles; ``close()`` cancels them and every held response.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from pykaf.broker._group_model import (
    NONE,
    REBALANCE_IN_PROGRESS,
    UNKNOWN_MEMBER_ID,
    Group,
    GroupSettings,
    GroupState,
    JoinResult,
    Member,
    SyncResult,
)

__all__ = ["Rebalancer", "done", "settle"]

log = logging.getLogger("pykaf.broker")


def done(result: Any) -> asyncio.Future[Any]:
    """A future that already holds ``result`` (an answer that is not held)."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_result(result)
    return future


def settle(future: asyncio.Future[Any] | None, result: Any) -> None:
    """Answer a held request, unless it is gone (its connection closed: cancelled)."""
    if future is not None and not future.done():
        future.set_result(result)


class Rebalancer:
    """The groups of one cluster and the machinery that rebalances them."""

    def __init__(self, settings: GroupSettings) -> None:
        self.settings = settings
        self.groups: dict[str, Group] = {}
        self.closed = False

    # -- timers -------------------------------------------------------------------------

    def _later(
        self, delay_ms: int, callback: Callable[..., None], *args: Any
    ) -> asyncio.TimerHandle:
        def run() -> None:
            if not self.closed:
                callback(*args)

        return asyncio.get_running_loop().call_later(delay_ms / 1000, run)

    def _schedule_heartbeat(
        self, group: Group, member: Member, timeout_ms: int | None = None
    ) -> None:
        if member.timer is not None:
            member.timer.cancel()
        timeout = member.session_timeout_ms if timeout_ms is None else timeout_ms
        member.timer = self._later(timeout, self._expire_member, group, member.member_id)

    def _set_join_timer(
        self, group: Group, delay_ms: int, callback: Callable[..., None], *args: Any
    ) -> None:
        if group.join_timer is not None:
            group.join_timer.cancel()
        group.join_timer = self._later(delay_ms, callback, group, *args)

    def close(self) -> None:
        """Cancel every timer and held response (the cluster is stopping)."""
        self.closed = True
        for group in self.groups.values():
            self._dispose(group)

    def _dispose(self, group: Group) -> None:
        for handle in (group.join_timer, group.sync_timer, *group.pending_members.values()):
            if handle is not None:
                handle.cancel()
        group.pending_members.clear()
        for member in group.members.values():
            if member.timer is not None:
                member.timer.cancel()
            for future in (member.join_future, member.sync_future):
                if future is not None and not future.done():
                    future.cancel()

    # -- rebalancing --------------------------------------------------------------------

    def _rebalance_or_complete(self, group: Group, reason: str) -> None:
        if group.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE, GroupState.EMPTY):
            self._prepare_rebalance(group, reason)
        else:
            self._maybe_complete_join(group)

    def _maybe_complete_join(self, group: Group) -> None:
        if (
            group.state is GroupState.PREPARING_REBALANCE
            and group.all_joined()
            and group.previous_state is not GroupState.EMPTY
        ):
            self._complete_join(group)

    def _prepare_rebalance(self, group: Group, reason: str) -> None:
        if group.state is GroupState.COMPLETING_REBALANCE:
            for member in group.members.values():
                member.assignment = b""
            self._propagate_assignment(group, REBALANCE_IN_PROGRESS)
        self._clear_pending_sync(group)
        initial = group.state is GroupState.EMPTY
        group.transition(GroupState.PREPARING_REBALANCE)
        log.info(
            "group %s: rebalancing after generation %d: %s",
            group.group_id,
            group.generation,
            reason,
        )
        if initial:
            delay = int(self.settings.initial_rebalance_delay * 1000)
            remaining = max(group.rebalance_timeout_ms - delay, 0)
            self._set_join_timer(group, delay, self._initial_join_tick, delay, remaining)
        elif group.all_joined():
            self._complete_join(group)
        else:
            self._set_join_timer(group, group.rebalance_timeout_ms, self._complete_join)

    def _initial_join_tick(self, group: Group, delay: int, remaining: int) -> None:
        """KIP-134: the first rebalance waits, and waits again while members keep coming."""
        group.join_timer = None
        if group.new_member_added and remaining != 0:
            group.new_member_added = False
            configured = int(self.settings.initial_rebalance_delay * 1000)
            next_delay = min(configured, remaining)
            self._set_join_timer(
                group,
                next_delay,
                self._initial_join_tick,
                next_delay,
                max(remaining - delay, 0),
            )
        else:
            self._complete_join(group)

    def _complete_join(self, group: Group) -> None:
        if group.join_timer is not None:
            group.join_timer.cancel()
            group.join_timer = None
        if group.state is not GroupState.PREPARING_REBALANCE:
            return
        # Dynamic members that did not rejoin in time are gone; static ones stay (KIP-345)
        # and are removed by their session timeout if they never come back.
        for member in list(group.members.values()):
            if member.join_future is None and member.instance_id is None:
                self._drop(group, member)
        if not self._elect_joined_leader(group) and group.members:
            # Only absent static members: wait another round for sessions to expire.
            self._set_join_timer(group, group.rebalance_timeout_ms, self._complete_join)
            return
        group.generation += 1
        if not group.members:
            group.protocol_name = None
            group.transition(GroupState.EMPTY)
            group.pending_sync.clear()
            log.info("group %s: empty at generation %d", group.group_id, group.generation)
            return
        group.protocol_name = group.select_protocol()
        group.transition(GroupState.COMPLETING_REBALANCE)
        group.pending_sync.clear()
        log.info(
            "group %s: generation %d, %d members",
            group.group_id,
            group.generation,
            len(group.members),
        )
        for member in group.members.values():
            is_leader = member.member_id == group.leader_id
            settle(member.join_future, group.current(member.member_id, with_members=is_leader))
            member.join_future = None
            member.is_new = False
            self._schedule_heartbeat(group, member)
            group.pending_sync.add(member.member_id)
        # Members that never send SyncGroup are removed after the rebalance timeout.
        if group.sync_timer is not None:
            group.sync_timer.cancel()
        group.sync_timer = self._later(
            group.rebalance_timeout_ms, self._expire_pending_sync, group, group.generation
        )

    @staticmethod
    def _elect_joined_leader(group: Group) -> bool:
        if group.leader_id is None:
            return False
        if group.members[group.leader_id].join_future is not None:
            return True
        for member_id, member in group.members.items():
            if member.join_future is not None:
                group.leader_id = member_id
                return True
        return False

    def _propagate_assignment(self, group: Group, error: int) -> None:
        ok = error == NONE
        for member in group.members.values():
            if member.sync_future is None:
                continue
            settle(
                member.sync_future,
                SyncResult(
                    error=error,
                    protocol_type=group.protocol_type if ok else None,
                    protocol_name=group.protocol_name if ok else None,
                    assignment=member.assignment,
                ),
            )
            member.sync_future = None
            self._schedule_heartbeat(group, member)

    def _clear_pending_sync(self, group: Group) -> None:
        group.pending_sync.clear()
        if group.sync_timer is not None:
            group.sync_timer.cancel()
            group.sync_timer = None

    def _expire_pending_sync(self, group: Group, generation: int) -> None:
        group.sync_timer = None
        if generation != group.generation or not group.pending_sync:
            return
        if group.state not in (GroupState.COMPLETING_REBALANCE, GroupState.STABLE):
            return
        missing = sorted(group.pending_sync)
        for member_id in missing:
            member = group.members.get(member_id)
            if member is not None:
                self._drop(group, member)
        self._prepare_rebalance(group, f"no SyncGroup from {missing}")

    # -- removal ------------------------------------------------------------------------

    def _drop(self, group: Group, member: Member) -> None:
        if member.timer is not None:
            member.timer.cancel()
            member.timer = None
        group.remove(member.member_id)

    def _remove_member(self, group: Group, member: Member, reason: str) -> None:
        """Kafka's removeMemberAndUpdateGroup: answer its held requests, remove it, and
        rebalance (or finish the join phase it was the last one missing from)."""
        settle(member.join_future, JoinResult(error=UNKNOWN_MEMBER_ID, member_id=""))
        settle(member.sync_future, SyncResult(error=UNKNOWN_MEMBER_ID))
        member.join_future = member.sync_future = None
        self._drop(group, member)
        if group.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._prepare_rebalance(group, reason)
        elif group.state is GroupState.PREPARING_REBALANCE and group.all_joined():
            self._complete_join(group)

    def _expire_member(self, group: Group, member_id: str) -> None:
        if self.groups.get(group.group_id) is not group:
            return
        member = group.members.get(member_id)
        if member is None:
            return
        member.timer = None
        # Members parked in JoinGroup or SyncGroup are waiting on us, not failing; the
        # end of that phase reschedules them. New members are the exception (see above).
        if not member.is_new and (member.join_future is not None or member.sync_future is not None):
            return
        log.info("group %s: member %s session expired", group.group_id, member_id)
        self._remove_member(group, member, f"member {member_id} session expired")

    def _expire_pending(self, group: Group, member_id: str) -> None:
        if group.pending_members.pop(member_id, None) is None:
            return
        if group.state is GroupState.PREPARING_REBALANCE and group.all_joined():
            self._complete_join(group)

    def _synced(self, group: Group, member_id: str) -> None:
        group.pending_sync.discard(member_id)
        if not group.pending_sync and group.sync_timer is not None:
            group.sync_timer.cancel()
            group.sync_timer = None
