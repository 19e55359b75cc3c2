"""The journal reader against damaged bytes: a result or a typed error, never a crash, and
never an allocation beyond the bytes present (measured with tracemalloc, not assumed)."""

from __future__ import annotations

import struct
import tracemalloc

from crc32c import crc32c
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pykaf._errors import JournalCorruptError
from pykaf._producer.journal._format import (
    PREFIX_BYTES,
    Done,
    Entry,
    Identity,
    JournalRecord,
    ScanResult,
    encode,
    scan,
)

SAMPLE: list[Entry] = [
    JournalRecord(0, "orders", 3, 1_700_000_000_000, b"key", b"v" * 200, [("h", b"x")]),
    Identity("orders", 3, 42, 1, 0, 0, 0, 1),
    JournalRecord(1, "orders", 1, 1_700_000_000_001, None, b"w" * 100, []),
    Done("orders", 3, 0, 0),
    JournalRecord(2, "audit", 0, 1_700_000_000_002, b"", None, [("n", None)]),
]
DATA = b"".join(encode(entry) for entry in SAMPLE)


def _scan_bounded(data: bytes, *, newest: bool) -> ScanResult | JournalCorruptError:
    """Scan, and check the peak allocation stays within a small multiple of the input."""
    tracemalloc.start()
    try:
        try:
            outcome: ScanResult | JournalCorruptError = scan(data, newest=newest)
        except JournalCorruptError as exc:
            outcome = exc
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 3 * len(data) + 256 * 1024, f"{peak} bytes allocated for {len(data)}"
    return outcome


def _prefix_entries(upto: int) -> list[Entry]:
    """The sample entries that end at or before byte ``upto``."""
    kept: list[Entry] = []
    end = 0
    for entry in SAMPLE:
        end += len(encode(entry))
        if end > upto:
            break
        kept.append(entry)
    return kept


def test_a_cut_at_every_offset_is_a_torn_tail_of_the_newest_segment() -> None:
    for size in range(len(DATA) + 1):
        outcome = _scan_bounded(DATA[:size], newest=True)
        assert isinstance(outcome, ScanResult), (size, outcome)
        assert outcome.entries == _prefix_entries(size)
        assert outcome.valid_bytes + outcome.torn_tail_bytes == size


def test_a_cut_at_every_offset_of_an_older_segment_is_corruption_unless_on_a_boundary() -> None:
    boundaries = {0}
    for entry in SAMPLE:
        boundaries.add(max(boundaries) + len(encode(entry)))
    for size in range(len(DATA) + 1):
        outcome = _scan_bounded(DATA[:size], newest=False)
        assert isinstance(outcome, ScanResult) == (size in boundaries), size


def test_every_single_bit_flip_is_detected() -> None:
    for bit in range(len(DATA) * 8):
        damaged = bytearray(DATA)
        damaged[bit // 8] ^= 1 << (bit % 8)
        outcome = _scan_bounded(bytes(damaged), newest=True)
        if isinstance(outcome, ScanResult):
            # Only damage to the last entry may read as a torn tail; nothing else changes.
            assert outcome.entries == SAMPLE[: len(outcome.entries)], bit
            assert len(outcome.entries) == len(SAMPLE) - 1, bit


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    position=st.integers(0, len(DATA)),
    length=st.sampled_from([0, 1, 2**31 - 1, 2**31, 2**32 - 1]) | st.integers(0, 2**32 - 1),
    newest=st.booleans(),
)
def test_huge_or_nonsense_length_fields(position: int, length: int, newest: bool) -> None:
    damaged = bytearray(DATA)
    damaged[position : position + 4] = struct.pack("<I", length)
    _scan_bounded(bytes(damaged), newest=newest)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    cuts=st.lists(st.integers(0, len(DATA)), max_size=3),
    noise=st.lists(st.tuples(st.integers(0, len(DATA) - 1), st.integers(0, 255)), max_size=8),
    tail=st.binary(max_size=64),
    newest=st.booleans(),
)
def test_random_damage(
    cuts: list[int], noise: list[tuple[int, int]], tail: bytes, newest: bool
) -> None:
    damaged = bytearray(DATA)
    for at, value in noise:
        damaged[at] = value
    for cut in sorted(cuts, reverse=True):
        del damaged[cut:]
    _scan_bounded(bytes(damaged) + tail, newest=newest)


def _reframed(body: bytes) -> bytes:
    return struct.pack("<II", len(body), crc32c(body)) + body


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    entry=st.sampled_from(SAMPLE),
    noise=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.integers(0, 400),
)
def test_payload_damage_behind_a_valid_crc(
    entry: Entry, noise: list[tuple[int, int]], cut: int
) -> None:
    # The CRC is recomputed, so the payload decoder's own length checks are what stands.
    body = bytearray(encode(entry)[PREFIX_BYTES:])
    for at, value in noise:
        if 1 <= at < len(body):  # keep the kind byte: an unknown kind is tested elsewhere
            body[at] = value
    del body[max(cut, 1) :]
    _scan_bounded(_reframed(bytes(body)) + DATA, newest=True)


def test_the_search_for_an_entry_after_damage_is_bounded() -> None:
    # Adversarial bytes after a damaged entry: a candidate entry header every 9 bytes,
    # each claiming all the bytes to the end (a CRC over megabytes each, unbounded).
    size = 1 << 20
    tail = bytearray(size)
    for pos in range(0, size - 9, 9):
        struct.pack_into("<IIB", tail, pos, size - pos - PREFIX_BYTES, 0, 1)
    data = DATA[:-3] + b"\x00\x00\x00" + bytes(tail)  # the last sample entry damaged
    outcome = _scan_bounded(data, newest=True)
    assert isinstance(outcome, JournalCorruptError)
    assert "no proof" in outcome.reason
