"""The feed's reader (``JournalStore.read_pending``): pending records in a serial range,
read a chunk at a time while appends go on; entries across chunk boundaries and larger
than a chunk; damage is a typed error; a reclaimed segment is skipped."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pykaf._errors import JournalCorruptError
from pykaf._producer.journal import Done, JournalRecord, JournalStore, _tail


def record(serial: int, size: int = 100, partition: int = 0) -> JournalRecord:
    return JournalRecord(
        serial, "t", partition, 1_000 + serial, None, b"%08d" % serial + bytes(size), []
    )


@pytest.fixture
def store(tmp_path: Path) -> JournalStore:
    opened = JournalStore(tmp_path, max_bytes=64 << 20, segment_bytes=1 << 20)
    opened.open()
    return opened


def test_reads_a_serial_range_across_chunks_and_segments(
    store: JournalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_tail, "_CHUNK", 4096)  # many refills; entries straddle them
    for serial in range(3000):
        store.append((record(serial, size=700, partition=serial % 3),))
    assert len(list(store.directory.glob("*.journal"))) > 1
    try:
        got = [r.serial for r in store.read_pending(1000, 2500)]
        assert got == list(range(1000, 2500))
        assert [r.serial for r in store.read_pending(0, 3000)] == list(range(3000))
    finally:
        store.close()


def test_an_entry_larger_than_a_chunk_is_read_whole(
    store: JournalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_tail, "_CHUNK", 4096)
    store.append((record(0, size=10), record(1, size=50_000), record(2, size=10)))
    try:
        got = list(store.read_pending(0, 3))
        assert [r.serial for r in got] == [0, 1, 2]
        assert got[1].value == b"%08d" % 1 + bytes(50_000)
    finally:
        store.close()


def test_records_done_are_skipped(store: JournalStore) -> None:
    store.append([record(s, partition=s % 2) for s in range(10)])
    store.append((Done("t", 0, 0, 5),))  # the even serials up to 5 of partition 0
    try:
        assert [r.serial for r in store.read_pending(0, 10)] == [1, 3, 5, 6, 7, 8, 9]
    finally:
        store.close()


def test_records_appended_after_the_range_began_are_not_read(store: JournalStore) -> None:
    store.append([record(s) for s in range(5)])
    try:
        reading = store.read_pending(0, 5)
        assert next(reading).serial == 0
        store.append([record(s) for s in range(5, 8)])
        assert [r.serial for r in reading] == [1, 2, 3, 4]
    finally:
        store.close()


def test_a_flipped_byte_is_a_typed_error_naming_the_file(store: JournalStore) -> None:
    store.append([record(s) for s in range(20)])
    store.sync()
    segment = sorted(store.directory.glob("*.journal"))[0]
    try:
        with segment.open("r+b") as handle:  # a value byte of the 11th record
            handle.seek(10 * 150 + 100)
            byte = handle.read(1)
            handle.seek(10 * 150 + 100)
            handle.write(bytes([byte[0] ^ 0xFF]))
        with pytest.raises(JournalCorruptError) as caught:
            list(store.read_pending(0, 20))
        assert caught.value.path == str(segment)
    finally:
        store.close()


def test_a_segment_deleted_before_it_is_read_is_skipped(tmp_path: Path) -> None:
    spans: list[_tail.SegmentSpan] = [(tmp_path / "gone.journal", 0, 100, 10)]
    assert list(_tail.read_pending_span(spans, 0, 10, lambda *_: True)) == []


@pytest.fixture(scope="module")
def segment_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """One segment of 60 records of assorted sizes, as written by the store."""
    directory = tmp_path_factory.mktemp("source")
    store = JournalStore(directory, max_bytes=64 << 20, segment_bytes=1 << 20)
    store.open()
    store.append([record(s, size=s % 300, partition=s % 2) for s in range(60)])
    store.close()
    return next(directory.glob("*.journal")).read_bytes()


FLIPS = st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 7)), min_size=1, max_size=4)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(flips=FLIPS)
def test_damage_reads_as_records_or_a_typed_error(
    tmp_path: Path, segment_bytes: bytes, flips: list[tuple[int, int]]
) -> None:
    damaged = bytearray(segment_bytes)
    for at, bit in flips:
        damaged[at % len(damaged)] ^= 1 << bit
    target = tmp_path / "damaged.journal"
    target.write_bytes(bytes(damaged))
    spans: list[_tail.SegmentSpan] = [(target, 0, len(damaged), None)]
    outcome: list[JournalRecord] | JournalCorruptError
    try:
        outcome = list(_tail.read_pending_span(spans, 0, 1 << 62, lambda *_: True))
    except JournalCorruptError as exc:
        outcome = exc
    if isinstance(outcome, JournalCorruptError):
        assert outcome.path == str(target)
    else:
        assert len(outcome) <= 60


ANY_RECORD = st.tuples(
    st.sampled_from(["t", "tópico", "x" * 200]),
    st.integers(0, 3),
    st.integers(0, 2**62),
    st.none() | st.binary(max_size=40),
    st.none() | st.binary(max_size=3000),
    st.lists(st.tuples(st.text(max_size=8), st.none() | st.binary(max_size=20)), max_size=2),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(ANY_RECORD, min_size=1, max_size=40), done_upto=st.integers(-1, 40))
def test_any_record_reads_back_as_written(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    rows: list[tuple[str, int, int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]],
    done_upto: int,
) -> None:
    # The reader's own decoding of plain records (``_plain_record``) and the general
    # one (``decode_frame``: headers) agree with what was written, entry by entry; done
    # records of partition 0 are skipped.
    monkeypatch.setattr(_tail, "_CHUNK", 4096)
    store = JournalStore(tmp_path_factory.mktemp("any"), max_bytes=64 << 20, segment_bytes=1 << 20)
    store.open()
    written = [
        JournalRecord(serial, topic, partition, stamp, key, value, headers)
        for serial, (topic, partition, stamp, key, value, headers) in enumerate(rows)
    ]
    try:
        store.append(written)
        if done_upto >= 0:
            for topic in {r.topic for r in written}:
                store.append((Done(topic, 0, 0, done_upto),))
        expected = [r for r in written if done_upto < 0 or r.partition != 0 or r.serial > done_upto]
        assert list(store.read_pending(0, len(written))) == expected
        assert list(store.read_pending(1, len(written) - 1)) == [
            r for r in expected if 1 <= r.serial < len(written) - 1
        ]
    finally:
        store.close()
