"""Record batches: round trips, kio as an oracle both ways, malformed input."""

from __future__ import annotations

import contextlib
import datetime
import io
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.records.readers import read_batch
from kio.records.schema import NewRecordBatch
from kio.records.schema import Record as KioRecord
from kio.records.schema import RecordHeader as KioHeader
from kio.records.writers import write_batch
from kio.static.primitive import TZAwareMicros, i8, i16, i32, i64

from pykaf._errors import (
    CorruptRecordError,
    LocalProtocolError,
    ProtocolError,
    UnsupportedMagicError,
)
from pykaf.protocol import _record_codec, _records
from pykaf.protocol._compression import Compression
from pykaf.protocol._records import (
    ControlType,
    Record,
    TimestampType,
    decode_batches,
    encode_batch,
    iter_batch_headers,
    parse_control_record,
)

IMPLEMENTATIONS = ["python", "c"]


@pytest.fixture(params=IMPLEMENTATIONS, autouse=True)
def codec_impl(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run every test here with the pure-Python loops and with the C accelerator."""
    saved = _records._codec
    if request.param == "python":
        _records._codec = _record_codec
    else:
        try:
            from pykaf.protocol import _crecords  # type: ignore[attr-defined]
        except ImportError:
            pytest.skip("C accelerator not built")
        _records._codec = _crecords
    try:
        yield request.param
    finally:
        _records._codec = saved


blobs = st.one_of(st.none(), st.binary(max_size=300))
headers = st.lists(st.tuples(st.text(max_size=20), blobs), max_size=4).map(tuple)
timestamps = st.integers(min_value=-1, max_value=2**43)
records = st.lists(st.tuples(blobs, blobs, headers, timestamps), min_size=1, max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    recs=records,
    codec=st.sampled_from(list(Compression)),
    base_offset=st.integers(0, 2**62),
    producer_id=st.integers(-1, 2**62),
    producer_epoch=st.integers(-1, 2**15 - 1),
    base_sequence=st.integers(-1, 2**31 - 100),
    transactional=st.booleans(),
    leader_epoch=st.integers(-1, 2**31 - 1),
)
def test_round_trip_every_shape_every_codec(
    recs: list[tuple[Any, ...]],
    codec: Compression,
    base_offset: int,
    producer_id: int,
    producer_epoch: int,
    base_sequence: int,
    transactional: bool,
    leader_epoch: int,
) -> None:
    data = encode_batch(
        recs,
        compression=codec,
        base_offset=base_offset,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        transactional=transactional,
        partition_leader_epoch=leader_epoch,
    )
    (batch,) = decode_batches(data)
    assert batch.compression is codec
    assert batch.base_offset == base_offset
    assert batch.producer_id == producer_id
    assert batch.producer_epoch == producer_epoch
    assert batch.base_sequence == base_sequence
    assert batch.is_transactional is transactional
    assert batch.partition_leader_epoch == leader_epoch
    assert batch.record_count == len(recs)
    assert batch.size == len(data)
    assert batch.next_offset == base_offset + len(recs)
    assert batch.max_timestamp == max(r[3] for r in recs)
    assert [tuple(r) for r in batch.records] == [
        (base_offset + i, ts, key, value, tuple(hdrs))
        for i, (key, value, hdrs, ts) in enumerate(recs)
    ]


def test_inputs_other_than_bytes() -> None:
    data = encode_batch(
        [("k", bytearray(b"v"), [(b"h", "x")], None), (None, memoryview(b"w"), None, 5)],
        now_ms=1000,
    )
    (batch,) = decode_batches(data)
    assert batch.records[0] == Record(0, 1000, b"k", b"v", (("h", b"x"),))
    assert batch.records[1] == Record(1, 5, None, b"w", ())


def test_no_timestamp_and_no_clock_means_minus_one() -> None:
    (batch,) = decode_batches(encode_batch([(None, b"v", None, None)]))
    assert batch.records[0].timestamp == -1


def test_log_append_time_gives_every_record_the_batch_time() -> None:
    data = encode_batch(
        [(None, b"a", None, 10), (None, b"b", None, 30)],
        timestamp_type=TimestampType.LOG_APPEND_TIME,
    )
    (batch,) = decode_batches(data)
    assert batch.timestamp_type is TimestampType.LOG_APPEND_TIME
    assert [r.timestamp for r in batch.records] == [30, 30]


def test_control_batches() -> None:
    commit_key = struct.pack(">hh", 0, 1)
    data = encode_batch(
        [(commit_key, struct.pack(">hi", 0, 0), None, 1)],
        control=True,
        transactional=True,
        producer_id=7,
        producer_epoch=1,
    )
    (batch,) = decode_batches(data)
    assert batch.is_control
    assert parse_control_record(batch.records[0]) is ControlType.COMMIT
    with pytest.raises(CorruptRecordError):
        parse_control_record(Record(0, 0, b"\x00", None, ()))


def test_several_batches_and_a_truncated_tail() -> None:
    first = encode_batch([(None, b"a", None, 1)], base_offset=0)
    second = encode_batch([(None, b"b", None, 2), (None, b"c", None, 3)], base_offset=1)
    third = encode_batch([(None, b"d", None, 4)], base_offset=3)
    data = first + second + third[:-5]
    batches = list(decode_batches(data))
    assert [r.value for b in batches for r in b.records] == [b"a", b"b", b"c"]
    assert [r.offset for b in batches for r in b.records] == [0, 1, 2]
    # A tail shorter than the length prefix is skipped as well.
    assert len(list(decode_batches(first + third[:7]))) == 1
    positions = [pos for pos, _ in iter_batch_headers(first + second)]
    assert positions == [0, len(first)]


def test_empty_batch_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="at least one record"):
        encode_batch([])


def test_bad_record_shapes_are_local_errors() -> None:
    with pytest.raises(LocalProtocolError, match="record 0"):
        encode_batch([(None, b"v", None)])
    with pytest.raises(LocalProtocolError):
        encode_batch([(None, 123, None, 1)])
    with pytest.raises(LocalProtocolError):
        encode_batch([(None, b"v", None, 1)], producer_epoch=2**15)


# kio is a free, independent oracle: its reader and writer are pure Python, from another
# author, uncompressed only, and keep timestamps at one-second resolution.


def _kio_records(recs: list[tuple[Any, ...]]) -> tuple[KioRecord, ...]:
    return tuple(
        KioRecord(
            attributes=i8(0),
            timestamp=TZAwareMicros.parse(datetime.datetime.fromtimestamp(ts / 1000, datetime.UTC)),
            offset=i64(i),
            key=key,
            value=value,
            headers=tuple(KioHeader(key=k.encode(), value=v) for k, v in hdrs),
        )
        for i, (key, value, hdrs, ts) in enumerate(recs)
    )


kio_records = st.lists(
    st.tuples(blobs, blobs, headers, st.integers(0, 2**41)), min_size=1, max_size=30
)


@settings(max_examples=100, deadline=None)
@given(recs=kio_records, producer_id=st.integers(-1, 2**40), base_sequence=st.integers(-1, 2**20))
def test_pykaf_batches_decode_identically_in_kio(
    recs: list[tuple[Any, ...]], producer_id: int, base_sequence: int
) -> None:
    data = encode_batch(
        recs, producer_id=producer_id, producer_epoch=3, base_sequence=base_sequence
    )
    kio_batch, size = read_batch(data, 0)
    assert size == len(data)
    assert kio_batch.producer_id == producer_id
    assert kio_batch.base_sequence == base_sequence
    assert kio_batch.max_timestamp == max(r[3] for r in recs)
    assert len(kio_batch.records) == len(recs)
    for i, (got, (key, value, hdrs, ts)) in enumerate(zip(kio_batch.records, recs, strict=True)):
        assert got.offset == i
        assert (got.key, got.value) == (key, value)
        assert [(h.key, h.value) for h in got.headers] == [(k.encode(), v) for k, v in hdrs]
        assert int(got.timestamp.timestamp()) == ts // 1000


@settings(max_examples=100, deadline=None)
@given(recs=kio_records, producer_id=st.integers(-1, 2**40))
def test_kio_batches_decode_identically_in_pykaf(
    recs: list[tuple[Any, ...]], producer_id: int
) -> None:
    buffer = io.BytesIO()
    write_batch(
        buffer,
        NewRecordBatch(
            producer_id=i64(producer_id),
            producer_epoch=i16(0),
            base_sequence=i32(0),
            records=_kio_records(recs),
            attributes=i16(0),
        ),
    )
    (batch,) = decode_batches(buffer.getvalue())
    assert batch.producer_id == producer_id
    assert [(r.offset, r.key, r.value, r.headers) for r in batch.records] == [
        (i, key, value, tuple(hdrs)) for i, (key, value, hdrs, _ts) in enumerate(recs)
    ]
    # kio writes through datetimes: allow its float rounding, nothing more.
    for got, (_k, _v, _h, ts) in zip(batch.records, recs, strict=True):
        assert abs(got.timestamp - ts) <= 1


# Malformed input: a typed pykaf error, never anything else.


def _valid() -> bytes:
    return encode_batch(
        [(b"key", b"value" * 10, [("h", b"v")], 1000 + i) for i in range(5)], base_offset=100
    )


def test_bad_crc() -> None:
    data = bytearray(_valid())
    data[-1] ^= 0xFF
    with pytest.raises(CorruptRecordError, match="CRC32C"):
        list(decode_batches(bytes(data)))
    # With verification off the damage lands in a value, and decoding still works.
    (batch,) = decode_batches(bytes(data), verify_crc=False)
    assert batch.record_count == 5


@pytest.mark.parametrize("magic", [0, 1])
def test_old_magic_is_a_clear_error(magic: int) -> None:
    data = bytearray(_valid())
    data[16] = magic
    with pytest.raises(UnsupportedMagicError, match="Kafka 4"):
        list(decode_batches(bytes(data)))


def test_lengths_that_cannot_be_a_batch() -> None:
    data = bytearray(_valid())
    struct.pack_into(">i", data, 8, -5)
    with pytest.raises(CorruptRecordError, match="length -5"):
        list(decode_batches(bytes(data)))
    struct.pack_into(">i", data, 8, 2**31 - 1)  # huge: looks like a truncated tail
    assert list(decode_batches(bytes(data))) == []


def test_varint_overflow_and_record_count_lies() -> None:
    good = _valid()
    body_start = _records.BATCH_OVERHEAD
    overflow = bytearray(good[:body_start]) + b"\xff" * 11 + good[body_start + 11 :]
    with pytest.raises(CorruptRecordError, match="varint"):
        list(decode_batches(bytes(overflow), verify_crc=False))
    more = bytearray(good)
    struct.pack_into(">i", more, 57, 6)
    with pytest.raises(CorruptRecordError):
        list(decode_batches(bytes(more), verify_crc=False))
    fewer = bytearray(good)
    struct.pack_into(">i", fewer, 57, 4)
    with pytest.raises(CorruptRecordError, match="left over"):
        list(decode_batches(bytes(fewer), verify_crc=False))
    negative = bytearray(good)
    struct.pack_into(">i", negative, 57, -1)
    with pytest.raises(CorruptRecordError):
        list(decode_batches(bytes(negative), verify_crc=False))
    absurd = bytearray(good)
    struct.pack_into(">i", absurd, 57, 2**31 - 1)
    with pytest.raises(CorruptRecordError):
        list(decode_batches(bytes(absurd), verify_crc=False))


def test_unknown_codec_id() -> None:
    data = bytearray(_valid())
    struct.pack_into(">h", data, 21, 7)
    with pytest.raises(CorruptRecordError, match="codec 7"):
        list(decode_batches(bytes(data), verify_crc=False))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400))
def test_fuzz_random_bytes(data: bytes) -> None:
    try:
        for batch in decode_batches(data, verify_crc=False):
            assert batch.magic == 2
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    codec=st.sampled_from(list(Compression)),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=4),
    cut=st.integers(0, 10**6),
)
def test_fuzz_damaged_batches(codec: Compression, flips: list[tuple[int, int]], cut: int) -> None:
    good = encode_batch(
        [(b"k%d" % i, b"v" * i, [("h", None)], i) for i in range(8)], compression=codec
    )
    data = bytearray(good)
    for pos, xor in flips:
        data[pos % len(data)] ^= xor
    data = data[: cut % (len(data) + 1)]
    with contextlib.suppress(ProtocolError):
        list(decode_batches(bytes(data), verify_crc=False))
