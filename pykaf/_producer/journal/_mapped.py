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

Pages ahead of the write position are read in by the journal's own thread
(``plan_read_ahead`` under the store's lock, ``read_ahead`` outside it, where ``preadv``
runs without the GIL), ``READ_AHEAD`` bytes ahead, and the map is ``MADV_RANDOM``. Why:
the first store into a page the page cache does not hold yet faults, and the kernel then
allocates and zeroes it (the extent is allocated but unwritten), plus its whole readahead
window (``read_ahead_kb``, 8 MiB here), in the appending thread, holding the GIL: in a
loop of lock-free 1 KiB appends, 26% of the time was that zeroing (``perf``). Read in
beforehand, the page is in the cache, clean and up to date: the store only marks it
dirty. Reading changes nothing in the file, so it may race with the appends; an fsync
does not write clean pages, so it costs no disk writes either. When the appends outrun
the thread, each fault zeroes its own pages only (``MADV_RANDOM``). Measured
(``benchmarks/custody.py``'s journal level, 1 KiB records, 6 interleaved runs each,
medians): 105,970 records/s without both, 127,042 with them.
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
    "READ_AHEAD",
    "READ_STEP",
    "MappedSegment",
    "ReadAhead",
    "capacity_for",
    "read_ahead",
]

log = logging.getLogger("pykaf.producer.journal")

_PAGE: Final = mmap.PAGESIZE
_NO_SPACE: Final = frozenset((errno.ENOSPC, errno.EDQUOT))
# Bytes written between two drops of the pages behind (module doc): about what the
# writer's map holds in memory. 256 KiB to 1 MiB measured alike, 4 MiB a little slower.
DROP_STEP: Final = 1 << 20
_DONTNEED: Final = getattr(mmap, "MADV_DONTNEED", None)  # absent on Windows
_RANDOM: Final = getattr(mmap, "MADV_RANDOM", None)
# How far ahead of the write position the journal's thread reads pages in (module doc):
# a few syncs' worth of appends at 150 MB/s and one every 5 ms; read in steps of
# ``READ_STEP`` into one reused buffer (no fresh buffer, and no fresh faults, each time).
READ_AHEAD: Final = 4 << 20
READ_STEP: Final = 256 << 10
_CAN_READ_AHEAD: Final = hasattr(os, "preadv")

# A dup of the segment's descriptor (closed by ``read_ahead``) and the bytes to read.
ReadAhead = tuple[int, int, int]


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

    __slots__ = ("_dropped", "_map", "ahead_to", "capacity", "drop_at", "fd", "path", "view")

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
        self.ahead_to = 0  # pages below it were read ahead (or asked to be)

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

    def plan_read_ahead(self, position: int) -> ReadAhead | None:
        """The store's lock held: what to read in ahead of ``position`` (module doc), with
        a dup of the descriptor (a roll may close this one meanwhile); None when enough
        is read ahead already, or the descriptor cannot be duplicated (a hint only)."""
        start = max(position, self.ahead_to)
        end = min(self.capacity, position + READ_AHEAD)
        if not _CAN_READ_AHEAD or end - start < READ_STEP:
            return None
        try:
            fd = os.dup(self.fd)
        except OSError:
            return None
        self.ahead_to = end
        return fd, start, end

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


def read_ahead(plan: ReadAhead, buffer: bytearray) -> None:
    """Read ``plan``'s bytes into ``buffer``, a step at a time, and close its descriptor.
    Errors are ignored: reading ahead is a hint, and the appends and fsyncs that follow
    report any trouble with the disk (once per episode, ``DiskHealth``)."""
    fd, start, end = plan
    view = memoryview(buffer)
    try:
        while start < end:
            count = os.preadv(fd, [view[: min(len(view), end - start)]], start)
            if count <= 0:
                break
            start += count
    except OSError:
        pass
    finally:
        view.release()
        os.close(fd)
