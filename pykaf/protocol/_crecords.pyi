"""Typed stub of the C accelerator ``_crecords.c``: same contract as ``_record_codec``.

``murmur2`` is the C twin of ``pykaf._producer._partitioner.murmur2_python``;
``plain_value_ends`` and ``extend_plain_records`` of ``plain_value_ends_python`` and
``extend_plain_records_python`` in ``pykaf._producer._accumulator``;
``journal_record_into`` (x86 builds only) of ``pykaf._producer.journal._format.
encode_record_into_python``; ``split_lines`` of ``pykaf.protocol._records.split_lines_python``.
"""

from collections.abc import Sequence
from typing import Any, TypeVar

__all__ = [
    "decode_records",
    "encode_records",
    "extend_plain_records",
    "journal_record_into",
    "murmur2",
    "plain_value_ends",
    "split_lines",
]

_R = TypeVar("_R", bound=tuple[Any, ...])

def encode_records(
    records: Sequence[Sequence[Any]], base_timestamp: int, default_timestamp: int, /
) -> tuple[bytes, int]: ...
def decode_records(
    buf: bytes | bytearray | memoryview,
    start: int,
    end: int,
    count: int,
    base_offset: int,
    base_timestamp: int,
    fixed_timestamp: int | None,
    record_type: type[_R],
    /,
) -> list[_R]: ...
def murmur2(data: bytes | bytearray | memoryview, /) -> int: ...
def plain_value_ends(values: list[Any], overhead: int, limit: int, /) -> list[int] | None: ...
def extend_plain_records(
    records: list[tuple[Any, Any, Any, Any]], values: list[bytes], start: int, stop: int, /
) -> None: ...
def split_lines(body: bytes, /) -> list[bytes]: ...
def journal_record_into(
    target: memoryview,
    pos: int,
    limit: int,
    serial: int,
    name: bytes,
    partition: int,
    timestamp_ms: int,
    key: bytes | None,
    value: bytes | None,
    /,
) -> int: ...
