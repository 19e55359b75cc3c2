"""The C record loops (``_crecords``) against the pure-Python reference (``_record_codec``).

Differential: identical bytes on encode, identical records on decode, and on malformed
input the C code raises ValueError exactly when the reference does. Plus the inputs only
C can get wrong: reference counts, buffer exports, hostile counts, lists that change while
they are encoded.
"""

from __future__ import annotations

import gc
import pickle
import sys
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pykaf.protocol import _record_codec
from pykaf.protocol._records import split_lines_python

_crecords: Any = pytest.importorskip(
    "pykaf.protocol._crecords", reason="the C accelerator is not built"
)


class Rec(NamedTuple):
    """Same shape as ``_records.Record`` (which needs the compression module)."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


def _view(data: bytes) -> memoryview:
    return memoryview(data)


# Lengths around the zigzag varint size steps (63/64, 8191/8192).
_sizes = st.sampled_from([0, 1, 63, 64, 127, 128, 8191, 8192])
_payload = st.one_of(
    st.none(),
    st.binary(max_size=40),
    st.text(max_size=20),
    st.binary(max_size=40).map(bytearray),
    st.binary(max_size=40).map(_view),
    _sizes.map(lambda n: b"\xab" * n),
)
_header_key = st.one_of(st.text(max_size=10), st.binary(max_size=10))
_headers = st.one_of(
    st.none(),
    st.just([]),
    st.lists(st.tuples(_header_key, _payload), max_size=12),
    st.lists(st.tuples(_header_key, _payload), max_size=3).map(tuple),
)
# Timestamps and bases strictly within +-2**62 keep every delta inside int64 (2**62 minus
# -2**62 is 2**63, one too many: the encoders raise OverflowError there, see
# test_timestamp_delta_overflow).
_ts = st.integers(-(1 << 62) + 1, (1 << 62) - 1)
_timestamp = st.one_of(st.none(), _ts, st.sampled_from([-1, 0, 1]))
_record = st.tuples(_payload, _payload, _headers, _timestamp)
_records = st.lists(_record, max_size=30)


def _outcome(fn: Callable[..., Any], *args: Any, widen: bool = False) -> Any:
    """The result, or the type of the exception raised (ValueError for its subclasses when
    ``widen``: decode errors need only agree on being ValueErrors, the first one found
    may differ, e.g. when the C code rejects an impossible count up front)."""
    try:
        return fn(*args)
    except ValueError as exc:
        return ValueError if widen else type(exc)
    except Exception as exc:
        return type(exc)


def _valid_body(records: list[Any], base_ts: int, default_ts: int) -> bytes:
    try:
        body, _ = _record_codec.encode_records(records, base_ts, default_ts)
    except OverflowError:
        # A timestamp delta beyond int64 cannot be written (the encoder refuses it, as its
        # own test shows): there is no valid body to decode for these inputs.
        assume(False)
    return body


# -- encode ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(records=_records, base_ts=_ts, default_ts=_ts)
def test_encode_matches_reference(records: list[Any], base_ts: int, default_ts: int) -> None:
    expected = _record_codec.encode_records(records, base_ts, default_ts)
    assert _crecords.encode_records(records, base_ts, default_ts) == expected
    # A tuple of lists is a different path through the C code, same output.
    as_lists = tuple(list(r) for r in records)
    assert _crecords.encode_records(as_lists, base_ts, default_ts) == expected


def test_encode_empty() -> None:
    assert _crecords.encode_records([], 0, 0) == _record_codec.encode_records([], 0, 0)


def test_encode_extreme_timestamps() -> None:
    records = [(None, b"v", None, _INT64_MAX), (None, b"v", None, 0), (None, b"v", None, None)]
    expected = _record_codec.encode_records(records, 0, _INT64_MIN + 1)
    assert _crecords.encode_records(records, 0, _INT64_MIN + 1) == expected


def test_encode_non_contiguous_memoryview() -> None:
    strided = memoryview(b"abcdefgh")[::2]
    matrix = memoryview(bytearray(range(12))).cast("B", (3, 4))
    records = [(strided, matrix, [("k", strided)], 1)]
    assert _crecords.encode_records(records, 0, 0) == _record_codec.encode_records(records, 0, 0)


def test_encode_many_headers_and_large_record() -> None:
    headers = [(f"h{i}", bytes([i % 256]) * i) for i in range(300)]
    records = [(b"k", b"x" * 3_000_000, headers, 7), (None, None, headers[:9], 8)]
    assert _crecords.encode_records(records, 7, 0) == _record_codec.encode_records(records, 7, 0)


def test_timestamp_delta_overflow() -> None:
    # Both timestamps fit int64 but their difference does not: an error, never a wrapped
    # varint (the reference would write one).
    with pytest.raises(OverflowError, match="record 1"):
        _crecords.encode_records([(None, b"", None, 0), (None, b"", None, _INT64_MAX)], -1, 0)
    with pytest.raises(OverflowError, match="record 0"):
        _crecords.encode_records([(None, b"", None, 1 << 63)], 0, 0)
    with pytest.raises(OverflowError):
        _crecords.encode_records([(None, b"", None, None)], 1 << 64, 0)


class _Seq:
    """A sequence that is not a list or tuple (the generic path)."""

    def __init__(self, *items: Any) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        return self.items[index]


def _gen_headers() -> Any:
    yield ("k", b"v")


_BAD_RECORDS: list[Any] = [
    [(b"k", b"v", None)],  # three items
    [(b"k", b"v", None, 1, 2)],
    [42],
    [None],
    [(b"k", b"v", None, 1.5)],
    [(b"k", b"v", None, True)],  # bool is not an int timestamp
    [(b"k", b"v", None, "1")],
    [(1, b"v", None, 1)],
    [(b"k", 2.0, None, 1)],
    [(type("B", (bytes,), {})(b"k"), b"v", None, 1)],  # bytes subclass: as the reference
    [("\ud800", b"v", None, 1)],  # lone surrogate: UnicodeEncodeError
    [(b"k", "\udfff", None, 1)],
    [(b"k", b"v", [("k",)], 1)],
    [(b"k", b"v", [("k", b"v", b"w")], 1)],
    [(b"k", b"v", [(None, b"v")], 1)],
    [(b"k", b"v", [(1, b"v")], 1)],
    [(b"k", b"v", [("k", 1)], 1)],
    [(b"k", b"v", [42], 1)],
    [(b"k", b"v", 5, 1)],
    [(b"k", b"v", "ab", 1)],  # headers "a" and "b": not pairs
    [(b"k", b"v", ["ab"], 1)],  # but a str of length 2 is a (key, value) pair of strs
    [(b"k", b"v", _gen_headers(), 1)],  # no len()
    [(b"k", b"v", _Seq(("k", b"v")), 1)],
    [_Seq(b"k", b"v", None, 1)],
    [(b"k", b"v", 0, 1)],  # falsy headers: none
    [(b"k", b"v", {"a": b"1"}, 1)],
    [(b"k", b"v", [_Seq("k", b"v")], 1)],
    [(b"ok", b"v", None, 1), (b"k", b"v", None, None, None)],
]


@pytest.mark.parametrize("records", _BAD_RECORDS)
def test_encode_errors_match_reference(records: list[Any]) -> None:
    assert _outcome(_crecords.encode_records, records, 0, 5) == _outcome(
        _record_codec.encode_records, records, 0, 5
    )


def test_encode_error_names_the_record() -> None:
    records = [(None, b"v", None, 1), (None, b"v", None, 1), (None, 3, None, 1)]
    with pytest.raises(TypeError, match=r"record 2: value must be bytes.*not int"):
        _crecords.encode_records(records, 0, 0)


def test_encode_released_memoryview() -> None:
    view = memoryview(b"abc")
    view.release()
    assert _outcome(_crecords.encode_records, [(view, None, None, 1)], 0, 0) is ValueError


def test_encode_argument_errors() -> None:
    with pytest.raises(TypeError):
        _crecords.encode_records([], 0)
    with pytest.raises(TypeError):
        _crecords.encode_records([], 0.5, 0)
    with pytest.raises(TypeError):
        _crecords.encode_records(42, 0, 0)


def test_encode_list_mutated_while_encoding() -> None:
    # Python code that runs mid-encode (a header sequence's __bool__/__len__) empties the
    # records list and replaces items of a list record: no crash, same output as the
    # reference, whose enumerate() sees the shrinking list the same way.
    def run(encode: Callable[..., Any]) -> Any:
        class Sneaky:
            def __bool__(self) -> bool:
                record[0] = None
                record[1] = b"replaced"
                del records[1:]
                return True

            def __len__(self) -> int:
                return 1

            def __iter__(self) -> Any:
                return iter([("h", b"x" * 50)])

            def __getitem__(self, index: int) -> Any:
                return ("h", b"x" * 50)

        record: list[Any] = [b"key" * 20, b"value" * 30, Sneaky(), 3]
        records: list[Any] = [record, *[(b"k", b"v", None, 4)] * 100]
        return encode(records, 0, 0)

    assert run(_crecords.encode_records) == run(_record_codec.encode_records)


def test_encode_releases_buffers_and_references() -> None:
    key = b"k" * 10
    value = bytearray(b"v" * 100)
    hkey, hvalue = "h" + "x" * 5, memoryview(b"header")
    headers = [(hkey, hvalue)]
    record = (key, value, headers, 5)
    bad = (key, value, headers, "not a timestamp")
    records = [record] * 10
    failing = [*records, bad]
    watched = (key, value, hkey, hvalue, headers, record, bad, records, failing)
    before = [sys.getrefcount(obj) for obj in watched]
    for _ in range(500):
        body, _ = _crecords.encode_records(records, 0, 0)
        with pytest.raises(TypeError):
            _crecords.encode_records(failing, 0, 0)
    del body
    assert [sys.getrefcount(obj) for obj in watched] == before
    value.extend(b"!")  # no buffer export left behind, or this raises BufferError


# -- decode ---------------------------------------------------------------------------


def _decode_both(
    buf: bytes | memoryview,
    start: int,
    end: int,
    count: int,
    base_offset: int = 0,
    base_ts: int = 0,
    fixed_ts: int | None = None,
) -> Any:
    args = (buf, start, end, count, base_offset, base_ts, fixed_ts, Rec)
    expected = _outcome(_record_codec.decode_records, *args, widen=True)
    got = _outcome(_crecords.decode_records, *args, widen=True)
    assert got == expected
    if isinstance(got, list):
        assert all(type(r) is Rec for r in got)
        assert all(type(h) is tuple for r in got for h in r.headers)
    return got


_base_offset = st.one_of(
    st.integers(-(1 << 62), 1 << 62),
    st.sampled_from([0, _INT64_MAX, _INT64_MIN, 1 << 70, -(1 << 70)]),
)
_fixed = st.one_of(st.none(), _ts)


@settings(max_examples=300, deadline=None)
@given(
    records=_records,
    base_ts=_ts,
    default_ts=_ts,
    base_offset=_base_offset,
    fixed=_fixed,
    prefix=st.binary(max_size=8),
)
def test_decode_matches_reference(
    records: list[Any],
    base_ts: int,
    default_ts: int,
    base_offset: int,
    fixed: int | None,
    prefix: bytes,
) -> None:
    body = _valid_body(records, base_ts, default_ts)
    buf = prefix + body + b"\x00\x01junk"
    start, end = len(prefix), len(prefix) + len(body)
    got = _decode_both(buf, start, end, len(records), base_offset, base_ts, fixed)
    view = memoryview(buf)
    assert _decode_both(view, start, end, len(records), base_offset, base_ts, fixed) == got
    # Binary header keys need not be UTF-8: every record comes back all the same.
    assert len(got) == len(records)


def test_decode_empty_headers_is_the_empty_tuple() -> None:
    body = _valid_body([(None, b"v", None, 1)], 0, 0)
    (record,) = _crecords.decode_records(body, 0, len(body), 1, 0, 0, None, Rec)
    assert record.headers == ()
    assert record.headers is _crecords.decode_records(body, 0, len(body), 1, 0, 0, None, Rec)[0][4]
    plain = _crecords.decode_records(body, 0, len(body), 1, 0, 0, None, tuple)
    assert plain == [(0, 1, None, b"v", ())]
    assert type(plain[0]) is tuple


def test_decoded_records_behave_like_tuples() -> None:
    body = _valid_body([(b"k", b"v", [("a", None)], 5)] * 3, 0, 0)
    got = _crecords.decode_records(body, 0, len(body), 3, 10, 0, None, Rec)
    expected = _record_codec.decode_records(body, 0, len(body), 3, 10, 0, None, Rec)
    assert [hash(r) for r in got] == [hash(r) for r in expected]
    assert got[1].offset == 11
    assert got[1]._replace(offset=0) == Rec(0, 5, b"k", b"v", (("a", None),))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), records=st.lists(_record, min_size=1, max_size=6))
def test_decode_truncated_or_flipped_matches_reference(data: Any, records: list[Any]) -> None:
    body = _valid_body(records, 0, 0)
    # Truncate: the rest of the body stays in the buffer after `end` and must not be read.
    cut = data.draw(st.integers(0, len(body)))
    _decode_both(body, 0, cut, len(records))
    # Flip a bit (or change a byte) anywhere, with the count off by one now and then.
    pos = data.draw(st.integers(0, len(body) - 1))
    mutated = bytearray(body)
    if data.draw(st.booleans()):
        mutated[pos] ^= 1 << data.draw(st.integers(0, 7))
    else:
        mutated[pos] = data.draw(st.integers(0, 255))
    count = len(records) + data.draw(st.sampled_from([0, 0, 0, -1, 1]))
    _decode_both(bytes(mutated), 0, len(mutated), count)


@settings(max_examples=500, deadline=None)
@given(buf=st.binary(max_size=120), count=st.integers(-2, 20), fixed=_fixed)
def test_decode_random_bytes_matches_reference(buf: bytes, count: int, fixed: int | None) -> None:
    _decode_both(buf, 0, len(buf), count, 5, 1000, fixed)


def _varint(value: int) -> bytes:
    """A zigzag varint of any Python int within 70 bits, as a hostile peer could send."""
    z = (value << 1) ^ (value >> 80)
    z &= (1 << 70) - 1
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _raw_record(*parts: bytes) -> bytes:
    body = b"".join(parts)
    return _varint(len(body)) + body


@pytest.mark.parametrize(
    "delta", [1 << 63, (1 << 69) - 1, -(1 << 63) - 1, -(1 << 69), (1 << 63) - 1, -(1 << 63)]
)
@pytest.mark.parametrize("base", [0, _INT64_MAX, _INT64_MIN, 1 << 80])
def test_decode_ten_byte_varints_beyond_int64(delta: int, base: int) -> None:
    # The 10th byte of a varint can carry bits above bit 63; the reference keeps them.
    record = _raw_record(b"\x00", _varint(delta), _varint(delta), b"\x01", b"\x01", b"\x00")
    got = _decode_both(record, 0, len(record), 1, base, base)
    assert got[0].offset == base + delta


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (b"\xff" * 11, "longer than 10 bytes"),
        (_raw_record(b"\x00\x00\x00\x01\x01\x80"), "truncated varint"),
        (_raw_record(b"\x00\x00\x00", _varint(-2), b"\x01\x00"), "negative key length"),
        (_raw_record(b"\x00\x00\x00\x01", _varint(-7), b"\x00"), "negative value length"),
        (_raw_record(b"\x00\x00\x00", _varint(5), b"ab\x01\x00"), "runs past"),
        (_raw_record(b"\x00\x00\x00\x01\x01", _varint(1), _varint(-1)), "null header key"),
        (_raw_record(b"\x00\x00\x00\x01\x01", _varint(-1)), "bad header count"),
        (_raw_record(b"\x00\x00\x00\x01\x01", _varint(50)), "bad header count"),
        (_raw_record(b"\x00\x00\x00\x01\x01", _varint(1 << 68)), "bad header count"),
        (_raw_record(b"\x00\x00\x00\x01\x01\x00\x00"), "does not match"),
        (_raw_record(b"\x00\x00\x00\x01\x01\x00") + b"\x00", "left over"),
        (_varint(0) + b"\x00" * 7, "record length 0"),
        (_varint(1 << 66) + b"\x00" * 7, "does not fit"),
        (_varint(-(1 << 66)) + b"\x00" * 7, "does not fit"),
    ],
)
def test_decode_malformed_messages(record: bytes, message: str) -> None:
    assert _decode_both(record, 0, len(record), 1) is ValueError
    with pytest.raises(ValueError, match=message):
        _crecords.decode_records(record, 0, len(record), 1, 0, 0, None, Rec)


def test_decode_bad_header_key_utf8_keeps_the_record_and_the_raw_bytes() -> None:
    # librdkafka, Go and Java byte-array producers may write any bytes as a header key:
    # like Java's reader, both codecs decode it with U+FFFD and keep the bytes in .raw.
    record = _raw_record(
        b"\x00\x00\x00\x01\x01\x04",
        *(_varint(2), b"\xff\xfe", _varint(1), b"x"),
        *(_varint(2), b"ok", _varint(-1)),
    )
    args = (record, 0, len(record), 1, 0, 0, None, Rec)
    for decode in (_crecords.decode_records, _record_codec.decode_records):
        ((_, _, _, _, headers),) = decode(*args)
        (bad, value), (good, none) = headers
        assert type(bad) is _record_codec.UndecodableHeaderKey
        assert (bad, bad.raw, value) == ("\ufffd\ufffd", b"\xff\xfe", b"x")
        assert (type(good), good, none) == (str, "ok", None)
        assert gc.is_tracked(headers)  # a key with a __dict__ may join a cycle
    assert _decode_both(*args[:4]) == _record_codec.decode_records(*args)


def test_undecodable_header_key_pickles_and_compares_as_its_text() -> None:
    key = _record_codec.UndecodableHeaderKey(b"a\xc3(")
    again = pickle.loads(pickle.dumps(key))
    assert (type(again), again.raw, again) == (type(key), b"a\xc3(", "a\ufffd(")
    assert hash(key) == hash("a\ufffd(")
    assert repr(key) == "UndecodableHeaderKey(b'a\\xc3(')"


@pytest.mark.parametrize("count", [8, 2**31 - 1, 2**63 - 1, 2**64, 2**200])
def test_decode_hostile_count_fails_without_allocating(count: int) -> None:
    body = _valid_body([(None, None, None, None)] * 7, 0, 0)  # 7 records of 7 bytes
    assert len(body) == 49
    with pytest.raises(ValueError, match="cannot fit"):
        _crecords.decode_records(body, 0, len(body), count, 0, 0, None, Rec)


@pytest.mark.parametrize("count", [-1, -(2**70), 0])
def test_decode_non_positive_count(count: int) -> None:
    assert _decode_both(b"", 0, 0, count) == []
    assert _decode_both(b"\x0c" + b"\x00" * 6, 0, 7, count) is ValueError  # left over


@pytest.mark.parametrize(("start", "end"), [(-1, 3), (2, 1), (0, 4), (5, 5)])
def test_decode_span_outside_buffer(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="outside the buffer"):
        _crecords.decode_records(b"abc", start, end, 0, 0, 0, None, Rec)


def test_decode_argument_errors() -> None:
    body = _valid_body([(None, b"v", None, 1)], 0, 0)
    with pytest.raises(TypeError, match="tuple subclass"):
        _crecords.decode_records(body, 0, len(body), 1, 0, 0, None, list)
    with pytest.raises(TypeError, match="tuple subclass"):
        _crecords.decode_records(body, 0, len(body), 1, 0, 0, None, Rec(0, 0, None, None, ()))
    with pytest.raises(TypeError):
        _crecords.decode_records("not a buffer", 0, 0, 0, 0, 0, None, Rec)
    with pytest.raises(TypeError):
        _crecords.decode_records(body, 0, len(body), 1, 0, 0, None)
    with pytest.raises(TypeError):
        _crecords.decode_records(body, 0, len(body), 1.0, 0, 0, None, Rec)


def test_decode_fixed_timestamp_is_shared() -> None:
    fixed = 1 << 40
    body = _valid_body([(None, b"v", None, 1)] * 3, 0, 0)
    got = _crecords.decode_records(body, 0, len(body), 3, 0, 0, fixed, Rec)
    assert all(r.timestamp is fixed for r in got)


class _TupleWithDict(tuple):  # type: ignore[type-arg]
    """A record type whose instances can reference anything, themselves included."""


class _Canary:
    """Weakly referenced to see whether a cycle was collected (tuples cannot be)."""


def test_decoded_records_leave_the_cyclic_gc_alone() -> None:
    # Records of ints, bytes and header tuples can never be part of a cycle: they are
    # untracked at birth so the collector never walks them.
    body = _valid_body([(b"k", b"v", [("h", b"x")], 1)], 0, 0)
    args = (body, 0, len(body), 1, 0, 0)
    (record,) = _crecords.decode_records(*args, None, Rec)
    assert not gc.is_tracked(record)
    assert not gc.is_tracked(record.headers)
    assert not gc.is_tracked(record.headers[0])
    # Where a cycle is possible they stay tracked, and the collector finds the cycle.
    (odd,) = _crecords.decode_records(*args, [1], Rec)  # any object as fixed timestamp
    assert gc.is_tracked(odd)
    (open_record,) = _crecords.decode_records(*args, None, _TupleWithDict)
    assert gc.is_tracked(open_record)
    canary = _Canary()
    open_record.me = open_record
    open_record.canary = canary
    ref = weakref.ref(canary)
    del open_record, canary
    gc.collect()
    assert ref() is None


def test_decode_releases_buffers_and_references() -> None:
    body = bytearray(_valid_body([(b"k", b"v" * 50, [("h", b"x")], 9)] * 20, 0, 0))
    bad = bytes(body[:-1])
    fixed = 1 << 40
    watched = (body, bad, fixed, Rec)
    before = [sys.getrefcount(obj) for obj in watched]
    for _ in range(500):
        got = _crecords.decode_records(body, 0, len(body), 20, 0, 0, fixed, Rec)
        with pytest.raises(ValueError):
            _crecords.decode_records(bad, 0, len(bad), 20, 0, 0, fixed, Rec)
    del got
    assert [sys.getrefcount(obj) for obj in watched] == before
    body.extend(b"!")  # the buffer export was released


def test_round_trip_through_both() -> None:
    records = [(f"k{i}".encode(), b"v" * i, [("n", str(i).encode())], 1000 + i) for i in range(50)]
    body, max_ts = _crecords.encode_records(records, 1000, 0)
    assert max_ts == 1049
    got = _crecords.decode_records(body, 0, len(body), 50, 100, 1000, None, Rec)
    assert got == [
        Rec(100 + i, 1000 + i, k, v, tuple(hs)) for i, (k, v, hs, _) in enumerate(records)
    ]


def test_batch_layer_uses_the_accelerator() -> None:
    records_mod = pytest.importorskip("pykaf.protocol._records")
    import os

    if os.environ.get("PYKAF_NO_EXTENSIONS"):
        pytest.skip("PYKAF_NO_EXTENSIONS is set")
    assert records_mod.using_c_accelerator()
    assert records_mod._codec is _crecords


# -- split_lines: a body's lines for the gateway's batches of lines --------------------


@settings(max_examples=500, deadline=None)
@given(
    body=st.lists(st.sampled_from([b"\n", b"\r", b"\r\n", b"a", b"bc", b"\x00"]), max_size=40).map(
        b"".join
    )
)
def test_split_lines_matches_reference(body: bytes) -> None:
    assert _crecords.split_lines(body) == split_lines_python(body)


@pytest.mark.parametrize(
    ("body", "lines"),
    [
        (b"", []),
        (b"\n", [b""]),
        (b"a", [b"a"]),
        (b"a\n", [b"a"]),
        (b"a\r\n\r\nb\r", [b"a", b"", b"b"]),
        (b"a\rb\n", [b"a\rb"]),  # only a CR right before a newline (or the end) goes
    ],
)
def test_split_lines_keeps_every_record_and_only_the_line_ends(
    body: bytes, lines: list[bytes]
) -> None:
    assert _crecords.split_lines(body) == lines
    assert split_lines_python(body) == lines


def test_split_lines_wants_bytes() -> None:
    with pytest.raises(TypeError, match="wants bytes, not bytearray"):
        _crecords.split_lines(bytearray(b"a\n"))
