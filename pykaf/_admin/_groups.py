"""Consumer groups: list (every broker), describe (assignments decoded), delete.

Their offsets (committed, with lag; altered; deleted) live in ``_groups_offsets``. Each
group is asked of its own coordinator, so a coordinator that moves (NOT_COORDINATOR,
COORDINATOR_LOAD_IN_PROGRESS) is found again and asked again for that group only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pykaf._admin._calls import send
from pykaf._admin._groups_offsets import (
    GroupOffset,
    alter_group_offsets,
    delete_group_offsets,
    list_group_offsets,
)
from pykaf._admin._item_retries import Deadline, Failed, settle
from pykaf._admin._outcomes import Outcomes
from pykaf._client._async_client import AsyncClient
from pykaf._client._targets import Coordinator
from pykaf._consumer._records import TopicPartition
from pykaf._consumer.group._protocol import (
    CONSUMER_PROTOCOL_TYPE,
    decode_assignment,
    decode_subscription,
)
from pykaf._error_codes import error_for_code
from pykaf._errors import AdminItemsError, PykafError
from pykaf.protocol._messages import build_request

__all__ = [
    "GroupDescription",
    "GroupListing",
    "GroupOffset",
    "MemberDescription",
    "alter_group_offsets",
    "check_group_ids",
    "delete_group_offsets",
    "delete_groups",
    "describe_groups",
    "list_group_offsets",
    "list_groups",
]

_GROUP_ID_NOT_FOUND: Final = 69
_NON_EMPTY_GROUP: Final = 68
# Kafka's names, compared case-insensitively (KIP-848 added Assigning and Reconciling).
_STATES: Final = frozenset(
    {
        "preparingrebalance",
        "completingrebalance",
        "stable",
        "dead",
        "empty",
        "assigning",
        "reconciling",
        "unknown",
    }
)
_TYPES: Final = frozenset({"classic", "consumer", "share", "streams"})
# ListGroups gained the states filter (and the state in its answer) in v4, types in v5.
_STATES_VERSION: Final = 4
_TYPES_VERSION: Final = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupListing:
    """One group as ListGroups names it. ``state`` is None only when the broker could
    not say; ``type`` ("classic", "consumer", ...) is None on a broker older than
    ListGroups v5 (such a broker has classic groups only)."""

    group_id: str
    state: str | None
    type: str | None
    protocol_type: str
    coordinator: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberDescription:
    """One member. For a consumer group (protocol type "consumer"), ``assignment`` and
    ``subscription`` are decoded from the consumer protocol's bytes; for a group of
    another protocol type (Connect, Streams' own...) they are empty and the bytes stay
    as they came in ``raw_assignment`` / ``raw_metadata``. The coordinator reports
    both only while the group is Stable (empty otherwise)."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    assignment: tuple[TopicPartition, ...]
    subscription: tuple[str, ...] = ()
    raw_assignment: bytes = b""
    raw_metadata: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupDescription:
    """A group's state, protocol (the assignor of a consumer group) and members."""

    group_id: str
    state: str
    protocol_type: str
    protocol: str
    members: tuple[MemberDescription, ...]
    coordinator: int


def check_group_ids(group_ids: object) -> list[str]:
    """The group ids as a list, or the TypeError / ValueError that says what to fix."""
    if isinstance(group_ids, str | bytes):
        raise TypeError("group ids are a list of str; wrap a single id in a list")
    if not isinstance(group_ids, Iterable):
        raise TypeError(f"group ids are an iterable of str, not {type(group_ids).__name__}")
    ids = list(group_ids)
    bad = [g for g in ids if not isinstance(g, str) or not g]
    if bad:
        raise ValueError(f"a group id is a non-empty str (bad: {bad!r})")
    return list(dict.fromkeys(ids))


def _filter(values: Iterable[str] | None, known: frozenset[str], what: str) -> set[str]:
    if values is None:
        return set()
    if isinstance(values, str):
        raise TypeError(f"{what} is a list of str; wrap a single one in a list")
    chosen = set()
    for value in values:
        if not isinstance(value, str) or value.lower() not in known:
            raise ValueError(f"{what}: {value!r} is not one of {sorted(known)}")
        chosen.add(value.lower())
    return chosen


async def list_groups(
    client: AsyncClient,
    *,
    states: Iterable[str] | None,
    types: Iterable[str] | None,
    timeout: float | None,
) -> list[GroupListing]:
    """Every group of every broker (each coordinates its own), filtered by state and
    type: by the broker where it has the filter, here otherwise. A broker that cannot
    answer (after retries) raises ``AdminItemsError`` naming it: a partial list would
    pass for a whole one."""
    want_states = _filter(states, _STATES, "states")
    want_types = _filter(types, _TYPES, "types")
    deadline = Deadline(client, timeout)
    cluster = await client.metadata([], timeout=deadline.request_timeout())

    async def attempt(nodes: list[int]) -> dict[int, list[GroupListing] | Failed]:
        found = await asyncio.gather(
            *(_list_on(client, node, want_states, want_types, deadline) for node in nodes),
            return_exceptions=True,
        )
        out: dict[int, list[GroupListing] | Failed] = {}
        for node, answer in zip(nodes, found, strict=True):
            if isinstance(answer, PykafError):
                out[node] = Failed(answer)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                out[node] = answer
        return out

    outcomes = await settle(
        client, sorted(cluster.brokers), attempt, deadline, what=lambda n: f"broker {n}"
    )
    if outcomes.errors:
        raise AdminItemsError({f"broker {n}": e for n, e in outcomes.errors.items()})
    listings = [listing for node in sorted(outcomes.ok) for listing in outcomes.ok[node]]
    return sorted(listings, key=lambda g: g.group_id)


async def _list_on(
    client: AsyncClient, node: int, states: set[str], types: set[str], deadline: Deadline
) -> list[GroupListing]:
    def build(version: int) -> Any:
        return build_request(
            "ListGroups", version, states_filter=sorted(states), types_filter=sorted(types)
        )

    version, response = await send(
        client, "ListGroups", build, to=node, timeout=deadline.request_timeout()
    )
    if response.error_code:
        raise error_for_code(int(response.error_code), f"(ListGroups on broker {node})")
    rows = [
        (
            str(g.group_id),
            str(g.protocol_type or ""),
            str(g.group_state) if version >= _STATES_VERSION else None,
            str(g.group_type) if version >= _TYPES_VERSION else None,
        )
        for g in response.groups
    ]
    if version < _STATES_VERSION and rows:
        # No state in this answer: the broker coordinates these groups, so it describes them.
        known = await _states_on(client, node, [r[0] for r in rows], deadline)
        rows = [(g, p, known.get(g), t) for g, p, _, t in rows]
    listings = []
    for group_id, protocol_type, state, group_type in rows:
        if states and (state or "unknown").lower() not in states:
            continue
        # A broker without ListGroups v5 predates KIP-848: its groups are all classic.
        if types and (group_type or "classic").lower() not in types:
            continue
        listings.append(
            GroupListing(
                group_id=group_id,
                state=state,
                type=group_type,
                protocol_type=protocol_type,
                coordinator=node,
            )
        )
    return listings


async def _states_on(
    client: AsyncClient, node: int, group_ids: list[str], deadline: Deadline
) -> dict[str, str]:
    def build(version: int) -> Any:
        return build_request(
            "DescribeGroups", version, groups=group_ids, include_authorized_operations=False
        )

    _, response = await send(
        client, "DescribeGroups", build, to=node, timeout=deadline.request_timeout()
    )
    return {str(g.group_id): str(g.group_state) for g in response.groups if not g.error_code}


async def describe_groups(
    client: AsyncClient, group_ids: Iterable[str], *, timeout: float | None
) -> Outcomes[str, GroupDescription]:
    """Each group described by its coordinator; a group that does not exist fails with
    ``GroupIdNotFoundError`` whatever the broker's version (before DescribeGroups v6 a
    broker answers "Dead" with no members for it)."""
    ids = check_group_ids(group_ids)
    deadline = Deadline(client, timeout)

    async def one(group_id: str) -> GroupDescription | Failed:
        def build(version: int) -> Any:
            return build_request(
                "DescribeGroups",
                version,
                groups=[group_id],
                include_authorized_operations=False,
            )

        try:
            versions = await client.api_versions(
                Coordinator(group_id), timeout=deadline.request_timeout()
            )
            _, response = await send(
                client,
                "DescribeGroups",
                build,
                to=Coordinator(group_id),
                timeout=deadline.request_timeout(),
            )
        except PykafError as exc:
            return Failed(exc)
        coordinator = versions.node_id if versions.node_id is not None else -1
        return _described(group_id, response.groups[0], coordinator)

    return await settle(
        client, ids, lambda pending: _each(pending, one), deadline, what=lambda g: f"group {g!r}"
    )


# What ``one(group)`` returns when the answer left the group out: asked again.
_NO_ANSWER: Final = object()


async def _each(group_ids: list[str], one: Callable[[str], Awaitable[object]]) -> Mapping[str, Any]:
    """Ask about each group at once (each has its own coordinator)."""
    answers = await asyncio.gather(*(one(g) for g in group_ids))
    return {g: a for g, a in zip(group_ids, answers, strict=True) if a is not _NO_ANSWER}


def _described(group_id: str, entry: Any, coordinator: int) -> GroupDescription | Failed:
    code = int(entry.error_code)
    state = str(entry.group_state or "")
    protocol_type = str(entry.protocol_type or "")
    if code == 0 and state == "Dead" and not protocol_type and not entry.members:
        code = _GROUP_ID_NOT_FOUND  # what DescribeGroups v6+ says (KIP-1043)
    if code:
        return Failed(error_for_code(code, f"(group {group_id!r})"))
    members = []
    for member in entry.members:
        raw_assignment = bytes(member.member_assignment or b"")
        raw_metadata = bytes(member.member_metadata or b"")
        assignment: tuple[TopicPartition, ...] = ()
        subscription: tuple[str, ...] = ()
        if protocol_type == CONSUMER_PROTOCOL_TYPE:
            try:
                assignment = decode_assignment(raw_assignment).partitions
                if raw_metadata:
                    subscription = decode_subscription(raw_metadata).topics
            except PykafError as exc:
                return Failed(type(exc)(f"group {group_id!r}, member {member.member_id!r}: {exc}"))
        members.append(
            MemberDescription(
                member_id=str(member.member_id),
                group_instance_id=getattr(member, "group_instance_id", None),
                client_id=str(member.client_id),
                client_host=str(member.client_host),
                assignment=assignment,
                subscription=subscription,
                raw_assignment=raw_assignment,
                raw_metadata=raw_metadata,
            )
        )
    return GroupDescription(
        group_id=group_id,
        state=state,
        protocol_type=protocol_type,
        protocol=str(entry.protocol_data or ""),
        members=tuple(members),
        coordinator=coordinator,
    )


async def delete_groups(
    client: AsyncClient, group_ids: Iterable[str], *, timeout: float | None
) -> Outcomes[str, None]:
    """Delete each group (and its committed offsets) at its coordinator. A group with
    members fails with its own ``NonEmptyGroupError``; the others are still deleted."""
    ids = check_group_ids(group_ids)
    deadline = Deadline(client, timeout)

    async def one(group_id: str) -> object:
        def build(version: int) -> Any:
            return build_request("DeleteGroups", version, groups_names=[group_id])

        try:
            _, response = await send(
                client,
                "DeleteGroups",
                build,
                to=Coordinator(group_id),
                timeout=deadline.request_timeout(),
            )
        except PykafError as exc:
            return Failed(exc)
        codes = [int(r.error_code) for r in response.results if r.group_id == group_id]
        if not codes:
            return _NO_ANSWER
        code = codes[0]
        if code == _NON_EMPTY_GROUP:
            return Failed(
                error_for_code(
                    code, f"(group {group_id!r} has members: stop its consumers, then delete it)"
                )
            )
        if code:
            return Failed(error_for_code(code, f"(group {group_id!r})"))
        return None

    return await settle(
        client, ids, lambda pending: _each(pending, one), deadline, what=lambda g: f"group {g!r}"
    )
