"""The journal store's reclaim: deleting the oldest segments whose records are all done,
and the bookkeeping that decides it (records done in memory only, records indexed late).

A part of ``JournalStore`` (``_segments``), apart for its size: ``StoreReclaim`` sits
between ``StoreSync`` and the store, and reads the store's state, declared below. The
rules (``_segments``'s module doc): the oldest segments first, never the newest, after
syncing the DONE entries that justify it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pykaf._producer.journal._format import Done, JournalRecord, encode
from pykaf._producer.journal._pending import PendingIndex
from pykaf._producer.journal._recovery import Segment
from pykaf._producer.journal._store_sync import StoreSync

__all__ = ["StoreReclaim"]


class StoreReclaim(StoreSync):
    """``JournalStore``'s reclaim (see the module doc). The state is the store's."""

    _index: PendingIndex
    _unindexed_from: int | None  # records from this serial on are not indexed yet
    _done_end: tuple[int, int] | None  # where the newest DONE entry ends
    _used: int  # valid bytes in all segments

    max_bytes: int
    segment_bytes: int
    headroom: int

    def _must_roll(self, size: int) -> bool:
        raise NotImplementedError  # the store's

    def _write(self, segment: Segment, chunks: list[bytes], size: int) -> None:
        raise NotImplementedError  # the store's

    def try_append_dones(self, dones: Sequence[Done]) -> bool:
        """Write ``dones`` now, from the thread that has their reports, when that needs no
        wait: False, with nothing written, when the lock is busy or a roll, a reclaim, a
        larger map or a step written ahead would be in the way; they are then queued for
        the journal's thread (``GroupCommit.add_dones``), and the sender writes what is
        still queued before it sends newer batches (``journal_identities``).

        Why now: a record whose DONE entry is not written yet is sent again after a crash,
        and the broker can tell that copy from new records only among the producer's last
        five batches of its partition (``replay_stats``' "proven"). Queued for the
        journal's thread, the entries waited for its round, behind an fsync of 10 to 80
        ms under load: in that time a fast producer sent more than five newer batches per
        partition. Measured (``chaos/custody_kills.py --custody journal --pad 16384``, 30
        SIGKILLs): 598 records duplicated; written here, in the page cache, where a killed
        process cannot lose them, none (the next sync makes them durable)."""
        chunks = [encode(done) for done in dones]
        size = sum(map(len, chunks))
        # The lock is reentrant (to know its owner): a thread inside a section already
        # must not start another one in the middle of it.
        if self._mutex.held_here() or not self._mutex.acquire(blocking=False):
            return False
        try:
            target = self._file
            if (
                target is None
                or self._lock is None
                or self._health.failure is not None
                or self._must_roll(size)
                or self._used + size > self.max_bytes + self.headroom
            ):
                return False
            segment = self._segments[-1]
            if segment.size + size > min(target.capacity, target.fence):
                return False
            self._write(segment, chunks, size)  # a copy into the map: nothing to allocate
            segment.size += size
            self._used += size
            self._done_end = (segment.name, segment.size)
            for done in dones:
                self._index.done(*done)
            return True
        finally:
            self._mutex.release()

    def mark_done(self, dones: Sequence[Done]) -> None:
        """The records of ``dones`` are done, in memory only: their DONE entries could
        not be written (the disk is full, and only reclaim frees it). ``reclaim`` may then
        delete the oldest segments that held nothing else pending: a deleted segment needs
        no DONE entry, its records are gone. Those in a segment still kept are sent again
        after a crash (at-least-once) unless their entries are written later."""
        with self._mutex:
            for done in dones:
                self._index.done(*done)

    # -- reclaim -------------------------------------------------------------------------

    def reclaim(self) -> int:
        """Delete the oldest segments whose records are all done (never the newest);
        returns how many. Syncs first: the DONE entries must outlive the deletion.

        Both syncs (the DONE entries before, the directory after) run outside the lock
        when they can, as ``sync`` does: under it, an fsync of everything appended since
        the last one held every produce() waiting (up to 0.3 s of a 50k-record run's
        flush measured, benchmarks/custody.py)."""
        self.sync()
        with self._mutex:
            removed = self._reclaim(directory_now=False)
        if removed:
            self.sync()  # the directory (``_created``), outside the lock
        return removed

    # -- records indexed later (the producer's spill) ---------------------------------------

    def defer_index(self, serial: int) -> None:
        """Records from ``serial`` on are appended without entering the pending index
        (9 bytes each in memory): a producer whose records wait in the journal only (an
        outage of hours) keeps its memory bounded. They are pending all the same:
        ``read_pending`` returns them, reclaim keeps every segment that may hold one,
        and a reopen indexes them from the files. ``index_fed`` adds each as it leaves
        the journal-only state; ``resume_index`` ends the deferral once all have."""
        with self._mutex:
            if self._unindexed_from is None:
                self._unindexed_from = serial

    def index_fed(self, serial: int, topic: str, partition: int) -> None:
        """Record ``serial`` (appended while indexing was deferred) enters the index."""
        with self._mutex:
            floor = self._unindexed_from
            if floor is not None and serial >= floor:
                self._index.add_at(serial, topic, partition)

    def index_fed_many(self, records: Sequence[JournalRecord]) -> None:
        """``index_fed`` for many records, under one hold of the lock."""
        with self._mutex:
            floor = self._unindexed_from
            if floor is None:
                return
            add = self._index.add_at
            for rec in records:
                if rec.serial >= floor:
                    add(rec.serial, rec.topic, rec.partition)

    def resume_index(self) -> None:
        """Every deferred record is indexed (or done): appends index again."""
        with self._mutex:
            self._unindexed_from = None

    def _reclaim(self, *, directory_now: bool = True) -> int:
        self._check_usable()
        if not self._dones_durable():
            self._sync_locked()
        removed = 0
        floor = self._unindexed_from
        while (
            len(self._segments) > 1
            and self._index.pending_in(self._segments[0].name) == 0
            and (floor is None or self._segments[1].name <= floor)  # none deferred in it
        ):
            segment = self._segments[0]
            try:
                segment.path.unlink(missing_ok=True)
            except OSError as exc:
                raise self._health.error(exc, "unlink", segment.path, usable=True) from exc
            self._segments.pop(0)
            self._index.drop_segment(segment.name)
            self._used -= segment.size
            removed += 1
        if removed:
            self._created += 1  # the directory changed: the next sync covers it
            if directory_now:
                self._sync_locked()
        return removed

    def _dones_durable(self) -> bool:
        # Is every DONE entry written so far on disk? Then reclaim needs no sync.
        mark = self._done_end
        if mark is None:
            return True
        name, end = mark
        if name != self._segments[-1].name:
            return True  # in an older segment: synced when it rolled
        return self._synced_size >= end
