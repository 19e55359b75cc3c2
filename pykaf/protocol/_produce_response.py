"""A hand-written ProduceResponse decoder (v3..v13), for the producer's hot path.

Every acknowledged batch goes through one ProduceResponse. kio's generic reader builds an
entity per topic, partition and record error (datetimes, enums, timedeltas) which the
sender then walks into a dict: ~15-20 µs per response on the one-at-a-time latency path.
This reads the same bytes straight into that dict (a differential test holds it equal to
kio's decode mapped the way the sender maps it). Sans-I/O like the rest of
``pykaf.protocol``.

Layout: ``responses`` array of (``name`` -- ``topic_id`` uuid from v13 -- ,
``partition_responses`` array of (index int32, error_code int16, base_offset int64,
log_append_time_ms int64, log_start_offset int64 (v5+), ``record_errors`` array of
(batch_index int32, batch_index_error_message nullable string) (v8+), error_message
nullable string (v8+))), throttle_time_ms int32. Flexible versions (v9+) use compact
(unsigned varint length + 1) strings and arrays and end every struct with tagged fields;
v10+ defines tags (KIP-951: a partition's current_leader, the response's node_endpoints)
which this decoder skips like any unknown tag: the sender only needs the outcomes and the
throttle time (``ProduceOutcomes.throttle_time_ms``: a throttled broker is heard, KIP-219).

Leniency, on purpose: a null array (the nullable marker in a non-nullable array) reads as
empty, as kio reads it; log_append_time_ms is passed through whatever its value (kio
refuses negative times other than -1); record_errors are skipped, their strings unchecked.
"""

from __future__ import annotations

import struct
import uuid
from typing import Final

from pykaf._errors import LocalProtocolError, RemoteProtocolError
from pykaf.protocol._messages import Buffer
from pykaf.protocol._produce_request import MAX_PRODUCE_VERSION, MIN_PRODUCE_VERSION

__all__ = [
    "PartitionOutcome",
    "ProduceOutcomes",
    "ThrottledOutcomes",
    "decode_produce_frame",
    "decode_produce_response",
]

_FLEXIBLE: Final = 9
_TOPIC_ID: Final = 13

# (error code, base offset, log append time ms (-1: none), error message or None)
PartitionOutcome = tuple[int, int, int, str | None]


# {(topic name -- topic id from v13, None for the zero uuid --, partition): outcome}
ProduceOutcomes = dict[tuple[str | uuid.UUID | None, int], PartitionOutcome]


class ThrottledOutcomes(ProduceOutcomes):
    """The outcomes of an answer with a ``throttle_time_ms`` > 0 (KIP-219: the broker
    asks the client to send it nothing more for that long).

    A dict with one attribute rather than an (outcomes, throttle) pair: the answer travels
    as one value through the connection's generic answer path, whose ``Throttled`` event
    reads ``throttle_time_ms`` off any plain answer (Fetch's too), and the sender reads it
    to hold off. Only a throttled answer is copied into one: the usual answer stays a plain
    dict, built and filled at full speed (a dict subclass costs ~0.1 µs per answer)."""

    __slots__ = ("throttle_time_ms",)

    def __init__(self, outcomes: ProduceOutcomes, throttle_time_ms: int) -> None:
        super().__init__(outcomes)
        self.throttle_time_ms = throttle_time_ms


_I16_FROM: Final = struct.Struct(">h").unpack_from
_I32_FROM: Final = struct.Struct(">i").unpack_from
# A partition as it nearly always is, read in one call: a field per call would cost more
# than the field. index, error_code, base_offset, log_append_time_ms, then:
_V3_PART_FROM: Final = struct.Struct(">ihqq").unpack_from  # v3..v7 (+ log_start_offset v5+)
# v8: log_start_offset, record_errors length (0), error_message length (-1: null)
_V8_PART_FROM: Final = struct.Struct(">ihqqqih").unpack_from
# v9+: log_start_offset, then three single bytes when there is nothing more: compact
# record_errors length (1: empty), compact error_message length (0: null), no tags (0)
_FLEX_PART_FROM: Final = struct.Struct(">ihqqqBBB").unpack_from
_ZERO_UUID: Final = bytes(16)

# uuid.UUID(bytes=...) costs ~0.7 µs, more than the rest of a one-partition response; a
# cluster has few topics, so memoise, bounded against a peer that sends endless new ids.
_UUIDS: dict[bytes, uuid.UUID] = {}
_MAX_UUIDS: Final = 4096


def _error(version: int, what: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"ProduceResponse v{version}: {what}")


def _uvarint(data: bytes, pos: int, first: int) -> tuple[int, int]:
    """The rest of an unsigned varint whose first byte (``first`` >= 0x80) was read."""
    value = first & 0x7F
    shift = 7
    while True:
        byte = data[pos]  # IndexError: truncated, reported by the caller
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift >= 35:
            raise ValueError("a varint longer than 5 bytes")


def _skip_tags(data: bytes, pos: int, count: int) -> int:
    """Skip ``count`` tagged fields (the count's first byte is already read): every tag
    is skipped by its size, known (KIP-951's) or not, as KIP-482 requires of unknowns."""
    if count > 0x7F:
        count, pos = _uvarint(data, pos, count)
    for _ in range(count):
        tag = data[pos]
        pos += 1
        if tag > 0x7F:
            tag, pos = _uvarint(data, pos, tag)
        size = data[pos]
        pos += 1
        if size > 0x7F:
            size, pos = _uvarint(data, pos, size)
        pos += size
    if pos > len(data):
        raise IndexError("a tagged field runs past the end")
    return pos


def _topic_id(raw: bytes) -> uuid.UUID | None:
    if raw == _ZERO_UUID:
        return None  # kio's reading of the zero uuid, the "no id" marker
    found = _UUIDS.get(raw)
    if found is None:
        if len(_UUIDS) >= _MAX_UUIDS:
            _UUIDS.clear()
        found = _UUIDS[raw] = uuid.UUID(bytes=raw)
    return found


def _bad_call(version: int, offset: object, size: int) -> LocalProtocolError:
    if not MIN_PRODUCE_VERSION <= version <= MAX_PRODUCE_VERSION:
        return LocalProtocolError(
            f"Produce v{version} is outside {MIN_PRODUCE_VERSION}..{MAX_PRODUCE_VERSION}"
        )
    return LocalProtocolError(f"offset {offset!r} is outside the payload (0..{size})")


def decode_produce_response(version: int, payload: Buffer, offset: int) -> ProduceOutcomes:
    """The body of a ProduceResponse of ``version`` (3..13) starting at ``offset`` in
    ``payload`` (just after the response header, its tagged fields included for flexible
    versions) -> ``{(topic name, or topic_id from v13, partition index): outcome}``.

    Bytes after the body are ignored (as ``decode_response`` does by default); a later
    entry for the same partition replaces an earlier one. Bad bytes raise
    ``RemoteProtocolError``; a version or offset out of range ``LocalProtocolError``.
    """
    # Indexing and slicing bytes is the fastest path in CPython, and one copy of a
    # response (a few hundred bytes) costs less than memoryview slicing per string.
    data = payload if type(payload) is bytes else bytes(payload)
    if not (
        MIN_PRODUCE_VERSION <= version <= MAX_PRODUCE_VERSION
        and type(offset) is int
        and 0 <= offset <= len(data)
    ):
        raise _bad_call(version, offset, len(data))
    if version >= _FLEXIBLE:
        return _flexible(version, data, offset)
    return _classic(version, data, offset)


def decode_produce_frame(version: int, payload: Buffer) -> tuple[int, ProduceOutcomes]:
    """A whole ProduceResponse frame (the bytes after the 4-byte length prefix) ->
    ``(correlation_id, outcomes)``: response header v0 (the correlation id) for v3..v8,
    v1 (correlation id and tagged fields) for the flexible v9+."""
    data = payload if type(payload) is bytes else bytes(payload)  # as above
    if not MIN_PRODUCE_VERSION <= version <= MAX_PRODUCE_VERSION:
        raise _bad_call(version, 0, len(data))
    if len(data) < 4:
        raise _error(version, f"a frame of {len(data)} bytes has no room for a header")
    (correlation_id,) = _I32_FROM(data, 0)
    if version < _FLEXIBLE:
        return correlation_id, _classic(version, data, 4)
    try:
        tags = data[4]
        pos = _skip_tags(data, 5, tags) if tags else 5
    except IndexError:
        raise _error(version, "truncated in the response header") from None
    except ValueError as exc:
        raise _error(version, f"malformed response header: {exc}") from None
    return correlation_id, _flexible(version, data, pos)


# The two readers below are long straight-line loops on purpose: a helper call per field
# would cost more than the field. Each partition is read in one unpack_from, and only a
# partition that carries record errors, a message or tags (a failed or redirected batch)
# takes a slower path. Truncation surfaces as struct.error (unpack_from past the end) or
# IndexError (a byte index past the end), turned into RemoteProtocolError naming
# ``where``; explicit checks guard the slices, which would silently come up short. A
# valid partition is never shorter than its struct, so reading the whole struct before
# looking at its tail never refuses a valid response.


def _classic(version: int, data: bytes, pos: int) -> ProduceOutcomes:
    size = len(data)
    i32_from = _I32_FROM
    i16_from = _I16_FROM
    with_errors = version >= 8
    part_from = _V8_PART_FROM if with_errors else _V3_PART_FROM
    part_size = 36 if with_errors else 22 if version < 5 else 30
    out: ProduceOutcomes = {}
    where = "responses"
    try:
        (topics,) = i32_from(data, pos)
        pos += 4
        if topics < 0:
            if topics != -1:
                raise _error(version, f"responses has a negative length {topics}")
            topics = 0  # the null marker: read as empty, as kio does
        if topics > size - pos:
            raise _error(version, f"responses claims {topics} topics in {size - pos} bytes")
        for _ in range(topics):
            where = "responses"
            (n,) = i16_from(data, pos)
            pos += 2
            if n < 0:
                raise _error(version, "a topic name is null")
            end = pos + n
            if end > size:
                raise _error(version, "truncated in a topic name")
            name = data[pos:end].decode()
            pos = end
            where = "partition_responses"
            (parts,) = i32_from(data, pos)
            pos += 4
            if parts < 0:
                if parts != -1:
                    raise _error(version, f"partition_responses has a negative length {parts}")
                parts = 0
            if parts > size - pos:
                raise _error(
                    version, f"partition_responses claims {parts} entries in {size - pos} bytes"
                )
            for _ in range(parts):
                fields = part_from(data, pos)
                pos += part_size
                message = None
                if with_errors and (fields[5] or fields[6] != -1):
                    pos, message = _classic_tail(version, data, pos - 6)
                out[(name, fields[0])] = (fields[1], fields[2], fields[3], message)
        if pos + 4 > size:
            raise _error(version, "truncated in throttle_time_ms")
        (throttle,) = i32_from(data, pos)
    except (struct.error, IndexError):
        raise _error(version, f"truncated in {where}") from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise _error(version, f"malformed {where}: {exc}") from None
    return out if throttle <= 0 else ThrottledOutcomes(out, throttle)


def _classic_tail(version: int, data: bytes, pos: int) -> tuple[int, str | None]:
    """A v8 partition from its record_errors on -> (end, error_message)."""
    size = len(data)
    (count,) = _I32_FROM(data, pos)
    pos += 4
    if count < -1:
        raise _error(version, f"record_errors has a negative length {count}")
    if count > size - pos:
        raise _error(version, f"record_errors claims {count} entries in {size - pos} bytes")
    for _ in range(count):  # skipped: the partition's error code says what failed
        (n,) = _I16_FROM(data, pos + 4)  # after batch_index
        pos += 6
        if n > 0:
            pos += n
        elif n < -1:
            raise _error(version, f"a batch_index_error_message has a negative length {n}")
    (n,) = _I16_FROM(data, pos)
    pos += 2
    if n < 0:
        if n != -1:
            raise _error(version, f"an error_message has a negative length {n}")
        return pos, None
    end = pos + n
    if end > size:
        raise _error(version, "truncated in an error_message")
    return end, data[pos:end].decode()


def _flexible(version: int, data: bytes, pos: int) -> ProduceOutcomes:
    size = len(data)
    by_id = version >= _TOPIC_ID
    part_from = _FLEX_PART_FROM
    uvarint = _uvarint
    skip_tags = _skip_tags
    out: ProduceOutcomes = {}
    key: str | uuid.UUID | None
    where = "responses"
    try:
        topics = data[pos]
        pos += 1
        if topics > 0x7F:
            topics, pos = uvarint(data, pos, topics)
        if topics:
            topics -= 1  # 0 is the null marker: read as empty, as kio does
        if topics > size - pos:
            raise _error(version, f"responses claims {topics} topics in {size - pos} bytes")
        for _ in range(topics):
            where = "responses"
            if by_id:
                end = pos + 16
                if end > size:
                    raise _error(version, "truncated in a topic_id")
                key = _topic_id(data[pos:end])
            else:
                n = data[pos]
                pos += 1
                if n > 0x7F:
                    n, pos = uvarint(data, pos, n)
                if not n:
                    raise _error(version, "a topic name is null")
                end = pos + n - 1
                if end > size:
                    raise _error(version, "truncated in a topic name")
                key = data[pos:end].decode()
            pos = end
            where = "partition_responses"
            parts = data[pos]
            pos += 1
            if parts > 0x7F:
                parts, pos = uvarint(data, pos, parts)
            if parts:
                parts -= 1
            if parts > size - pos:
                raise _error(
                    version, f"partition_responses claims {parts} entries in {size - pos} bytes"
                )
            for _ in range(parts):
                fields = part_from(data, pos)
                if fields[5] == 1 and not fields[6] and not fields[7]:
                    pos += 33
                    message = None
                else:
                    pos, message = _flexible_tail(version, data, pos + 30)
                out[(key, fields[0])] = (fields[1], fields[2], fields[3], message)
            where = "responses"
            tags = data[pos]  # the topic's tagged fields
            pos += 1
            if tags:
                pos = skip_tags(data, pos, tags)
        where = "throttle_time_ms and the response's tagged fields"
        tags = data[pos + 4]  # node_endpoints (v10+) and unknown tags
        if tags:
            skip_tags(data, pos + 5, tags)
        (throttle,) = _I32_FROM(data, pos)
    except (struct.error, IndexError):
        raise _error(version, f"truncated in {where}") from None
    except ValueError as exc:  # UnicodeDecodeError and overlong varints included
        raise _error(version, f"malformed {where}: {exc}") from None
    return out if throttle <= 0 else ThrottledOutcomes(out, throttle)


def _flexible_tail(version: int, data: bytes, pos: int) -> tuple[int, str | None]:
    """A v9+ partition from its record_errors on -> (end, error_message), skipping the
    record errors and the tags (current_leader from v10, unknown ones)."""
    size = len(data)
    count = data[pos]
    pos += 1
    if count > 0x7F:
        count, pos = _uvarint(data, pos, count)
    if count > 1:  # 0: null, 1: empty
        count -= 1
        if count > size - pos:
            raise _error(version, f"record_errors claims {count} entries in {size - pos} bytes")
        for _ in range(count):  # skipped: the partition's error code says what failed
            pos += 4  # batch_index
            n = data[pos]
            pos += 1
            if n > 0x7F:
                n, pos = _uvarint(data, pos, n)
            if n:
                pos += n - 1
            tags = data[pos]
            pos += 1
            if tags:
                pos = _skip_tags(data, pos, tags)
    n = data[pos]
    pos += 1
    if n > 0x7F:
        n, pos = _uvarint(data, pos, n)
    message = None
    if n:
        end = pos + n - 1
        if end > size:
            raise _error(version, "truncated in an error_message")
        message = data[pos:end].decode()
        pos = end
    tags = data[pos]
    pos += 1
    if tags:
        pos = _skip_tags(data, pos, tags)
    return pos, message
