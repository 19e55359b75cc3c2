"""The journal's produce path made fast: the C writer of RECORD entries against its Python
reference (same bytes, same refusals), and ``JournalStore.append_record`` against
``append`` (same files)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykaf._producer.journal import JournalRecord, JournalStore
from pykaf._producer.journal._format import encode_record_into_python
from pykaf._producer.journal._record_writer import (
    RecordInto,
    encode_record_into,
    record_into_in_c,
)

C_INTO: RecordInto | None = None if not record_into_in_c() else encode_record_into
needs_c = pytest.mark.skipif(C_INTO is None, reason="the C journal writer is not built")

# Fields around and beyond their ranges: both writers must refuse the same ones.
SERIAL = st.integers(-1, 2**64)
PARTITION = st.integers(-(2**31) - 1, 2**31)
TIMESTAMP = st.integers(-(2**63) - 1, 2**63)
NAME = st.binary(max_size=40) | st.just(b"n" * 65_536)
BLOB = st.none() | st.binary(max_size=2_100)


def _outcome(into: RecordInto, size: int, args: tuple[Any, ...]) -> tuple[object, bytes]:
    target = bytearray(b"\xee" * size)
    try:
        result: object = into(memoryview(target), *args)
    except (ValueError, OverflowError) as exc:
        result = (type(exc), "out of range" in str(exc))
    return result, bytes(target)


@needs_c
@settings(max_examples=400, deadline=None)
@given(
    pos=st.integers(0, 64),
    room=st.integers(-8, 2_300),
    serial=SERIAL,
    name=NAME,
    partition=PARTITION,
    timestamp=TIMESTAMP,
    key=BLOB,
    value=BLOB,
)
def test_the_c_writer_and_its_reference_agree_on_every_input(
    pos: int,
    room: int,
    serial: int,
    name: bytes,
    partition: int,
    timestamp: int,
    key: bytes | None,
    value: bytes | None,
) -> None:
    assert C_INTO is not None
    limit = max(pos, pos + room)
    size = limit + 16
    args = (pos, limit, serial, name, partition, timestamp, key, value)
    assert _outcome(C_INTO, size, args) == _outcome(encode_record_into_python, size, args)


@needs_c
def test_the_c_writer_crc_covers_every_length_and_alignment() -> None:
    # The CRC runs 8 bytes at a time then byte by byte: every tail length, every offset.
    assert C_INTO is not None
    blob = os.urandom(64)
    for pos in range(8):
        for length in range(40):
            args = (pos, 200, 5, b"t", 1, 2, None, blob[:length])
            assert _outcome(C_INTO, 200, args) == _outcome(encode_record_into_python, 200, args)


@needs_c
def test_the_c_writer_takes_any_buffer_and_refuses_bad_types() -> None:
    assert C_INTO is not None
    target = memoryview(bytearray(200))
    expected = bytearray(200)
    encode_record_into_python(memoryview(expected), 0, 200, 1, b"t", 0, 0, b"k", b"v")
    assert C_INTO(target, 0, 200, 1, b"t", 0, 0, memoryview(b"k"), bytearray(b"v")) > 0
    assert bytes(target) == bytes(expected)
    with pytest.raises(BufferError):
        C_INTO(memoryview(b"read only" * 30), 0, 200, 1, b"t", 0, 0, None, b"v")
    with pytest.raises(TypeError):
        C_INTO(target, 0, 200, 1, "t", 0, 0, None, b"v")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        C_INTO(target, 0, 200, 1, b"t", 0, 0, None, 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="do not fit"):
        C_INTO(target, 0, 201, 1, b"t", 0, 0, None, b"v")


def test_the_c_writer_is_selected_when_built() -> None:
    if os.environ.get("PYKAF_NO_EXTENSIONS"):  # the switch _records honours too
        assert not record_into_in_c()
        assert encode_record_into is encode_record_into_python
        return
    try:
        from pykaf.protocol import _crecords
    except ImportError:
        assert not record_into_in_c()
        return
    built = getattr(_crecords, "journal_record_into", None)
    assert record_into_in_c() == (built is not None)
    if built is not None:
        assert encode_record_into is built


def _records(count: int) -> list[JournalRecord]:
    out = []
    for serial in range(count):
        headers: list[tuple[str, bytes | None]] = [("h", b"x")] if serial % 7 == 3 else []
        key = None if serial % 3 else b"key-%d" % serial
        topic = "t" if serial % 5 else "tópico"
        out.append(JournalRecord(serial, topic, serial % 4, serial, key, os.urandom(300), headers))
    return out


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.journal"))}


def test_append_record_writes_the_same_files_as_append(tmp_path: Path) -> None:
    # Small segments: many rolls, so the in-place path and the general one both run.
    records = _records(200)
    for name, one_by_one in (("entries", False), ("fields", True)):
        store = JournalStore(tmp_path / name, max_bytes=1 << 20, segment_bytes=4096)
        store.open()
        for record in records:
            if one_by_one:
                store.append_record(*record[:6], record.headers or None)
            else:
                store.append([record])
        assert store.next_serial == len(records)
        store.close()
    assert _files(tmp_path / "entries") == _files(tmp_path / "fields")
    again = JournalStore(tmp_path / "fields", max_bytes=1 << 20, segment_bytes=4096)
    again.open()
    try:
        assert list(again.read_pending(0, again.next_serial)) == records
    finally:
        again.close()


def test_append_record_refuses_what_append_refuses(store: JournalStore) -> None:
    store.append_record(0, "t", 0, 0, None, b"v", None)
    with pytest.raises(ValueError, match="serial"):
        store.append_record(0, "t", 0, 0, None, b"v", None)
    with pytest.raises(ValueError, match="out of range"):
        store.append_record(1, "t", 2**31, 0, None, b"v", None)
    assert store.next_serial == 1
    store.append_record(1, "t", 0, 0, None, b"w", None)
    assert [r.value for r in store.read_pending(0, store.next_serial)] == [b"v", b"w"]
