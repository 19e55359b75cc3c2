"""The journal on disk: segment files, recovery, appends, group-commit syncs, reclaim.

The syncs are in ``_store_sync`` (``StoreSync``, this store's base class).

Blocking file I/O, no event loop: the producer runs it where blocking is allowed. Its
methods may be called from several threads (one lock guards the state), and ``sync`` runs
its fsync outside that lock: a group-commit thread can sync while appends go on, and
concurrent ``sync`` callers share one fsync (the later ones find nothing new). Fsyncs
never overlap (a roll or a reclaim waits for the one in flight), so a failure cannot be
consumed by one fsync while another reports success for the same file. Threads that
append RECORDs must agree on serials (take them under one lock of their own).

The produce path's common append (a RECORD without headers that fits the newest
segment's map) skips the lock: ``fast_append`` is a ``JournalTail`` (C) that the lock's
holder arms with where to write, and that writes, counts and notes the serials per
partition in one call, which under the GIL no Python code can interleave with. The
lock is a ``SettlingLock`` (``_settling_lock``): whoever takes it (a ``Condition`` wait
included) first settles the tail, taking in what it wrote and disarming it, so that
every section under the lock sees the state as if the tail's appends had been its own.
~2 us a record less than the locked path (benchmarks/custody.py, the journal level).

A journal directory holds ``LOCK`` (see ``_lock``) and ``<first serial, 20 digits>.journal``
segments of entries (``_format``). A segment is named after the next serial when it was
started, so every record in it has a serial at least its name and below the next
segment's name; a segment is only rolled once it holds a record, which keeps names unique.

Durability rules, and why:
- ``append`` copies the bytes into the newest segment's shared memory map (``_mapped``:
  no system call, no GIL release): a killed process loses nothing appended; only an OS
  crash loses what ``sync`` did not cover. The segment is allocated in full when it is
  first written (so a full disk is ENOSPC there, never SIGBUS) and ends in zeros, which
  recovery reads as the clean end of the log.
- ``sync`` is ``fdatasync`` (plus the directory, when a segment was created since the last
  one) and returns at once when nothing is new: the caller groups commits. Records with a
  serial below ``synced_serial`` are durable.
- Rolling syncs the finished segment, so only the newest can end in a torn tail.
- A failed allocation writes nothing (the file is cut back): ENOSPC and EDQUOT leave the
  store usable (the caller backs off and retries); any other error there stops the store.
- A failed fsync stops the store for good ("fsyncgate", see ``_durability``): what it
  did not cover is cut from the files, ``JournalSyncError.first_unsynced_serial`` says
  which records are not in custody; close and open again to go on.
- ``reclaim`` (``_reclaim``) deletes the oldest segments whose records are all done
  (never the newest), after syncing the DONE entries that justify it; a segment is never
  deleted out of order, because its IDENTITY and DONE entries may speak for records in
  older ones. A disk too full for the DONE entries themselves: the records count as done
  in memory (``mark_done``), so that reclaim frees it, and an append that finds the disk
  full rolls past a newest segment holding nothing pending (which reclaim then deletes).
- ``max_bytes`` bounds the entries (``used_bytes`` counts valid bytes; on disk, the newest
  segment's unused capacity comes on top: at most one ``segment_bytes`` more, since a
  segment is cut back to its entries when the next is started); RECORD appends beyond it
  raise ``JournalFullError``
  (after trying to reclaim). IDENTITY and DONE entries may use a small headroom above it,
  since writing DONE entries is how a full journal empties.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final, cast

from pykaf._errors import JournalDiskError, JournalFullError
from pykaf._producer.journal._disk import DiskHealth
from pykaf._producer.journal._format import (
    Done,
    Entry,
    Identity,
    JournalRecord,
    encode,
    encode_record,
)
from pykaf._producer.journal._identities import BatchIdentities
from pykaf._producer.journal._lock import DirectoryLock
from pykaf._producer.journal._mapped import MappedSegment, capacity_for
from pykaf._producer.journal._pending import PendingIndex
from pykaf._producer.journal._reclaim import StoreReclaim
from pykaf._producer.journal._record_writer import (
    FastAppend,
    FastIdentity,
    Tail,
    encode_record_into,
    no_fast_append,
    no_fast_identity,
)
from pykaf._producer.journal._record_writer import JournalTail as _JournalTail
from pykaf._producer.journal._recovery import (
    Recovery,
    Segment,
    cut_torn_tail,
    recover_segments,
    segment_name,
)
from pykaf._producer.journal._settling_lock import SettlingLock
from pykaf._producer.journal._tail import ReadPosition, SegmentSpan, read_pending_span

__all__ = ["JournalStore"]


_RECOVERABLE_WRITE: Final = frozenset((errno.ENOSPC, errno.EDQUOT))
_NAMES_CACHED: Final = 1024  # encoded topic names kept (``_name_of``)


class JournalStore(StoreReclaim):
    """The segment files of one journal directory (see the module doc)."""

    def __init__(
        self, directory: str | os.PathLike[str], *, max_bytes: int, segment_bytes: int
    ) -> None:
        if segment_bytes < 4096:
            raise ValueError(f"journal_segment_bytes must be at least 4096, not {segment_bytes}")
        if max_bytes < segment_bytes:
            raise ValueError(
                f"journal_max_bytes ({max_bytes}) must be at least journal_segment_bytes"
                f" ({segment_bytes})"
            )
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        # Room above max_bytes for IDENTITY and DONE entries (see the module doc).
        self.headroom = max(64 * 1024, max_bytes // 64)
        # The produce path's appends without the lock (``JournalTail``, C; None without
        # the extension): whoever takes the lock settles it first (``SettlingLock``).
        self._tail: Tail | None = None if _JournalTail is None else _JournalTail()
        self._mutex = SettlingLock(self._settle_tail)  # guards everything below
        # ``try_append_record`` without the lock, when the tail is armed: -1 when nothing
        # was written (then call ``try_append_record``). (serial, topic, partition,
        # timestamp_ms, key, value) -> where the entry ends.
        self.fast_append: FastAppend = no_fast_append if self._tail is None else self._tail.append
        # The same for an IDENTITY entry: ``append([Identity(...)])`` when it returns -1.
        self.fast_identity: FastIdentity = (
            no_fast_identity if self._tail is None else self._tail.identity
        )
        self._sync_mutex = threading.Lock()  # one sync at a time; taken before _mutex
        # Notified when an fsync settles. (Condition takes any lock-like object; its
        # waits take the lock again through ``acquire``, which settles the tail.)
        self._idle = threading.Condition(cast("threading.Lock", self._mutex))
        self._in_flight = False  # an fsync runs outside the lock
        self._ahead_turn = threading.Lock()  # ``write_ahead``: one caller at a time
        self._ahead_in_flight = False  # a step of it runs outside the lock
        # Called (under the lock, so it must only signal) when a step of ``write_ahead``
        # may be due: a segment file was created, or ``DROP_STEP`` more bytes appended.
        # The journal's thread that writes ahead sets it (``_write_ahead``).
        self.ahead_due: Callable[[], object] = _nothing
        self._lock: DirectoryLock | None = None
        self._names: dict[str, bytes] = {}  # topic -> its UTF-8 name (``_name_of``)
        self._reset()

    def _reset(self) -> None:
        # Everything open() rebuilds: a store closed (or stopped) may be opened again.
        self._segments: list[Segment] = []
        self._file: MappedSegment | None = None  # the newest segment, once written to
        self._index = PendingIndex()
        # Records from this serial on are not in the index yet (``defer_index``).
        self._unindexed_from: int | None = None
        self._identities: dict[tuple[str, int], Identity] = {}
        self._next_serial = 0
        self._tail_indexed = 0  # the tail's runs below this serial are in the index
        self._used = 0
        self._synced_size = 0  # of the newest segment
        self._synced_serial = 0  # records below it are durable
        # Where the newest DONE entry ends (segment name, offset): reclaim syncs it first.
        self._done_end: tuple[int, int] | None = None
        self._created = 0  # segments created since open, and how many the directory sync saw
        self._directory_synced = 0
        self._health = DiskHealth(self.directory)

    # -- state ---------------------------------------------------------------------------

    @property
    def next_serial(self) -> int:
        """The serial the next RECORD must have (at least)."""
        tail = self._tail
        return self._next_serial if tail is None else max(self._next_serial, tail.next_serial)

    @property
    def synced_serial(self) -> int:
        """Records with a serial below this are on disk (their last sync succeeded)."""
        return self._synced_serial

    @property
    def used_bytes(self) -> int:
        tail = self._tail
        return self._used if tail is None else self._used + tail.added

    @property
    def pending_records(self) -> int:
        tail = self._tail
        return self._index.pending if tail is None else self._index.pending + tail.records

    @property
    def failed(self) -> JournalDiskError | None:
        """The failure that stopped the store, or None while it works."""
        return self._health.failure

    def identities(self) -> dict[tuple[str, int], Identity]:
        with self._mutex:
            return dict(self._identities)

    # -- open and recovery ---------------------------------------------------------------

    def open(self) -> Recovery:
        """Lock the directory (creating it), recover it, and say what it holds.

        A torn tail of the newest segment is cut (logged at WARNING, returned); any other
        damage raises ``JournalCorruptError`` with every file left as it was."""
        with self._mutex:
            if self._lock is not None:
                raise RuntimeError("this journal store is open already")
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise self._health.error(exc, "mkdir", self.directory, usable=True) from exc
            self._lock = DirectoryLock.acquire(self.directory)
            self._reset()
            try:
                return self._recover()
            except BaseException:
                self._close()
                raise

    def _recover(self) -> Recovery:
        batches = BatchIdentities()
        try:
            segments, next_serial, torn = recover_segments(
                self.directory, self._index, self._identities, batches
            )
            if torn is not None:
                cut_torn_tail(torn)  # only now: a refusal above leaves every file as it was
        except OSError as exc:
            where = Path(exc.filename) if exc.filename else self.directory
            raise self._health.error(exc, "recovery", where, usable=True) from exc
        self._segments = segments
        self._next_serial = self._synced_serial = next_serial
        self._used = sum(segment.size for segment in segments)
        if segments:  # mapped at its first append (an allocation may fail: not here)
            self._synced_size = segments[-1].size
        return Recovery(
            next_serial=next_serial,
            pending_records=self._index.pending,
            pending_by_partition=self._index.by_partition(),
            identities=dict(self._identities),
            segments=len(segments),
            torn_tail=torn,
            batch_identities=batches.relevant(self._index),
        )

    # -- appends -------------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> int:
        """Write ``entries`` in order (copied into the map, no sync) and return the newest
        segment's size after them. RECORD serials must increase from ``next_serial`` on
        (gaps are allowed); a bad serial raises ``ValueError`` before anything is written."""
        if len(entries) == 1:
            entry = entries[0]
            if isinstance(entry, JournalRecord):
                return self.append_record(*entry)
        return self._append_entries(entries)

    def append_record(
        self,
        serial: int,
        topic: str,
        partition: int,
        timestamp_ms: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes | None]] | None,
    ) -> int:
        """``append([JournalRecord(...)])``, for the produce path: ``try_append_record``
        first, the general path (which checks and says what is wrong) for the rest."""
        if not headers:
            end = self.try_append_record(serial, topic, partition, timestamp_ms, key, value)
            if end >= 0:
                return end
        record = JournalRecord(serial, topic, partition, timestamp_ms, key, value, headers or [])
        # A record with headers: the lock-free path takes them too, once armed again here.
        return self._append_entries((record,), arm=bool(headers))

    def try_append_record(
        self,
        serial: int,
        topic: str,
        partition: int,
        timestamp_ms: int,
        key: bytes | None,
        value: bytes | None,
    ) -> int:
        """The produce path's append of a RECORD entry without headers: encoded straight
        into the mapped segment, with no entry object built, when nothing else is needed
        (no roll, no allocation, no reclaim, the serial in order, the store healthy).
        Returns where the entry ends, or -1 when nothing was written: then
        ``append_record`` takes the general path (and raises what is wrong)."""
        name = self._names.get(topic)
        if name is None:
            name = self._name_of(topic)
        with self._mutex:
            target = self._file
            if (
                target is None
                or serial < self._next_serial
                or self._lock is None
                or self._health.failure is not None
            ):
                return -1
            segment = self._segments[-1]
            start = segment.size
            # Where the entry may end: the map, the segment, the journal's bound, and the
            # pages being written ahead (``_mapped``).
            limit = min(
                start + self.max_bytes - self._used,
                target.capacity,
                self.segment_bytes,
                target.fence,
            )
            end = encode_record_into(
                target.view, start, limit, serial, name, partition, timestamp_ms, key, value
            )
            if end < 0:
                return -1
            segment.size = end
            self._used += end - start
            self._next_serial = serial + 1
            if self._unindexed_from is None:
                self._index.add(serial, topic, partition)
            if end > target.drop_at:
                target.drop_behind(end)
                self.ahead_due()
            if self._health.troubled:
                self._health.ok()
            else:
                self._arm_tail(target, end)
            return end

    def _arm_tail(self, target: MappedSegment, end: int) -> None:
        # Lock held, after an append of the produce path that ended at ``end`` of the
        # newest segment: the next appends go through ``fast_append``, until the lock is
        # taken again. Not past the limit (an entry larger than a segment ends beyond
        # it; the tail refuses to be armed there, after the entry is written): the next
        # append then takes the lock, and rolls.
        if self._tail is not None and self._unindexed_from is None:
            limit = min(
                end + self.max_bytes - self._used,
                target.capacity,
                self.segment_bytes,
                target.fence,
            )
            if end <= limit:
                self._tail.arm(target.view, end, limit, self._next_serial, target.drop_at)

    def _settle_tail(self) -> None:
        # The lock was just taken: take in what the tail wrote without it (and disarm it).
        tail = self._tail
        if tail is None:
            return
        state = tail.settle()
        if state is None:
            return
        # The tail keeps this state until ``applied()``. A signal handler that raises
        # anywhere below (Ctrl-C in the producing thread) leaves it there, the next
        # settle returns it again, and applying it twice changes nothing more: the size
        # and serial are absolute, and only runs past ``_tail_indexed`` are indexed.
        # Before, such a Ctrl-C lost it: the segment's size stayed behind what the tail
        # had written, and the next append overwrote records produce() had accepted.
        pos, next_serial, _added, runs, identities = state
        segment = self._segments[-1]  # armed only on the newest segment, under the lock
        if pos > segment.size:
            # One statement, no call inside: the two stores are not split by a signal.
            self._used, segment.size = self._used + pos - segment.size, pos
        self._next_serial = max(self._next_serial, next_serial)  # absolute: a retry is alike
        add_run = self._index.add_run  # armed only while appends are indexed
        for topic, partition, first, end in runs or ():
            if end > self._tail_indexed:
                # Indexed, then noted: cut short between the two, a run is indexed twice
                # (its segment is kept longer), never missed (reclaimed too early).
                add_run(topic, partition, first, end)
                self._tail_indexed = end
        for identity in identities or ():
            # The newest per partition, as ``_append_entries`` keeps it (alike if repeated).
            self._identities[identity[0], identity[1]] = Identity(*identity)
        tail.applied()

    def _append_entries(self, entries: Sequence[Entry], *, arm: bool = False) -> int:
        chunks: list[bytes] = []
        first = -1  # the first RECORD serial
        serial = -1
        for entry in entries:  # encoded outside the lock
            if isinstance(entry, JournalRecord):
                if entry.serial <= serial:
                    raise ValueError(f"record serials must increase: {entry.serial} after {serial}")
                serial = entry.serial
                first = serial if first < 0 else first
                chunks.append(encode_record(*entry))
            else:
                chunks.append(encode(entry))
        size = sum(map(len, chunks))
        with self._mutex:
            self._check_usable()
            if not chunks:
                return self._segments[-1].size if self._segments else 0
            self._active(size)
            self._make_room(size, first >= 0)
            while self._ahead_in_the_way(size):
                self._idle.wait()  # a step being written ahead, where this entry goes
                self._active(size)
                self._make_room(size, first >= 0)
            # Each may have waited for an fsync in flight (releasing the lock): look again.
            self._check_usable()
            segment = self._segments[-1]
            if 0 <= first < self._next_serial:
                raise ValueError(
                    f"record serial {first} is below the next serial {self._next_serial}:"
                    " serials must increase"
                )
            try:
                self._write(segment, chunks, size)
            except JournalDiskError as exc:
                segment = self._roll_past_full(exc, size)
                self._write(segment, chunks, size)
            segment.size += size
            self._used += size
            self._next_serial = max(self._next_serial, serial + 1)
            index = self._index
            if any(entry.__class__ is Done for entry in entries):
                self._done_end = (segment.name, segment.size)
            for entry in entries:
                if isinstance(entry, JournalRecord):
                    if self._unindexed_from is None:
                        index.add(entry.serial, entry.topic, entry.partition)
                elif isinstance(entry, Done):
                    index.done(*entry)
                else:
                    self._identities[entry.topic, entry.partition] = entry
            target = self._file
            if arm and target is not None and not self._health.troubled:
                self._arm_tail(target, segment.size)
            return segment.size

    def _ahead_in_the_way(self, size: int) -> bool:
        # Lock held: would ``size`` bytes at the end cross a fenced step (``_mapped``)?
        target = self._file
        return target is not None and self._segments[-1].size + size > target.fence

    def _name_of(self, topic: str) -> bytes:
        # Topic names are few and each is encoded per record otherwise; the bound only
        # guards against a producer that writes to ever new topics.
        if len(self._names) >= _NAMES_CACHED:
            self._names.clear()
        name = self._names[topic] = topic.encode()
        return name

    def _make_room(self, size: int, has_records: bool) -> None:
        limit = self.max_bytes if has_records else self.max_bytes + self.headroom
        if self._used + size <= limit:
            return
        self._reclaim()
        if self._used + size > limit and self._index.pending == 0 and self._rollable():
            self._roll()  # the newest segment is all done: start another, free it
            self._reclaim()
        if self._used + size > limit:
            raise JournalFullError(self.directory, self._used, self.max_bytes, size)

    def _rollable(self) -> bool:
        # A segment holding no record shares its name with the next one: keep it.
        return bool(self._segments) and self._segments[-1].name < self._next_serial

    def _active(self, size: int) -> Segment:
        if self._segments and not self._must_roll(size):
            return self._segments[-1]
        # A roll syncs: let an fsync in flight settle first (the wait releases the lock,
        # so another append may roll meanwhile), then decide again; nothing after the wait
        # releases the lock, so two rolls can never pick the same name.
        self._wait_idle()
        if self._segments and not self._must_roll(size):
            return self._segments[-1]
        return self._roll()

    def _must_roll(self, size: int) -> bool:
        segment = self._segments[-1]
        return bool(segment.size) and segment.size + size > self.segment_bytes and self._rollable()

    def _roll(self) -> Segment:
        path = self.directory / segment_name(self._next_serial)
        if self._segments:
            # Sync the finished segment: only the newest may ever end in a torn tail.
            self._sync_locked()
        if self._file is not None:
            # Cut to its entries (after the sync: a crash between leaves a zero tail).
            self._file.close(valid=self._segments[-1].size)
            self._file = None
        segment = Segment(path, self._next_serial, 0)  # its file comes with its first write
        self._segments.append(segment)
        self._index.add_segment(segment.name)
        self._synced_size = 0
        self._created += 1
        return segment

    def _write(self, segment: Segment, chunks: list[bytes], size: int) -> None:
        needed = segment.size + size
        target = self._file
        due = False
        try:
            if target is None:
                capacity = capacity_for(needed, self.segment_bytes)
                target = MappedSegment.open(segment.path, needed, capacity)
                self._file = target
                due = True
            elif needed > target.capacity:  # a full disk, or a segment that cannot roll yet
                capacity = capacity_for(max(needed, 2 * target.capacity), self.segment_bytes)
                target.grow(needed, capacity)
        except OSError as exc:
            usable = exc.errno in _RECOVERABLE_WRITE
            raise self._health.error(exc, "allocate", segment.path, usable=usable) from exc
        drop_at = target.drop_at
        target.write(segment.size, chunks)
        self._health.ok()
        if due or target.drop_at != drop_at:
            self.ahead_due()

    def _roll_past_full(self, exc: JournalDiskError, size: int) -> Segment:
        # The disk is full and the newest segment holds nothing pending any more (its
        # records are done, if only in memory: ``mark_done``): start the next segment and
        # delete this one, which frees its space for the write. Else ``exc`` stands. An
        # fsync in flight settles first (the wait releases the lock): then nothing below
        # releases it, as in ``_active``.
        self._wait_idle()
        if (
            exc.errno not in _RECOVERABLE_WRITE
            or self._index.pending_in(self._segments[-1].name) != 0
            or not self._rollable()
            or self._unindexed_from is not None
        ):
            raise exc
        self._roll()
        self._reclaim()
        return self._active(size)

    # -- reading back --------------------------------------------------------------------

    def read_pending(
        self, first: int, end: int, position: ReadPosition | None = None
    ) -> Iterator[JournalRecord]:
        """The pending records with a serial in ``[first, end)``, in serial order, read
        a chunk at a time (``_tail``): the producer's feed, while appends go on. Safe
        beside ``reclaim`` (a deleted segment held nothing pending)."""
        with self._mutex:
            segments = self._segments
            spans: list[SegmentSpan] = [
                (
                    segment.path,
                    segment.name,
                    segment.size,
                    segments[i + 1].name if i + 1 < len(segments) else None,
                )
                for i, segment in enumerate(segments)
            ]
        try:
            yield from read_pending_span(spans, first, end, self._is_pending, position)
        except OSError as exc:
            where = Path(exc.filename) if exc.filename else self.directory
            raise self._health.error(exc, "read", where, usable=True) from exc

    def _is_pending(self, serial: int, topic: str, partition: int) -> bool:
        # A deferred record (a spill's, or recovered) is pending until fed, and each is
        # read once: known without the lock (one read of an attribute, under the GIL).
        # The floor only moves while the feed that calls this is between passes
        # (``defer_index`` when a spill begins, ``resume_index`` once it has caught up).
        floor = self._unindexed_from
        if floor is not None and serial >= floor:
            return True
        with self._mutex:
            floor = self._unindexed_from
            if floor is not None and serial >= floor:
                return True
            return self._index.is_pending(serial, topic, partition)

    # -- close ---------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._lock is None:
            raise RuntimeError("the journal store is not open")
        self._health.check()

    def close(self) -> None:
        """Close the files and release the lock. Does not sync: call ``sync`` first."""
        with self._mutex:
            self._close()

    def _close(self) -> None:
        self._wait_idle()
        if self._file is not None:
            # Cut the newest segment to its entries, unless a failed sync cut it already.
            valid = self._segments[-1].size if self._health.failure is None else None
            self._file.close(valid=valid)
            self._file = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def _nothing() -> None:
    return None
