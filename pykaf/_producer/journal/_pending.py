"""Which journaled records still await their final report, and how many per segment.

The journal may hold far more records than memory should (an outage of hours), so the
index keeps 9 bytes per pending record and no object: per partition, the serials in an
``array`` and a done flag per serial in a ``bytearray``. A record's segment is not stored
either: segments are named after the first serial they may hold, so a ``bisect`` over
their names finds it. Acknowledgements mostly arrive in serial order per partition, so a
partition's head moves forward and the arrays are compacted behind it; a DONE range out
of order only sets flags. Pure bookkeeping: no files, no clock.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from typing import Final

__all__ = ["PendingIndex"]

_COMPACT_AFTER: Final = 4096  # consumed serials kept in front of a head before compacting
_DONE: Final = b"\x01"


class _Partition:
    # Mutable, grows with every append: a plain slotted class.
    __slots__ = ("done", "head", "serials")

    def __init__(self) -> None:
        self.serials = array("Q")
        self.done = bytearray()
        self.head = 0  # serials before it are all done

    def advance(self) -> None:
        head = self.done.find(0, self.head)
        self.head = len(self.done) if head < 0 else head
        if self.head >= _COMPACT_AFTER and self.head * 2 >= len(self.serials):
            del self.serials[: self.head]
            del self.done[: self.head]
            self.head = 0


class PendingIndex:
    """Pending records per partition and per segment (segments known by their name)."""

    __slots__ = (
        "_last",
        "_last_key",
        "_newest",
        "_partitions",
        "_pending",
        "_segment_names",
        "_segment_pending",
    )

    def __init__(self) -> None:
        self._partitions: dict[tuple[str, int], _Partition] = {}
        self._segment_names: list[int] = []  # increasing
        self._segment_pending: dict[int, int] = {}
        self._pending = 0
        # ``add`` runs once per produced record: it counts into ``_newest`` (the newest
        # segment's records not yet in the two counts above, folded in by ``_fold``
        # before anything reads them) and remembers the partition it last added to
        # (a sticky partitioner sends a batch's worth of records in a row to one).
        self._newest = 0
        self._last_key: tuple[str, int] | None = None
        self._last: _Partition | None = None

    @property
    def pending(self) -> int:
        """Records still pending, in every segment."""
        return self._pending + self._newest

    def _fold(self) -> None:
        if self._newest:
            self._segment_pending[self._segment_names[-1]] += self._newest
            self._pending += self._newest
            self._newest = 0

    def add_segment(self, name: int) -> None:
        """A new newest segment: records added from now on belong to it."""
        if self._segment_names and name <= self._segment_names[-1]:
            raise ValueError(f"segment {name} does not follow {self._segment_names[-1]}")
        self._fold()
        self._segment_names.append(name)
        self._segment_pending[name] = 0

    def drop_segment(self, name: int) -> None:
        """Forget the oldest segment (reclaimed: none of its records is pending)."""
        self._fold()
        if self._segment_pending.get(name):
            raise ValueError(f"segment {name} still holds pending records")
        self._segment_names.remove(name)
        del self._segment_pending[name]

    def add(self, serial: int, topic: str, partition: int) -> None:
        """A record journaled in the newest segment (serials increase, checked by the store).

        Runs once per produced record, under the store's lock: ``_insert`` inlined, the
        counts deferred (``_newest``), the partition looked up only when it changes."""
        last = self._last_key
        if last is not None and last[1] == partition and last[0] == topic:
            part = self._last
            assert part is not None
        else:
            key = (topic, partition)
            part = self._partition(key)
            self._last_key = key
            self._last = part
        part.serials.append(serial)
        part.done.append(0)
        self._newest += 1

    def _partition(self, key: tuple[str, int]) -> _Partition:
        part = self._partitions.get(key)
        if part is None:
            part = self._partitions[key] = _Partition()
        return part

    def add_run(self, topic: str, partition: int, first: int, end: int) -> None:
        """Records ``first`` to ``end - 1``, all of one partition, journaled in the newest
        segment (``JournalTail``'s appends, indexed when the store settles it)."""
        part = self._partition((topic, partition))
        part.serials.extend(range(first, end))
        part.done.extend(bytes(end - first))
        self._newest += end - first

    def add_at(self, serial: int, topic: str, partition: int) -> None:
        """A record journaled earlier (in whichever segment holds its serial), indexed
        only now: the producer's records that waited in the journal only are indexed as
        they are fed to memory (see ``JournalStore.defer_index``). Per partition they
        still come in serial order."""
        names = self._segment_names
        self._insert(serial, topic, partition, names[bisect_right(names, serial) - 1])

    def _insert(self, serial: int, topic: str, partition: int, segment: int) -> None:
        self._fold()
        part = self._partition((topic, partition))
        part.serials.append(serial)
        part.done.append(0)
        self._segment_pending[segment] += 1
        self._pending += 1

    def done(self, topic: str, partition: int, first: int, last: int) -> int:
        """Mark the partition's records in [first, last] done; returns how many were
        pending (records never journaled, or done already, are ignored)."""
        part = self._partitions.get((topic, partition))
        if part is None or last < first:
            return 0
        self._fold()
        serials = part.serials
        start = bisect_left(serials, first, part.head)
        stop = bisect_right(serials, last, start)
        newly = 0
        names = self._segment_names
        while start < stop:
            # One segment at a time: count and flag in C, not per record in Python.
            segment = names[bisect_right(names, serials[start]) - 1]
            after = bisect_right(names, segment)
            end = stop if after >= len(names) else bisect_left(serials, names[after], start, stop)
            count = part.done.count(0, start, end)
            part.done[start:end] = _DONE * (end - start)
            self._segment_pending[segment] -= count
            newly += count
            start = end
        self._pending -= newly
        if newly:
            part.advance()
            if part.head == len(part.serials):
                del self._partitions[(topic, partition)]
                if part is self._last:
                    self._last_key = self._last = None
        return newly

    def is_pending(self, serial: int, topic: str, partition: int) -> bool:
        part = self._partitions.get((topic, partition))
        if part is None:
            return False
        at = bisect_left(part.serials, serial, part.head)
        return at < len(part.serials) and part.serials[at] == serial and not part.done[at]

    def pending_between(self, topic: str, partition: int, first: int, last: int) -> int:
        """How many of the partition's records with a serial in [first, last] are pending."""
        part = self._partitions.get((topic, partition))
        if part is None or last < first:
            return 0
        start = bisect_left(part.serials, first, part.head)
        stop = bisect_right(part.serials, last, start)
        return part.done.count(0, start, stop)

    def pending_in(self, segment: int) -> int:
        self._fold()
        return self._segment_pending.get(segment, 0)

    def by_partition(self) -> dict[tuple[str, int], int]:
        """Pending records per (topic, partition)."""
        counts = {
            key: part.done.count(0, part.head, len(part.done))
            for key, part in self._partitions.items()
        }
        return {key: count for key, count in counts.items() if count}
