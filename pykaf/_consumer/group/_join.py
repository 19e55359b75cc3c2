"""Joining a classic consumer group: one attempt (JoinGroup, the leader's assignment,
SyncGroup), and the retries around it within the rebalance timeout. The state it reads and
changes is ``_consumer.group._membership.Membership``; when to join, the callbacks and the
task that runs this are ``_consumer.group._driver``'s, heartbeats ``_session``'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pykaf._client._async_client import AsyncClient
from pykaf._client._backoff import Backoff
from pykaf._client._targets import Coordinator
from pykaf._client._versions import BrokerApiVersions
from pykaf._consumer._health import Health
from pykaf._consumer._records import TopicPartition
from pykaf._consumer.group._assignors import Assignor, MemberSubscription, assignor_for
from pykaf._consumer.group._commit import coordinator_versions
from pykaf._consumer.group._membership import MEMBER_ID_REQUIRED, ErrorAction, Membership
from pykaf._consumer.group._protocol import (
    CONSUMER_PROTOCOL_TYPE,
    LATEST_VERSION,
    Assignment,
    Subscription,
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
)
from pykaf._error_codes import error_for_code
from pykaf._errors import ClientClosedError, PykafError, RemoteProtocolError
from pykaf.protocol._messages import build_request

__all__ = ["JoinOutcome", "JoinRetry", "JoinSpec", "join_once", "join_with_retries"]

log = logging.getLogger("pykaf.consumer")

# Java's JOIN_GROUP_TIMEOUT_LAPSE: the coordinator may answer a join a little after the
# rebalance timeout; the request must not give up before.
_JOIN_LAPSE: Final = 5.0
# Joins retried at once (MEMBER_ID_REQUIRED, a reset member id) before backing off.
_MAX_QUICK_REJOINS: Final = 3


class JoinRetry(Exception):
    """This attempt failed; try again (``now``, or after a backoff)."""

    def __init__(self, error: BaseException, *, now: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.now = now


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinSpec:
    """What a member joins with (constant across its joins)."""

    group_id: str
    group_instance_id: str | None
    session_timeout: float
    rebalance_timeout: float
    assignors: Sequence[Assignor]


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinOutcome:
    """A completed join: the state is stable in the new generation."""

    added: frozenset[TopicPartition]
    revoked: frozenset[TopicPartition]
    leader: bool
    versions: BrokerApiVersions
    # The leader's partition counts per topic, as the assignment saw them.
    snapshot: dict[str, int] = field(default_factory=dict)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


async def join_once(
    client: AsyncClient, state: Membership, spec: JoinSpec, reason: str
) -> JoinOutcome:
    """One JoinGroup + SyncGroup. Raises ``JoinRetry`` for what a new attempt may fix,
    the broker error for what it may not (``state.fatal`` when fenced)."""
    coordinator = Coordinator(spec.group_id)
    timeout = max(client.settings.request_timeout, spec.rebalance_timeout + _JOIN_LAPSE)
    versions = await coordinator_versions(client, spec.group_id, timeout)
    sent = state.generation
    request = build_request(
        "JoinGroup",
        versions.version("JoinGroup"),
        group_id=spec.group_id,
        session_timeout=_ms(spec.session_timeout),
        rebalance_timeout=_ms(spec.rebalance_timeout),
        member_id=sent.member_id,
        group_instance_id=spec.group_instance_id,
        protocol_type=CONSUMER_PROTOCOL_TYPE,
        protocols=[
            {"name": a.name, "metadata": _subscription(state, a, sent.generation_id)}
            for a in spec.assignors
        ],
        reason=reason,
    )
    joined = await client.request(request, to=coordinator, purpose="group", timeout=timeout)
    code = int(joined.error_code)
    if code == MEMBER_ID_REQUIRED:
        state.member_id_required(str(joined.member_id))
    if code:
        _raise_for(state, state.join_error(code), code, "JoinGroup", spec.group_id, now=True)
    member_id = str(joined.member_id)
    protocol = joined.protocol_name
    generation_id = int(joined.generation_id)
    state.joined(generation_id=generation_id, member_id=member_id, protocol=protocol)
    leader = joined.leader == member_id
    assignments: list[dict[str, Any]] = []
    snapshot: dict[str, int] = {}
    # KIP-814: a static leader that rejoins may be told the assignment stands as it is.
    if leader and not getattr(joined, "skip_assignment", False):
        assignments, snapshot = await _assign(client, spec.group_id, str(protocol), joined.members)
    synced = await client.request(
        build_request(
            "SyncGroup",
            versions.version("SyncGroup"),
            group_id=spec.group_id,
            generation_id=generation_id,
            member_id=member_id,
            group_instance_id=spec.group_instance_id,
            protocol_type=CONSUMER_PROTOCOL_TYPE,
            protocol_name=protocol,
            assignments=assignments,
        ),
        to=coordinator,
        purpose="group",
        timeout=timeout,
    )
    code = int(synced.error_code)
    if code:
        _raise_for(state, state.sync_error(code), code, "SyncGroup", spec.group_id, now=True)
    try:
        assigned = decode_assignment(bytes(synced.assignment)).partitions
    except RemoteProtocolError as exc:
        raise JoinRetry(exc) from exc
    unexpected = {tp.topic for tp in assigned} - state.subscription
    if unexpected:
        # As Java: take it (the leader decided), and rejoin with the subscription.
        log.warning(
            "group %r: assigned topics not subscribed to: %s; rejoining",
            spec.group_id,
            ", ".join(sorted(unexpected)),
        )
        state.request_rejoin("the assignment does not match the subscription")
    added = frozenset(assigned) - state.owned
    revoked = state.synced(assigned)
    return JoinOutcome(
        added=added, revoked=revoked, leader=leader, versions=versions, snapshot=snapshot
    )


async def join_with_retries(
    client: AsyncClient,
    state: Membership,
    spec: JoinSpec,
    reason: str,
    *,
    budget: float,
    backoff: Backoff,
    rand: Callable[[], float],
    health: Health,
) -> JoinOutcome:
    """Attempts until one completes, a fatal error, or the retry ``budget`` (seconds: the
    rebalance timeout) runs out; a failing episode is reported once through ``health``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    attempt = quick = 0
    while True:
        try:
            return await join_once(client, state, spec, reason)
        except JoinRetry as again:
            error = again.error
            if again.now and quick < _MAX_QUICK_REJOINS:
                quick += 1
                continue
        except RemoteProtocolError as exc:
            # A garbled answer (librdkafka's mock cluster writes nulls where JoinGroup
            # v5 forbids them when it injects errors): the next attempt may do better.
            # INFO: a retry; the failing episode is told once at WARNING below.
            log.info("group %r: join answer unreadable: %s", spec.group_id, exc)
            error = exc
        except PykafError as exc:
            if isinstance(exc, ClientClosedError) or not getattr(exc, "retriable", False):
                raise
            error = exc
        quick = 0
        attempt += 1
        delay = backoff.delay(attempt, rand())
        health.failed(
            "join",
            f"group {spec.group_id!r}: joining failed: {error}",
            hint="retrying; check that the group coordinator is reachable and healthy",
        )
        if loop.time() + delay >= deadline:
            raise error
        await asyncio.sleep(delay)


def _raise_for(
    state: Membership, action: ErrorAction, code: int, api: str, group_id: str, *, now: bool
) -> None:
    error = state.fatal or error_for_code(code, f"({api} of group {group_id!r})")
    if action is ErrorAction.RETRY:
        raise JoinRetry(error)
    if action is ErrorAction.REJOIN:
        # MEMBER_ID_REQUIRED, a refused member id or generation, a SyncGroup that met a
        # new rebalance: join again at once (the state holds what to join with now).
        raise JoinRetry(error, now=now)
    raise error


def _subscription(state: Membership, assignor: Assignor, generation: int) -> bytes:
    return encode_subscription(
        Subscription(
            topics=tuple(sorted(state.subscription)),
            user_data=assignor.user_data(generation=generation),
            owned_partitions=tuple(sorted(state.owned)),
            generation=generation,
            version=LATEST_VERSION,
        )
    )


async def _assign(
    client: AsyncClient, group_id: str, protocol: str, members: Any
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The leader's part: decode every subscription, fetch the topics' partition counts,
    run the assignor the coordinator chose (the first of ours every member supports)."""
    assignor = assignor_for(protocol)
    subscriptions: list[MemberSubscription] = []
    for member in members:
        try:
            subscription = decode_subscription(bytes(member.metadata))
        except RemoteProtocolError as exc:
            # One member's bad bytes must not stall the group: it gets nothing.
            log.warning("group %r: member %r: %s", group_id, member.member_id, exc)
            subscription = Subscription(topics=(), version=0)
        subscriptions.append(
            MemberSubscription(
                member_id=str(member.member_id),
                group_instance_id=member.group_instance_id,
                subscription=subscription,
            )
        )
    topics = sorted({t for s in subscriptions for t in s.subscription.topics})
    counts: dict[str, int] = {}
    if topics:
        view = await client.metadata(topics)
        counts = {
            name: len(info.partitions)
            for name, info in view.topics.items()
            if info.error_code == 0 and info.partitions
        }
    result = assignor.assign(counts, subscriptions)
    assignments = [
        {
            "member_id": s.member_id,
            "assignment": encode_assignment(
                Assignment(
                    partitions=result.get(s.member_id, ()),
                    # A member reads the version it wrote, whatever its age.
                    version=min(LATEST_VERSION, s.subscription.version),
                )
            ),
        }
        for s in subscriptions
    ]
    return assignments, counts
