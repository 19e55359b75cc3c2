"""The newest segment, written through a shared memory map.

Why a map: an append must reach the kernel before ``produce()`` returns (a SIGKILL may
lose nothing accepted), and one ``os.writev`` per record releases the GIL on every call,
which hands it to the producer's event-loop thread and makes each ``produce()`` wait for
it. A slice assignment into a ``MAP_SHARED`` map is a memcpy into the page cache under
the GIL: the bytes belong to the file as soon as it returns (a killed process loses
nothing), and ``fdatasync`` of the file writes the dirty pages like any others (Linux
tracks the map's dirty pages on the file itself: no ``msync`` is needed).

Why ``posix_fallocate`` and not ``ftruncate``: storing into a page of a sparse file needs
a block at fault time, and on a full disk the kernel answers that fault with SIGBUS, which
kills the process (nothing may do that). Allocating every block when the segment is
created turns a full disk into ENOSPC there, a typed error the producer can wait out.

So a segment is created at its capacity (``journal_segment_bytes``, or an entry's size
when larger) and ends in zeros after its last entry; recovery reads a zero where a length
should start, with only zeros after it, as the clean end of the log. A segment that is
done with (rolled, or the store closed) is cut back to its entries, so only the newest
holds the zeros of its unused capacity; a crash before that cut leaves a longer file,
which recovers the same. On a disk too full for the whole capacity, only the pages the
append needs are allocated (and more at the next append): DONE entries, which are how a
full journal empties, still fit while a few pages are free.

Pages behind the write position are dropped from the map, once per ``DROP_STEP`` of
entries written (so nothing per record), and before each sync (``StoreSync.sync``).
Every page the writer touched would otherwise stay mapped, and count in the process RSS
(RssFile), until the map is closed: up to a whole segment during an outage.
``madvise(MADV_DONTNEED)`` unmaps them from this process only: on a ``MAP_SHARED`` file
map the data stays in the page cache (dirty until written back, and ``fdatasync`` still
covers it; a killed process loses nothing), and a later read faults it back in from
there. It also made appends faster while the group-commit thread syncs (1.6 instead of
2.8 us per 1 KiB record, measured with an fsync every 5 ms): writeback write-protects
every mapped dirty page, and the next store into one faults. Before each sync too,
because that write-protecting flushes the TLB once per page still mapped, each flush an
interrupt to the other cores (the appending thread's among them), where one
``MADV_DONTNEED`` over the range flushes once. Measured (``perf``, the journal level of
``benchmarks/custody.py``, 1 KiB records, an fsync every 5 ms): those flushes took 4.1%
of the process's CPU samples, 0.95% with the drop before the sync; throughput moved
within the noise (+0-5%, 9 pairs of runs).
A refusal (an OS without the advice) costs memory only: logged once per segment.

Pages ahead of the write position are written, with zeros, by a journal thread of their
own (``_write_ahead``; ``plan_ahead`` under the store's lock, ``write_ahead`` outside
it, where ``pwrite`` runs without the GIL), up to ``WRITE_AHEAD`` bytes ahead, a step of
``AHEAD_STEP`` at a time, and the map is ``MADV_RANDOM``. Why: the first store into a
page of the allocated but unwritten extent costs the kernel, in the appending thread and
holding the GIL, a page cache page to allocate and zero (a major fault), and ext4's
block preparation for it (``page_mkwrite``, ``ext4_da_get_block_prep``, buffer heads):
about 0.8 us of system time per 1 KiB record, the largest share of a journaled append.
Written beforehand, the page is in the cache, up to date and its blocks mapped: the
store only maps it (one cheap fault) and marks it dirty. Measured (one thread,
``fast_append`` of 1 KiB records into a 512 MiB segment): 1.0-1.2 us a record into
allocated pages, 0.39-0.42 into pages written ahead (whether or not they were synced
since). Zeros are what the format reads as the clean end, so they change nothing
recovery sees; the cost is disk writes: the next fsync writes them, and writes those
pages again once records fill them (twice the bytes, in the journal's own time). Reading
them in instead (``preadv``, before) saved the page allocation and zeroing only.
Measured (``produce()`` of 200,000 1 KiB records then ``flush()``, mock cluster, 8
alternating runs of 3 each, the runs that did not spill): the appending thread's system
time 0.6 -> 0.2-0.4 us a record and its faults 130 -> 25 per 1,000; 292,000 -> 314,000
records/s (medians). Those faults were the minor ones; the major ones, counted later,
were still 57-77 per 1,000 records while the syncing thread wrote ahead (after each
fsync, which took 10-80 ms): hence the thread of their own, 2 per 1,000
(``_write_ahead``).

Steps never start within ``AHEAD_MARGIN`` of the write position, and while one is in
flight its start is the segment's ``fence``: no entry may end past it (the store caps the
tail's armed limit, and a locked append that would cross it waits for the step), so
zeros never land where an entry is being written. When the appends outrun the thread,
they write the pages in between themselves, as before (``MADV_RANDOM``: each fault
zeroes its own pages only, not a readahead window).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

__all__ = [
    "DROP_STEP",
    "AHEAD_STEP",
    "WRITE_AHEAD",
    "AheadStep",
    "MappedSegment",
    "capacity_for",
    "write_ahead",
]

log = logging.getLogger("pykaf.producer.journal")

_PAGE: Final = mmap.PAGESIZE
_NO_SPACE: Final = frozenset((errno.ENOSPC, errno.EDQUOT))
# Bytes written between two drops of the pages behind (module doc): about what the
# writer's map holds in memory. 256 KiB to 1 MiB measured alike, 4 MiB a little slower.
DROP_STEP: Final = 1 << 20
_DONTNEED: Final = getattr(mmap, "MADV_DONTNEED", None)  # absent on Windows
_RANDOM: Final = getattr(mmap, "MADV_RANDOM", None)
# How far ahead of the write position the journal's thread writes pages (module doc): a
# few syncs' worth of appends at 600 MB/s and one every 5 ms, in steps of ``AHEAD_STEP``
# (the span an append may have to wait for), none closer than ``AHEAD_MARGIN``.
WRITE_AHEAD: Final = 8 << 20
AHEAD_STEP: Final = 1 << 20
AHEAD_MARGIN: Final = 256 << 10
_NO_FENCE: Final = 1 << 62
ZEROS: Final = bytes(AHEAD_STEP)  # a step's worth, shared by every store

# A dup of the segment's descriptor (closed by ``write_ahead``) and the bytes to write.
AheadStep = tuple[int, int, int]


def _pages(size: int) -> int:
    return -(-size // _PAGE) * _PAGE


def capacity_for(needed: int, segment_bytes: int) -> int:
    """The size to allocate for a segment that must hold ``needed`` bytes: the segment
    size, or ``needed`` rounded up to whole pages when an entry is larger."""
    return max(segment_bytes, _pages(needed))


class MappedSegment:
    """An open segment file, allocated to ``capacity`` bytes and mapped shared.

    ``OSError`` comes out of ``open``/``grow`` as raised (the store maps it); a file
    this class grew is cut back to its size before when allocating fails, so that a
    failed attempt leaves the file as it was."""

    __slots__ = (
        "_dropped",
        "_map",
        "ahead_to",
        "capacity",
        "drop_at",
        "fd",
        "fence",
        "path",
        "view",
    )

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd
        self.capacity = 0
        self._map: mmap.mmap | None = None
        self.view = memoryview(b"")  # of the map, to write entries in place (``_format``)
        # ``drop_behind`` is due once an entry ends past ``drop_at``; the map holds no page
        # below ``_dropped`` (module doc).
        self.drop_at = DROP_STEP
        self._dropped = 0
        self.ahead_to = 0  # pages below it were written ahead (or are being)
        # No entry may end past it: a step of ``write_ahead`` is in flight from here on.
        self.fence = _NO_FENCE

    @classmethod
    def open(cls, path: Path, needed: int, capacity: int) -> MappedSegment:
        """Open (creating it) the segment at ``path``, allocate it (see ``grow``) and map
        it."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        segment = cls(path, fd)
        try:
            segment.grow(needed, capacity)
        except BaseException:
            os.close(fd)
            raise
        return segment

    def grow(self, needed: int, capacity: int) -> None:
        """Allocate the file's first ``capacity`` bytes, or (the disk being full) the pages
        ``needed`` bytes take, and map them. Allocating covers blocks a file had already
        too (cheap), and fills any hole in it: a recovered segment copied sparse must not
        leave a page without its block under the map."""
        want = max(capacity, needed)
        try:
            self._allocate(want)
        except OSError as exc:
            if exc.errno not in _NO_SPACE or _pages(needed) >= want:
                raise
            want = _pages(needed)
            self._allocate(want)  # ENOSPC here is the caller's
        if self._map is not None and len(self._map) == want:
            return
        self.unmap()
        self._map = mmap.mmap(self.fd, want, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        if _RANDOM is not None:
            # No readahead on the appender's faults: the journal's thread reads ahead
            # (module doc). Refused, the kernel's own readahead stays: slower, not wrong.
            with contextlib.suppress(OSError):
                self._map.madvise(_RANDOM)
        self.view = memoryview(self._map)
        self.capacity = want

    def _allocate(self, size: int) -> None:
        before = os.fstat(self.fd).st_size
        try:
            os.posix_fallocate(self.fd, 0, size)
        except BaseException:
            if os.fstat(self.fd).st_size > before:  # undo what a partial allocation grew
                with contextlib.suppress(OSError):
                    os.ftruncate(self.fd, before)
            raise

    def write(self, position: int, chunks: Sequence[bytes]) -> None:
        """Copy ``chunks`` to ``position`` on: a memcpy into the page cache (the GIL is
        held, nothing can fail on blocks that are allocated)."""
        target = self._map
        assert target is not None
        for chunk in chunks:
            end = position + len(chunk)
            target[position:end] = chunk
            position = end
        if position > self.drop_at:
            self.drop_behind(position)

    def drop_behind(self, end: int) -> None:
        """Every entry ends at or before ``end``: drop the pages behind it from this map
        (see the module doc), and say when to come back."""
        self.drop_at = end + DROP_STEP
        drop_to = end - end % _PAGE  # the page holding ``end`` is still being written
        if drop_to <= self._dropped or self._map is None or _DONTNEED is None:
            return
        try:
            self._map.madvise(_DONTNEED, self._dropped, drop_to - self._dropped)
        except OSError as exc:
            log.warning("cannot drop written pages of %s from memory (%s)", self.path, exc)
            self._dropped = self.capacity  # once per segment
        else:
            self._dropped = drop_to

    def plan_ahead(self, position: int) -> AheadStep | None:
        """The store's lock held: the next step to write ahead of ``position`` (module
        doc), with a dup of the descriptor; None when enough is written ahead already,
        or the descriptor cannot be duplicated (a speed-up only). Fences the step until
        ``ahead_done``."""
        start = max(_pages(position + AHEAD_MARGIN), self.ahead_to)
        end = min(self.capacity, position + WRITE_AHEAD, start + AHEAD_STEP)
        if end < self.capacity:
            end -= end % _PAGE
        if end - start < AHEAD_STEP // 4:
            return None
        try:
            fd = os.dup(self.fd)
        except OSError:
            return None
        self.fence = start
        self.ahead_to = end
        return fd, start, end

    def ahead_done(self) -> None:
        """The store's lock held: the step in flight is written; entries may go there."""
        self.fence = _NO_FENCE

    def unmap(self) -> None:
        if self._map is not None:
            self.view.release()  # a map with a view exported cannot be closed
            self.view = memoryview(b"")
            self._map.close()
            self._map = None
            self.capacity = 0

    def close(self, valid: int | None) -> None:
        """Unmap and close; cut the file to ``valid`` bytes first when given (best effort:
        a longer file, ending in zeros, recovers the same)."""
        self.unmap()
        if valid is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, valid)
        with contextlib.suppress(OSError):  # the descriptor is gone either way
            os.close(self.fd)


def write_ahead(step: AheadStep) -> None:
    """Write ``step``'s bytes with zeros and close its descriptor. Errors are ignored:
    this is a speed-up only, and the appends and fsyncs that follow report any trouble
    with the disk (once per episode, ``DiskHealth``). The blocks are allocated already
    (``posix_fallocate``), so it needs no space."""
    fd, start, end = step
    zeros = memoryview(ZEROS)
    try:
        while start < end:
            count = os.pwrite(fd, zeros[: min(AHEAD_STEP, end - start)], start)
            if count <= 0:
                break
            start += count
    except OSError:
        pass
    finally:
        os.close(fd)
