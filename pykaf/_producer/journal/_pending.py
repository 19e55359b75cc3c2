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

    __slots__ = ("_partitions", "_segment_names", "_segment_pending", "pending")

    def __init__(self) -> None:
        self._partitions: dict[tuple[str, int], _Partition] = {}
        self._segment_names: list[int] = []  # increasing
        self._segment_pending: dict[int, int] = {}
        self.pending = 0

    def add_segment(self, name: int) -> None:
        """A new newest segment: records added from now on belong to it."""
        if self._segment_names and name <= self._segment_names[-1]:
            raise ValueError(f"segment {name} does not follow {self._segment_names[-1]}")
        self._segment_names.append(name)
        self._segment_pending[name] = 0

    def drop_segment(self, name: int) -> None:
        """Forget the oldest segment (reclaimed: none of its records is pending)."""
        if self._segment_pending.get(name):
            raise ValueError(f"segment {name} still holds pending records")
        self._segment_names.remove(name)
        del self._segment_pending[name]

    def add(self, serial: int, topic: str, partition: int) -> None:
        """A record journaled in the newest segment (serials increase, checked by the store)."""
        self._insert(serial, topic, partition, self._segment_names[-1])

    def add_at(self, serial: int, topic: str, partition: int) -> None:
        """A record journaled earlier (in whichever segment holds its serial), indexed
        only now: the producer's records that waited in the journal only are indexed as
        they are fed to memory (see ``JournalStore.defer_index``). Per partition they
        still come in serial order."""
        names = self._segment_names
        self._insert(serial, topic, partition, names[bisect_right(names, serial) - 1])

    def _insert(self, serial: int, topic: str, partition: int, segment: int) -> None:
        key = (topic, partition)
        part = self._partitions.get(key)
        if part is None:
            part = self._partitions[key] = _Partition()
        part.serials.append(serial)
        part.done.append(0)
        self._segment_pending[segment] += 1
        self.pending += 1

    def done(self, topic: str, partition: int, first: int, last: int) -> int:
        """Mark the partition's records in [first, last] done; returns how many were
        pending (records never journaled, or done already, are ignored)."""
        part = self._partitions.get((topic, partition))
        if part is None or last < first:
            return 0
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
        self.pending -= newly
        if newly:
            part.advance()
            if part.head == len(part.serials):
                del self._partitions[(topic, partition)]
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
        return self._segment_pending.get(segment, 0)

    def by_partition(self) -> dict[tuple[str, int], int]:
        """Pending records per (topic, partition)."""
        counts = {
            key: part.done.count(0, part.head, len(part.done))
            for key, part in self._partitions.items()
        }
        return {key: count for key, count in counts.items() if count}
