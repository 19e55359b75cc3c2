"""Record batches (magic 2): encode and decode, our own, fast.

Layout of a batch (big-endian), see Kafka's "Record Batch" format:

    baseOffset int64 | batchLength int32 | partitionLeaderEpoch int32 | magic int8 |
    crc uint32 | attributes int16 | lastOffsetDelta int32 | baseTimestamp int64 |
    maxTimestamp int64 | producerId int64 | producerEpoch int16 | baseSequence int32 |
    recordCount int32 | records...

The CRC32C covers everything from ``attributes`` to the end; ``batchLength`` counts from
``partitionLeaderEpoch`` to the end. Records may be compressed (attributes bits 0-2); the
record count stays outside the compressed section.

Per-batch work is done here with ``struct``; per-record loops live in ``_record_codec``
(pure Python) or ``_crecords`` (C, built by setup.py when a compiler is present; kio's
record writer is far too slow for the hot path, which is why batches are ours).
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from crc32c import crc32c

from pykaf._errors import CorruptRecordError, LocalProtocolError, UnsupportedMagicError
from pykaf.protocol import _record_codec
from pykaf.protocol._compression import (
    DEFAULT_MAX_DECOMPRESSED,
    Compression,
    compress,
    decompress,
)
from pykaf.protocol._record_codec import UndecodableHeaderKey

__all__ = [
    "BATCH_OVERHEAD",
    "BatchHeader",
    "ControlType",
    "Record",
    "RecordBatch",
    "TimestampType",
    "UndecodableHeaderKey",
    "c_accelerated",
    "decode_batches",
    "encode_batch",
    "iter_batch_headers",
    "parse_control_record",
    "split_lines",
    "using_c_accelerator",
]

# Offsets of the fields inside a batch, used to read single fields without a full parse.
_HEADER = struct.Struct(">qiibIhiqqqhii")
_CRC = struct.Struct(">I")
BATCH_OVERHEAD = _HEADER.size  # 61 bytes before the first record
_LOG_OVERHEAD = 12  # baseOffset + batchLength: what batchLength does not count
_CRC_START = 21  # attributes: where the CRC's coverage begins
_MAGIC_POS = 16
_MIN_BATCH_LENGTH = BATCH_OVERHEAD - _LOG_OVERHEAD

_COMPRESSION_MASK = 0x07
_TIMESTAMP_TYPE_BIT = 0x08
_TRANSACTIONAL_BIT = 0x10
_CONTROL_BIT = 0x20


class TimestampType(enum.IntEnum):
    CREATE_TIME = 0
    LOG_APPEND_TIME = 1


class ControlType(enum.IntEnum):
    """The type of a control record (the markers transactions write)."""

    ABORT = 0
    COMMIT = 1


class Record(NamedTuple):
    """One decoded record. A NamedTuple, not a dataclass: the C decoder builds millions of
    these per second, and a tuple subclass is the one shape it can fill without calling
    back into Python."""

    offset: int
    timestamp: int  # ms since the epoch (-1: none)
    key: bytes | None
    value: bytes | None
    # A key that is not valid UTF-8 is an UndecodableHeaderKey (its bytes in .raw).
    headers: tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchHeader:
    """The fixed 61-byte header of a batch, without its records."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def compression(self) -> Compression:
        return Compression(self.attributes & _COMPRESSION_MASK)

    @property
    def timestamp_type(self) -> TimestampType:
        return TimestampType(bool(self.attributes & _TIMESTAMP_TYPE_BIT))

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & _TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & _CONTROL_BIT)

    @property
    def size(self) -> int:
        """Bytes this batch takes on the wire."""
        return self.batch_length + _LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1


# The header's fields in wire order (the order of _HEADER's values).
_HEADER_FIELDS = tuple(field.name for field in dataclasses.fields(BatchHeader))


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordBatch(BatchHeader):
    """A decoded batch: its header fields and its records with absolute offsets."""

    records: tuple[Record, ...]


def _load_accelerator() -> Any:
    if os.environ.get("PYKAF_NO_EXTENSIONS"):
        return _record_codec
    try:
        # By its full name: the package's __init__ imports this module.
        return importlib.import_module("pykaf.protocol._crecords")
    except ImportError:
        return _record_codec


_codec: Any = _load_accelerator()


def using_c_accelerator() -> bool:
    """True when the per-record loops run in C (``_crecords`` was built)."""
    return _codec is not _record_codec


def c_accelerated(name: str) -> Any:
    """``_crecords``'s function ``name``, or None: the extension is not built, is turned
    off (``PYKAF_NO_EXTENSIONS``), or was built before it had ``name``."""
    return None if _codec is _record_codec else getattr(_codec, name, None)


def encode_batch(
    records: Iterable[Sequence[Any]],
    *,
    compression: Compression | int | str = Compression.NONE,
    compression_level: int | None = None,
    base_offset: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    transactional: bool = False,
    control: bool = False,
    partition_leader_epoch: int = -1,
    timestamp_type: TimestampType = TimestampType.CREATE_TIME,
    now_ms: int | None = None,
) -> bytes:
    """Encode ``(key, value, headers, timestamp)`` records as one v2 batch.

    A record timestamp of None takes ``now_ms``, or -1 (Kafka's "no timestamp") when that
    is None too: this layer never reads a clock.
    """
    items = records if isinstance(records, list | tuple) else list(records)
    if not items:
        raise LocalProtocolError("a record batch needs at least one record")
    codec = Compression.parse(compression)
    default_ts = -1 if now_ms is None else now_ms
    first_ts = items[0][3] if len(items[0]) == 4 else None
    base_timestamp = default_ts if first_ts is None else first_ts
    try:
        body: bytes
        body, max_timestamp = _codec.encode_records(items, base_timestamp, default_ts)
    except (TypeError, OverflowError, ValueError) as exc:
        raise LocalProtocolError(f"cannot encode record batch: {exc}") from exc
    if codec is not Compression.NONE:
        body = compress(codec, body, compression_level)
    attributes = int(codec)
    if timestamp_type is TimestampType.LOG_APPEND_TIME:
        attributes |= _TIMESTAMP_TYPE_BIT
    if transactional:
        attributes |= _TRANSACTIONAL_BIT
    if control:
        attributes |= _CONTROL_BIT
    count = len(items)
    try:
        header = _HEADER.pack(
            base_offset,
            BATCH_OVERHEAD - _LOG_OVERHEAD + len(body),
            partition_leader_epoch,
            2,
            0,
            attributes,
            count - 1,
            base_timestamp,
            max_timestamp,
            producer_id,
            producer_epoch,
            base_sequence,
            count,
        )
    except struct.error as exc:
        raise LocalProtocolError(f"batch header field out of range: {exc}") from exc
    # CRC over the header tail then the body, without first joining them (one copy, not two).
    crc = crc32c(body, crc32c(memoryview(header)[_CRC_START:]))
    return header[:17] + _CRC.pack(crc) + header[_CRC_START:] + body


def _read_header(view: memoryview, pos: int, verify_crc: bool) -> BatchHeader:
    header = BatchHeader(**dict(zip(_HEADER_FIELDS, _HEADER.unpack_from(view, pos), strict=True)))
    if header.record_count < 0:
        raise CorruptRecordError(
            f"batch at offset {header.base_offset} has a negative record count"
        )
    if verify_crc:
        actual = crc32c(view[pos + _CRC_START : pos + header.size])
        if actual != header.crc:
            raise CorruptRecordError(
                f"batch at offset {header.base_offset} failed its CRC32C check "
                f"(stored {header.crc:#010x}, computed {actual:#010x})"
            )
    return header


def iter_batch_headers(
    data: bytes | bytearray | memoryview, *, verify_crc: bool = True
) -> Iterator[tuple[int, BatchHeader]]:
    """Yield ``(position, header)`` for every whole batch in ``data``.

    Stops quietly at a truncated last batch (brokers cut fetch responses mid-batch).
    Raises ``UnsupportedMagicError`` for magic 0/1 and ``CorruptRecordError`` for a
    length that cannot be a batch or a failed CRC.
    """
    view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
    total = len(view)
    pos = 0
    while total - pos >= _LOG_OVERHEAD:
        (batch_length,) = struct.unpack_from(">i", view, pos + 8)
        if total - pos >= _MAGIC_POS + 1:
            magic = view[pos + _MAGIC_POS]
            if magic != 2:
                if magic in (0, 1):
                    raise UnsupportedMagicError(
                        f"record batch with magic {magic}: the pre-0.11 message format "
                        "is not supported (Kafka 4 removed it); upgrade the producer"
                    )
                raise CorruptRecordError(f"record batch with unknown magic byte {magic}")
        if batch_length < _MIN_BATCH_LENGTH:
            raise CorruptRecordError(
                f"record batch length {batch_length} is below the {_MIN_BATCH_LENGTH}-byte minimum"
            )
        end = pos + _LOG_OVERHEAD + batch_length
        if end > total:
            return  # truncated tail: the rest arrives in the next fetch
        yield pos, _read_header(view, pos, verify_crc)
        pos = end


def decode_batches(
    data: bytes | bytearray | memoryview,
    *,
    verify_crc: bool = True,
    max_decompressed: int = DEFAULT_MAX_DECOMPRESSED,
) -> Iterator[RecordBatch]:
    """Decode every whole batch in ``data`` (several batches; a truncated tail is skipped).

    Records carry absolute offsets and timestamps (log-append-time batches give every
    record the batch's max timestamp, as Kafka does). Compressed batches are decompressed,
    at most ``max_decompressed`` bytes each.
    """
    view = memoryview(data) if isinstance(data, bytes) else memoryview(data).cast("B")
    for pos, header in iter_batch_headers(view, verify_crc=verify_crc):
        start = pos + BATCH_OVERHEAD
        end = pos + header.size
        codec_id = header.attributes & _COMPRESSION_MASK
        if codec_id > Compression.ZSTD:
            raise CorruptRecordError(
                f"batch at offset {header.base_offset} names unknown compression codec {codec_id}"
            )
        # The pure-Python loops index bytes much faster than a memoryview.
        buf: bytes | memoryview = data if isinstance(data, bytes) else view
        if codec_id:
            buf = decompress(Compression(codec_id), view[start:end], max_size=max_decompressed)
            start, end = 0, len(buf)
        fixed_ts = header.max_timestamp if header.attributes & _TIMESTAMP_TYPE_BIT else None
        try:
            records = _codec.decode_records(
                buf,
                start,
                end,
                header.record_count,
                header.base_offset,
                header.base_timestamp,
                fixed_ts,
                Record,
            )
        except ValueError as exc:
            raise CorruptRecordError(
                f"batch at offset {header.base_offset} has malformed records: {exc}"
            ) from exc
        yield RecordBatch(
            **{name: getattr(header, name) for name in _HEADER_FIELDS}, records=tuple(records)
        )


_CONTROL_KEY = struct.Struct(">hh")


def parse_control_record(record: Record) -> ControlType:
    """The type (ABORT/COMMIT) of a record from a control batch."""
    if record.key is None or len(record.key) < _CONTROL_KEY.size:
        raise CorruptRecordError(f"control record at offset {record.offset} has no valid key")
    _version, kind = _CONTROL_KEY.unpack_from(record.key)
    try:
        return ControlType(kind)
    except ValueError:
        raise CorruptRecordError(
            f"control record at offset {record.offset} has unknown type {kind}"
        ) from None


def split_lines_python(body: bytes) -> list[bytes]:
    """``split_lines``'s reference (the C twin finds newlines with ``memchr``)."""
    lines = body.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the newline that ends the last line does not start another
    if b"\r" in body:
        lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
    return lines


#: The lines of a body (bytes): split at each newline, a carriage return before it
#: dropped, the newline that ends the body not starting another, empty, line. For batches
#: of lines (the gateway's ``/batch`` routes): C when built, three times as fast as
#: ``bytes.split`` for lines of 100 bytes.
split_lines: Callable[[bytes], list[bytes]] = c_accelerated("split_lines") or split_lines_python
