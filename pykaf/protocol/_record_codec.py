"""The per-record loops of a v2 record batch, in pure Python.

This is the reference implementation: always importable, readable, and the oracle the C
accelerator (``_crecords``) is tested against. ``_records`` picks the C version when it is
built. Both expose the same two functions with the same contract:

- ``encode_records(records, base_timestamp, default_timestamp) -> (body, max_timestamp)``:
  ``records`` is a sequence of ``(key, value, headers, timestamp)``; key and value are
  bytes-like, ``str`` (UTF-8) or None; headers None or pairs ``(str | bytes, value)``;
  timestamp an int in ms or None (then ``default_timestamp``). ``body`` is the records
  section of the batch (after the record count), ``max_timestamp`` the largest timestamp.
- ``decode_records(buf, start, end, count, base_offset, base_timestamp, fixed_timestamp,
  record_type) -> list``: ``count`` records from ``buf[start:end]``, which must be used up
  exactly. ``fixed_timestamp`` is the batch max timestamp for log-append-time batches (every
  record takes it) or None. Malformed input raises ``ValueError`` with a message; the
  caller maps it to ``CorruptRecordError``.

Header keys are text in Kafka's API, but only Java's String producers guarantee UTF-8:
librdkafka, Go and Java byte-array writers can put any bytes there. Like Java's reader we
never fail a record for it: a key that is not valid UTF-8 decodes with U+FFFD replacement
characters, as an ``UndecodableHeaderKey`` (a ``str``) that keeps the wire bytes in
``.raw``. Valid keys stay plain ``str``, so the normal path pays nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["UndecodableHeaderKey", "decode_records", "encode_records"]

_BytesLike = bytes | bytearray | memoryview | str | None


class UndecodableHeaderKey(str):
    """A header key whose bytes are not valid UTF-8: the text decoded with U+FFFD
    replacement characters (what Java's reader shows), and ``raw``, the key's bytes as
    written. The C accelerator builds these too (by calling this class), only for such keys.
    """

    raw: bytes

    def __new__(cls, raw: bytes) -> UndecodableHeaderKey:
        key = super().__new__(cls, raw.decode("utf-8", "replace"))
        key.raw = raw
        return key

    def __getnewargs__(self) -> tuple[bytes]:  # type: ignore[override]
        return (self.raw,)

    def __repr__(self) -> str:
        return f"UndecodableHeaderKey({self.raw!r})"


def _zigzag_varint(value: int) -> bytes:
    """Kafka's signed varint: zigzag then base-128, least significant group first."""
    if not -(1 << 63) <= value < (1 << 63):
        raise OverflowError(f"{value} does not fit a 64-bit varint")
    z = (value << 1) ^ (value >> 63)
    z &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


# Lengths and deltas are almost always small: a lookup beats building bytes each time.
_SMALL_VARINT = [_zigzag_varint(i) for i in range(1 << 14)]
_NULL = _zigzag_varint(-1)


def _varint(value: int) -> bytes:
    if 0 <= value < 16384:
        return _SMALL_VARINT[value]
    return _zigzag_varint(value)


def _as_bytes(value: _BytesLike, what: str) -> bytes | None:
    if value is None or type(value) is bytes:
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(
        f"{what} must be bytes, bytearray, memoryview, str or None, not {type(value).__name__}"
    )


def _sized(out: bytearray, value: bytes | None) -> None:
    if value is None:
        out += _NULL
    else:
        out += _varint(len(value))
        out += value


def encode_records(
    records: Sequence[Sequence[Any]], base_timestamp: int, default_timestamp: int
) -> tuple[bytes, int]:
    out = bytearray()
    max_timestamp = -1 << 63
    for index, record in enumerate(records):
        if len(record) != 4:
            raise TypeError(
                f"record {index} must be (key, value, headers, timestamp), got {len(record)} items"
            )
        key, value, headers, timestamp = record
        if timestamp is None:
            timestamp = default_timestamp
        elif type(timestamp) is not int:
            raise TypeError(f"record {index}: timestamp must be an int (ms) or None")
        max_timestamp = max(max_timestamp, timestamp)
        body = bytearray(b"\x00")  # record attributes: unused, always 0
        body += _varint(timestamp - base_timestamp)
        body += _varint(index)
        _sized(body, _as_bytes(key, "key"))
        _sized(body, _as_bytes(value, "value"))
        if not headers:
            body += b"\x00"
        else:
            body += _varint(len(headers))
            for header in headers:
                if len(header) != 2:
                    raise TypeError(f"record {index}: a header must be a (key, value) pair")
                hkey = _as_bytes(header[0], "header key")
                if hkey is None:
                    raise TypeError(f"record {index}: a header key cannot be None")
                _sized(body, hkey)
                _sized(body, _as_bytes(header[1], "header value"))
        out += _varint(len(body))
        out += body
    return bytes(out), max_timestamp


def _read_varint(buf: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    """Decode one zigzag varint (at most 10 bytes) at ``pos``; return (value, next pos)."""
    shift = 0
    raw = 0
    while True:
        if pos >= end:
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        raw |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")
    return (raw >> 1) ^ -(raw & 1), pos


def _read_sized(buf: bytes | memoryview, pos: int, end: int, what: str) -> tuple[bytes | None, int]:
    length, pos = _read_varint(buf, pos, end)
    if length < 0:
        if length != -1:
            raise ValueError(f"negative {what} length {length}")
        return None, pos
    stop = pos + length
    if stop > end:
        raise ValueError(f"{what} of {length} bytes runs past the record")
    return bytes(buf[pos:stop]), stop


def decode_records(
    buf: bytes | memoryview,
    start: int,
    end: int,
    count: int,
    base_offset: int,
    base_timestamp: int,
    fixed_timestamp: int | None,
    record_type: Any,
) -> list[Any]:
    out: list[Any] = []
    pos = start
    new = tuple.__new__
    for _ in range(count):
        length, pos = _read_varint(buf, pos, end)
        record_end = pos + length
        if length < 1 or record_end > end:
            raise ValueError(f"record length {length} does not fit the batch")
        pos += 1  # attributes, unused
        ts_delta, pos = _read_varint(buf, pos, record_end)
        offset_delta, pos = _read_varint(buf, pos, record_end)
        key, pos = _read_sized(buf, pos, record_end, "key")
        value, pos = _read_sized(buf, pos, record_end, "value")
        n_headers, pos = _read_varint(buf, pos, record_end)
        if n_headers < 0 or n_headers > length:
            raise ValueError(f"bad header count {n_headers}")
        headers: list[tuple[str, bytes | None]] = []
        for _h in range(n_headers):
            hkey, pos = _read_sized(buf, pos, record_end, "header key")
            if hkey is None:
                raise ValueError("null header key")
            hvalue, pos = _read_sized(buf, pos, record_end, "header value")
            try:
                name: str = hkey.decode()
            except UnicodeDecodeError:
                name = UndecodableHeaderKey(hkey)
            headers.append((name, hvalue))
        if pos != record_end:
            raise ValueError("record length does not match its contents")
        timestamp = fixed_timestamp if fixed_timestamp is not None else base_timestamp + ts_delta
        out.append(
            new(record_type, (base_offset + offset_delta, timestamp, key, value, tuple(headers)))
        )
    if pos != end:
        raise ValueError(f"{end - pos} bytes left over after {count} records")
    return out
