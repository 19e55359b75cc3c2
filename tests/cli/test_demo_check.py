"""``pykaf demo`` checks content, not counts: unique values, per partition, in order."""

from __future__ import annotations

import io
from collections.abc import Iterable

import pytest

from pykaf import ConsumerRecord
from pykaf.broker import BlockingCluster
from pykaf.cli import _demo
from pykaf.cli._demo import DemoOptions
from pykaf.cli._read_check import ReadCheck, value_format

SIZE = 16
FORMAT = value_format(SIZE)


def records(
    partition: int, sequences: Iterable[int], first_offset: int = 0
) -> list[ConsumerRecord]:
    return [
        ConsumerRecord("t", partition, first_offset + i, 0, 0, None, FORMAT % sequence)
        for i, sequence in enumerate(sequences)
    ]


def test_values_are_unique_and_carry_their_sequence_number() -> None:
    assert FORMAT % 0 == b"0000000000xxxxxx"
    assert FORMAT % 42 == b"0000000042xxxxxx"
    assert len({FORMAT % i for i in range(1000)}) == 1000


def test_everything_read_once_in_order_per_partition_is_no_problem() -> None:
    check = ReadCheck(10, SIZE, 2)
    # Interleaved partitions, runs of consecutive records as the sticky partitioner makes.
    check.add(records(0, [0, 1, 2]) + records(1, [3, 4]))
    check.add(records(0, [5, 8], first_offset=3) + records(1, [6, 7, 9], first_offset=2))
    assert check.problems({0: 5, 1: 5}) == []
    assert check.counts == {0: 5, 1: 5}


def test_missing_duplicated_out_of_order_and_altered_records_are_each_named() -> None:
    check = ReadCheck(10, SIZE, 2)
    check.add(records(0, [0, 2, 1, 3]))  # 1 after 2: out of order
    check.add(records(1, [4, 4, 5]))  # 4 twice
    altered = ConsumerRecord("t", 1, 3, 0, 0, None, b"0000000006xxxxxY")
    check.add([altered])
    problems = check.problems({0: 4, 1: 5})
    assert problems == [
        "4 record(s) never read (the first: record 6)",
        "corrupt: partition 1 offset 3: b'0000000006xxxxxY'",
        "duplicated: record 4 again at partition 1 offset 1",
        "out of order: partition 0 offset 2: record 1 after 2",
        "partition 1: read 4 records, end offset 5",
    ]


def test_a_flood_of_problems_is_summarised() -> None:
    check = ReadCheck(100, SIZE, 1)
    check.add(records(0, range(50)))
    check.add(records(0, range(50), first_offset=50))  # all 50 again
    problems = check.problems({0: 100})
    duplicated = [p for p in problems if p.startswith("duplicated")]
    assert len(duplicated) == 6
    assert duplicated[-1] == "duplicated: ... and 45 more"
    assert problems[0] == "50 record(s) never read (the first: record 50)"


def test_value_size_too_small_for_the_sequence_number_is_refused() -> None:
    with pytest.raises(ValueError, match="--value-size must be at least 10"):
        DemoOptions(value_size=9)
    with pytest.raises(ValueError, match="--messages must be below 10,000,000,000"):
        DemoOptions(messages=10**10)


def test_demo_reports_altered_values_and_exits_non_zero(
    kafka_cluster_sync: BlockingCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The producer writes values the check does not expect (another filler byte).
    monkeypatch.setattr(_demo, "value_format", lambda size: b"%010d" + b"y" * (size - 10))
    out = io.StringIO()
    opts = DemoOptions(messages=300, partitions=2)
    assert _demo._run(kafka_cluster_sync.bootstrap, opts, out) == 1
    text = out.getvalue()
    assert "total 300 of 300 produced: OK" in text  # the counts alone would pass
    assert "read back DIFFERS from what was written" in text
    assert "300 record(s) never read (the first: record 0)" in text
    assert "corrupt: ... and 295 more" in text
