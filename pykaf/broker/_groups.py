"""The classic consumer-group coordinator: what each group request does to a group.

Follows Kafka's GroupCoordinator for the classic protocol (JoinGroup / SyncGroup /
Heartbeat / LeaveGroup / OffsetCommit checks), including KIP-345 (static members),
KIP-394 (MEMBER_ID_REQUIRED) and KIP-814 (a static leader that rejoins may skip the
assignment). Cooperative rebalancing (KIP-429) needs nothing here: the clients do the
incremental part over the same protocol.

States: Empty -> PreparingRebalance (members join; JoinGroup responses are held) ->
CompletingRebalance (the leader computes the assignment; SyncGroup responses are held)
-> Stable. A new member, a leave, a session expiry or changed metadata moves the group
back to PreparingRebalance. Dead is what a deleted group is.

The data is in ``_group_model``, the rebalance mechanics and timers in
``_group_rebalance``, committed offsets in ``_group_offsets``. One coordinator per
cluster (``group_coordinator(state)``), closed with the cluster state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
import weakref
from collections.abc import Sequence

from pykaf.broker._group_model import (
    COORDINATOR_NOT_AVAILABLE,
    FENCED_INSTANCE_ID,
    GROUP_ID_NOT_FOUND,
    ILLEGAL_GENERATION,
    INCONSISTENT_GROUP_PROTOCOL,
    INVALID_GROUP_ID,
    INVALID_SESSION_TIMEOUT,
    MEMBER_ID_REQUIRED,
    NON_EMPTY_GROUP,
    NONE,
    NOT_COORDINATOR,
    REBALANCE_IN_PROGRESS,
    UNKNOWN_MEMBER_ID,
    UNKNOWN_SERVER_ERROR,
    Group,
    GroupSettings,
    GroupState,
    JoinResult,
    Member,
    SyncResult,
)
from pykaf.broker._group_offsets import OffsetStore
from pykaf.broker._group_rebalance import Rebalancer, done, settle
from pykaf.broker._state import ClusterState

__all__ = [
    "GroupCoordinator",
    "configure_groups",
    "coordinator_error",
    "group_coordinator",
]

log = logging.getLogger("pykaf.broker")


class GroupCoordinator(Rebalancer):
    """Every classic group of one cluster, and their committed offsets: the requests' side
    (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, commits, deletion)."""

    def __init__(self, state: ClusterState, settings: GroupSettings | None = None) -> None:
        super().__init__(settings or GroupSettings())
        self.state = state
        self.offsets = OffsetStore(state)
        # Groups with committed offsets exist (Empty) after a restart, as Kafka loads them.
        for group_id in self.offsets.groups():
            self.groups[group_id] = Group(group_id)

    # -- JoinGroup ----------------------------------------------------------------------

    def join(
        self,
        group_id: str,
        template: Member,
        *,
        require_known_member_id: bool,
        supports_skip_assignment: bool,
    ) -> asyncio.Future[JoinResult]:
        """Handle a JoinGroup from the member ``template`` describes (its member id is the
        request's, "" for a new member); the future resolves when the response is due."""
        member_id = template.member_id
        if not group_id:
            return done(JoinResult(error=INVALID_GROUP_ID, member_id=member_id))
        low, high = self.settings.min_session_timeout, self.settings.max_session_timeout
        if not low * 1000 <= template.session_timeout_ms <= high * 1000:
            return done(JoinResult(error=INVALID_SESSION_TIMEOUT, member_id=member_id))
        group = self.groups.get(group_id)
        if group is None:
            if member_id:
                return done(JoinResult(error=UNKNOWN_MEMBER_ID, member_id=member_id))
            group = self.groups[group_id] = Group(group_id)
        if group.state is GroupState.DEAD:
            return done(JoinResult(error=COORDINATOR_NOT_AVAILABLE, member_id=member_id))
        if not group.supports(template.protocol_type, template.protocols):
            return done(JoinResult(error=INCONSISTENT_GROUP_PROTOCOL, member_id=member_id))
        future: asyncio.Future[JoinResult] = asyncio.get_running_loop().create_future()
        if not member_id:
            self._join_new_member(
                group, template, future, require_known_member_id, supports_skip_assignment
            )
        else:
            self._join_known_member(group, template, future)
        return future

    def _join_new_member(
        self,
        group: Group,
        template: Member,
        future: asyncio.Future[JoinResult],
        require_known_member_id: bool,
        supports_skip_assignment: bool,
    ) -> None:
        prefix = template.instance_id if template.instance_id is not None else template.client_id
        new_id = f"{prefix}-{uuid.uuid4()}"
        template.member_id = new_id
        if template.instance_id is not None:
            old_id = group.static_members.get(template.instance_id)
            if old_id is not None:
                self._replace_static_member(
                    group, old_id, template, future, supports_skip_assignment
                )
            else:
                self._add_member(group, template, future)
        elif require_known_member_id:
            # KIP-394: the member gets its id now and must come back with it; until then
            # it is pending, and the join phase waits for it (bounded by its session).
            group.pending_members[new_id] = self._later(
                template.session_timeout_ms, self._expire_pending, group, new_id
            )
            future.set_result(JoinResult(error=MEMBER_ID_REQUIRED, member_id=new_id))
        else:
            self._add_member(group, template, future)

    def _join_known_member(
        self, group: Group, template: Member, future: asyncio.Future[JoinResult]
    ) -> None:
        member_id = template.member_id
        pending = group.pending_members.pop(member_id, None)
        if pending is not None:
            pending.cancel()
            if template.instance_id is not None:
                # Kafka treats this as an internal error: pending members are dynamic.
                future.set_result(JoinResult(error=UNKNOWN_SERVER_ERROR, member_id=member_id))
                return
            self._add_member(group, template, future)
            return
        error = group.validate_member(member_id, template.instance_id)
        if error != NONE:
            future.set_result(JoinResult(error=error, member_id=member_id))
            return
        member = group.members[member_id]
        same = member.protocols == template.protocols
        if group.state is GroupState.PREPARING_REBALANCE:
            self._update_member(group, member, template, future)
        elif group.state is GroupState.COMPLETING_REBALANCE:
            if same:
                # Probably a lost JoinGroup response: answer the current generation again.
                is_leader = group.leader_id == member_id
                future.set_result(group.current(member_id, with_members=is_leader))
            else:
                self._update_member(group, member, template, future)
        elif group.state is GroupState.STABLE:
            if group.leader_id == member_id or not same:
                # A leader's rejoin forces a rebalance (e.g. the topics' partitions changed).
                self._update_member(group, member, template, future)
            else:
                future.set_result(group.current(member_id, with_members=False))
        else:
            future.set_result(JoinResult(error=UNKNOWN_MEMBER_ID, member_id=member_id))

    def _add_member(self, group: Group, member: Member, future: asyncio.Future[JoinResult]) -> None:
        member.is_new = True
        if (
            group.state is GroupState.PREPARING_REBALANCE
            and group.previous_state is GroupState.EMPTY
        ):
            group.new_member_added = True  # extends the initial delay
        group.add(member, future)
        # A new member cannot heartbeat, and a parked JoinGroup hides a disconnect: bound
        # its wait separately from its session.
        self._schedule_heartbeat(group, member, int(self.settings.new_member_join_timeout * 1000))
        self._rebalance_or_complete(group, f"new member {member.member_id} joined")

    def _update_member(
        self, group: Group, member: Member, template: Member, future: asyncio.Future[JoinResult]
    ) -> None:
        member.protocols = template.protocols
        member.session_timeout_ms = template.session_timeout_ms
        member.rebalance_timeout_ms = template.rebalance_timeout_ms
        if member.join_future is not None and not member.join_future.done():
            # A second JoinGroup while one is parked can only come on another connection
            # (each connection has one request in progress): the first is stale. Cancelling
            # it closes that connection rather than answering it wrongly.
            member.join_future.cancel()
        member.join_future = future
        self._rebalance_or_complete(group, f"member {member.member_id} rejoined")

    def _replace_static_member(
        self,
        group: Group,
        old_id: str,
        template: Member,
        future: asyncio.Future[JoinResult],
        supports_skip_assignment: bool,
    ) -> None:
        """KIP-345: a known group instance id joined without its member id (a restart):
        the new member id takes the old one's place; the old one is fenced."""
        old = group.members.pop(old_id)
        if old.timer is not None:
            old.timer.cancel()
        settle(old.join_future, JoinResult(error=FENCED_INSTANCE_ID, member_id=old_id))
        settle(old.sync_future, SyncResult(error=FENCED_INSTANCE_ID))
        previous_leader = group.leader_id
        new = template
        new.assignment = old.assignment
        group.members[new.member_id] = new
        assert new.instance_id is not None
        group.static_members[new.instance_id] = new.member_id
        if group.leader_id == old_id:
            group.leader_id = new.member_id
        if old_id in group.pending_sync:
            group.pending_sync.discard(old_id)
            group.pending_sync.add(new.member_id)
        self._schedule_heartbeat(group, new)
        if group.state is GroupState.STABLE:
            if group.protocol_name == group.select_protocol():
                # Nothing that matters to the assignment changed: no rebalance.
                is_leader = group.leader_id == new.member_id
                if supports_skip_assignment:
                    result = dataclasses.replace(
                        group.current(new.member_id, with_members=is_leader),
                        skip_assignment=is_leader,
                    )
                else:
                    result = group.current(
                        new.member_id, with_members=False, leader=previous_leader
                    )
                future.set_result(result)
            else:
                new.join_future = future
                self._rebalance_or_complete(
                    group, f"static member {new.member_id} changed protocols"
                )
        elif group.state is GroupState.COMPLETING_REBALANCE:
            # The leader may be assigning to the old member id: start over.
            new.join_future = future
            self._prepare_rebalance(group, f"static member {new.member_id} replaced {old_id}")
        else:
            new.join_future = future
            self._maybe_complete_join(group)

    # -- SyncGroup, Heartbeat, LeaveGroup -----------------------------------------------

    def sync(
        self,
        *,
        group_id: str,
        generation: int,
        member_id: str,
        instance_id: str | None,
        protocol_type: str | None,
        protocol_name: str | None,
        assignments: Sequence[tuple[str, bytes]],
    ) -> asyncio.Future[SyncResult]:
        group = self.groups.get(group_id)
        if group is None:
            return done(SyncResult(error=UNKNOWN_MEMBER_ID))
        if group.state is GroupState.DEAD:
            return done(SyncResult(error=COORDINATOR_NOT_AVAILABLE))
        error = group.check(member_id, instance_id, generation)
        if error == NONE and (
            (protocol_type is not None and protocol_type != group.protocol_type)
            or (protocol_name is not None and protocol_name != group.protocol_name)
        ):
            error = INCONSISTENT_GROUP_PROTOCOL
        if error != NONE:
            return done(SyncResult(error=error))
        if group.state is GroupState.EMPTY:
            return done(SyncResult(error=UNKNOWN_MEMBER_ID))
        if group.state is GroupState.PREPARING_REBALANCE:
            return done(SyncResult(error=REBALANCE_IN_PROGRESS))
        member = group.members[member_id]
        self._synced(group, member_id)
        if group.state is GroupState.STABLE:
            self._schedule_heartbeat(group, member)
            return done(
                SyncResult(
                    error=NONE,
                    protocol_type=group.protocol_type,
                    protocol_name=group.protocol_name,
                    assignment=member.assignment,
                )
            )
        future: asyncio.Future[SyncResult] = asyncio.get_running_loop().create_future()
        if member.sync_future is not None and not member.sync_future.done():
            member.sync_future.cancel()  # stale, as in _update_member
        member.sync_future = future
        if group.leader_id == member_id:
            given = dict(assignments)
            for each in group.members.values():
                each.assignment = given.get(each.member_id, b"")
            self._propagate_assignment(group, NONE)
            group.transition(GroupState.STABLE)
            log.info("group %s: stable at generation %d", group.group_id, group.generation)
        return future

    def heartbeat(
        self, *, group_id: str, generation: int, member_id: str, instance_id: str | None
    ) -> int:
        group = self.groups.get(group_id)
        if group is None:
            return UNKNOWN_MEMBER_ID
        if group.state is GroupState.DEAD:
            return COORDINATOR_NOT_AVAILABLE
        error = group.check(member_id, instance_id, generation)
        if error != NONE:
            return error
        if group.state is GroupState.EMPTY:
            return UNKNOWN_MEMBER_ID
        self._schedule_heartbeat(group, group.members[member_id])
        if group.state is GroupState.PREPARING_REBALANCE:
            return REBALANCE_IN_PROGRESS
        return NONE

    def leave(
        self, *, group_id: str, members: Sequence[tuple[str, str | None]]
    ) -> tuple[int, list[int]]:
        """``(top-level error, per-member errors)`` for ``(member id, instance id)`` pairs."""
        group = self.groups.get(group_id)
        if group is None:
            return NONE, [UNKNOWN_MEMBER_ID] * len(members)
        if group.state is GroupState.DEAD:
            return COORDINATOR_NOT_AVAILABLE, []
        errors = []
        for given_id, instance_id in members:
            member_id = given_id
            if not member_id:
                # Admin removal by group instance id (KIP-345).
                current = group.static_members.get(instance_id or "")
                if current is None:
                    errors.append(UNKNOWN_MEMBER_ID)
                    continue
                member_id = current
            elif member_id in group.pending_members:
                group.pending_members[member_id].cancel()
                self._expire_pending(group, member_id)
                errors.append(NONE)
                continue
            else:
                error = group.validate_member(member_id, instance_id)
                if error != NONE:
                    errors.append(error)
                    continue
            log.info("group %s: member %s left", group.group_id, member_id)
            self._remove_member(group, group.members[member_id], f"member {member_id} left")
            errors.append(NONE)
        return NONE, errors

    # -- offsets, admin -----------------------------------------------------------------

    def validate_commit(
        self,
        *,
        group_id: str,
        generation: int,
        member_id: str,
        instance_id: str | None,
        version: int,
    ) -> int:
        """The error for a whole OffsetCommit, or NONE (creating a simple group)."""
        group = self.groups.get(group_id)
        if group is None:
            if generation >= 0:
                return GROUP_ID_NOT_FOUND if version >= 9 else ILLEGAL_GENERATION
            group = self.groups[group_id] = Group(group_id)
        if group.state is GroupState.DEAD:
            return COORDINATOR_NOT_AVAILABLE
        if generation < 0 and group.state is GroupState.EMPTY:
            return NONE  # a simple consumer (or an admin) committing for an idle group
        if generation >= 0 or member_id or instance_id is not None:
            error = group.check(member_id, instance_id, generation)
            if error != NONE:
                return error
        elif group.state is not GroupState.EMPTY:
            return UNKNOWN_MEMBER_ID
        if group.state is GroupState.COMPLETING_REBALANCE:
            return REBALANCE_IN_PROGRESS
        member = group.members.get(member_id)
        if member is not None:
            self._schedule_heartbeat(group, member)  # commits keep a classic session alive
        return NONE

    def delete_group(self, group_id: str) -> int:
        group = self.groups.get(group_id)
        if group is None or group.state is GroupState.DEAD:
            return GROUP_ID_NOT_FOUND
        if group.state is not GroupState.EMPTY:
            return NON_EMPTY_GROUP
        self._dispose(group)
        group.transition(GroupState.DEAD)
        del self.groups[group_id]
        self.offsets.delete_group(group_id)
        return NONE


_COORDINATORS: weakref.WeakKeyDictionary[ClusterState, GroupCoordinator] = (
    weakref.WeakKeyDictionary()
)


def group_coordinator(state: ClusterState) -> GroupCoordinator:
    """The coordinator of ``state``'s cluster, created on first use (and closed with
    the state)."""
    coordinator = _COORDINATORS.get(state)
    if coordinator is None:
        coordinator = _COORDINATORS[state] = GroupCoordinator(state)
        state.close_hooks.append(coordinator.close)
    return coordinator


def configure_groups(state: ClusterState, settings: GroupSettings) -> None:
    """Use ``settings`` for the groups of ``state``'s cluster from now on (call it in
    the cluster's loop, e.g. through ``BlockingCluster.call``)."""
    group_coordinator(state).settings = settings


def coordinator_error(state: ClusterState, key: str, node_id: int) -> int:
    """NONE if broker ``node_id`` coordinates ``key``, else the error Kafka returns."""
    node = state.coordinator_for(key)
    if node is None or not node.up:
        return COORDINATOR_NOT_AVAILABLE
    return NONE if node.node_id == node_id else NOT_COORDINATOR
