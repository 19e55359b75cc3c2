"""Check that a frame's counts fit in its bytes before kio's decoder sees the frame.

kio's native reader reserves room for an array from the count on the wire before it reads
a single element: a 24-byte Metadata request whose compact count is 0xffffffff asks Rust
for 32 GiB, and a failed allocation in Rust aborts the process (no exception, no cleanup).
So every frame a peer sends is walked here first, by the same schema kio uses (read with
kio's own introspection helpers, so both agree on which field is an array, a nullable
entity or a tagged field), and every array count, string and bytes length is held against
the bytes that remain. A frame that passes holds every element it claims, so what kio then
allocates is bounded by the frame's size (itself bounded by the frame limit).

The walk reads lengths and skips: the large ``records`` bytes of Fetch responses and
Produce requests are never copied. It also refuses, when asked (requests), null arrays
where the schema allows none: kio decodes any -1 count as None, and Kafka refuses those.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any, Final, TypeAlias

from kio.serial._introspect import (
    EntityField,
    EntityTupleField,
    PrimitiveTupleField,
    classify_field,
    get_field_tag,
    get_schema_field_type,
    is_optional,
)

from pykaf._errors import RemoteProtocolError

__all__ = ["check_bounds"]

Buffer: TypeAlias = bytes | bytearray | memoryview

_I16_FROM: Final = struct.Struct(">h").unpack_from
_I32_FROM: Final = struct.Struct(">i").unpack_from
# What reading past the end raises: indexing the buffer, or unpacking from it.
_SHORT: Final = (IndexError, struct.error)

# Bytes each fixed-size kafka_type takes on the wire.
_FIXED_SIZES: Final = {
    "bool": 1,
    "int8": 1,
    "uint8": 1,
    "int16": 2,
    "uint16": 2,
    "error_code": 2,
    "int32": 4,
    "uint32": 4,
    "timedelta_i32": 4,
    "int64": 8,
    "uint64": 8,
    "float64": 8,
    "timedelta_i64": 8,
    "datetime_i64": 8,
    "uuid": 16,
}

# Op codes. An op is a 6-tuple (code, arg, name, element size, minimum size, nullable):
# plain tuples, unpacked in the walk loop, are the cheapest thing CPython can dispatch on.
# "minimum size" is the fewest bytes the op can take (an array's count, a string's length).
_FIXED: Final = 0  # arg: byte count (runs of fixed fields are merged into one op)
_LEGACY_STRING: Final = 1  # int16 length, -1 null
_LEGACY_BYTES: Final = 2  # int32 length, -1 null
_COMPACT: Final = 3  # uvarint length + 1, 0 null (strings, bytes, records)
_ENTITY: Final = 4  # arg: _Plan
_LEGACY_ARRAY: Final = 5  # int32 count, -1 null; arg: (element op, its minimum size)
_COMPACT_ARRAY: Final = 6  # uvarint count + 1, 0 null; arg: as for _LEGACY_ARRAY

_Op: TypeAlias = tuple[int, Any, str, int, int, bool]


class _Malformed(Exception):
    """What is wrong, and where: ``path`` grows outwards as the walk unwinds."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []

    def where(self) -> str:
        return "".join(reversed(self.path)).lstrip(".")


def _short(step: str | None) -> _Malformed:
    """The error of a read past the end of the frame, ``step`` its place in the path.

    Made here, not in the handler: an exception held in a local of the frame it is raised
    from is in a reference cycle with that frame (its traceback holds the frame), and the
    frames of the walk hold views of the connection's buffer, which cannot then move past
    the frame until the collector runs (``BufferError`` in ``next_event``)."""
    short = _Malformed("runs past the end of the frame")
    if step:
        short.path.append(step)
    return short


class _Plan:
    """One kio entity class as a walk plan (``nullable``: an int8 marker precedes it)."""

    __slots__ = ("flexible", "min_size", "name", "nullable", "ops", "tags")

    def __init__(self, cls: type, nullable: bool) -> None:
        self.name = cls.__name__
        self.nullable = nullable
        self.flexible = bool(getattr(cls, "__flexible__", False))
        self.ops: tuple[_Op, ...] = ()
        self.tags: dict[int, _Op] = {}
        self.min_size = 0


_PLANS: dict[tuple[type, bool], _Plan] = {}


def _plan(cls: type, nullable: bool = False) -> _Plan:
    plan = _PLANS.get((cls, nullable))
    if plan is not None:
        return plan
    plan = _PLANS[(cls, nullable)] = _Plan(cls, nullable)
    ops: list[_Op] = []
    for field in dataclasses.fields(cls):
        op = _field_op(cls, field, plan.flexible)
        tag = get_field_tag(field)
        if tag is not None:
            plan.tags[int(tag)] = op
        elif op[0] == _FIXED and ops and ops[-1][0] == _FIXED:
            last = ops[-1]
            size = last[1] + op[1]
            ops[-1] = (_FIXED, size, f"{last[2]}..{op[2]}", size, size, False)
        else:
            ops.append(op)
    plan.ops = tuple(ops)
    # A null marker, or every op's minimum plus an empty tag count.
    plan.min_size = 1 if nullable else sum(op[4] for op in ops) + plan.flexible
    return plan


def _primitive_op(kafka_type: str, flexible: bool, name: str) -> _Op:
    size = _FIXED_SIZES.get(kafka_type)
    if size is not None:
        return (_FIXED, size, name, size, size, False)
    if kafka_type not in ("string", "bytes", "records"):
        raise TypeError(f"{name}: kafka_type {kafka_type!r} is unknown to the bounds check")
    if flexible:
        return (_COMPACT, None, name, 0, 1, False)
    if kafka_type == "string":
        return (_LEGACY_STRING, None, name, 0, 2, False)
    return (_LEGACY_BYTES, None, name, 0, 4, False)


def _field_op(cls: type, field: dataclasses.Field[Any], flexible: bool) -> _Op:
    name = field.name
    kind = classify_field(field)
    if isinstance(kind, EntityField):
        nested = _plan(kind.type_, is_optional(field))
        return (_ENTITY, nested, name, 0, nested.min_size, False)
    if isinstance(kind, EntityTupleField):
        element: _Op = (_ENTITY, _plan(kind.type_), "", 0, 0, False)
    elif isinstance(kind, PrimitiveTupleField):
        element = _primitive_op(get_schema_field_type(field), flexible, "")
    else:
        return _primitive_op(get_schema_field_type(field), flexible, name)
    # An element's minimum size bounds its count; an element of 0 bytes (none in Kafka's
    # schemas today) is still held to one byte, so a count never outruns the frame.
    element_min = max(1, element[4] if element[0] != _ENTITY else element[1].min_size)
    code, count_size = (_COMPACT_ARRAY, 1) if flexible else (_LEGACY_ARRAY, 4)
    nullable = _array_nullable(field)
    return (code, (element, element_min), name, element[3], count_size, nullable)


def _array_nullable(field: dataclasses.Field[Any]) -> bool:
    # "tuple[X, ...] | None": Kafka's nullableVersions cover this version.
    return getattr(field.type, "__origin__", None) is not tuple


def check_bounds(
    cls: type, data: Buffer, offset: int, *, what: str, refuse_null_arrays: bool = False
) -> int:
    """Walk the ``cls`` entity at ``offset`` in ``data``; return the offset past it.

    Raises ``RemoteProtocolError`` naming the field when a count or length claims more
    than the bytes that remain, when the entity runs past the end of ``data``, or (with
    ``refuse_null_arrays``) when an array the schema does not let be null is null.
    """
    plan = _PLANS.get((cls, False)) or _plan(cls)
    end = len(data)
    try:
        pos = _walk_entity(plan, data, offset, end, refuse_null_arrays)
    except _Malformed as exc:
        where = exc.where()
        raise RemoteProtocolError(
            f"malformed {what}: {where + ': ' if where else ''}{exc.reason}"
        ) from None
    if pos > end:
        raise RemoteProtocolError(f"malformed {what}: the body runs past the end of the frame")
    return pos


def _uvarint(data: Buffer, pos: int) -> tuple[int, int]:
    """An unsigned varint of at most 5 bytes, as kio reads it."""
    value = shift = 0
    for i in range(5):
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos + i + 1
        shift += 7
    raise _Malformed("a varint is longer than 5 bytes")


def _past_end(needed: int, what: str, remaining: int) -> _Malformed:
    return _Malformed(f"claims {needed} {what}, but only {max(remaining, 0)} bytes remain")


def _walk_entity(plan: _Plan, data: Buffer, pos: int, end: int, strict: bool) -> int:
    op: _Op = (_FIXED, 0, "", 0, 0, False)
    try:
        if plan.nullable:
            pos += 1
            if data[pos - 1] == 0xFF:  # int8 -1: a null entity
                return pos
        for op in plan.ops:
            code = op[0]
            if code == _FIXED:
                pos += op[1]
                if pos > end:
                    raise _Malformed("runs past the end of the frame")
            elif code == _COMPACT:
                length = data[pos]
                pos += 1
                if length > 0x7F:
                    length, pos = _uvarint(data, pos - 1)
                if length > 1:
                    pos += length - 1
                    if pos > end:
                        raise _past_end(length - 1, "bytes", end - pos + length - 1)
            elif code == _COMPACT_ARRAY and data[pos] == 1:
                pos += 1  # empty (aborted_transactions in most Fetch partitions)
            else:
                pos = _walk_op(op, data, pos, end, strict)
        op = (_FIXED, 0, "", 0, 0, False)
        if plan.flexible:
            if data[pos] == 0:  # no tagged field: the usual case, without a call
                pos += 1
            else:
                pos = _walk_tags(plan, data, pos, end, strict)
    except _Malformed as exc:
        if op[2]:
            exc.path.append("." + op[2])
        raise
    except _SHORT:
        raise _short("." + op[2] if op[2] else None) from None
    return pos


def _walk_op(op: _Op, data: Buffer, pos: int, end: int, strict: bool) -> int:
    code = op[0]
    if code == _FIXED:
        pos += op[1]
    elif code == _COMPACT:
        length, pos = _uvarint(data, pos)
        if length > 1:
            if length - 1 > end - pos:
                raise _past_end(length - 1, "bytes", end - pos)
            pos += length - 1
    elif code == _ENTITY:
        pos = _walk_entity(op[1], data, pos, end, strict)
    elif code in (_LEGACY_STRING, _LEGACY_BYTES):
        if code == _LEGACY_STRING:
            (length,) = _I16_FROM(data, pos)
            pos += 2
        else:
            (length,) = _I32_FROM(data, pos)
            pos += 4
        if length < -1:
            raise _Malformed(f"has a negative length ({length})")
        if length > end - pos:
            raise _past_end(length, "bytes", end - pos)
        if length > 0:
            pos += length
    else:
        pos = _walk_array(op, data, pos, end, strict)
    if pos > end:
        raise _Malformed("runs past the end of the frame")
    return pos


def _walk_array(op: _Op, data: Buffer, pos: int, end: int, strict: bool) -> int:
    code, (element, element_min), _name, element_size, _count_size, nullable = op
    if code == _COMPACT_ARRAY:
        count = data[pos]
        pos += 1
        if count > 0x7F:
            count, pos = _uvarint(data, pos - 1)
        count -= 1  # -1: null
    else:
        (count,) = _I32_FROM(data, pos)
        pos += 4
        if count < -1:
            raise _Malformed(f"has a negative count ({count})")
    if count < 0:
        if strict and not nullable:
            raise _Malformed("the array is null, which its schema does not allow")
        return pos
    remaining = end - pos
    if count * element_min > remaining:
        raise _past_end(count, "entries", remaining)
    if element_size:  # fixed-size elements: nothing inside to check
        return pos + count * element_size
    i = 0  # the element being walked, for the error's path
    try:
        if element[0] == _ENTITY:
            plan = element[1]
            for i in range(count):  # noqa: B007
                pos = _walk_entity(plan, data, pos, end, strict)
        else:
            for i in range(count):  # noqa: B007
                pos = _walk_op(element, data, pos, end, strict)
    except _Malformed as exc:
        exc.path.append(f"[{i}]")
        raise
    except _SHORT:
        raise _short(f"[{i}]") from None
    return pos


def _walk_tags(plan: _Plan, data: Buffer, pos: int, end: int, strict: bool) -> int:
    count = data[pos]
    pos += 1
    if count == 0:
        return pos
    if count > 0x7F:
        count, pos = _uvarint(data, pos - 1)
    if 2 * count > end - pos:  # a tag and a size, one byte each at least
        raise _past_end(count, "tagged fields", end - pos)
    for _ in range(count):
        tag, pos = _uvarint(data, pos)
        size, pos = _uvarint(data, pos)
        if size > end - pos:
            exc = _past_end(size, "bytes", end - pos)
            exc.path.append(f".<tag {tag}>")
            raise exc
        op = plan.tags.get(tag)
        if op is None:
            pos += size  # unknown to this version: kio will say so, its bytes are bounded
            continue
        # kio reads a known tagged field by its schema, not by the size before it; so do we,
        # so that both agree on where the entity ends.
        try:
            pos = _walk_op(op, data, pos, end, strict)
        except _Malformed as exc:
            exc.path.append("." + op[2])
            raise
    return pos
