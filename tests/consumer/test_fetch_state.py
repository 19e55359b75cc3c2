"""FetchState and CompletedFetch, pure: positions, skipping, limits, aborted transactions."""

from __future__ import annotations

import copy
import pickle

import pytest
from consumer_helpers import TS, control_batch, data_batch, values
from hypothesis import given, settings
from hypothesis import strategies as st

from pykaf._consumer._completed_fetch import next_fetch_offset
from pykaf._consumer._fetch_state import EARLIEST, LATEST, FetchState
from pykaf._consumer._partition_state import PartitionState
from pykaf._consumer._records import ConsumerRecord, TopicPartition
from pykaf._errors import CorruptRecordError, NoOffsetError, PykafError
from pykaf._kafka_errors import MessageTooLargeError, OffsetOutOfRangeError
from pykaf.protocol import ControlType, TimestampType

TP = TopicPartition("t", 0)


def new_state(**kw: object) -> FetchState:
    args: dict[str, object] = {
        "max_partition_bytes": 1 << 20,
        "buffer_max_bytes": 64 << 20,
        "read_committed": False,
        "verify_crc": True,
        "reset_policy": "earliest",
        "retry_backoff": 0.1,
    }
    args.update(kw)
    return FetchState(**args)  # type: ignore[arg-type]


def positioned(state: FetchState, tp: TopicPartition = TP, offset: int = 0) -> None:
    state.add([tp])
    state.seek(tp, offset)


def answer(
    state: FetchState,
    data: bytes,
    tp: TopicPartition = TP,
    *,
    hw: int = 1000,
    code: int = 0,
    aborted: list[tuple[int, int]] | None = None,
    stop_at_end: bool = False,
) -> bool:
    """Send a fetch for ``tp`` (as the fetcher does) and answer it with ``data``."""
    st_ = state.partitions[tp]
    [(gen, offset)] = state.fetch_started([st_])
    return state.fetch_answered(
        st_,
        gen,
        offset,
        error_code=code,
        high_watermark=hw,
        last_stable_offset=hw,
        log_start_offset=0,
        records=data,
        aborted=aborted,
        stop_at_end=stop_at_end,
    )


def drain(state: FetchState, limit: int = 1000) -> list[ConsumerRecord]:
    out: list[ConsumerRecord] = []
    while True:
        got = state.take(limit)
        if not got:
            return out
        out += got


def test_records_carry_every_field() -> None:
    state = new_state()
    positioned(state)
    assert answer(state, data_batch(values("a", 3), base_offset=0))
    [first, *_] = drain(state)
    assert isinstance(first, ConsumerRecord)
    assert (first.topic, first.partition, first.offset) == ("t", 0, 0)
    assert first.timestamp == TS
    assert first.timestamp_type is TimestampType.CREATE_TIME
    assert (first.key, first.value, first.headers) == (b"k", b"a-0", (("h", b"x"),))
    assert first.leader_epoch is None  # the batch says -1
    assert first == ConsumerRecord("t", 0, 0, TS, 0, b"k", b"a-0", [("h", b"x")], None)
    assert pickle.loads(pickle.dumps(first)) == first
    assert copy.deepcopy(first) is first
    assert hash(first) == hash(pickle.loads(pickle.dumps(first)))
    assert first != ConsumerRecord("t", 1, 0, TS, 0, b"k", b"a-0", [("h", b"x")], None)
    assert "topic='t'" in repr(first)
    assert first.topic_partition == TP


def test_positions_advance_only_with_what_is_handed() -> None:
    state = new_state()
    positioned(state)
    data = data_batch(values("a", 5)) + data_batch(values("b", 5), base_offset=5)
    answer(state, data)
    assert state.partitions[TP].fetch_offset == 10  # the next fetch starts after the data
    assert state.partitions[TP].position == 0  # nothing handed yet
    got = state.take(3)
    assert [r.offset for r in got] == [0, 1, 2]
    assert state.partitions[TP].position == 3
    got = state.take(4)  # across the batch boundary
    assert [r.offset for r in got] == [3, 4, 5, 6]
    assert state.partitions[TP].position == 7
    assert [r.offset for r in drain(state)] == [7, 8, 9]
    assert state.partitions[TP].position == 10
    assert state.buffered == 0


def test_records_below_the_position_are_skipped() -> None:
    state = new_state()
    positioned(state, offset=7)
    # The broker answers with the whole batch holding offset 7, and one before it.
    answer(state, data_batch(values("a", 5)) + data_batch(values("b", 5), base_offset=5))
    assert [r.offset for r in drain(state)] == [7, 8, 9]


def test_control_batches_are_skipped_and_move_the_position() -> None:
    state = new_state()
    positioned(state)
    data = data_batch(values("a", 2), producer_id=7, transactional=True) + control_batch(
        ControlType.COMMIT, base_offset=2, producer_id=7
    )
    answer(state, data)
    assert [r.value for r in drain(state)] == [b"a-0", b"a-1"]
    assert state.partitions[TP].position == 3  # past the marker: not fetched again


def test_read_committed_skips_aborted_transactions() -> None:
    state = new_state(read_committed=True)
    positioned(state)
    data = (
        data_batch(values("c1", 2), base_offset=0, producer_id=1, transactional=True)
        + data_batch(values("x", 2), base_offset=2, producer_id=2, transactional=True)
        + control_batch(ControlType.COMMIT, base_offset=4, producer_id=1)
        + data_batch(values("plain", 1), base_offset=5)
        + data_batch(values("y", 1), base_offset=6, producer_id=2, transactional=True)
        + control_batch(ControlType.ABORT, base_offset=7, producer_id=2)
        + data_batch(values("c2", 1), base_offset=8, producer_id=2, transactional=True)
        + control_batch(ControlType.COMMIT, base_offset=9, producer_id=2)
    )
    answer(state, data, aborted=[(2, 2)])
    got = drain(state)
    assert [r.value for r in got] == [b"c1-0", b"c1-1", b"plain-0", b"c2-0"]
    assert state.partitions[TP].position == 10


def test_read_uncommitted_reads_aborted_records_too() -> None:
    state = new_state()
    positioned(state)
    data = data_batch(values("x", 2), producer_id=2, transactional=True) + control_batch(
        ControlType.ABORT, base_offset=2, producer_id=2
    )
    answer(state, data, aborted=[(2, 0)])  # ignored for read_uncommitted
    assert [r.value for r in drain(state)] == [b"x-0", b"x-1"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 4), st.booleans(), st.sampled_from(["none", "gzip", "zstd"])),
        min_size=1,
        max_size=8,
    ),
    st.integers(0, 20),
    st.integers(1, 7),
)
def test_any_limits_hand_every_record_once_in_order(
    shape: list[tuple[int, bool, str]], start: int, limit: int
) -> None:
    state = new_state()
    data = b""
    offset = 0
    expected: list[int] = []
    for count, control, codec in shape:
        if control:
            data += control_batch(ControlType.COMMIT, base_offset=offset, producer_id=3)
            offset += 1
        else:
            data += data_batch(values("v", count), base_offset=offset, compression=codec)
            expected += range(offset, offset + count)
            offset += count
    positioned(state, offset=min(start, offset))
    answer(state, data)
    got: list[int] = []
    while True:
        chunk = state.take(limit)
        if not chunk:
            break
        assert len(chunk) <= limit
        got += [r.offset for r in chunk]
    assert got == [o for o in expected if o >= min(start, offset)]
    assert state.partitions[TP].position == offset


def test_take_chunk_hands_one_partition_at_a_time() -> None:
    state = new_state()
    other = TopicPartition("t", 1)
    positioned(state)
    positioned(state, other)
    answer(state, data_batch(values("a", 3)))
    answer(state, data_batch(values("b", 2)), other)
    got = state.take_chunk(100)
    assert got is not None
    part, records, before = got
    assert part.tp == TP
    assert before == 0
    assert [r.value for r in records] == values("a", 3)
    got = state.take_chunk(100)
    assert got is not None
    assert got[0].tp == other
    assert state.take_chunk(100) is None


def answer_late(
    state: FetchState, part: PartitionState, gen: int, offset: int, data: bytes
) -> bool:
    """Answer a fetch started earlier (``fetch_started``'s generation and offset)."""
    return state.fetch_answered(
        part,
        gen,
        offset,
        error_code=0,
        high_watermark=10,
        last_stable_offset=10,
        log_start_offset=0,
        records=data,
        aborted=None,
        stop_at_end=False,
    )


def test_seek_drops_buffered_and_in_flight_answers() -> None:
    state = new_state()
    positioned(state)
    answer(state, data_batch(values("a", 5)))
    part = state.partitions[TP]
    [(gen, offset)] = state.fetch_started([part])  # a fetch in flight...
    state.seek(TP, 2)  # ...made stale by a seek
    assert state.buffered == 0
    assert part.fetch_offset == 2
    assert not answer_late(state, part, gen, offset, data_batch(values("z", 5), base_offset=5))
    assert state.take(10) == []


def test_a_reset_does_not_wait_for_the_fetch_in_flight() -> None:
    """seek_to_beginning with a fetch in flight: the ListOffsets goes out now, not once
    the fetch is answered (a long poll: ``position()`` waited up to fetch_max_wait)."""
    state = new_state()
    positioned(state, offset=7)
    part = state.partitions[TP]
    [(gen, offset)] = state.fetch_started([part])  # a long poll waits at the broker
    state.request_reset(TP, EARLIEST)
    [(due, target, reset_gen)] = state.resets_due(0.0)
    assert (due, target) == (part, EARLIEST)
    assert state.resets_due(0.0) == []  # one ListOffsets at a time
    state.reset_done(part, reset_gen, 0, None)
    assert (part.position, part.reset) == (0, None)
    assert state.fetchable(0.0) == []  # the stale fetch is still out: no second one yet
    assert not answer_late(state, part, gen, offset, data_batch(values("z", 3), base_offset=7))
    assert part.position == 0  # the stale answer moved nothing
    assert state.fetchable(0.0) == [part]


def test_pause_parks_buffered_records_until_resume() -> None:
    state = new_state()
    positioned(state)
    answer(state, data_batch(values("a", 2)))
    state.pause(TP)
    assert state.take(10) == []
    assert state.fetchable(0.0) == []
    state.resume(TP)
    assert [r.value for r in state.take(10)] == values("a", 2)


def test_prefetch_bounds() -> None:
    state = new_state(max_partition_bytes=100, buffer_max_bytes=10_000)
    positioned(state)
    answer(state, data_batch(values("a", 50)))  # > 2 x 100 bytes buffered
    assert state.fetchable(0.0) == []
    drain(state)
    assert state.fetchable(0.0) == [state.partitions[TP]]
    small = new_state(buffer_max_bytes=10)
    positioned(small)
    answer(small, data_batch(values("a", 3)))
    assert small.fetchable(0.0) == []  # the whole buffer is full


def test_out_of_range_resets_per_policy() -> None:
    for policy, target in (("earliest", EARLIEST), ("latest", LATEST)):
        state = new_state(reset_policy=policy)
        positioned(state, offset=50)
        answer(state, b"", code=1)
        part = state.partitions[TP]
        assert part.reset == target
        assert not part.has_position
        [(due, to, gen)] = state.resets_due(0.0)
        assert due is part
        assert to == target
        state.reset_done(part, gen, 9, 3)
        assert (part.position, part.fetch_offset, part.position_epoch) == (9, 9, 3)


def test_out_of_range_with_policy_error_raises_until_a_seek() -> None:
    state = new_state(reset_policy="error")
    positioned(state, offset=50)
    answer(state, b"", code=1)
    with pytest.raises(OffsetOutOfRangeError, match="seek to a valid offset"):
        state.take(10)
    assert state.fetchable(0.0) == []  # not fetched again at that offset
    state.seek(TP, 0)
    assert state.fetchable(0.0) == [state.partitions[TP]]


def test_errors_wait_for_the_records_before_them() -> None:
    state = new_state()
    other = TopicPartition("t", 1)
    positioned(state)
    positioned(state, other)
    answer(state, data_batch(values("a", 2)))
    state.partitions[other].error = NoOffsetError("no offset")
    assert len(state.take(10)) == 2
    with pytest.raises(NoOffsetError):
        state.take(10)
    assert state.take(10) == []


def test_corrupt_batch_is_raised_and_refetched_never_skipped() -> None:
    state = new_state()
    positioned(state)
    good = data_batch(values("a", 2))
    bad = bytearray(data_batch(values("b", 2), base_offset=2))
    bad[-1] ^= 0xFF
    answer(state, good + bytes(bad))
    assert [r.offset for r in state.take(2)] == [0, 1]
    with pytest.raises(CorruptRecordError, match="t-0"):
        state.take(10)
    part = state.partitions[TP]
    assert (part.position, part.fetch_offset, state.buffered) == (2, 2, 0)
    unchecked = new_state(verify_crc=False)
    positioned(unchecked, offset=2)
    answer(unchecked, bytes(bad))
    assert len(drain(unchecked)) == 2  # check_crcs=False reads it


def test_truncated_tail_and_a_batch_too_large() -> None:
    whole = data_batch(values("a", 2)) + data_batch(values("b", 2), base_offset=2)
    assert next_fetch_offset(whole[:-5], 0) == 2
    state = new_state()
    positioned(state)
    answer(state, whole[:-5])
    assert [r.offset for r in drain(state)] == [0, 1]
    assert state.partitions[TP].fetch_offset == 2
    alone = new_state()
    positioned(alone)
    answer(alone, data_batch(values("big", 50))[:100])  # no whole batch at all
    with pytest.raises(MessageTooLargeError, match="max_partition_fetch_bytes"):
        alone.take(10)


def test_end_of_log_detection() -> None:
    state = new_state()
    positioned(state)
    answer(state, data_batch(values("a", 2)), hw=2, stop_at_end=True)
    assert not state.all_at_end()
    answer(state, b"", hw=2, stop_at_end=True)  # nothing more at offset 2
    assert not state.all_at_end()  # two records still to hand out
    drain(state)
    assert state.all_at_end()
    assert state.fetchable(0.0) == []  # an end seen is not fetched again...
    state.restart_end_detection()  # ...until the next stop-at-end iteration
    assert not state.all_at_end()
    assert state.fetchable(0.0)


def test_errors_are_pykaf_errors() -> None:
    assert issubclass(OffsetOutOfRangeError, PykafError)
