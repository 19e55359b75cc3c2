"""Produce (0): validate each partition's batch (header and CRC only), append, answer.

Records are never decoded here: the batch header says everything the broker checks
(magic, CRC, size, counts, producer id/epoch/sequence), and the stored bytes are what
fetches serve. Kafka's rules for a produce request v3+: exactly one batch per partition,
magic 2, no control batches from clients (INVALID_RECORD); a CRC or length failure is
CORRUPT_MESSAGE; a batch above the topic's max.message.bytes is MESSAGE_TOO_LARGE.
"""

from __future__ import annotations

from typing import Any

from pykaf._errors import CorruptRecordError, UnsupportedMagicError
from pykaf.broker._registry import CloseConnection, RequestContext, handles
from pykaf.broker._state import TopicState
from pykaf.broker.apis._common import (
    CORRUPT_MESSAGE,
    INVALID_RECORD,
    INVALID_REQUIRED_ACKS,
    MESSAGE_TOO_LARGE,
    NONE,
    NOT_LEADER_OR_FOLLOWER,
    UNKNOWN_TOPIC_ID,
    UNKNOWN_TOPIC_OR_PARTITION,
    ZERO_UUID,
    node_endpoints,
    now_ms,
)
from pykaf.protocol._messages import Payload
from pykaf.protocol._records import iter_batch_headers

__all__: list[str] = []

_CONTROL_BIT = 0x20


def _partition_answer(index: int, code: int) -> dict[str, Any]:
    """A partition response with every field a version may need (v8+ needs record_errors
    even for a topic that does not exist: a missing one cost the client its connection)."""
    return {
        "index": index,
        "error_code": code,
        "base_offset": -1,
        "log_append_time": -1,
        "log_start_offset": -1,
        "record_errors": [],
        "error_message": None,
    }


def _append(
    ctx: RequestContext, topic: TopicState, index: int, records: bytes | None, now: int
) -> dict[str, Any]:
    """The partition response for one partition's records."""
    out = _partition_answer(index, NONE)
    if not 0 <= index < len(topic.partitions):
        out["error_code"] = UNKNOWN_TOPIC_OR_PARTITION
        return out
    partition = topic.partitions[index]
    log = partition.log
    out["log_start_offset"] = log.log_start_offset
    if partition.leader != ctx.node_id:
        out["error_code"] = NOT_LEADER_OR_FOLLOWER
        out["current_leader"] = {
            "leader_id": partition.leader,
            "leader_epoch": partition.leader_epoch,
        }
        return out
    code, message, header = NONE, None, None
    if not records:
        code, message = INVALID_RECORD, "a produce request needs one record batch per partition"
    else:
        try:
            first = next(iter_batch_headers(records), None)
        except UnsupportedMagicError as exc:
            code, message = INVALID_RECORD, str(exc)
        except CorruptRecordError as exc:
            code, message = CORRUPT_MESSAGE, str(exc)
        else:
            if first is None:
                code, message = CORRUPT_MESSAGE, "the record batch is truncated"
            else:
                header = first[1]
                size = header.size
                if size > topic.max_message_bytes:
                    code = MESSAGE_TOO_LARGE
                    message = (
                        f"the batch of {size} bytes is larger than max.message.bytes"
                        f" ({topic.max_message_bytes})"
                    )
                elif size != len(records):
                    code, message = INVALID_RECORD, "only one record batch per partition is allowed"
                elif header.attributes & _CONTROL_BIT:
                    code, message = INVALID_RECORD, "clients may not write control batches"
                elif header.record_count < 1 or header.record_count != header.last_offset_delta + 1:
                    code, message = INVALID_RECORD, "record count and offset range disagree"
    if code != NONE or header is None or records is None:
        out["error_code"], out["error_message"] = code, message
        return out
    result = log.append(
        bytearray(records),  # the log keeps (and rewrites) its own copy
        header,
        leader_epoch=partition.leader_epoch,
        log_append_time=now if topic.log_append_time else None,
    )
    out["error_code"] = result.error
    out["base_offset"] = result.base_offset
    out["log_append_time"] = result.log_append_time
    out["log_start_offset"] = log.log_start_offset
    return out


@handles("Produce")
async def produce(ctx: RequestContext, request: Any) -> Payload | None:
    state = ctx.state
    by_id = ctx.api_version >= 13
    acks = request.acks
    now = now_ms()
    responses = []
    leaders: set[int] = set()
    failed = False
    for topic_data in request.topic_data:
        if by_id:
            topic = state.topics_by_id.get(topic_data.topic_id)
            missing = UNKNOWN_TOPIC_ID
        else:
            topic = state.topics.get(topic_data.name)
            missing = UNKNOWN_TOPIC_OR_PARTITION
        partitions = []
        for pd in topic_data.partition_data:
            if acks not in (-1, 0, 1):
                part = _partition_answer(pd.index, INVALID_REQUIRED_ACKS)
            elif topic is None:
                part = _partition_answer(pd.index, missing)
            else:
                part = _append(ctx, topic, pd.index, pd.records, now)
                if part["error_code"] == NOT_LEADER_OR_FOLLOWER:
                    leaders.add(part["current_leader"]["leader_id"])
            failed = failed or part["error_code"] != NONE
            partitions.append(part)
        responses.append(
            {
                "name": getattr(topic_data, "name", None) or (topic.name if topic else ""),
                "topic_id": topic.topic_id if topic else getattr(topic_data, "topic_id", ZERO_UUID),
                "partition_responses": partitions,
            }
        )
    if acks == 0:
        if failed:
            # Kafka's way to tell an acks=0 producer that something failed: it has no
            # response to read, so the broker closes the connection.
            raise CloseConnection("a produce request with acks=0 failed")
        return None
    return ctx.respond(
        responses=responses,
        throttle_time=0,
        node_endpoints=node_endpoints(state, leaders, ctx.connection.listener) if leaders else [],
    )
