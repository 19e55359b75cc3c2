"""The journal's entry format: round trips, torn tails against damage in the middle."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pykaf._errors import JournalCorruptError
from pykaf._producer.journal._format import (
    PREFIX_BYTES,
    RECORD_FIXED_BYTES,
    Done,
    Entry,
    Identity,
    JournalRecord,
    decode_frame,
    encode,
    encode_record,
    encode_record_into_python,
    peek_record,
    scan,
    walk,
)
from pykaf._producer.journal._record_writer import RecordInto, encode_record_into

# The in-place writer runs here (C when built) and its Python reference, same contract.
RECORD_INTO: list[RecordInto] = [encode_record_into_python]
if encode_record_into is not encode_record_into_python:
    RECORD_INTO.append(encode_record_into)
RECORD_INTO_IDS = ["python", "c"][: len(RECORD_INTO)]

U64 = st.integers(0, 2**64 - 1)
I32 = st.integers(-(2**31), 2**31 - 1)
PARTITION = st.integers(0, 2**31 - 1)
TOPIC = st.text(max_size=40)
BLOB = st.none() | st.binary(max_size=300)

records = st.builds(
    JournalRecord,
    serial=U64,
    topic=TOPIC,
    partition=PARTITION,
    timestamp_ms=st.integers(-(2**63), 2**63 - 1),
    key=BLOB,
    value=BLOB,
    headers=st.lists(st.tuples(st.text(max_size=20), BLOB), max_size=4),
)
identities = st.builds(
    Identity,
    topic=TOPIC,
    partition=PARTITION,
    producer_id=st.integers(-(2**63), 2**63 - 1),
    epoch=st.integers(-(2**15), 2**15 - 1),
    base_sequence=I32,
    first_serial=U64,
    last_serial=U64,
    record_count=st.integers(0, 2**32 - 1),
)
dones = st.builds(Done, topic=TOPIC, partition=PARTITION, first_serial=U64, last_serial=U64)
entries = st.one_of(records, identities, dones)


@given(st.lists(entries, max_size=12))
def test_entries_round_trip(items: list[Entry]) -> None:
    data = b"".join(encode(item) for item in items)
    result = scan(data)
    assert result.entries == items
    assert (result.valid_bytes, result.torn_tail_bytes) == (len(data), 0)


@given(records)
def test_peek_reads_serial_topic_and_partition_only(record: JournalRecord) -> None:
    data = encode(record)
    (frame,) = walk(data, newest=False).frames
    assert peek_record(data, frame) == (record.serial, record.topic, record.partition)
    assert decode_frame(data, frame) == record


def test_the_bytes_of_one_record() -> None:
    data = encode_record(7, "t", 2, 1000, None, b"v", [("h", b"x")])
    body = data[PREFIX_BYTES:]
    length, _ = struct.unpack_from("<II", data)
    assert length == len(body)
    assert body[0] == 1  # RECORD
    assert struct.unpack_from("<QiqHiiH", body, 1) == (7, 2, 1000, 1, -1, 1, 1)
    assert body[33:] == b"t" + b"v" + struct.pack("<Hi", 1, 1) + b"h" + b"x"


@pytest.mark.parametrize(
    "entry",
    [
        JournalRecord(-1, "t", 0, 0, None, None, []),
        JournalRecord(0, "t", 2**31, 0, None, None, []),
        JournalRecord(0, "t" * 70_000, 0, 0, None, None, []),
        Identity("t", 0, 1, 2**15, 0, 0, 0, 0),
        Done("t", -(2**31) - 1, 0, 0),
    ],
)
def test_out_of_range_fields_are_refused_before_anything_is_written(entry: Entry) -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode(entry)


def _three() -> tuple[bytes, list[int]]:
    parts = [encode_record(i, "t", 0, 0, b"k", b"v" * 50, []) for i in range(3)]
    starts = [0, len(parts[0]), len(parts[0]) + len(parts[1])]
    return b"".join(parts), starts


def test_a_short_last_entry_is_a_torn_tail_of_the_newest_segment_only() -> None:
    data, starts = _three()
    cut = data[:-5]
    result = scan(cut, newest=True)
    assert [e.serial for e in result.entries if isinstance(e, JournalRecord)] == [0, 1]
    assert (result.valid_bytes, result.torn_tail_bytes, result.torn_entries) == (
        starts[2],
        len(cut) - starts[2],
        1,
    )
    with pytest.raises(JournalCorruptError) as caught:
        scan(cut, path="/j/00.journal", newest=False)
    assert (caught.value.path, caught.value.position) == ("/j/00.journal", starts[2])
    assert "/j/00.journal" in str(caught.value)
    assert f"byte {starts[2]}" in str(caught.value)


def test_a_crc_failure_in_the_last_entry_is_a_torn_tail() -> None:
    data, starts = _three()
    damaged = bytearray(data)
    damaged[-1] ^= 0xFF
    result = scan(bytes(damaged), newest=True)
    assert (result.valid_bytes, result.torn_tail_bytes) == (starts[2], len(data) - starts[2])
    assert "CRC" in result.reason


@pytest.mark.parametrize("newest", [True, False])
def test_zeros_after_the_last_entry_are_the_clean_end(newest: bool) -> None:
    # The unused capacity of a segment allocated in full (or blocks an OS crash left
    # allocated but unwritten): no entry is lost there, nothing is torn.
    data, _ = _three()
    for zeros in (1, 8, 9, 4096, 200_000):
        result = scan(data + bytes(zeros), newest=newest)
        assert (len(result.entries), result.valid_bytes, result.torn_tail_bytes) == (
            3,
            len(data),
            0,
        )


def test_a_partial_entry_followed_by_zeros_is_a_torn_tail() -> None:
    # What a process killed in the middle of its copy into the map leaves.
    data, starts = _three()
    for cut in (1, 5, 9, len(data) - starts[2] - 1):
        torn = data[: starts[2] + cut] + bytes(4096)
        result = scan(torn, newest=True)
        assert (len(result.entries), result.valid_bytes) == (2, starts[2])
        assert result.torn_tail_bytes == len(torn) - starts[2]
        with pytest.raises(JournalCorruptError):
            scan(torn, newest=False)


def test_a_zeroed_entry_before_valid_ones_is_corruption_even_with_zeros_after() -> None:
    data, starts = _three()
    damaged = bytearray(data + bytes(4096))
    damaged[starts[1] : starts[2]] = bytes(starts[2] - starts[1])
    with pytest.raises(JournalCorruptError) as caught:
        scan(bytes(damaged), newest=True)
    assert caught.value.position == starts[1]


@pytest.mark.parametrize("victim", [0, 1])
def test_damage_followed_by_a_valid_entry_is_corruption_not_a_torn_tail(victim: int) -> None:
    data, starts = _three()
    damaged = bytearray(data)
    damaged[starts[victim] + 20] ^= 0x01
    with pytest.raises(JournalCorruptError) as caught:
        scan(bytes(damaged), path="seg", newest=True)
    assert caught.value.position == starts[victim]
    assert "CRC" in caught.value.reason


def test_a_flipped_length_in_the_middle_is_corruption_even_though_it_runs_past_the_end() -> None:
    data, starts = _three()
    damaged = bytearray(data)
    struct.pack_into("<I", damaged, starts[1], 2**31)
    with pytest.raises(JournalCorruptError) as caught:
        scan(bytes(damaged), newest=True)
    assert caught.value.position == starts[1]


def test_an_unknown_kind_with_a_valid_crc_is_refused_not_cut() -> None:
    body = b"\x09payload"
    from crc32c import crc32c

    entry = struct.pack("<II", len(body), crc32c(body)) + body
    with pytest.raises(JournalCorruptError, match="unknown kind 9"):
        scan(entry, newest=True)


def test_a_payload_whose_lengths_do_not_add_up_is_corruption() -> None:
    # A CRC-valid entry (as a writer bug would make) whose key length runs past its end.
    from crc32c import crc32c

    body = struct.pack("<BQiqHiiH", 1, 0, 0, 0, 1, 1000, -1, 0) + b"t"
    entry = struct.pack("<II", len(body), crc32c(body)) + body
    with pytest.raises(JournalCorruptError, match="exceed"):
        scan(entry, newest=True)


@pytest.mark.parametrize("into", RECORD_INTO, ids=RECORD_INTO_IDS)
@given(record=records)
def test_a_record_written_in_place_is_the_same_bytes_as_encoded(
    into: RecordInto, record: JournalRecord
) -> None:
    plain = record._replace(headers=[])
    expected = encode(plain)
    name = plain.topic.encode()
    size = RECORD_FIXED_BYTES + len(name) + len(plain.key or b"") + len(plain.value or b"")
    assert size == len(expected)
    target = bytearray(b"\xee" * 3 + bytes(size + 5))
    end = into(
        memoryview(target), 3, len(target), plain.serial, name, plain.partition,
        plain.timestamp_ms, plain.key, plain.value,
    )  # fmt: skip
    assert end == 3 + size
    assert bytes(target[3 : 3 + size]) == expected
    assert bytes(target[3 + size :]) == bytes(5)


@pytest.mark.parametrize("into", RECORD_INTO, ids=RECORD_INTO_IDS)
def test_a_record_past_its_limit_is_not_written(into: RecordInto) -> None:
    size = len(encode(JournalRecord(7, "t", 0, 0, None, b"value", [])))
    target = bytearray(100)
    assert into(memoryview(target), 10, 10 + size - 1, 7, b"t", 0, 0, None, b"value") == -1
    assert target == bytearray(100)
    assert into(memoryview(target), 10, 10 + size, 7, b"t", 0, 0, None, b"value") == 10 + size


@pytest.mark.parametrize("into", RECORD_INTO, ids=RECORD_INTO_IDS)
def test_a_record_out_of_range_written_in_place_leaves_only_zeros(into: RecordInto) -> None:
    target = bytearray(200)
    with pytest.raises(ValueError, match="out of range"):
        into(memoryview(target), 0, 200, 2**64, b"t", 0, 0, None, b"v")
    assert target == bytearray(200)  # still the clean end of a segment
