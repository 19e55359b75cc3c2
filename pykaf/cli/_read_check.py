"""What ``pykaf demo`` writes, and the check that it read exactly that back.

Every value is unique: its sequence number (zero-padded decimal, so a reader sees it in
a dump) then filler up to the value size. Reading back, per partition, the values must
come in the order they were written (one producer thread writes in sequence order, and
idempotence keeps each partition in order) with no gap or repeat within the partition;
over all partitions, every sequence number exactly once; and each value byte for byte.
A partition's count must also match the end offset the broker reports.

Pure bookkeeping: the demo feeds it what the consumer hands out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from pykaf import ConsumerRecord

__all__ = ["MAX_MESSAGES", "SEQUENCE_DIGITS", "ReadCheck", "value_format"]

SEQUENCE_DIGITS: Final = 10
MAX_MESSAGES: Final = 10**SEQUENCE_DIGITS
_FILL: Final = b"x"
_SHOWN: Final = 5  # problems listed per kind before "... and N more"


def value_format(value_size: int) -> bytes:
    """``value_format(size) % sequence`` is the value of record number ``sequence``
    (0-based), ``size`` bytes long: one allocation per record on the produce loop."""
    if value_size < SEQUENCE_DIGITS:
        raise ValueError(
            f"--value-size must be at least {SEQUENCE_DIGITS}"
            " (each value starts with its sequence number)"
        )
    return b"%0" + str(SEQUENCE_DIGITS).encode() + b"d" + _FILL * (value_size - SEQUENCE_DIGITS)


class ReadCheck:
    """Feed the records read to ``add``; ``problems()`` lists what differs."""

    def __init__(self, messages: int, value_size: int, partitions: int) -> None:
        self._format = value_format(value_size)
        self._messages = messages
        self._partitions = partitions
        self._seen = bytearray(messages)  # 1: this sequence number was read
        self._last = [-1] * partitions  # the highest sequence number read, per partition
        self._counts = [0] * partitions
        self._out_of_order: list[str] = []
        self._corrupt: list[str] = []
        self._duplicates: list[str] = []
        self._hidden = {"out of order": 0, "corrupt": 0, "duplicated": 0}

    def add(self, records: Iterable[ConsumerRecord]) -> None:
        """Take in records as read (any mix of partitions, each in its read order)."""
        # The hot loop of the check (a million records in the demo), hence locals and
        # lists. A partition mostly holds runs of consecutive records (the sticky
        # partitioner fills one batch at a time), so the record after the last one read
        # there is tried first: one format and one compare, no parse.
        value_of, messages, partitions = self._format, self._messages, self._partitions
        seen, last_read, counts = self._seen, self._last, self._counts
        for record in records:
            partition, value = record.partition, record.value
            if not 0 <= partition < partitions:
                self._note(self._corrupt, "corrupt", f"a record from partition {partition}")
                continue
            counts[partition] += 1
            last = last_read[partition]
            sequence = last + 1
            if sequence >= messages or value != value_of % sequence:
                parsed = self._sequence(value)
                if parsed is None:
                    where = f"partition {partition} offset {record.offset}"
                    self._note(self._corrupt, "corrupt", f"{where}: {value!r:.60}")
                    continue
                sequence = parsed
            if seen[sequence]:  # a repeat, wherever it comes, is not also "out of order"
                self._note(
                    self._duplicates,
                    "duplicated",
                    f"record {sequence} again at partition {partition} offset {record.offset}",
                )
                continue
            seen[sequence] = 1
            if sequence > last:
                last_read[partition] = sequence
            else:
                self._note(
                    self._out_of_order,
                    "out of order",
                    f"partition {partition} offset {record.offset}: record {sequence} after {last}",
                )

    def _sequence(self, value: bytes | None) -> int | None:
        """The record's sequence number, or None if the value is not one the demo wrote."""
        if value is None:
            return None
        try:
            sequence = int(value[:SEQUENCE_DIGITS])
        except ValueError:
            return None
        if not 0 <= sequence < self._messages or value != self._format % sequence:
            return None
        return sequence

    @property
    def counts(self) -> dict[int, int]:
        """Records read per partition."""
        return dict(enumerate(self._counts))

    def _note(self, shown: list[str], kind: str, problem: str) -> None:
        if len(shown) < _SHOWN:
            shown.append(problem)
        else:
            self._hidden[kind] += 1

    def problems(self, end_offsets: Mapping[int, int]) -> list[str]:
        """Every difference between what was written and what was read, in words."""
        found: list[str] = []
        missing = self._seen.count(0)
        if missing:
            first = self._seen.index(0)
            found.append(f"{missing:,} record(s) never read (the first: record {first})")
        for kind, shown in (
            ("corrupt", self._corrupt),
            ("duplicated", self._duplicates),
            ("out of order", self._out_of_order),
        ):
            found += [f"{kind}: {problem}" for problem in shown]
            if self._hidden[kind]:
                found.append(f"{kind}: ... and {self._hidden[kind]:,} more")
        for partition, end in sorted(end_offsets.items()):
            read = self._counts[partition] if partition < self._partitions else 0
            if read != end:
                found.append(f"partition {partition}: read {read:,} records, end offset {end:,}")
        return found
