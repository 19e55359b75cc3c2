"""Batches a consumer cannot read: the records before them first, then a typed error that
says where (topic, partition, offset, next_offset), so that a seek gets past it; header
keys that are not UTF-8 never make a batch unreadable. Pure FetchState here; through the
real consumer and the embedded broker in test_unreadable_batches_embedded.py."""

from __future__ import annotations

import pickle
import struct

import pytest
from consumer_helpers import TS, data_batch, values
from crc32c import crc32c
from test_fetch_state import answer, new_state, positioned

from pykaf._consumer._fetch_state import FetchState
from pykaf._consumer._records import ConsumerRecord, TopicPartition
from pykaf._errors import CorruptRecordError, DecompressionLimitError, RecordBatchError
from pykaf.protocol import encode_batch
from pykaf.protocol._records import UndecodableHeaderKey

TP = TopicPartition("t", 0)
T1 = TopicPartition("t", 1)


def crc_failing(batch: bytes) -> bytes:
    bad = bytearray(batch)
    bad[-1] ^= 0xFF
    return bytes(bad)


def malformed(batch: bytes) -> bytes:
    """``batch`` with a stray byte after its records and a CRC that matches: it passes
    every header check (a broker accepts it) and fails only when its records are read."""
    out = bytearray(batch + b"\x00")
    (length,) = struct.unpack_from(">i", out, 8)
    struct.pack_into(">i", out, 8, length + 1)
    struct.pack_into(">I", out, 17, crc32c(bytes(out[21:])))
    return bytes(out)


def offsets(records: list[ConsumerRecord]) -> list[int]:
    return [r.offset for r in records]


def three_batches(middle: bytes) -> bytes:
    return data_batch(values("a", 3)) + middle + data_batch(values("c", 3), base_offset=6)


@pytest.mark.parametrize("corrupt", [crc_failing, malformed])
def test_records_before_a_corrupt_batch_come_first_then_a_located_error(corrupt: object) -> None:
    state = new_state()
    positioned(state)
    answer(state, three_batches(corrupt(data_batch(values("b", 3), base_offset=3))))  # type: ignore[operator]
    assert offsets(state.take(100)) == [0, 1, 2]
    with pytest.raises(CorruptRecordError, match=r"t-0.*offset 3.*seek\('t', 0, 6\)") as caught:
        state.take(100)
    error = caught.value
    assert (error.topic, error.partition, error.offset, error.next_offset) == ("t", 0, 3, 6)
    assert state.partitions[TP].position == 3  # never skipped silently
    state.seek(TP, error.next_offset)
    answer(state, data_batch(values("c", 3), base_offset=6))
    assert offsets(state.take(100)) == [6, 7, 8]


def test_iteration_hands_out_the_records_before_a_corrupt_batch() -> None:
    state = new_state()
    positioned(state)
    answer(state, three_batches(crc_failing(data_batch(values("b", 3), base_offset=3))))
    chunk = state.take_chunk(100)
    assert chunk is not None
    assert offsets(chunk[1]) == [0, 1, 2]
    with pytest.raises(CorruptRecordError) as caught:
        state.take_chunk(100)
    assert (caught.value.offset, caught.value.next_offset) == (3, 6)


def test_a_position_inside_the_corrupt_batch_is_the_offset_named() -> None:
    state = new_state()
    positioned(state, offset=4)
    answer(state, crc_failing(data_batch(values("b", 3), base_offset=3)))
    with pytest.raises(CorruptRecordError) as caught:
        state.take(100)
    assert (caught.value.offset, caught.value.next_offset) == (4, 6)


def test_other_partitions_keep_flowing_past_a_corrupt_batch() -> None:
    state = new_state()
    positioned(state)
    positioned(state, T1)
    answer(state, data_batch(values("a", 2)) + malformed(data_batch(values("b", 2), base_offset=2)))
    answer(state, data_batch(values("z", 2)), T1)
    first = state.take(100)
    assert [(r.partition, r.offset) for r in first] == [(0, 0), (0, 1)]
    assert [(r.partition, r.offset) for r in state.take(100)] == [(1, 0), (1, 1)]
    with pytest.raises(CorruptRecordError) as caught:
        state.take(100)
    assert caught.value.partition == 0
    assert state.partitions[TP] in state.fetchable(0.0)  # fetched again, from offset 2
    assert state.partitions[TP].fetch_offset == 2


def big_zstd_batch(size: int, base_offset: int = 0) -> bytes:
    return encode_batch(
        [(None, bytes(size), None, TS)], compression="zstd", base_offset=base_offset
    )


def test_decompressed_size_cap_is_the_setting_named_in_the_error() -> None:
    capped = new_state(max_decompressed_batch_bytes=10_000)
    positioned(capped)
    answer(capped, data_batch(values("a", 2)) + big_zstd_batch(20_000, base_offset=2))
    assert offsets(capped.take(100)) == [0, 1]
    with pytest.raises(DecompressionLimitError, match="max_decompressed_batch_bytes") as caught:
        capped.take(100)
    error = caught.value
    assert isinstance(error, RecordBatchError)
    assert (error.topic, error.partition, error.offset, error.next_offset) == ("t", 0, 2, 3)
    assert "10000 bytes" in str(error)
    assert "seek('t', 0, 3)" in str(error)
    raised = new_state(max_decompressed_batch_bytes=30_000)
    positioned(raised)
    answer(raised, big_zstd_batch(20_000))
    [record] = raised.take(100)
    assert record.value == bytes(20_000)


def test_header_keys_that_are_not_utf8_never_fail_the_batch() -> None:
    state: FetchState = new_state()
    positioned(state)
    batch = encode_batch([(b"k", b"v", [(b"\xff\xfeid", b"1"), ("ok", None)], TS)], base_offset=0)
    answer(state, batch)
    [record] = state.take(100)
    (bad, _), (good, _) = record.headers
    assert bad == "\ufffd\ufffdid"
    assert isinstance(bad, UndecodableHeaderKey)
    assert type(good) is str
    assert record.raw_headers == ((b"\xff\xfeid", b"1"), (b"ok", None))
    again = pickle.loads(pickle.dumps(record))
    assert again == record
    assert again.raw_headers == record.raw_headers
