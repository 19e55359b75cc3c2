"""A hand-written FetchResponse encoder (v4..v18) for the broker's fetch path.

A fetch answer is mostly stored record batches. kio's generic writer copies every batch
into its buffer (and the frame is copied again on the way out), and building the entity
tree costs more than the header fields it holds. This writes the header fields straight
to small buffers and returns the frame as a list of buffers in which the stored batches
appear as they are, ready for ``transport.writelines`` / ``socket.sendmsg``: the only
copy of a batch is the socket write. A differential test holds the joined bytes equal to
``encode_response`` of the kio entity for every version. Sans-I/O like the rest of
``pykaf.protocol``.

Layout: response header (correlation id; v12+ flexible, so an empty tag buffer follows),
``throttle_time_ms`` int32, (v7+) ``error_code`` int16 and ``session_id`` int32, then
``responses`` array of (``topic`` string -- ``topic_id`` uuid from v13 -- , ``partitions``
array of (partition_index int32, error_code int16, high_watermark int64,
last_stable_offset int64, log_start_offset int64 (v5+), aborted_transactions nullable
array of (producer_id int64, first_offset int64), preferred_read_replica int32 (v11+),
records nullable bytes)). Flexible versions use compact (unsigned varint length + 1)
strings, arrays and bytes, end each struct with tagged fields, and define tags: a
partition's diverging_epoch (0), current_leader (1) and snapshot_id (2), the response's
node_endpoints (0, v16+). As kio (and Kafka) do, a tag is written only when its value is
not the default (-1 everywhere, an empty node list).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from pykaf._errors import LocalProtocolError
from pykaf.protocol._messages import Buffer, Payload, build_response

__all__ = [
    "MAX_FETCH_VERSION",
    "MIN_FETCH_VERSION",
    "FetchAnswer",
    "FetchPartitionAnswer",
    "FetchTopicAnswer",
    "NodeEndpoint",
    "encode_fetch_response",
    "fetch_response_entity",
]

MIN_FETCH_VERSION: Final = 4
MAX_FETCH_VERSION: Final = 18
_FETCH_KEY: Final = 1
_LOG_START: Final = 5
_SESSIONS: Final = 7
_PREFERRED_REPLICA: Final = 11
_FLEXIBLE: Final = 12
_TOPIC_ID: Final = 13
_NODE_ENDPOINTS: Final = 16
_MAX_INT32: Final = 2**31 - 1

_HEAD: Final = struct.Struct(">ii")  # length (patched last), correlation id
_I16: Final = struct.Struct(">h")
_I32: Final = struct.Struct(">i")
_ERROR_SESSION: Final = struct.Struct(">hi")
_PART_V4: Final = struct.Struct(">ihqq")  # index, error, high watermark, last stable
_PART_V5: Final = struct.Struct(">ihqqq")  # + log start offset
_TWO_I64: Final = struct.Struct(">qq")
_TWO_I32: Final = struct.Struct(">ii")
_I64_I32: Final = struct.Struct(">qi")
_I32_I64: Final = struct.Struct(">iq")
_NULL_I32: Final = b"\xff\xff\xff\xff"
_ZERO_UUID: Final = bytes(16)
_NO_TAGS: Final = b"\x00"
_UNSET: Final = (-1, -1)


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchPartitionAnswer:
    """One partition of a fetch answer, as plain values.

    ``records`` are stored batches, written one after the other as they are (None: the
    null marker): bytes, bytearrays or flat byte memoryviews (``len`` is their size).
    The pairs are the flexible versions' tagged fields; a pair of -1s (the default) is
    not written, as Kafka does.
    """

    partition_index: int
    error_code: int = 0
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1
    # (producer_id, first_offset) of each aborted transaction; None: the null array.
    aborted_transactions: Sequence[tuple[int, int]] | None = None
    preferred_read_replica: int = -1
    records: Sequence[Buffer] | None = ()
    diverging_epoch: tuple[int, int] = _UNSET  # (epoch, end_offset)
    current_leader: tuple[int, int] = _UNSET  # (leader_id, leader_epoch)
    snapshot_id: tuple[int, int] = _UNSET  # (end_offset, epoch)


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchTopicAnswer:
    """A topic, by name (v4..v12) or by id (v13+: None writes the zero uuid)."""

    topic: str = ""
    topic_id: uuid.UUID | None = None
    partitions: Sequence[FetchPartitionAnswer] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeEndpoint:
    node_id: int
    host: str
    port: int
    rack: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchAnswer:
    """A whole FetchResponse body as plain values (fields a version lacks are dropped)."""

    throttle_time_ms: int = 0
    error_code: int = 0
    session_id: int = 0
    topics: Sequence[FetchTopicAnswer] = ()
    node_endpoints: Sequence[NodeEndpoint] = field(default_factory=tuple)


def _uvarint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(value: str) -> bytes:
    data = value.encode()
    if len(data) > 0x7FFF:
        raise ValueError(f"a string of {len(data)} bytes (32767 at most)")
    return _I16.pack(len(data)) + data


def _compact_string(value: str | None) -> bytes:
    if value is None:
        return b"\x00"
    data = value.encode()
    return _uvarint(len(data) + 1) + data


def _records_size(records: Sequence[Buffer]) -> int:
    # len() is the byte count of bytes, bytearray and the flat byte memoryviews taken
    # of them (the only memoryviews a log holds); map keeps the loop in C.
    return sum(map(len, records))


def encode_fetch_response(version: int, correlation_id: int, answer: FetchAnswer) -> list[Buffer]:
    """The framed FetchResponse (length prefix and header included) as buffers to write
    in order; joined, the same bytes as ``encode_response(1, version, correlation_id,
    fetch_response_entity(version, answer))``. The record buffers are the caller's own
    objects (not copied): they must not change until written."""
    if not MIN_FETCH_VERSION <= version <= MAX_FETCH_VERSION:
        raise LocalProtocolError(
            f"Fetch v{version} is outside {MIN_FETCH_VERSION}..{MAX_FETCH_VERSION}"
        )
    if type(correlation_id) is not int or not -(2**31) <= correlation_id <= _MAX_INT32:
        raise LocalProtocolError(f"correlation_id must be an int32, got {correlation_id!r}")
    head = bytearray(_HEAD.pack(0, correlation_id))
    parts: list[Buffer] = [head]
    try:
        if version >= _FLEXIBLE:
            head += _NO_TAGS
        head += _I32.pack(answer.throttle_time_ms)
        if version >= _SESSIONS:
            head += _ERROR_SESSION.pack(answer.error_code, answer.session_id)
        if version >= _FLEXIBLE:
            _flexible_body(parts, version, answer)
        else:
            _classic_body(parts, version, answer)
    except (struct.error, TypeError, ValueError, AttributeError) as exc:
        raise LocalProtocolError(f"cannot encode Fetch v{version} response: {exc}") from exc
    size = _records_size(parts) - 4
    if size > _MAX_INT32:
        raise LocalProtocolError(f"a Fetch response of {size} bytes does not fit a frame")
    _I32.pack_into(head, 0, size)
    if not parts[-1]:  # a classic body ending in records leaves an empty buffer last
        parts.pop()
    return parts


# The two writers below append header fields to the last buffer of ``parts`` and, for a
# partition's records, append the stored batches themselves followed by a new buffer.


def _classic_body(parts: list[Buffer], version: int, answer: FetchAnswer) -> None:
    out = parts[-1]
    assert isinstance(out, bytearray)
    i32 = _I32.pack
    pair = _TWO_I64.pack
    part_struct = _PART_V5 if version >= _LOG_START else _PART_V4
    with_start = version >= _LOG_START
    with_replica = version >= _PREFERRED_REPLICA
    out += i32(len(answer.topics))
    for topic in answer.topics:
        out += _string(topic.topic)
        out += i32(len(topic.partitions))
        for p in topic.partitions:
            if with_start:
                out += part_struct.pack(
                    p.partition_index,
                    p.error_code,
                    p.high_watermark,
                    p.last_stable_offset,
                    p.log_start_offset,
                )
            else:
                out += part_struct.pack(
                    p.partition_index, p.error_code, p.high_watermark, p.last_stable_offset
                )
            aborted = p.aborted_transactions
            if aborted is None:
                out += _NULL_I32
            else:
                out += i32(len(aborted))
                for producer_id, first_offset in aborted:
                    out += pair(producer_id, first_offset)
            if with_replica:
                out += i32(p.preferred_read_replica)
            records = p.records
            if records is None:
                out += _NULL_I32
            else:
                out += i32(_records_size(records))
                if records:
                    parts.extend(records)
                    out = bytearray()
                    parts.append(out)


def _partition_tags(p: FetchPartitionAnswer) -> bytes:
    tags: list[bytes] = []
    if p.diverging_epoch != _UNSET:
        tags.append(b"\x00\x0d" + _I32_I64.pack(*p.diverging_epoch) + _NO_TAGS)
    if p.current_leader != _UNSET:
        tags.append(b"\x01\x09" + _TWO_I32.pack(*p.current_leader) + _NO_TAGS)
    if p.snapshot_id != _UNSET:
        tags.append(b"\x02\x0d" + _I64_I32.pack(*p.snapshot_id) + _NO_TAGS)
    return bytes((len(tags),)) + b"".join(tags)


def _node_endpoints_tag(nodes: Sequence[NodeEndpoint]) -> bytes:
    data = bytearray(_uvarint(len(nodes) + 1))
    for node in nodes:
        data += _I32.pack(node.node_id)
        data += _compact_string(node.host)
        data += _I32.pack(node.port)
        data += _compact_string(node.rack)
        data += _NO_TAGS
    return b"\x01\x00" + _uvarint(len(data)) + data


def _flexible_body(parts: list[Buffer], version: int, answer: FetchAnswer) -> None:
    out = parts[-1]
    assert isinstance(out, bytearray)
    i32 = _I32.pack
    pair = _TWO_I64.pack
    part_struct = _PART_V5
    by_id = version >= _TOPIC_ID
    out += _uvarint(len(answer.topics) + 1)
    for topic in answer.topics:
        if by_id:
            out += _ZERO_UUID if topic.topic_id is None else topic.topic_id.bytes
        else:
            out += _compact_string(topic.topic)
        out += _uvarint(len(topic.partitions) + 1)
        for p in topic.partitions:
            out += part_struct.pack(
                p.partition_index,
                p.error_code,
                p.high_watermark,
                p.last_stable_offset,
                p.log_start_offset,
            )
            aborted = p.aborted_transactions
            if aborted is None:
                out += b"\x00"
            else:
                out += _uvarint(len(aborted) + 1)
                for producer_id, first_offset in aborted:
                    out += pair(producer_id, first_offset)
                    out += _NO_TAGS
            out += i32(p.preferred_read_replica)
            records = p.records
            if records is None:
                out += b"\x00"
            else:
                out += _uvarint(_records_size(records) + 1)
                if records:
                    parts.extend(records)
                    out = bytearray()
                    parts.append(out)
            if p.diverging_epoch == p.current_leader == p.snapshot_id == _UNSET:
                out += _NO_TAGS
            else:
                out += _partition_tags(p)
        out += _NO_TAGS  # the topic's
    if version >= _NODE_ENDPOINTS and answer.node_endpoints:
        out += _node_endpoints_tag(answer.node_endpoints)
    else:
        out += _NO_TAGS


def fetch_response_entity(version: int, answer: FetchAnswer) -> Payload:
    """kio's FetchResponse at ``version`` holding ``answer`` (records joined): what an
    interceptor sees and may change, and the reference the encoder is tested against."""
    topics = [
        {
            "topic": t.topic,
            "topic_id": t.topic_id,
            "partitions": [
                {
                    "partition_index": p.partition_index,
                    "error_code": p.error_code,
                    "high_watermark": p.high_watermark,
                    "last_stable_offset": p.last_stable_offset,
                    "log_start_offset": p.log_start_offset,
                    "aborted_transactions": None
                    if p.aborted_transactions is None
                    else [
                        {"producer_id": pid, "first_offset": first}
                        for pid, first in p.aborted_transactions
                    ],
                    "preferred_read_replica": p.preferred_read_replica,
                    "records": None if p.records is None else b"".join(p.records),
                    "diverging_epoch": dict(
                        zip(("epoch", "end_offset"), p.diverging_epoch, strict=True)
                    ),
                    "current_leader": dict(
                        zip(("leader_id", "leader_epoch"), p.current_leader, strict=True)
                    ),
                    "snapshot_id": dict(zip(("end_offset", "epoch"), p.snapshot_id, strict=True)),
                }
                for p in t.partitions
            ],
        }
        for t in answer.topics
    ]
    return build_response(
        _FETCH_KEY,
        version,
        throttle_time=answer.throttle_time_ms,
        error_code=answer.error_code,
        session_id=answer.session_id,
        responses=topics,
        node_endpoints=[
            {"node_id": n.node_id, "host": n.host, "port": n.port, "rack": n.rack}
            for n in answer.node_endpoints
        ],
    )
