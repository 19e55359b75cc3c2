"""Build kio entities from plain Python values, and name the field a bad value sits in.

kio's entities are exact, frozen, per-version dataclasses. Callers (the client, the
embedded broker, tests) would rather write one dict for every version: nested entities
as dicts, durations as milliseconds, error codes as ints. This module turns such values
into the entity of one version, drops what that version does not have, and reports every
required field that is missing, with its path ("topics[0].name").
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from types import NoneType, UnionType
from typing import Any, Final, Literal, Union, get_args, get_origin

from kio.schema.errors import ErrorCode

from pykaf._errors import LocalProtocolError, MissingFieldsError

__all__ = ["build_entity", "find_bad_field"]

_EPOCH: Final = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

_Kind = Literal["entity", "entity_tuple", "prim", "prim_tuple"]


@dataclass(frozen=True, slots=True, kw_only=True)
class _FieldPlan:
    name: str
    kind: _Kind
    kafka_type: str | None  # None for entity fields
    nested: type | None  # the entity class, for entity kinds
    optional: bool  # the field itself may be None
    elem_optional: bool  # array elements may be None (only uuid arrays)
    required: bool  # no default: the caller must give it
    implicit: Callable[[], object] | None  # tagged field without a declared default


def _strip_none(tp: Any) -> tuple[Any, bool]:
    if get_origin(tp) in (UnionType, Union):
        args = [a for a in get_args(tp) if a is not NoneType]
        return args[0], len(args) != len(get_args(tp))
    return tp, False


@cache
def _plans(cls: type) -> tuple[_FieldPlan, ...]:
    plans = []
    for f in dataclasses.fields(cls):
        tp, optional = _strip_none(f.type)
        elem_optional = False
        if get_origin(tp) is tuple:
            elem, elem_optional = _strip_none(get_args(tp)[0])
            kind: _Kind = "entity_tuple" if dataclasses.is_dataclass(elem) else "prim_tuple"
            nested = elem if kind == "entity_tuple" else None
        else:
            kind = "entity" if dataclasses.is_dataclass(tp) else "prim"
            nested = tp if kind == "entity" else None
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        tagged = "tag" in f.metadata
        implicit: Callable[[], object] | None = None
        # kio types every uuid field "UUID | None" (None is written as the zero UUID) yet
        # gives most no default; Kafka's implicit default for a uuid is the zero UUID.
        zero_uuid = kind == "prim" and f.metadata.get("kafka_type") == "uuid"
        if no_default and zero_uuid:
            implicit = _none
        elif no_default and tagged:
            # kio leaves a few tagged entity fields without a default (their JSON gives
            # none); on the wire an absent tag means "all defaults", so do the same.
            implicit = _implicit_default_factory(kind, nested, f.metadata.get("kafka_type"))
        plans.append(
            _FieldPlan(
                name=f.name,
                kind=kind,
                kafka_type=f.metadata.get("kafka_type"),
                nested=nested,
                optional=optional,
                elem_optional=elem_optional,
                required=no_default and not tagged and not zero_uuid,
                implicit=implicit,
            )
        )
    return tuple(plans)


def _none() -> None:
    return None


_PRIMITIVE_ZERO: Final[Mapping[str, object]] = {
    "bool": False,
    "string": "",
    "bytes": b"",
    "float64": 0.0,
    "uuid": uuid.UUID(int=0),
    "timedelta_i32": datetime.timedelta(0),
    "timedelta_i64": datetime.timedelta(0),
    "datetime_i64": _EPOCH,
    "error_code": ErrorCode.none,
}


def _implicit_default_factory(
    kind: _Kind, nested: type | None, kafka_type: str | None
) -> Callable[[], object]:
    if kind in ("entity_tuple", "prim_tuple"):
        return tuple
    if kind == "entity":
        assert nested is not None
        return lambda: _zero_entity(nested)
    zero = _PRIMITIVE_ZERO.get(kafka_type or "", 0)
    return lambda: zero


def _zero_entity(cls: type) -> Any:
    """The entity an absent tagged field stands for: declared defaults, else zeros."""
    kwargs: dict[str, object] = {}
    for plan in _plans(cls):
        if plan.required or plan.implicit is not None:
            factory = plan.implicit or (
                _none
                if plan.optional
                else _implicit_default_factory(plan.kind, plan.nested, plan.kafka_type)
            )
            kwargs[plan.name] = factory()
    return cls(**kwargs)


def build_entity(
    cls: type,
    values: Mapping[str, object],
    *,
    api: str,
    version: int,
    replacements_required: bool = False,
) -> Any:
    """Build ``cls`` from plain values (see the module doc). Raises ``MissingFieldsError``
    naming every missing required field, or ``LocalProtocolError`` for a value of the wrong
    kind.

    ``replacements_required``: where the caller gave a field this version lacks, a UUID
    field of the same entity left unset counts as missing. Kafka replaces names by topic
    ids that way (OffsetFetch v10, Fetch v13...), and a zero id sent in place of the name
    the caller meant only earns UNKNOWN_TOPIC_ID from the broker.
    """
    missing: list[str] = []
    entity = _build(cls, values, "", missing, replacements_required)
    if missing:
        raise MissingFieldsError(api, version, missing)
    return entity


def _build(
    cls: type, values: Mapping[str, object], path: str, missing: list[str], strict: bool
) -> Any:
    kwargs: dict[str, object] = {}
    plans = _plans(cls)
    dropped = strict and _drops_a_field(plans, values)
    for plan in plans:
        if plan.name in values:
            kwargs[plan.name] = _convert(
                plan, values[plan.name], f"{path}{plan.name}", missing, strict
            )
        elif plan.required:
            missing.append(f"{path}{plan.name}")
        elif dropped and plan.kafka_type == "uuid" and plan.implicit is _none:
            missing.append(f"{path}{plan.name} (this version has it in place of {dropped})")
        elif plan.implicit is not None:
            kwargs[plan.name] = plan.implicit()
    if missing:
        return None  # keep walking siblings to report every missing field at once
    return cls(**kwargs)


def _drops_a_field(plans: tuple[_FieldPlan, ...], values: Mapping[str, object]) -> str:
    """The given fields this version lacks, comma-separated ("" if none)."""
    names = {plan.name for plan in plans}
    return ", ".join(name for name in values if name not in names)


def _as_mapping(value: object, nested: type, path: str) -> Mapping[str, object]:
    if isinstance(value, Mapping):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # An entity of another version (or any dataclass): rebuild it field by field.
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    raise LocalProtocolError(
        f"{path}: expected a dict (or entity) for {nested.__name__}, got {type(value).__name__}"
    )


def _as_sequence(value: object, path: str) -> Sequence[object]:
    if isinstance(value, (list, tuple)):
        return value
    raise LocalProtocolError(f"{path}: expected a list or tuple, got {type(value).__name__}")


def _convert(
    plan: _FieldPlan, value: object, path: str, missing: list[str], strict: bool
) -> object:
    if value is None:
        if plan.optional:
            return None
        raise LocalProtocolError(f"{path}: may not be None")
    kind = plan.kind
    if kind == "prim":
        return _convert_primitive(plan.kafka_type, value, path, plan.optional)
    if kind == "entity":
        assert plan.nested is not None
        if type(value) is plan.nested:
            return value
        nested_values = _as_mapping(value, plan.nested, path)
        return _build(plan.nested, nested_values, f"{path}.", missing, strict)
    items = _as_sequence(value, path)
    if kind == "entity_tuple":
        nested = plan.nested
        assert nested is not None
        return tuple(
            item
            if type(item) is nested
            else _build(
                nested, _as_mapping(item, nested, f"{path}[{i}]"), f"{path}[{i}].", missing, strict
            )
            for i, item in enumerate(items)
        )
    kafka_type = plan.kafka_type
    if kafka_type in _NEEDS_CONVERSION:
        return tuple(
            _convert_primitive(kafka_type, item, f"{path}[{i}]", plan.elem_optional)
            for i, item in enumerate(items)
        )
    return tuple(items)


_NEEDS_CONVERSION: Final = frozenset(
    {"timedelta_i32", "timedelta_i64", "datetime_i64", "error_code", "uuid"}
)


def _convert_primitive(kafka_type: str | None, value: object, path: str, optional: bool) -> object:
    if value is None:
        if optional:
            return None
        raise LocalProtocolError(f"{path}: may not be None")
    if kafka_type not in _NEEDS_CONVERSION:
        # ints, strings, bytes and bools go through as they are: kio's phantom types
        # (i32, TopicName, ...) are plain ints and strs at run time.
        return value
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if kafka_type in ("timedelta_i32", "timedelta_i64"):
        if is_int:
            return _milliseconds(value, path)  # type: ignore[arg-type]
        if isinstance(value, datetime.timedelta):
            return value
        raise LocalProtocolError(
            f"{path}: expected milliseconds (int) or a timedelta, got {type(value).__name__}"
        )
    if kafka_type == "datetime_i64":
        if is_int:
            try:
                return _EPOCH + _milliseconds(value, path)  # type: ignore[arg-type]
            except OverflowError:
                raise LocalProtocolError(f"{path}: {value} ms is past year 9999") from None
        if isinstance(value, datetime.datetime) and value.tzinfo is not None:
            return value
        raise LocalProtocolError(
            f"{path}: expected milliseconds since the epoch (int) or an aware datetime,"
            f" got {value!r}"
        )
    if kafka_type == "error_code":
        if isinstance(value, ErrorCode):
            return value
        if is_int:
            try:
                return ErrorCode(int(value))  # type: ignore[call-overload]
            except ValueError:
                raise LocalProtocolError(f"{path}: {value} is not a Kafka error code") from None
        raise LocalProtocolError(f"{path}: expected an error code (int), got {value!r}")
    # uuid
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            raise LocalProtocolError(f"{path}: {value!r} is not a UUID") from None
    raise LocalProtocolError(f"{path}: expected a UUID, got {type(value).__name__}")


def _milliseconds(value: int, path: str) -> datetime.timedelta:
    try:
        return datetime.timedelta(milliseconds=value)
    except OverflowError:
        raise LocalProtocolError(f"{path}: {value} ms is out of a timedelta's range") from None


# -- naming the field a bad value sits in (only run after kio's writer failed) ---------

_INT_RANGES: Final[Mapping[str, tuple[int, int]]] = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint8": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
}
_TIMEDELTA_MS: Final[Mapping[str, str]] = {"timedelta_i32": "int32", "timedelta_i64": "int64"}


def find_bad_field(entity: object, *, flexible: bool) -> str | None:
    """The first value kio cannot encode, as "path: why", or None if none is found."""
    return _check_entity(entity, "", flexible)


def _check_entity(entity: object, path: str, flexible: bool) -> str | None:
    cls = type(entity)
    if not dataclasses.is_dataclass(cls):
        return f"{path.rstrip('.') or 'value'}: expected an entity, got {cls.__name__}"
    for plan in _plans(cls):
        value = getattr(entity, plan.name)
        where = f"{path}{plan.name}"
        problem = _check_value(plan, value, where, flexible)
        if problem:
            return problem
    return None


def _check_value(plan: _FieldPlan, value: object, where: str, flexible: bool) -> str | None:
    if value is None:
        return None if plan.optional else f"{where}: may not be None"
    if plan.kind == "entity":
        if plan.nested is not None and not isinstance(value, plan.nested):
            return f"{where}: expected {plan.nested.__name__}, got {type(value).__name__}"
        return _check_entity(value, f"{where}.", flexible)
    if plan.kind == "prim":
        return _check_primitive(plan.kafka_type, value, where, flexible)
    if not isinstance(value, (list, tuple)):
        return f"{where}: expected a tuple, got {type(value).__name__}"
    for i, item in enumerate(value):
        item_where = f"{where}[{i}]"
        if plan.kind == "entity_tuple":
            if plan.nested is not None and not isinstance(item, plan.nested):
                return f"{item_where}: expected {plan.nested.__name__}, got {type(item).__name__}"
            problem = _check_entity(item, f"{item_where}.", flexible)
        elif item is None:
            problem = None if plan.elem_optional else f"{item_where}: may not be None"
        else:
            problem = _check_primitive(plan.kafka_type, item, item_where, flexible)
        if problem:
            return problem
    return None


def _check_primitive(
    kafka_type: str | None, value: object, where: str, flexible: bool
) -> str | None:
    kt = kafka_type or ""
    if kt in _INT_RANGES:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{where}: expected an int ({kt}), got {type(value).__name__}"
        low, high = _INT_RANGES[kt]
        if not low <= value <= high:
            return f"{where}: {value} does not fit {kt} ({low}..{high})"
        return None
    if kt in _TIMEDELTA_MS:
        if not isinstance(value, datetime.timedelta):
            return f"{where}: expected a timedelta, got {type(value).__name__}"
        low, high = _INT_RANGES[_TIMEDELTA_MS[kt]]
        ms = round(value.total_seconds() * 1000)
        return None if low <= ms <= high else f"{where}: {ms} ms does not fit {_TIMEDELTA_MS[kt]}"
    if kt == "string":
        if isinstance(value, bytes) and flexible:
            return None
        if not isinstance(value, str):
            return f"{where}: expected a str, got {type(value).__name__}"
        try:
            encoded = value.encode()
        except UnicodeEncodeError as exc:
            return f"{where}: not encodable as UTF-8 ({exc.reason})"
        if not flexible and len(encoded) > 2**15 - 1:
            return f"{where}: {len(encoded)} bytes is too long for a string (32767 at most)"
        return None
    if kt in ("bytes", "records"):
        if not isinstance(value, (bytes, bytearray, memoryview)):
            return f"{where}: expected bytes, got {type(value).__name__}"
        return None
    if kt == "bool":
        return None if isinstance(value, bool) else f"{where}: expected a bool, got {value!r}"
    if kt == "float64":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else f"{where}: expected a float, got {type(value).__name__}"
    if kt == "uuid":
        return None if isinstance(value, uuid.UUID) else f"{where}: expected a UUID, got {value!r}"
    if kt == "error_code":
        ok = isinstance(value, ErrorCode)
        return None if ok else f"{where}: expected an ErrorCode, got {type(value).__name__}"
    if kt == "datetime_i64":
        if not isinstance(value, datetime.datetime) or value.tzinfo is None:
            return f"{where}: expected an aware datetime, got {value!r}"
        return None
    return None
