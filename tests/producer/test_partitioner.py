"""Partition strategies: murmur2 exactly as Java, and the keyless strategies' behaviour."""

from __future__ import annotations

import enum
import itertools
import os
import random
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykaf._producer import _partitioner
from pykaf._producer._partitioner import (
    PARTITIONER_NAMES,
    Partitioner,
    make_partitioner,
    murmur2,
    murmur2_in_c,
    murmur2_partition,
    murmur2_python,
    to_positive,
)

try:
    from pykaf.protocol import _crecords

    _C_MURMUR2: Callable[[Any], int] | None = getattr(_crecords, "murmur2", None)
except ImportError:  # the optional C accelerator is not built
    _C_MURMUR2 = None

_IMPLEMENTATIONS = [
    pytest.param(murmur2, id="selected"),
    pytest.param(murmur2_python, id="python"),
    pytest.param(
        _C_MURMUR2,
        id="c",
        marks=pytest.mark.skipif(_C_MURMUR2 is None, reason="C murmur2 not built"),
    ),
]

# Apache Kafka, clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java,
# testMurmur2 (the Java client's own expectations for Utils.murmur2).
_JAVA_UTILS_TEST = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (bytes([ord("a"), ord("b"), ord("c")]), 479470107),
]

# librdkafka, src/rdmurmur2.c, unittest_murmur2 ("java_murmur2_results", written there as
# 32-bit hex); the suffixes of "1234" and of the long string test every tail length.
_LONG = b"PreAmbleWillBeRemoved,ThePrePartThatIs"
_LIBRDKAFKA_UNITTEST = [
    (b"kafka", 0xD067CF64),
    (b"giberish123456789", 0x8F552B0C),
    (b"1234", 0x9FC97B14),
    (b"234", 0xE7C009CA),
    (b"34", 0x873930DA),
    (b"4", 0x5A4B5CA1),
    (_LONG, 0x78424F1C),
    (_LONG[1:], 0x4A62B377),
    (_LONG[2:], 0xE0E4E09E),
    (_LONG[3:], 0x62B8B43F),
    (b"", 0x106E08D9),
]

# kafkajs's Java-compatible murmur2 samples, produced by running Java's murmur2 on these
# keys (its src/producer/partitioners/default/Test.java); quoted from the newer
# murmur2.spec.js (the older copy of that file holds the pre-fix, non-Java values).
_KAFKAJS_JAVA_SAMPLES = [
    (b"0", 971027396),
    (b"1", -1993445489),
    (b"128", -326012175),
    (b"2187", -1508407203),
    (b"16384", -325739742),
    (b"78125", -1654490814),
    (b"279936", 1462227128),
    (b"823543", -2014198330),
    (b"2097152", 607668903),
    (b"4782969", -1182699775),
    (b"10000000", -1830336757),
    (b"19487171", -1603849305),
    (b"35831808", -857013643),
    (b"62748517", -1167431028),
    (b"105413504", -381294639),
    (b"170859375", -1658323481),
    (b"100:48069", 1009543857),
]


def _signed32(unsigned: int) -> int:
    return unsigned - (1 << 32) if unsigned & 0x8000_0000 else unsigned


# -- murmur2 -------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", _IMPLEMENTATIONS)
@pytest.mark.parametrize(("data", "expected"), _JAVA_UTILS_TEST)
def test_java_utils_test_vectors(impl: Callable[[bytes], int], data: bytes, expected: int) -> None:
    assert impl(data) == expected


@pytest.mark.parametrize("impl", _IMPLEMENTATIONS)
@pytest.mark.parametrize(("data", "expected"), _LIBRDKAFKA_UNITTEST)
def test_librdkafka_unittest_vectors(
    impl: Callable[[bytes], int], data: bytes, expected: int
) -> None:
    assert impl(data) == _signed32(expected)


@pytest.mark.parametrize("impl", _IMPLEMENTATIONS)
@pytest.mark.parametrize(("data", "expected"), _KAFKAJS_JAVA_SAMPLES)
def test_kafkajs_java_samples(impl: Callable[[bytes], int], data: bytes, expected: int) -> None:
    assert impl(data) == expected


def test_the_c_version_is_selected_when_built() -> None:
    if os.environ.get("PYKAF_NO_EXTENSIONS"):  # the switch _records honours too
        assert not murmur2_in_c()
        assert murmur2 is murmur2_python
        return
    assert murmur2_in_c() == (_C_MURMUR2 is not None)
    if _C_MURMUR2 is not None:
        assert murmur2 is _C_MURMUR2


@pytest.mark.skipif(_C_MURMUR2 is None, reason="C murmur2 not built")
@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=300), start=st.integers(0, 3))
def test_c_and_python_agree_on_every_input(data: bytes, start: int) -> None:
    assert _C_MURMUR2 is not None
    expected = murmur2_python(data)
    assert -(1 << 31) <= expected < (1 << 31)
    assert _C_MURMUR2(data) == expected
    assert _C_MURMUR2(bytearray(data)) == expected
    # A view that starts at an odd address: both read byte by byte, never by word.
    shifted = memoryview(b"x" * start + data)[start:]
    assert _C_MURMUR2(shifted) == expected
    assert murmur2_python(shifted) == expected


@pytest.mark.parametrize("impl", _IMPLEMENTATIONS)
def test_bytes_like_inputs_hash_their_bytes(impl: Callable[[Any], int]) -> None:
    assert impl(bytearray(b"foobar")) == -790332482
    assert impl(memoryview(b"xxfoobar")[2:]) == -790332482


@pytest.mark.parametrize("impl", _IMPLEMENTATIONS)
@pytest.mark.parametrize("bad", [5, "foobar", None, 1.5])
def test_non_bytes_are_refused(impl: Callable[[Any], int], bad: object) -> None:
    with pytest.raises(TypeError):
        impl(bad)


def test_to_positive_clears_the_sign_bit_like_java() -> None:
    assert to_positive(0) == 0
    assert to_positive(5) == 5
    assert to_positive(-1) == 0x7FFF_FFFF
    assert to_positive(-(1 << 31)) == 0  # Java's toPositive, not abs(): MIN_VALUE -> 0
    assert to_positive(-973932308) == (1 << 31) - 973932308


@pytest.mark.parametrize(("data", "hashed"), _JAVA_UTILS_TEST)
@pytest.mark.parametrize("count", [1, 3, 12, 100, (1 << 31) - 1])
def test_murmur2_partition_is_javas_formula(data: bytes, hashed: int, count: int) -> None:
    assert murmur2_partition(data, count) == (hashed & 0x7FFF_FFFF) % count


def test_empty_key_hashes_to_a_fixed_partition() -> None:
    # 0x106e08d9 = 275646681; 275646681 % 12 == 9.
    assert murmur2_partition(b"", 12) == 9


@pytest.mark.parametrize("count", [0, -1])
def test_murmur2_partition_needs_a_partition(count: int) -> None:
    with pytest.raises(ValueError, match="partition_count"):
        murmur2_partition(b"k", count)


# -- construction --------------------------------------------------------------------------


def test_unknown_names_are_refused_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown partitioner 'round_robin'") as info:
        make_partitioner("round_robin")
    for name in PARTITIONER_NAMES:
        assert name in str(info.value)


def test_a_spec_that_is_neither_name_nor_function_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="partitioner must be a name"):
        make_partitioner(42)  # type: ignore[arg-type]


def test_the_names_are_the_documented_ones() -> None:
    assert set(PARTITIONER_NAMES) == {
        "sticky",
        "murmur2",
        "random",
        "sticky_round_robin",
        "strict_round_robin",
    }


def test_each_call_makes_an_independent_partitioner() -> None:
    a = make_partitioner("sticky", rng=random.Random(1))
    b = make_partitioner("sticky", rng=random.Random(1))
    assert a is not b
    assert a.partition("t", None, 12, ()) == b.partition("t", None, 12, ())
    a.on_new_batch("t", 12, (), a.partition("t", None, 12, ()))
    assert b.partition("t", None, 12, ()) != a.partition("t", None, 12, ())


# -- keyed records -------------------------------------------------------------------------

_HASHING = ["sticky", "murmur2", "sticky_round_robin", "strict_round_robin"]


@pytest.mark.parametrize("name", _HASHING)
@settings(max_examples=100, deadline=None)
@given(key=st.binary(max_size=40), count=st.integers(1, 200))
def test_keyed_records_go_to_their_murmur2_partition(name: str, key: bytes, count: int) -> None:
    partitioner = make_partitioner(name, rng=random.Random(0))
    expected = murmur2_partition(key, count)
    assert partitioner.partition("t", key, count, ()) == expected
    # Availability does not move a key (as Java's partitionForKey): order per key matters
    # more than a leader being briefly away.
    others = tuple(p for p in range(count) if p != expected)
    assert partitioner.partition("t", key, count, others) == expected


@pytest.mark.parametrize("name", _HASHING)
def test_keyed_records_do_not_disturb_the_keyless_partition(name: str) -> None:
    partitioner = make_partitioner(name, rng=random.Random(3))
    if name == "strict_round_robin":
        first = [partitioner.partition("t", None, 6, ()) for _ in range(3)]
        partitioner.partition("t", b"key", 6, ())
        assert partitioner.partition("t", None, 6, ()) == (first[-1] + 1) % 6
    else:
        first_p = partitioner.partition("t", None, 6, ())
        partitioner.partition("t", b"key", 6, ())
        assert partitioner.partition("t", None, 6, ()) == first_p


# -- sticky (KIP-480) ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sticky", "murmur2"])
def test_sticky_keeps_one_partition_until_its_batch_is_done(name: str) -> None:
    partitioner = make_partitioner(name, rng=random.Random(5))
    available = tuple(range(12))
    first = partitioner.partition("t", None, 12, available)
    assert {partitioner.partition("t", None, 12, available) for _ in range(1000)} == {first}
    partitioner.on_new_batch("t", 12, available, first)
    second = partitioner.partition("t", None, 12, available)
    assert second != first
    assert {partitioner.partition("t", None, 12, available) for _ in range(100)} == {second}


@pytest.mark.parametrize("available", [(), tuple(range(7))])
def test_sticky_switches_to_a_different_random_partition_each_time(
    available: tuple[int, ...],
) -> None:
    partitioner = make_partitioner("sticky", rng=random.Random(11))
    seen = [partitioner.partition("t", None, 7, available)]
    for _ in range(300):
        partitioner.on_new_batch("t", 7, available, seen[-1])
        seen.append(partitioner.partition("t", None, 7, available))
    assert all(a != b for a, b in itertools.pairwise(seen))
    assert set(seen) == set(range(7))
    # Random, not a cycle: some partition comes back after a gap other than 7.
    assert seen[:14] != seen[:7] * 2


def test_sticky_ignores_the_end_of_a_batch_that_is_no_longer_current() -> None:
    partitioner = make_partitioner("sticky", rng=random.Random(2))
    current = partitioner.partition("t", None, 12, ())
    stale = (current + 1) % 12
    partitioner.on_new_batch("t", 12, (), stale)
    assert partitioner.partition("t", None, 12, ()) == current


def test_sticky_with_one_available_partition_stays_on_it() -> None:
    partitioner = make_partitioner("sticky", rng=random.Random(2))
    assert partitioner.partition("t", None, 12, (4,)) == 4
    partitioner.on_new_batch("t", 12, (4,), 4)
    assert partitioner.partition("t", None, 12, (4,)) == 4


def test_sticky_with_one_partition_stays_on_it() -> None:
    partitioner = make_partitioner("sticky", rng=random.Random(2))
    assert partitioner.partition("t", None, 1, ()) == 0
    partitioner.on_new_batch("t", 1, (), 0)
    assert partitioner.partition("t", None, 1, ()) == 0


def test_sticky_chooses_only_available_partitions() -> None:
    partitioner = make_partitioner("sticky", rng=random.Random(8))
    available = (1, 5, 9)
    seen = set()
    for _ in range(200):
        p = partitioner.partition("t", None, 12, available)
        seen.add(p)
        partitioner.on_new_batch("t", 12, available, p)
    assert seen == set(available)


def test_sticky_leaves_a_partition_that_lost_its_leader_and_keeps_one_that_did_not() -> None:
    partitioner = make_partitioner("sticky", rng=random.Random(4))
    current = partitioner.partition("t", None, 12, tuple(range(12)))
    still_there = tuple(range(12))  # an equal but new snapshot: re-checked, kept
    assert partitioner.partition("t", None, 12, still_there) == current
    without = tuple(p for p in range(12) if p != current)
    moved = partitioner.partition("t", None, 12, without)
    assert moved in without
    assert partitioner.partition("t", None, 12, without) == moved


def test_sticky_state_is_per_topic() -> None:
    partitioner = make_partitioner("sticky", rng=random.Random(9))
    a = partitioner.partition("a", None, 50, ())
    b = partitioner.partition("b", None, 50, ())
    partitioner.on_new_batch("a", 50, (), a)
    assert partitioner.partition("b", None, 50, ()) == b
    assert partitioner.partition("a", None, 50, ()) != a


def test_sticky_follows_a_partition_count_change() -> None:
    partitioner = make_partitioner("sticky", rng=random.Random(1))
    current = partitioner.partition("t", None, 12, ())
    assert partitioner.partition("t", None, 24, ()) == current  # grew: still valid
    shrunk = partitioner.partition("t", None, 1, ())
    assert shrunk == 0


def test_sticky_is_reproducible_with_a_seeded_rng() -> None:
    def run() -> list[int]:
        partitioner = make_partitioner("sticky", rng=random.Random(1234))
        out = []
        for _ in range(50):
            out.append(partitioner.partition("t", None, 12, ()))
            partitioner.on_new_batch("t", 12, (), out[-1])
        return out

    assert run() == run()


_OP = st.one_of(
    st.tuples(st.just("record"), st.none()),
    st.tuples(st.just("batch_done"), st.none()),
    st.tuples(st.just("metadata"), st.sets(st.integers(0, 7)).map(lambda s: tuple(sorted(s)))),
)


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(_OP, max_size=60), seed=st.integers(0, 2**32))
def test_sticky_only_moves_when_its_batch_ends_or_its_partition_goes(
    ops: list[tuple[str, Any]], seed: int
) -> None:
    partitioner = make_partitioner("sticky", rng=random.Random(seed))
    available: tuple[int, ...] = ()
    current = partitioner.partition("t", None, 8, available)
    for op, arg in ops:
        candidates = available or tuple(range(8))
        if op == "record":
            assert partitioner.partition("t", None, 8, available) == current
        elif op == "batch_done":
            partitioner.on_new_batch("t", 8, available, current)
            chosen = partitioner.partition("t", None, 8, available)
            assert chosen in candidates
            assert chosen != current or len(candidates) == 1
            current = chosen
        else:
            available = arg
            candidates = available or tuple(range(8))
            chosen = partitioner.partition("t", None, 8, available)
            assert chosen in candidates
            if current in candidates:
                assert chosen == current
            current = chosen


# -- sticky_round_robin --------------------------------------------------------------------


@pytest.mark.parametrize(("available", "count"), [((), 5), (tuple(range(5)), 5), ((1, 4, 6, 7), 9)])
def test_sticky_round_robin_moves_to_the_next_partition_in_order(
    available: tuple[int, ...], count: int
) -> None:
    partitioner = make_partitioner("sticky_round_robin", rng=random.Random(6))
    candidates = available or tuple(range(count))
    order = []
    for _ in range(2 * len(candidates) + 1):
        p = partitioner.partition("t", None, count, available)
        assert [partitioner.partition("t", None, count, available) for _ in range(5)] == [p] * 5
        order.append(p)
        partitioner.on_new_batch("t", count, available, p)
    start = candidates.index(order[0])
    rotated = candidates[start:] + candidates[:start]
    assert order == list(rotated * 3)[: len(order)]


def test_sticky_round_robin_starts_at_a_random_partition() -> None:
    starts = {
        make_partitioner("sticky_round_robin", rng=random.Random(seed)).partition("t", None, 6, ())
        for seed in range(60)
    }
    assert starts == set(range(6))


def test_sticky_round_robin_skips_to_the_next_available_when_its_partition_goes() -> None:
    partitioner = make_partitioner("sticky_round_robin", rng=random.Random(0))
    all_six = tuple(range(6))
    current = partitioner.partition("t", None, 6, all_six)
    without = tuple(p for p in all_six if p != current)
    assert partitioner.partition("t", None, 6, without) == (current + 1) % 6


# -- strict_round_robin --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("available", "count"), [((), 4), (tuple(range(4)), 4), ((0, 2, 3, 8), 10), ((5,), 6)]
)
def test_strict_round_robin_gives_each_record_the_next_partition(
    available: tuple[int, ...], count: int
) -> None:
    partitioner = make_partitioner("strict_round_robin", rng=random.Random(12))
    candidates = available or tuple(range(count))
    got = [partitioner.partition("t", None, count, available) for _ in range(3 * len(candidates))]
    start = candidates.index(got[0])
    assert got == list((candidates[start:] + candidates[:start]) * 3)


def test_strict_round_robin_ignores_batch_ends_and_counts_per_topic() -> None:
    partitioner = make_partitioner("strict_round_robin", rng=random.Random(12))
    a0 = partitioner.partition("a", None, 5, ())
    partitioner.on_new_batch("a", 5, (), a0)
    b0 = partitioner.partition("b", None, 5, ())
    assert partitioner.partition("a", None, 5, ()) == (a0 + 1) % 5
    assert partitioner.partition("b", None, 5, ()) == (b0 + 1) % 5


def test_strict_round_robin_carries_on_after_a_metadata_change() -> None:
    partitioner = make_partitioner("strict_round_robin", rng=random.Random(0))
    everything = tuple(range(8))
    while partitioner.partition("t", None, 8, everything) != 2:
        pass
    # Next in turn was 3; 3 lost its leader, so 4 follows, then 5...
    fewer = (0, 1, 2, 4, 5, 6, 7)
    assert [partitioner.partition("t", None, 8, fewer) for _ in range(7)] == [
        4,
        5,
        6,
        7,
        0,
        1,
        2,
    ]


# -- random --------------------------------------------------------------------------------


def test_random_covers_every_partition_for_keyed_and_keyless_records() -> None:
    partitioner = make_partitioner("random", rng=random.Random(42))
    keyless = [partitioner.partition("t", None, 12, ()) for _ in range(3000)]
    keyed = [partitioner.partition("t", b"same-key", 12, ()) for _ in range(3000)]
    for draws in (keyless, keyed):
        counts = [draws.count(p) for p in range(12)]
        assert min(counts) > 150  # 250 expected each; a seeded run, so not flaky
    partitioner.on_new_batch("t", 12, (), keyless[-1])  # a no-op, but callable


def test_random_picks_only_available_partitions() -> None:
    partitioner = make_partitioner("random", rng=random.Random(1))
    draws = {partitioner.partition("t", None, 12, (3, 7, 11)) for _ in range(300)}
    assert draws == {3, 7, 11}


# -- user functions ------------------------------------------------------------------------


def _always(value: object) -> Callable[[str, bytes | None, int], Any]:
    def fixed_partition(topic: str, key: bytes | None, partition_count: int) -> Any:
        return value

    return fixed_partition


def test_a_function_gets_topic_key_and_count_and_its_answer_is_used() -> None:
    calls: list[tuple[str, bytes | None, int]] = []

    def by_length(topic: str, key: bytes | None, partition_count: int) -> int:
        calls.append((topic, key, partition_count))
        return len(key or b"") % partition_count

    partitioner = make_partitioner(by_length)
    assert partitioner.partition("orders", b"abcde", 3, (0,)) == 2
    assert partitioner.partition("orders", None, 3, ()) == 0
    partitioner.on_new_batch("orders", 3, (), 0)
    assert calls == [("orders", b"abcde", 3), ("orders", None, 3)]


class _Partition(enum.IntEnum):
    FIRST = 0
    SECOND = 1


class _IndexLike:
    def __index__(self) -> int:
        return 2


@pytest.mark.parametrize(("answer", "expected"), [(_Partition.SECOND, 1), (_IndexLike(), 2)])
def test_a_function_may_answer_any_integer_type(answer: object, expected: int) -> None:
    partitioner = make_partitioner(_always(answer))
    result = partitioner.partition("t", b"k", 3, ())
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize("bad", [3, -1, 99, True, 1.0, "1", None])
def test_a_bad_answer_is_a_value_error_naming_the_function_and_the_answer(bad: object) -> None:
    partitioner = make_partitioner(_always(bad))
    with pytest.raises(ValueError, match="fixed_partition") as info:
        partitioner.partition("orders", b"k", 3, ())
    message = str(info.value)
    assert repr(bad) in message
    assert "'orders'" in message
    assert "0..2" in message


def test_exceptions_raised_by_the_function_propagate_unchanged() -> None:
    def broken(topic: str, key: bytes | None, partition_count: int) -> int:
        raise KeyError("no route")

    with pytest.raises(KeyError, match="no route"):
        make_partitioner(broken).partition("t", None, 3, ())


# -- the protocol --------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [*PARTITIONER_NAMES, _always(0)])
def test_every_strategy_satisfies_the_protocol(spec: Any) -> None:
    partitioner: Partitioner = make_partitioner(spec, rng=random.Random(0))
    available: Sequence[int] = (0, 1)
    assert partitioner.partition("t", None, 2, available) in available
    assert partitioner.partition("t", b"k", 2, available) in available
    partitioner.on_new_batch("t", 2, available, 0)
    assert repr(partitioner).startswith("<partitioner ")


def test_all_is_exported() -> None:
    for name in _partitioner.__all__:
        assert hasattr(_partitioner, name)
