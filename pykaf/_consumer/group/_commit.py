"""Committed offsets of a consumer group: OffsetCommit and OffsetFetch at the version the
group's coordinator speaks, retried with backoff until a deadline.

What a commit's error codes mean for the member (retry, rebalancing, generation over,
fenced) is decided by ``_consumer.group._membership``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pykaf._client._async_client import AsyncClient
from pykaf._client._backoff import Backoff
from pykaf._client._targets import Coordinator
from pykaf._client._versions import BrokerApiVersions
from pykaf._consumer._records import OffsetAndMetadata, TopicPartition
from pykaf._consumer.group._membership import ErrorAction, Generation, Membership
from pykaf._error_codes import error_for_code
from pykaf._errors import (
    ClientClosedError,
    CommitFailedError,
    KafkaTimeoutError,
    PykafError,
    RebalancingCommitError,
)
from pykaf._telemetry._log_limit import LogLimiter
from pykaf.protocol._messages import build_request

__all__ = [
    "CommitOrder",
    "Retry",
    "commit_offsets",
    "coordinator_versions",
    "fetch_committed",
    "read_committed",
    "send_commit",
]

log = logging.getLogger("pykaf.consumer")

_OFFSET_COMMIT: Final = 8
_OFFSET_FETCH: Final = 9
# v10 of both names topics by id instead of by name (KIP-848's era) and adds nothing a
# classic member uses; naming topics spares a Metadata round trip per commit. Every
# broker that speaks v10 speaks v9.
_BY_NAME_MAX: Final = 9
_NO_EPOCH: Final = -1
_UNKNOWN_SERVER_ERROR: Final = -1
_ILLEGAL_GENERATION: Final = 22
_UNKNOWN_MEMBER_ID: Final = 25
_UNKNOWN_TOPIC_OR_PARTITION: Final = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry:
    """How to wait between attempts: a backoff schedule and its random source; and how
    retries are told: at INFO, rate-limited (a coordinator away for a minute would
    otherwise be a line per backoff), the count held back told when the commit ends."""

    backoff: Backoff
    rand: Callable[[], float]
    log: LogLimiter = field(default_factory=lambda: LogLimiter(log))

    def delay(self, attempt: int) -> float:
        return self.backoff.delay(attempt, self.rand())


class CommitOrder:
    """One member's commits, kept in the order they were made. Background commits
    (auto-commit, ``commit_async``) retry on their own: one that met a retriable error
    and slept would otherwise write, when it woke, an older offset over the one a newer
    commit had written since, and after the next rebalance or restart the partition was
    read again from there. So their requests go one at a time (``lock``), and each
    attempt leaves out the partitions a newer commit has taken over (``current``)."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self._serials = itertools.count(1)
        self._newest: dict[TopicPartition, int] = {}  # per partition: the newest commit's

    def begin(self, partitions: Iterable[TopicPartition]) -> int:
        """A new commit of ``partitions``: its serial."""
        serial = next(self._serials)
        for tp in partitions:
            self._newest[tp] = serial
        return serial

    def current(
        self, serial: int, pending: Mapping[TopicPartition, OffsetAndMetadata]
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """What of commit ``serial``'s ``pending`` no newer commit has taken over."""
        newest = self._newest
        return {tp: o for tp, o in pending.items() if newest.get(tp) == serial}

    def end(self, serial: int, partitions: Iterable[TopicPartition]) -> None:
        newest = self._newest
        for tp in partitions:
            if newest.get(tp) == serial:
                del newest[tp]


async def coordinator_versions(
    client: AsyncClient, group_id: str, timeout: float | None = None
) -> BrokerApiVersions:
    """The API versions of ``group_id``'s coordinator (found and connected if needed)."""
    return await client.api_versions(Coordinator(group_id), timeout=timeout)


def _by_topic(partitions: Iterable[TopicPartition]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for tp in sorted(partitions):
        out.setdefault(tp.topic, []).append(tp.partition)
    return out


async def send_commit(
    client: AsyncClient,
    *,
    group_id: str,
    generation: Generation,
    group_instance_id: str | None,
    offsets: Mapping[TopicPartition, OffsetAndMetadata],
    timeout: float,
) -> dict[TopicPartition, int]:
    """One OffsetCommit; the error code of every partition (0: committed)."""
    versions = await coordinator_versions(client, group_id, timeout)
    version = min(versions.version(_OFFSET_COMMIT), _BY_NAME_MAX)
    topics: dict[str, list[dict[str, Any]]] = {}
    for tp in sorted(offsets):
        value = offsets[tp]
        topics.setdefault(tp.topic, []).append(
            {
                "partition_index": tp.partition,
                "committed_offset": value.offset,
                "committed_leader_epoch": (
                    _NO_EPOCH if value.leader_epoch is None else value.leader_epoch
                ),
                "committed_metadata": value.metadata,
            }
        )
    request = build_request(
        _OFFSET_COMMIT,
        version,
        group_id=group_id,
        generation_id_or_member_epoch=generation.generation_id,
        member_id=generation.member_id,
        group_instance_id=group_instance_id if generation.valid else None,
        retention_time=-1,  # v2..v4: the broker's default retention
        topics=[{"name": name, "partitions": parts} for name, parts in topics.items()],
    )
    response = await client.request(
        request, to=Coordinator(group_id), purpose="other", timeout=timeout
    )
    codes: dict[TopicPartition, int] = {}
    for topic in response.topics:
        for part in topic.partitions:
            codes[TopicPartition(str(topic.name), int(part.partition_index))] = int(part.error_code)
    for tp in offsets:  # a partition the answer left out was not committed
        codes.setdefault(tp, _UNKNOWN_SERVER_ERROR)
    return codes


async def fetch_committed(
    client: AsyncClient,
    *,
    group_id: str,
    partitions: Iterable[TopicPartition] | None,
    timeout: float,
) -> tuple[int, dict[TopicPartition, tuple[OffsetAndMetadata | None, int]]]:
    """One OffsetFetch: the group's error code, and per partition its committed offset
    (None: nothing committed) with the partition's error code. ``partitions`` None asks
    for every partition the group has an offset on (OffsetFetch v2+, as an admin does)."""
    versions = await coordinator_versions(client, group_id, timeout)
    version = min(versions.version(_OFFSET_FETCH), _BY_NAME_MAX)
    topics = (
        None
        if partitions is None
        else [
            {"name": name, "partition_indexes": parts}
            for name, parts in _by_topic(partitions).items()
        ]
    )
    if version >= 8:
        fields: dict[str, Any] = {
            "groups": [
                {"group_id": group_id, "member_id": None, "member_epoch": -1, "topics": topics}
            ]
        }
    else:
        fields = {"group_id": group_id, "topics": topics}
    # KIP-447: wait for pending transactional commits rather than read past them.
    request = build_request(_OFFSET_FETCH, version, require_stable=True, **fields)
    response = await client.request(
        request, to=Coordinator(group_id), purpose="other", timeout=timeout
    )
    if version >= 8:
        group = response.groups[0]
        group_code, answered = int(group.error_code), group.topics
    else:
        group_code, answered = int(getattr(response, "error_code", 0)), response.topics
    out: dict[TopicPartition, tuple[OffsetAndMetadata | None, int]] = {}
    for topic in answered or ():  # librdkafka's mock answers "all partitions" with null
        for part in topic.partitions:
            tp = TopicPartition(str(topic.name), int(part.partition_index))
            offset = int(part.committed_offset)
            epoch = int(getattr(part, "committed_leader_epoch", _NO_EPOCH))
            value = (
                None
                if offset < 0
                else OffsetAndMetadata(offset, part.metadata or "", None if epoch < 0 else epoch)
            )
            out[tp] = (value, int(part.error_code))
    return group_code, out


def _retriable(exc: PykafError) -> bool:
    return not isinstance(exc, ClientClosedError) and bool(getattr(exc, "retriable", False))


async def commit_offsets(
    client: AsyncClient,
    state: Membership,
    *,
    group_id: str,
    group_instance_id: str | None,
    offsets: Mapping[TopicPartition, OffsetAndMetadata],
    timeout: float,
    retry: Retry,
    order: CommitOrder,
) -> None:
    """Commit ``offsets`` in the member's generation (see ``GroupMembership.commit``),
    in ``order`` with the member's other commits (partitions a newer commit took over
    are left to it: done here)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = dict(offsets)
    attempt = 0
    serial = order.begin(pending)
    try:
        while True:
            if state.fatal is not None:
                raise state.fatal
            generation = state.commit_generation()
            if generation is None:
                raise RebalancingCommitError(
                    f"group {group_id!r} is rebalancing; poll (which rejoins), then commit"
                    " again the offsets of partitions still assigned"
                )
            error: PykafError
            try:
                await _turn(order, deadline, group_id, timeout)
                try:
                    pending = order.current(serial, pending)
                    if not pending:
                        return  # a newer commit carries every partition of this one
                    codes = await send_commit(
                        client,
                        group_id=group_id,
                        generation=generation,
                        group_instance_id=group_instance_id,
                        offsets=pending,
                        timeout=max(0.001, deadline - loop.time()),
                    )
                finally:
                    order.lock.release()
            except PykafError as exc:
                if not _retriable(exc):
                    raise
                error = exc
            else:
                failed = {tp: code for tp, code in codes.items() if code and tp in pending}
                if not failed:
                    return
                pending = {tp: pending[tp] for tp in failed}
                error = _commit_failure(state, group_id, failed, generation)
            attempt += 1
            delay = retry.delay(attempt)
            if loop.time() + delay >= deadline:
                raise KafkaTimeoutError(
                    f"offset commit of group {group_id!r} not done within {timeout:g}s (last"
                    f" error: {error})"
                ) from error
            retry.log.log(
                logging.INFO,
                group_id,
                "group %r: offset commit retried in %.3gs: %s",
                group_id,
                delay,
                error,
            )
            await asyncio.sleep(delay)
    finally:
        order.end(serial, offsets)
        retry.log.flush()  # the retries held back, told now that this commit is over


async def _turn(order: CommitOrder, deadline: float, group_id: str, timeout: float) -> None:
    """Take ``order.lock`` by ``deadline`` (an earlier commit's request may be waiting for
    its answer), else ``KafkaTimeoutError``: a commit keeps its own timeout."""
    try:
        async with asyncio.timeout_at(deadline):
            await order.lock.acquire()
    except TimeoutError:
        raise KafkaTimeoutError(
            f"offset commit of group {group_id!r} not done within {timeout:g}s (an earlier"
            " commit's request was still waiting for its answer)"
        ) from None


def _commit_failure(
    state: Membership, group_id: str, failed: Mapping[TopicPartition, int], sent: Generation
) -> PykafError:
    """Raise for the worst code of a commit answer; else return the error to retry on."""
    retry: PykafError | None = None
    for tp, code in sorted(failed.items()):
        action = state.commit_error(code, sent)
        cause = error_for_code(code, f"(OffsetCommit of {tp} in group {group_id!r})")
        if action is ErrorAction.FATAL:
            raise state.fatal or cause
        if action is ErrorAction.REJOIN:
            raise RebalancingCommitError(
                f"group {group_id!r} is rebalancing ({cause.name}); poll (which rejoins),"
                " then commit again the offsets of partitions still assigned",
                cause=cause,
            )
        if action is ErrorAction.FAIL:
            if code in (_ILLEGAL_GENERATION, _UNKNOWN_MEMBER_ID):
                raise CommitFailedError(
                    f"this member's generation of group {group_id!r} is over"
                    f" ({cause.name}): the partitions may be another member's now; the"
                    " next poll rejoins",
                    cause=cause,
                )
            raise cause
        retry = retry or cause
    assert retry is not None
    return retry


async def read_committed(
    client: AsyncClient,
    *,
    group_id: str,
    partitions: Iterable[TopicPartition],
    timeout: float,
    retry: Retry,
) -> dict[TopicPartition, OffsetAndMetadata | None]:
    """The group's committed offsets (see ``GroupMembership.committed``)."""
    wanted = set(partitions)
    result: dict[TopicPartition, OffsetAndMetadata | None] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    attempt = 0
    while wanted:
        error: PykafError
        try:
            group_code, answers = await fetch_committed(
                client,
                group_id=group_id,
                partitions=wanted,
                timeout=max(0.001, deadline - loop.time()),
            )
        except PykafError as exc:
            if not _retriable(exc):
                raise
            error = exc
        else:
            if group_code:
                error = error_for_code(group_code, f"(OffsetFetch of group {group_id!r})")
                if not error.retriable:
                    raise error
            else:
                error = _take_committed(group_id, wanted, answers, result)
                if not wanted:
                    break
        attempt += 1
        delay = retry.delay(attempt)
        if loop.time() + delay >= deadline:
            raise KafkaTimeoutError(
                f"committed offsets of group {group_id!r} not read within {timeout:g}s"
                f" (last error: {error})"
            ) from error
        await asyncio.sleep(delay)
    return result


def _take_committed(
    group_id: str,
    wanted: set[TopicPartition],
    answers: Mapping[TopicPartition, tuple[OffsetAndMetadata | None, int]],
    result: dict[TopicPartition, OffsetAndMetadata | None],
) -> PykafError:
    """Move the answered partitions from ``wanted`` to ``result``; raise a final error;
    return the error to retry the rest on (UNSTABLE_OFFSET_COMMIT, coordinator moves)."""
    retry: PykafError | None = None
    for tp in sorted(wanted):
        value, code = answers.get(tp, (None, 0))
        if code == 0:
            result[tp] = value
            wanted.discard(tp)
            continue
        cause = error_for_code(code, f"(committed offset of {tp}, group {group_id!r})")
        if code == _UNKNOWN_TOPIC_OR_PARTITION or not cause.retriable:
            raise cause
        retry = retry or cause
    return retry or KafkaTimeoutError("no answer")
