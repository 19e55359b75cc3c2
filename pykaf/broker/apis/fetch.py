"""Fetch (1): stored batches, long polling, min/max bytes, per-partition limits.

Rules (Kafka's ReplicaManager.fetchMessages / readFromLog):
- Whole stored batches from the one holding the fetch offset; the response budget
  ``max_bytes`` and each partition's ``partition_max_bytes`` bound what is returned,
  except that the first non-empty partition returns at least one batch (KIP-74).
- The response is sent at once when it holds ``min_bytes`` or more, when any partition
  has an error, or when ``max_wait`` is 0; otherwise it waits for an append to one of the
  requested partitions (or the end of ``max_wait``) and reads again.
- Each partition gets an even share of ``ANSWER_TARGET`` at most (or its first batch
  when that is larger and the client's limits allow it), even when the client's limits
  allow more: Kafka too may answer with less than the limits (e.g. at a segment end).
  The share never makes a fetch wait: when the shared read falls short of ``min_bytes``,
  the client's limits alone decide.
- No incremental fetch sessions (KIP-227): every response has session id 0, which tells
  clients that no session was created, so they send full requests; a request naming a
  session is answered FETCH_SESSION_ID_NOT_FOUND.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any, Final

from pykaf.broker._log import PartitionLog
from pykaf.broker._registry import RequestContext, handles
from pykaf.broker._state import PartitionState
from pykaf.broker.apis._common import (
    NONE,
    NOT_LEADER_OR_FOLLOWER,
    OFFSET_OUT_OF_RANGE,
    UNKNOWN_TOPIC_ID,
    UNKNOWN_TOPIC_OR_PARTITION,
    leader_error,
    millis,
    node_endpoints,
)
from pykaf.protocol._fetch_response import (
    FetchAnswer,
    FetchPartitionAnswer,
    FetchTopicAnswer,
    NodeEndpoint,
)
from pykaf.protocol._messages import Payload

__all__: list[str] = []

FETCH_SESSION_ID_NOT_FOUND: Final = 70
_READ_COMMITTED: Final = 1
# Why answers stay small even when a consumer allows 50 MiB: a client can use none of an
# answer before all of it has arrived and been parsed. One answer holding a whole backlog
# keeps the consumer waiting for the transfer and the parse before its first record,
# then has it parse everything while the application reads (on a 2-core machine the two
# slow each other down). benchmarks/broker.py (16 partitions, 52 MiB stored): one 52 MiB
# answer became answers of ~10 MiB (one batch a partition); the client's first records
# came ~40 ms sooner, reading the rest took ~10-15% less time and its peak RSS fell by a
# quarter (benchmarks/consume.py, 6 partitions). The share (rather than one cap for the
# whole answer) serves every partition in each answer: no client can starve a partition
# by listing it last.
ANSWER_TARGET: Final = 2 * 1024 * 1024


@dataclass(slots=True, kw_only=True)
class _Wanted:
    """One requested partition, resolved once per request (mutable: ``chunks`` is
    refilled on every read attempt of a long poll)."""

    topic_index: int
    partition: int
    fetch_offset: int
    max_bytes: int
    target: PartitionState | None
    error: int
    chunks: list[bytes | bytearray]  # stored batches, never copied


def _resolve(
    ctx: RequestContext, request: Any
) -> tuple[list[tuple[str, uuid.UUID | None]], list[_Wanted]]:
    state = ctx.state
    by_id = ctx.api_version >= 13
    topics: list[tuple[str, uuid.UUID | None]] = []  # (name, id) as the request gave them
    wanted: list[_Wanted] = []
    for topic_index, ft in enumerate(request.topics):
        topic = state.topics_by_id.get(ft.topic_id) if by_id else state.topics.get(ft.topic)
        missing = UNKNOWN_TOPIC_ID if by_id else UNKNOWN_TOPIC_OR_PARTITION
        topics.append((getattr(ft, "topic", None) or "", getattr(ft, "topic_id", None)))
        for fp in ft.partitions:
            target = None
            error = missing
            if topic is not None:
                if 0 <= fp.partition < len(topic.partitions):
                    target = topic.partitions[fp.partition]
                    error = leader_error(ctx, target, getattr(fp, "current_leader_epoch", -1))
                else:
                    error = UNKNOWN_TOPIC_OR_PARTITION
            if error == NONE and target is not None:
                log = target.log
                if not log.log_start_offset <= fp.fetch_offset <= log.log_end_offset:
                    error = OFFSET_OUT_OF_RANGE
            wanted.append(
                _Wanted(
                    topic_index=topic_index,
                    partition=fp.partition,
                    fetch_offset=fp.fetch_offset,
                    max_bytes=fp.partition_max_bytes,
                    target=target,
                    error=error,
                    chunks=[],
                )
            )
    return topics, wanted


def _read(wanted: list[_Wanted], max_bytes: int, share: int | None) -> int:
    """Fill every partition's chunks within the limits; return the bytes gathered.

    ``share`` (None: no share) bounds each partition's bytes below the client's limits,
    except that a partition whose first batch is larger still gets that batch when the
    client's limits allow it: the share only ever shortens an answer, it never leaves
    out a partition the client's limits would have served.
    """
    remaining = max_bytes
    min_one = True
    total = 0
    for w in wanted:
        if w.error != NONE or w.target is None:
            continue
        log = w.target.log
        limit = min(w.max_bytes, remaining)
        if share is None or share >= limit:
            chunks = log.read(w.fetch_offset, limit, min_one)
        else:
            chunks = (
                log.read(w.fetch_offset, share, False)
                or log.read(w.fetch_offset, limit, min_one)[:1]
            )
        w.chunks = chunks
        if chunks:
            size = sum(map(len, chunks))
            min_one = False
            remaining = max(0, remaining - size)
            total += size
    return total


def _recheck(ctx: RequestContext, wanted: list[_Wanted]) -> bool:
    """After a wait: a partition whose topic was deleted or whose leader moved answers
    with an error now (Kafka completes a delayed fetch on such changes too)."""
    any_error = False
    for w in wanted:
        target = w.target
        if target is not None and w.error == NONE:
            if ctx.state.topics.get(target.topic.name) is not target.topic:
                w.error, w.target = UNKNOWN_TOPIC_OR_PARTITION, None
            elif target.leader != ctx.node_id:
                w.error = NOT_LEADER_OR_FOLLOWER
        any_error = any_error or w.error != NONE
    return any_error


async def _wait_for_data(logs: list[PartitionLog], timeout: float) -> None:
    """Until an append to any of ``logs`` or ``timeout`` seconds, whichever first."""
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if not future.done():
            future.set_result(None)

    for log in logs:
        log.add_waiter(wake)
    try:
        await asyncio.wait((future,), timeout=timeout)
    finally:
        for log in logs:
            log.remove_waiter(wake)
        future.cancel()


def _partition_answer(w: _Wanted, read_committed: bool) -> FetchPartitionAnswer:
    target = w.target
    if target is None:
        return FetchPartitionAnswer(
            partition_index=w.partition,
            error_code=w.error,
            aborted_transactions=() if read_committed else None,
        )
    log = target.log
    moved = w.error == NOT_LEADER_OR_FOLLOWER
    return FetchPartitionAnswer(
        partition_index=w.partition,
        error_code=w.error,
        high_watermark=log.high_watermark,
        last_stable_offset=log.high_watermark,  # no open transactions, ever
        log_start_offset=log.log_start_offset,
        aborted_transactions=() if read_committed else None,
        # The stored batches themselves: the encoder hands them to the socket uncopied.
        records=w.chunks,
        current_leader=(target.leader, target.leader_epoch) if moved else (-1, -1),
    )


@handles("Fetch")
async def fetch(ctx: RequestContext, request: Any) -> Payload:
    """Answers with a ``FetchAnswer`` (plain values, written by the hand-written encoder);
    the listener turns it into kio's entity for an interceptor (see ``call_handler``)."""
    if ctx.api_version >= 7 and (request.session_id != 0 or request.session_epoch > 0):
        return FetchAnswer(error_code=FETCH_SESSION_ID_NOT_FOUND)
    topics, wanted = _resolve(ctx, request)
    max_bytes = request.max_bytes
    loop = asyncio.get_running_loop()
    deadline = loop.time() + millis(request.max_wait) / 1000
    any_error = any(w.error != NONE for w in wanted)
    readable = sum(1 for w in wanted if w.error == NONE)
    share = ANSWER_TARGET // max(readable, 1)
    while True:
        total = _read(wanted, max_bytes, share)
        if total < request.min_bytes:
            total = _read(wanted, max_bytes, None)  # the share must not make a fetch wait
        remaining = deadline - loop.time()
        if total >= request.min_bytes or any_error or remaining <= 0 or not wanted:
            break
        await _wait_for_data([w.target.log for w in wanted if w.target is not None], remaining)
        any_error = _recheck(ctx, wanted)
    read_committed = request.isolation_level == _READ_COMMITTED
    partitions: list[list[FetchPartitionAnswer]] = [[] for _ in topics]
    for w in wanted:
        partitions[w.topic_index].append(_partition_answer(w, read_committed))
    leaders = {w.target.leader for w in wanted if w.error == NOT_LEADER_OR_FOLLOWER and w.target}
    return FetchAnswer(
        topics=[
            FetchTopicAnswer(topic=name, topic_id=topic_id, partitions=parts)
            for (name, topic_id), parts in zip(topics, partitions, strict=True)
        ],
        node_endpoints=[
            NodeEndpoint(**endpoint)
            for endpoint in node_endpoints(ctx.state, leaders, ctx.connection.listener)
        ]
        if leaders
        else (),
    )
