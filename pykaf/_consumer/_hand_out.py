"""Iteration hands records out chunk by chunk, with no per-record bookkeeping.

A chunk is one partition's records (a decoded batch or a few). What was handed of it is
read, when needed, off its list iterator: ``__length_hint__`` says how many are left; a
chunk abandoned mid-way (a ``break``, a seek, a pause, a revocation) is cut with
``__setstate__`` and its partition fetched again from the first record not handed. So
commits and positions never run ahead of what the application received, and iterating
costs the generator's ``yield`` alone.
"""

from __future__ import annotations

from typing import Final, Generic

from pykaf._consumer._completed_fetch import StateT
from pykaf._consumer._records import ConsumerRecord

__all__ = ["CHUNK", "HandOut"]

# Records per iteration chunk: large enough that per-chunk work vanishes per record.
CHUNK: Final = 4096


class HandOut(Generic[StateT]):
    """The iteration chunk being handed out, and what was handed of it (module doc)."""

    __slots__ = ("before", "iterator", "records", "state")

    def __init__(self, state: StateT, records: list[ConsumerRecord], before: int) -> None:
        self.state = state
        self.records = records
        self.before = before
        self.iterator = iter(records)

    def handed(self) -> tuple[int, int | None] | None:
        """(position, leader epoch) after the records handed so far; None if all were."""
        remaining: int = self.iterator.__length_hint__()  # type: ignore[attr-defined]
        if not remaining:
            return None
        count = len(self.records) - remaining
        if count == 0:
            return self.before, None
        last = self.records[count - 1]
        return last.offset + 1, last.leader_epoch

    def cut(self) -> tuple[int, int | None] | None:
        """Stop handing this chunk out; the position to go back to (None: none needed)."""
        handed = self.handed()
        self.iterator.__setstate__(len(self.records))  # type: ignore[attr-defined]
        return handed
