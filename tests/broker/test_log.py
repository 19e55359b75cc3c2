"""PartitionLog, idempotent producer state and segment files, without any network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykaf.broker._log import PartitionLog
from pykaf.broker._producers import ProducerStateTable, last_sequence
from pykaf.broker._segments import LogCorruptionError, SegmentStore, TornTail
from pykaf.protocol._records import BatchHeader, TimestampType, decode_batches, iter_batch_headers
from pykaf.protocol._records import encode_batch as _encode


def batch(
    values: list[bytes], *, ts: int = 1000, pid: int = -1, epoch: int = -1, seq: int = -1
) -> tuple[bytearray, BatchHeader]:
    data = _encode(
        [(None, v, None, ts + i) for i, v in enumerate(values)],
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
    )
    return bytearray(data), next(iter_batch_headers(data))[1]


def append(log: PartitionLog, values: list[bytes], **kwargs: int) -> int:
    data, header = batch(values, **kwargs)
    result = log.append(data, header, leader_epoch=0, log_append_time=None)
    assert result.error == 0
    return result.base_offset


def records(chunks: list[bytes | bytearray]) -> list[tuple[int, bytes | None]]:
    return [(r.offset, r.value) for b in decode_batches(b"".join(chunks)) for r in b.records]


def test_offsets_are_assigned_and_batches_read_back_whole() -> None:
    log = PartitionLog()
    assert append(log, [b"a", b"b", b"c"]) == 0
    assert append(log, [b"d"]) == 3
    assert log.high_watermark == 4
    # Reading from offset 1 returns the batch holding it, whole: the client skips offset 0.
    got = records(log.read(1, 1 << 20, True))
    assert got == [(0, b"a"), (1, b"b"), (2, b"c"), (3, b"d")]
    assert log.read(4, 1 << 20, True) == []


def test_max_bytes_and_kip74_first_batch() -> None:
    log = PartitionLog()
    for i in range(5):
        append(log, [bytes([i]) * 100])
    size = len(log.read(0, 1 << 20, True)[0])
    assert len(log.read(0, 2 * size, True)) == 2
    assert len(log.read(0, 2 * size + size // 2, True)) == 2  # never half a batch
    # Below one batch: one batch when it must return something, nothing otherwise.
    assert len(log.read(0, 10, True)) == 1
    assert log.read(0, 10, False) == []


def test_log_append_time_rewrites_timestamp_and_crc() -> None:
    log = PartitionLog()
    data, header = batch([b"x", b"y"], ts=5)
    result = log.append(data, header, leader_epoch=3, log_append_time=123456)
    assert result.log_append_time == 123456
    (stored,) = decode_batches(b"".join(log.read(0, 1 << 20, True)))  # CRC verified
    assert stored.timestamp_type is TimestampType.LOG_APPEND_TIME
    assert [r.timestamp for r in stored.records] == [123456, 123456]
    assert stored.partition_leader_epoch == 3


def test_offset_for_timestamp() -> None:
    log = PartitionLog()
    append(log, [b"a", b"b"], ts=100)  # offsets 0,1 at 100,101
    append(log, [b"c", b"d"], ts=50)  # offsets 2,3 at 50,51 (timestamps need not grow)
    append(log, [b"e"], ts=200)  # offset 4 at 200
    assert log.offset_for_timestamp(0) == (0, 100)
    assert log.offset_for_timestamp(101) == (1, 101)
    assert log.offset_for_timestamp(102) == (4, 200)
    assert log.offset_for_timestamp(201) is None
    assert log.max_timestamp_offset() == (4, 200)


def test_delete_records_moves_start_and_drops_whole_batches() -> None:
    log = PartitionLog()
    for _ in range(4):
        append(log, [b"1", b"2"])
    assert log.delete_records(3) == 3
    assert log.delete_records(1) == 3  # never backwards
    assert len(log) == 3  # the batch holding offset 3 (2..3) stays
    assert records(log.read(3, 1 << 20, True))[0] == (2, b"1")
    assert log.delete_records(8) == 8
    assert len(log) == 0
    assert log.high_watermark == 8
    assert append(log, [b"z"]) == 8


def test_leader_epochs() -> None:
    log = PartitionLog()
    log.begin_epoch(0)
    append(log, [b"a", b"b"])
    log.begin_epoch(1)
    data, header = batch([b"c"])
    log.append(data, header, leader_epoch=1, log_append_time=None)
    assert log.end_offset_for_epoch(0) == (0, 2)
    assert log.end_offset_for_epoch(1) == (1, 3)
    assert log.end_offset_for_epoch(7) == (1, 3)
    assert log.end_offset_for_epoch(-5) == (-1, -1)


def test_waiters_are_called_once_on_append() -> None:
    log = PartitionLog()
    calls: list[int] = []
    log.add_waiter(lambda: calls.append(1))
    append(log, [b"a"])
    append(log, [b"b"])
    assert calls == [1]


# -- idempotent producers ----------------------------------------------------------------


def test_duplicate_batch_returns_original_offset_and_is_stored_once() -> None:
    log = PartitionLog()
    assert append(log, [b"a", b"b"], pid=7, epoch=0, seq=0) == 0
    assert append(log, [b"c"], pid=7, epoch=0, seq=2) == 2
    data, header = batch([b"a", b"b"], pid=7, epoch=0, seq=0)
    again = log.append(data, header, leader_epoch=0, log_append_time=None)
    assert (again.error, again.base_offset) == (0, 0)
    assert log.high_watermark == 3


def test_sequence_rules() -> None:
    table = ProducerStateTable()
    assert table.check(1, 0, 17, 17) == 0  # unknown producer: any sequence
    table.record(1, 0, 0, 4, 0, -1)
    assert table.check(1, 0, 5, 9) == 0
    assert table.check(1, 0, 6, 9) == 45  # gap: OUT_OF_ORDER_SEQUENCE_NUMBER
    assert table.check(1, 0, 3, 4) == 45  # overlaps, but not one of the stored batches
    assert table.check(1, 1, 0, 3) == 0  # new epoch from 0
    assert table.check(1, 1, 5, 6) == 45  # new epoch not from 0
    table.record(1, 2, 0, 0, 10, -1)
    assert table.check(1, 1, 1, 1) == 47  # older epoch: INVALID_PRODUCER_EPOCH
    assert last_sequence(2**31 - 2, 3) == 1  # sequences wrap


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=12))
def test_only_the_last_five_batches_are_deduplicated(sizes: list[int]) -> None:
    table = ProducerStateTable()
    batches = []
    seq = 0
    for i, size in enumerate(sizes):
        assert table.check(3, 0, seq, seq + size - 1) == 0
        table.record(3, 0, seq, seq + size - 1, i * 10, -1)
        batches.append((seq, seq + size - 1, i * 10))
        seq += size
    for index, (first, last, base) in enumerate(batches):
        verdict = table.check(3, 0, first, last)
        if index >= len(batches) - 5:
            assert verdict == (base, -1)
        else:
            assert verdict == 45


# -- segment files --------------------------------------------------------------------


def test_segments_survive_reopen_and_roll(tmp_path: Path) -> None:
    log = PartitionLog(store=SegmentStore(tmp_path / "t-0", segment_bytes=300))
    for i in range(10):
        append(log, [bytes([i]) * 50], pid=5, epoch=0, seq=i)
    log.close()
    assert len(list((tmp_path / "t-0").glob("*.log"))) > 1
    again = PartitionLog(store=SegmentStore(tmp_path / "t-0", segment_bytes=300))
    assert again.high_watermark == 10
    assert [v for _, v in records(again.read(0, 1 << 20, True))] == [
        bytes([i]) * 50 for i in range(10)
    ]
    # Producer state is rebuilt from the batches: a retry of the last one is a duplicate.
    data, header = batch([bytes([9]) * 50], pid=5, epoch=0, seq=9)
    assert again.append(data, header, leader_epoch=0, log_append_time=None).base_offset == 9
    assert again.high_watermark == 10
    again.delete_records(9)
    assert len(list((tmp_path / "t-0").glob("*.log"))) == 1
    again.close()


def test_torn_tail_is_cut(tmp_path: Path) -> None:
    log = PartitionLog(store=SegmentStore(tmp_path / "p"))
    for i in range(3):
        append(log, [b"v%d" % i])
    log.close()
    (segment,) = (tmp_path / "p").glob("*.log")
    size = segment.stat().st_size
    os.truncate(segment, size - 5)  # a crash in the middle of the last write
    again = PartitionLog(store=SegmentStore(tmp_path / "p"))
    assert again.high_watermark == 2
    assert segment.stat().st_size < size - 5
    assert append(again, [b"next"]) == 2
    again.close()
    third = PartitionLog(store=SegmentStore(tmp_path / "p"))
    assert [v for _, v in records(third.read(0, 1 << 20, True))] == [b"v0", b"v1", b"next"]
    third.close()


def three_batches(directory: Path) -> tuple[Path, bytearray]:
    log = PartitionLog(store=SegmentStore(directory))
    for i in range(3):
        append(log, [b"v%d" % i])
    log.close()
    (segment,) = directory.glob("*.log")
    return segment, bytearray(segment.read_bytes())


def test_torn_tail_is_reported(tmp_path: Path) -> None:
    segment, data = three_batches(tmp_path / "p")
    segment.write_bytes(bytes(data[:-5]))
    store = SegmentStore(tmp_path / "p")
    PartitionLog(store=store).close()
    size = len(data) // 3
    assert store.torn_tail == TornTail(
        path=segment,
        position=2 * size,
        dropped_bytes=size - 5,
        first_offset=2,
        reason="an incomplete batch",
    )


def test_crc_bad_last_batch_is_a_torn_tail(tmp_path: Path) -> None:
    segment, data = three_batches(tmp_path / "p")
    data[-1] ^= 0x01
    segment.write_bytes(bytes(data))
    again = PartitionLog(store=SegmentStore(tmp_path / "p"))
    assert again.high_watermark == 2
    again.close()


def test_zero_filled_tail_is_a_torn_tail(tmp_path: Path) -> None:
    # What an OS crash leaves of pages the file size covered but the data never reached.
    segment, data = three_batches(tmp_path / "p")
    size = len(data) // 3
    segment.write_bytes(bytes(data[: 2 * size]) + bytes(3 * size))
    again = PartitionLog(store=SegmentStore(tmp_path / "p"))
    assert again.high_watermark == 2
    assert segment.stat().st_size == 2 * size
    again.close()


def test_corrupt_batch_in_the_middle_is_refused_not_cut(tmp_path: Path) -> None:
    segment, data = three_batches(tmp_path / "p")
    size = len(data) // 3  # three batches of the same size
    data[2 * size - 1] ^= 0x01  # a flipped bit in the last byte of the second batch
    segment.write_bytes(bytes(data))
    with pytest.raises(LogCorruptionError) as refused:
        PartitionLog(store=SegmentStore(tmp_path / "p"))
    assert refused.value.path == segment
    assert refused.value.position == size
    assert str(segment) in str(refused.value)
    assert segment.read_bytes() == bytes(data)  # nothing was cut


def test_corrupt_base_offset_is_refused(tmp_path: Path) -> None:
    # The base offset is not covered by the CRC: a gap in the offsets gives it away, and
    # a whole CRC-valid batch is no torn write, even the last one.
    segment, data = three_batches(tmp_path / "p")
    data[2 * (len(data) // 3)] ^= 0x40  # high byte of the third batch's base offset
    segment.write_bytes(bytes(data))
    with pytest.raises(LogCorruptionError, match="base offset"):
        PartitionLog(store=SegmentStore(tmp_path / "p"))


def test_damage_in_an_older_segment_is_refused(tmp_path: Path) -> None:
    log = PartitionLog(store=SegmentStore(tmp_path / "p", segment_bytes=200))
    for i in range(6):
        append(log, [bytes([i]) * 50])
    log.close()
    first, *later = sorted((tmp_path / "p").glob("*.log"))
    assert later
    os.truncate(first, first.stat().st_size - 3)
    with pytest.raises(LogCorruptionError):
        PartitionLog(store=SegmentStore(tmp_path / "p", segment_bytes=200))
    assert all(path.exists() for path in later)


def test_batches_at_a_lower_epoch_are_kept(tmp_path: Path) -> None:
    # What brokers before issue 10 wrote after a restart; they are acknowledged records.
    log = PartitionLog(store=SegmentStore(tmp_path / "p"))
    for epoch in (5, 1, 2):
        data, header = batch([b"e%d" % epoch])
        assert log.append(data, header, leader_epoch=epoch, log_append_time=None).error == 0
    log.close()
    again = PartitionLog(store=SegmentStore(tmp_path / "p"))
    assert again.high_watermark == 3
    assert again.latest_epoch == 5
    again.close()


def test_append_after_a_failed_write_leaves_no_half_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SegmentStore(tmp_path / "p")
    log = PartitionLog(store=store)
    append(log, [b"first"])
    data, header = batch([b"second"])
    real_write = os.write

    def short_then_full_disk(fd: int, chunk: bytes | memoryview) -> int:
        if len(chunk) == len(data):
            real_write(fd, bytes(chunk[:10]))
            return 10
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(os, "write", short_then_full_disk)
        result = log.append(data, header, leader_epoch=0, log_append_time=None)
        assert result.error == 56  # KAFKA_STORAGE_ERROR
    append(log, [b"third"])
    log.close()
    again = PartitionLog(store=SegmentStore(tmp_path / "p"))
    assert [v for _, v in records(again.read(0, 1 << 20, True))] == [b"first", b"third"]
    again.close()


def test_a_full_disk_fails_appends_with_a_storage_error_and_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    log = PartitionLog(store=SegmentStore(tmp_path / "p"))
    append(log, [b"first"])

    def full(fd: int, chunk: bytes | memoryview) -> int:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(os, "write", full)
        for _ in range(3):
            data, header = batch([b"lost"])
            result = log.append(data, header, leader_epoch=0, log_append_time=None)
            assert result.error == 56  # KAFKA_STORAGE_ERROR: retriable, nothing stored
    assert log.high_watermark == 1
    failures = [r for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(failures) == 1
    assert "No space left" in failures[0].getMessage()
    assert append(log, [b"second"]) == 1
    assert any("writing again" in r.getMessage() for r in caplog.records)
    log.close()
