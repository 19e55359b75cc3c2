"""Iteration hands records out chunk by chunk, with no per-record bookkeeping.

A chunk is one partition's records (a decoded batch or a few). What was handed of it is
read, when needed, off its list iterator: ``__length_hint__`` says how many are left; a
chunk abandoned mid-way (a ``break``, a seek, a pause, a revocation) is cut with
``__setstate__`` and its partition fetched again from the first record not handed. So
commits and positions never run ahead of what the application received, and iterating
costs the generator's ``yield`` alone.

``HandOutTracker`` keeps the chunk being handed out now (one per consumer: both the
asyncio consumer and its blocking twin hand out through it) and answers the questions
everything else asks of it: the positions after what the application received (commits,
``position()``), and cutting the chunk when a partition is sought, paused, revoked or
left. It reads and moves the fetch cursors through a small protocol, so this module stays
free of the fetch buffer's lock (a pure module in the import contracts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final, Generic, Protocol

from pykaf._consumer._completed_fetch import StateT
from pykaf._consumer._records import ConsumerRecord, OffsetAndMetadata, TopicPartition

__all__ = ["CHUNK", "Cursors", "HandOut", "HandOutTracker"]

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


class Cursors(Protocol):
    """What the tracker needs of the fetch cursors (``_fetch_state.FetchState``)."""

    @property
    def partitions(self) -> Mapping[TopicPartition, object]: ...

    def positions(self) -> dict[TopicPartition, tuple[int | None, int | None]]: ...

    def seek(self, tp: TopicPartition, offset: int, epoch: int | None = None) -> None: ...


class HandOutTracker(Generic[StateT]):
    """The chunk being handed out (``current``, set and cleared by the iteration loops)
    and the positions after what was handed (module doc). ``wake`` is the fetcher's: a cut
    chunk's partition is fetched again from the first record not handed."""

    __slots__ = ("_cursors", "_wake", "current")

    def __init__(self, cursors: Cursors, wake: Callable[[], None]) -> None:
        self._cursors = cursors
        self._wake = wake
        self.current: HandOut[StateT] | None = None

    def positions(self) -> dict[TopicPartition, int]:
        """The position of every positioned partition after what was handed out."""
        out = {tp: p for tp, (p, _) in self._cursors.positions().items() if p is not None}
        current = self.current
        if current is not None:
            handed = current.handed()
            if handed is not None and current.state.tp in out:
                out[current.state.tp] = handed[0]
        return out

    def as_commit(
        self, positions: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """``positions`` as offsets to commit, each with the leader epoch of the record
        before it (of the current chunk's last handed record where it applies)."""
        epochs = {tp: e for tp, (_, e) in self._cursors.positions().items()}
        current = self.current
        out = {}
        for tp, offset in positions.items():
            epoch = epochs.get(tp)
            if current is not None and current.state.tp == tp:
                handed = current.handed()
                if handed is not None:
                    epoch = handed[1]
            out[tp] = OffsetAndMetadata(offset, "", epoch)
        return out

    def to_commit(self) -> dict[TopicPartition, OffsetAndMetadata]:
        """The positions after what was handed out, as offsets to commit."""
        return self.as_commit(self.positions())

    def cut(self, tp: TopicPartition) -> None:
        """Stop handing out ``tp``'s current chunk; re-fetch from what was not handed."""
        current = self.current
        if current is None or current.state.tp != tp:
            return
        self.current = None
        back = current.cut()
        if back is not None and tp in self._cursors.partitions:
            self._cursors.seek(tp, back[0], back[1])
            self._wake()

    def abandon(self) -> None:
        """Cut the current chunk, whichever partition it is (a new poll or iteration)."""
        current = self.current
        if current is not None:
            self.cut(current.state.tp)
