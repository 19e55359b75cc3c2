"""A consumer group's offsets: committed ones with lag, altered, deleted.

The committed offsets come from the group's coordinator (OffsetFetch), the end offsets
from the partitions' leaders (ListOffsets). An admin commits as Kafka's AdminClient does:
generation -1 and no member id, which a coordinator accepts only for a group without
members; the refusal (UNKNOWN_MEMBER_ID and its kin) becomes ``NonEmptyGroupError`` per
partition, saying to stop the group's consumers first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pykaf._admin._calls import send
from pykaf._admin._item_retries import Deadline, Failed, settle
from pykaf._admin._offsets import check_partitions, query_offsets
from pykaf._admin._outcomes import Outcomes
from pykaf._admin._specs import OffsetSpec
from pykaf._client._async_client import AsyncClient
from pykaf._client._targets import Coordinator
from pykaf._consumer._records import OffsetAndMetadata, TopicPartition
from pykaf._consumer.group._commit import fetch_committed, send_commit
from pykaf._consumer.group._membership import NO_GENERATION
from pykaf._error_codes import error_for_code
from pykaf._errors import PykafError
from pykaf.protocol._messages import build_request

__all__ = [
    "GroupOffset",
    "alter_group_offsets",
    "check_group_id",
    "delete_group_offsets",
    "list_group_offsets",
]

_READ_UNCOMMITTED: Final = 0
_UNKNOWN_TOPIC_OR_PARTITION: Final = 3
_NON_EMPTY_GROUP: Final = 68
_GROUP_SUBSCRIBED_TO_TOPIC: Final = 86
# What a coordinator answers a generation -1 commit to a group that has members (or is
# between generations): the group is active, so an admin may not move its offsets.
_ACTIVE_GROUP_CODES: Final = frozenset({22, 25, 27})  # ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID,
# REBALANCE_IN_PROGRESS


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupOffset:
    """A group's committed offset on one partition (None: none committed), the
    partition's end offset (the high watermark), and the lag between them (None when
    either is unknown)."""

    topic: str
    partition: int
    committed: int | None
    metadata: str | None
    leader_epoch: int | None
    end_offset: int | None
    lag: int | None


def check_group_id(group_id: object) -> str:
    if not isinstance(group_id, str) or not group_id:
        raise ValueError(f"a group id is a non-empty str, not {group_id!r}")
    return group_id


async def list_group_offsets(
    client: AsyncClient,
    group_id: str,
    partitions: Iterable[TopicPartition] | None,
    *,
    timeout: float | None,
) -> Outcomes[TopicPartition, GroupOffset]:
    """The committed offsets (every partition the group has one on, or ``partitions``),
    each with its partition's end offset and the lag."""
    check_group_id(group_id)
    asked = None if partitions is None else check_partitions(partitions, "partitions")
    deadline = Deadline(client, timeout)
    committed = await _fetch(client, group_id, asked, deadline)
    ends = await query_offsets(
        client,
        dict.fromkeys(committed.ok, OffsetSpec.LATEST.timestamp),
        isolation_level=_READ_UNCOMMITTED,
        deadline=deadline,
    )
    out = {}
    errors = dict(committed.errors)
    for tp, value in committed.ok.items():
        end = ends.ok[tp][0] if tp in ends.ok else None
        offset = None if value is None else value.offset
        if end is None and offset is None:
            # Asked about a partition with nothing committed that has no end either (a
            # topic or partition that does not exist): say why rather than all None.
            errors[tp] = ends.errors[tp]
            continue
        out[tp] = GroupOffset(
            topic=tp.topic,
            partition=tp.partition,
            committed=offset,
            metadata=None if value is None else value.metadata,
            leader_epoch=None if value is None else value.leader_epoch,
            end_offset=end,
            lag=None if end is None or offset is None else end - offset,
        )
    return Outcomes(out, errors)


# The whole group's answer: the key its items share until OffsetFetch says which they are.
_ALL: Final = "*"


async def _fetch(
    client: AsyncClient,
    group_id: str,
    partitions: list[TopicPartition] | None,
    deadline: Deadline,
) -> Outcomes[TopicPartition, OffsetAndMetadata | None]:
    if partitions is None:  # every partition: one item, the group, retried as a whole
        whole = await settle(
            client,
            [_ALL],
            lambda _: _fetch_once(client, group_id, None, deadline),
            deadline,
            what=lambda _: f"the offsets of group {group_id!r}",
        )
        if whole.errors:
            raise whole.errors[_ALL]
        answers: Mapping[TopicPartition, OffsetAndMetadata | Failed | None] = whole.ok[_ALL]
        return Outcomes(
            {tp: v for tp, v in answers.items() if not isinstance(v, Failed)},
            {tp: v.error for tp, v in answers.items() if isinstance(v, Failed)},
        )

    async def attempt(
        pending: list[TopicPartition],
    ) -> dict[TopicPartition, OffsetAndMetadata | Failed | None]:
        found: dict[TopicPartition, OffsetAndMetadata | Failed | None]
        found = await _fetch_once(client, group_id, pending, deadline)
        return found

    return await settle(client, partitions, attempt, deadline, what=str)


async def _fetch_once(
    client: AsyncClient,
    group_id: str,
    partitions: list[TopicPartition] | None,
    deadline: Deadline,
) -> Any:
    group_code, answers = await fetch_committed(
        client, group_id=group_id, partitions=partitions, timeout=deadline.request_timeout()
    )
    if group_code:
        error = error_for_code(group_code, f"(the offsets of group {group_id!r})")
        if partitions is None:
            return {_ALL: Failed(error)}
        return {tp: Failed(error) for tp in partitions}
    found: dict[TopicPartition, OffsetAndMetadata | Failed | None] = {}
    for tp, (value, code) in answers.items():
        if partitions is not None and tp not in partitions:
            continue
        found[tp] = Failed(error_for_code(code, f"({tp}, group {group_id!r})")) if code else value
    if partitions is None:
        return {_ALL: found}
    for tp in partitions:
        found.setdefault(tp, None)  # left out of the answer: nothing committed there
    return found


def _check_alter_input(
    offsets: Mapping[TopicPartition, int | OffsetSpec | str] | None,
    topics: Iterable[str] | None,
    to: OffsetSpec | str | None,
) -> tuple[dict[TopicPartition, int | OffsetSpec], list[str]]:
    """Given offsets (ints >= 0 or specs) and topics to move ``to`` one spec."""
    if (offsets is None) == (topics is None):
        raise ValueError(
            "alter_group_offsets takes either offsets {TopicPartition: offset or spec}"
            " or topics=[...] with to=earliest/latest/OffsetSpec.at(...), not both or neither"
        )
    if topics is not None:
        if isinstance(topics, str):
            raise TypeError("topics is a list of names; wrap a single name in a list")
        names = list(dict.fromkeys(topics))
        if not names or any(not isinstance(t, str) or not t for t in names):
            raise ValueError(f"topics are non-empty names, not {names!r}")
        if to is None:
            raise ValueError("topics=[...] needs to= (earliest, latest or OffsetSpec.at(...))")
        spec = OffsetSpec.parse(to)
        return {TopicPartition(name, 0): spec for name in names}, names
    if to is not None:
        raise ValueError("to= goes with topics=[...]; give offsets per partition instead")
    if not isinstance(offsets, Mapping):
        raise TypeError(f"offsets is a mapping of TopicPartition to an offset, not {offsets!r}")
    check_partitions(list(offsets), "offsets")
    wanted: dict[TopicPartition, int | OffsetSpec] = {}
    for tp, value in offsets.items():
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise ValueError(f"{tp}: an offset is >= 0, not {value} (or give a spec)")
            wanted[tp] = value
        elif isinstance(value, OffsetSpec | str):
            wanted[tp] = OffsetSpec.parse(value)
        else:
            raise TypeError(f"{tp}: an offset is an int >= 0 or a spec, not {value!r}")
    return wanted, []


async def _partitions_of(
    client: AsyncClient, names: list[str], deadline: Deadline
) -> list[TopicPartition]:
    cluster = await client.metadata(names, timeout=deadline.request_timeout())
    tps: list[TopicPartition] = []
    for name in names:
        info = cluster.topics.get(name)
        if info is None or info.error_code:
            code = _UNKNOWN_TOPIC_OR_PARTITION if info is None else info.error_code
            raise error_for_code(code, f"(topic {name!r}: alter_group_offsets needs it to exist)")
        tps.extend(TopicPartition(name, p.partition) for p in info.partitions)
    return tps


async def alter_group_offsets(
    client: AsyncClient,
    group_id: str,
    offsets: Mapping[TopicPartition, int | OffsetSpec | str] | None,
    *,
    topics: Iterable[str] | None,
    to: OffsetSpec | str | None,
    timeout: float | None,
) -> Outcomes[TopicPartition, int]:
    """Commit new offsets for a group without members; each partition maps to the
    offset committed. Specs are looked up at the leaders first: a time after the last
    record resolves to the end of the log (as kafka-consumer-groups does)."""
    check_group_id(group_id)
    wanted, names = _check_alter_input(offsets, topics, to)
    deadline = Deadline(client, timeout)
    if names:
        spec = next(iter(wanted.values()))
        wanted = dict.fromkeys(await _partitions_of(client, names, deadline), spec)
    resolved, errors = await _resolve(client, wanted, deadline)

    async def attempt(pending: list[TopicPartition]) -> dict[TopicPartition, int | Failed]:
        codes = await send_commit(
            client,
            group_id=group_id,
            generation=NO_GENERATION,
            group_instance_id=None,
            offsets={tp: OffsetAndMetadata(resolved[tp]) for tp in pending},
            timeout=deadline.request_timeout(),
        )
        out: dict[TopicPartition, int | Failed] = {}
        for tp in pending:
            code = codes[tp]
            if code in _ACTIVE_GROUP_CODES:
                out[tp] = Failed(_active_group(group_id, tp, code))
            elif code:
                out[tp] = Failed(error_for_code(code, f"(commit of {tp}, group {group_id!r})"))
            else:
                out[tp] = resolved[tp]
        return out

    committed = await settle(client, resolved, attempt, deadline, what=str)
    return Outcomes(committed.ok, {**errors, **committed.errors})


def _active_group(group_id: str, tp: TopicPartition, code: int) -> PykafError:
    said = error_for_code(code).name
    error = error_for_code(
        _NON_EMPTY_GROUP,
        f"(group {group_id!r} is active, the coordinator answered {said} for {tp}: stop"
        " its consumers, then alter its offsets)",
    )
    error.__cause__ = error_for_code(code)
    return error


async def _resolve(
    client: AsyncClient, wanted: Mapping[TopicPartition, int | OffsetSpec], deadline: Deadline
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, PykafError]]:
    """Offsets for the specs (looked up), as they are for the ints."""
    resolved = {tp: v for tp, v in wanted.items() if isinstance(v, int)}
    specs = {tp: v.timestamp for tp, v in wanted.items() if isinstance(v, OffsetSpec)}
    if not specs:
        return resolved, {}
    found = await query_offsets(client, specs, isolation_level=_READ_UNCOMMITTED, deadline=deadline)
    errors = dict(found.errors)
    past_end = []
    for tp, (offset, _, _) in found.ok.items():
        if offset >= 0:
            resolved[tp] = offset
        else:
            past_end.append(tp)
    if past_end:
        ends = await query_offsets(
            client,
            dict.fromkeys(past_end, OffsetSpec.LATEST.timestamp),
            isolation_level=_READ_UNCOMMITTED,
            deadline=deadline,
        )
        errors.update(ends.errors)
        resolved.update({tp: answer[0] for tp, answer in ends.ok.items()})
    return resolved, errors


async def delete_group_offsets(
    client: AsyncClient,
    group_id: str,
    partitions: Iterable[TopicPartition],
    *,
    timeout: float | None,
) -> Outcomes[TopicPartition, None]:
    """OffsetDelete at the coordinator. A group whose members subscribe to a topic keeps
    its offsets there (``GroupSubscribedToTopicError`` per partition)."""
    check_group_id(group_id)
    tps = check_partitions(partitions, "partitions")
    deadline = Deadline(client, timeout)

    async def attempt(pending: list[TopicPartition]) -> dict[TopicPartition, Failed | None]:
        grouped: dict[str, list[dict[str, int]]] = {}
        for tp in sorted(pending):
            grouped.setdefault(tp.topic, []).append({"partition_index": tp.partition})

        def build(version: int) -> Any:
            return build_request(
                "OffsetDelete",
                version,
                group_id=group_id,
                topics=[{"name": t, "partitions": ps} for t, ps in grouped.items()],
            )

        _, response = await send(
            client,
            "OffsetDelete",
            build,
            to=Coordinator(group_id),
            timeout=deadline.request_timeout(),
        )
        if response.error_code:
            code = int(response.error_code)
            why = " has members of another protocol" if code == _NON_EMPTY_GROUP else ""
            error = error_for_code(code, f"(the offsets of group {group_id!r}{why})")
            return {tp: Failed(error) for tp in pending}
        out: dict[TopicPartition, Failed | None] = {}
        for topic in response.topics:
            for part in topic.partitions:
                tp = TopicPartition(str(topic.name), int(part.partition_index))
                code = int(part.error_code)
                if not code:
                    out[tp] = None
                elif code == _GROUP_SUBSCRIBED_TO_TOPIC:
                    out[tp] = Failed(
                        error_for_code(
                            code,
                            f"({tp}: group {group_id!r} has members subscribed to"
                            f" {tp.topic!r}; stop them first)",
                        )
                    )
                else:
                    out[tp] = Failed(error_for_code(code, f"({tp}, group {group_id!r})"))
        return out

    return await settle(client, tps, attempt, deadline, what=str)
