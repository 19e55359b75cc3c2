"""``append_many`` of plain values (``produce_batch`` of bytes, as ``pykaf produce`` hands
them over) takes runs in bulk: the batches, the order, the sticky partition's moves and
the memory accounting must be exactly those of one ``append`` per value."""

from __future__ import annotations

import gc
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import pytest

import pykaf._producer._accumulator as accumulator_module
from pykaf._errors import BufferFullError, ProducerClosedError
from pykaf._producer._accumulator import (
    Accumulator,
    extend_plain_records,
    extend_plain_records_python,
    plain_value_ends,
    plain_value_ends_python,
)
from pykaf._producer._settings import ProducerSettings
from pykaf.protocol import using_c_accelerator
from pykaf.protocol._records import c_accelerated


def make(**options: Any) -> tuple[Accumulator, list[int]]:
    settings = ProducerSettings.from_options({"linger": 1.0, **options})
    acc = Accumulator(settings, clock=lambda: 5.0, wall_ms=lambda: 1_000, rng=random.Random(7))
    wakes: list[int] = []

    def wake() -> None:
        wakes.append(1)
        acc.ready(5.0)  # what the loop does when woken: clears the pending wake

    acc.wake = wake
    acc.set_topic("t", [1, 1, 2, 2, 3])
    return acc, wakes


def shape(acc: Accumulator) -> list[list[tuple[list[Any], int, int, bool]]]:
    """Every partition's batches: (records, size, reserved, sealed)."""
    topic = acc.topic("t")
    assert topic is not None
    return [
        [(list(b.records), b.size, b.reserved, b.sealed) for b in part.batches]
        for part in topic.parts
    ]


def values(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    # Mostly small, some near a reservation step, a few large: runs end at every kind of
    # boundary (the open batch's reservation, a step of growth, the batch size).
    sizes = rng.choices([0, 1, 90, 100, 700, 5_000, 17_000], [5, 5, 40, 30, 10, 5, 1], k=count)
    return [bytes([i % 251]) * size for i, size in enumerate(sizes)]


@pytest.fixture(params=["c", "python"])
def ends_twin(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test below runs with the C running sizes and records (when built) and with
    their Python twins."""
    if request.param == "python":
        monkeypatch.setattr(accumulator_module, "plain_value_ends", plain_value_ends_python)
        monkeypatch.setattr(accumulator_module, "extend_plain_records", extend_plain_records_python)
    elif c_accelerated("plain_value_ends") is None:
        pytest.skip("the C accelerator is not built")
    return str(request.param)


@pytest.mark.parametrize("partition", [None, 3])
@pytest.mark.parametrize("batch_size", [1_000, 16_384, 200_000])
@pytest.mark.usefixtures("ends_twin")
def test_bulk_values_make_the_batches_one_append_each_makes(
    partition: int | None, batch_size: int
) -> None:
    items = values(3_000, seed=batch_size)
    bulk, bulk_wakes = make(batch_size=batch_size)
    one_by_one, _ = make(batch_size=batch_size)
    bulk.append_many("t", items[:1_000], partition=partition)
    bulk.append_many("t", items[1_000:], partition=partition)
    for value in items:
        one_by_one.append("t", value, partition=partition)
    assert shape(bulk) == shape(one_by_one)
    assert bulk.used == one_by_one.used
    assert bulk_wakes == [1, 1]  # once per call (batches were sealed), as before
    bulk_topic, single_topic = bulk.topic("t"), one_by_one.topic("t")
    assert bulk_topic is not None
    assert single_topic is not None
    assert getattr(bulk_topic.sticky, "index", None) == getattr(single_topic.sticky, "index", None)


@pytest.mark.usefixtures("ends_twin")
def test_bulk_values_stop_where_memory_runs_out_as_appends_do() -> None:
    items = values(2_000, seed=3)
    bulk, _ = make(batch_size=16_384, buffer_memory=100_000, max_block=0)
    one_by_one, _ = make(batch_size=16_384, buffer_memory=100_000, max_block=0)
    taken = [0]
    with pytest.raises(BufferFullError):
        bulk.append_many("t", items, taken=taken)
    appended = 0
    for value in items:
        try:
            one_by_one.append("t", value)
        except BufferFullError:
            break
        appended += 1
    assert 0 < taken[0] == appended < len(items)
    assert shape(bulk) == shape(one_by_one)
    assert bulk.used == one_by_one.used


def test_bulk_values_refuse_a_closed_producer_and_count_nothing() -> None:
    acc, _ = make()
    acc.close()
    taken = [5]
    with pytest.raises(ProducerClosedError):
        acc.append_many("t", [b"a", b"b"], taken=taken)
    assert taken == [0]


@pytest.mark.usefixtures("ends_twin")
def test_mixed_items_still_take_the_per_item_path() -> None:
    acc, _ = make()
    acc.append_many("t", [b"a", bytearray(b"b"), b"c"], partition=0)
    (batch,) = shape(acc)[0]
    assert batch[0] == [(None, value, None, None) for value in (b"a", b"b", b"c")]


@contextmanager
def python_lines_in(module_file: str) -> Iterator[list[int]]:
    """Count the lines of ``module_file`` that run (sys.settrace) inside the block."""
    count = [0]

    def local(frame: FrameType, event: str, arg: object) -> Any:
        if event == "line":
            count[0] += 1
        return local

    def scope(frame: FrameType, event: str, arg: object) -> Any:
        return local if frame.f_code.co_filename == module_file else None

    sys.settrace(scope)
    try:
        yield count
    finally:
        sys.settrace(None)


def test_plain_values_run_no_python_line_per_record() -> None:
    # What makes `pykaf produce` keep up: 100,000 values of 100 bytes are appended in
    # runs (a bisect, a slice, one extend per run), not a loop of Python lines per value.
    # Lines executed are counted, not time: the per-item loop ran ~10 lines a value.
    acc, _ = make(batch_size=1 << 20, buffer_memory=1 << 26)
    items = [b"x" * 100] * 100_000
    with python_lines_in(accumulator_module.__file__) as lines:
        acc.append_many("t", items)
    assert sum(len(batch[0]) for part in shape(acc) for batch in part) == len(items)
    assert lines[0] < len(items) // 2


@pytest.mark.parametrize(
    ("items", "limit"),
    [
        ([b"a", b"", b"xyz" * 50], 1_000),
        ([b"a" * 900, b"b"], 1_000),  # 900 + 100 overhead: exactly the limit
        ([b"a" * 901], 1_000),  # one byte over: None
        ([], 1_000),
        ([b"a", bytearray(b"b")], 1_000),  # not all bytes: None
        ([b"a", "b"], 1_000),
        ([b"a", None], 1_000),
        ([b"x" * 10] * 5_000, 1_000),
    ],
)
def test_the_c_running_sizes_equal_the_python_twin(items: list[Any], limit: int) -> None:
    if not using_c_accelerator() or c_accelerated("plain_value_ends") is None:
        pytest.skip("the C accelerator is not built")
    assert plain_value_ends is not plain_value_ends_python
    expected = plain_value_ends_python(items, 100, limit)
    assert plain_value_ends(items, 100, limit) == expected
    if expected is not None:
        assert expected[-1] == sum(map(len, items)) + 100 * len(items)


def test_the_c_running_sizes_refuse_what_is_not_a_list() -> None:
    c_ends = c_accelerated("plain_value_ends")
    if c_ends is None:
        pytest.skip("the C accelerator is not built")
    with pytest.raises(TypeError, match="wants a list"):
        c_ends((b"a",), 100, 1_000)
    with pytest.raises(TypeError, match="3 arguments"):
        c_ends([b"a"], 100)


# -- the records of plain values, made in C untracked by the cyclic collector ---------------


def c_extend() -> Any:
    extend = c_accelerated("extend_plain_records")
    if not using_c_accelerator() or extend is None:
        pytest.skip("the C accelerator is not built")
    assert extend_plain_records is not extend_plain_records_python
    return extend


@pytest.mark.parametrize(("start", "stop"), [(0, 0), (0, 1), (0, 5), (2, 4), (5, 5)])
def test_the_c_records_equal_the_python_twin(start: int, stop: int) -> None:
    extend = c_extend()
    items = [b"a", b"", b"ccc", b"d" * 1000, b"e"]
    made: list[tuple[Any, Any, Any, Any]] = [(b"k", b"old", None, 7)]
    expected = list(made)
    extend(made, items, start, stop)
    extend_plain_records_python(expected, items, start, stop)
    assert made == expected
    assert made[1:] == [(None, value, None, None) for value in items[start:stop]]


def test_records_of_plain_values_give_the_collector_nothing_to_walk() -> None:
    """``produce_batch`` of 1,000 values made 1,000 tuples the collector tracked: about
    1.4 young-generation collections walked them, a fifth of its CPU. The records taken
    in runs are made in C, untracked from the start (they hold no container); only those
    taken one at a time (``_put``) are made by Python."""
    c_extend()
    acc, _ = make()
    acc.append_many("t", [b"v%d" % i for i in range(50)])
    topic = acc.topic("t")
    assert topic is not None
    records = [r for part in topic.parts for b in part.batches for r in b.records]
    assert len(records) == 50
    # The first record opens the batch and the next finds its reservation too small:
    # both go through ``_put``; the other 48 are taken in runs.
    assert [gc.is_tracked(record) for record in records] == [True, True] + [False] * 48


def test_the_c_records_refuse_what_is_not_two_lists_or_a_range_outside() -> None:
    extend = c_extend()
    with pytest.raises(TypeError, match="wants two lists"):
        extend([], (b"a",), 0, 1)
    with pytest.raises(TypeError, match="4 arguments"):
        extend([], [b"a"], 0)
    for start, stop in [(-1, 0), (1, 0), (0, 2)]:
        made: list[Any] = []
        with pytest.raises(ValueError, match="outside 0:1"):
            extend(made, [b"a"], start, stop)
        assert made == []


@pytest.mark.skipif(
    sys.version_info >= (3, 12),
    reason="3.12+ runs the collector only between bytecodes, never inside a C call's allocation",
)
def test_the_c_records_stop_when_a_collection_empties_the_values_mid_way() -> None:
    """A collection started by a tuple's allocation may run Python code (finalisers, the
    collector's callbacks) that changes the values: an error, not a read past the list's
    end. (On 3.11; from 3.12 a collection waits for the interpreter's next check.)"""
    extend = c_extend()
    items = [b"x" * 10 for _ in range(100)]
    made: list[Any] = []

    def clear_once_taking(phase: str, _info: dict[str, Any]) -> None:
        if phase == "start" and made:
            items.clear()

    thresholds = gc.get_threshold()
    # Tuples of four come from a free list without counting as an allocation: hold
    # enough of them that the free list is empty, so each new one counts.
    hold = [(i, i, i, i) for i in range(3_000)]
    gc.callbacks.append(clear_once_taking)
    try:
        gc.set_threshold(1)
        with pytest.raises(RuntimeError, match="values changed"):
            extend(made, items, 0, 100)
    finally:
        gc.set_threshold(*thresholds)
        gc.callbacks.remove(clear_once_taking)
    del hold
    assert items == []
    assert 1 <= len(made) < 100
    assert all(record == (None, b"x" * 10, None, None) for record in made)
