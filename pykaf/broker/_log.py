"""The log of one partition: stored batches, offsets, the indexes reads need.

Batches are kept whole, as the producer sent them, with only the fields outside the CRC
rewritten on append (base offset, partition leader epoch), plus attributes and max
timestamp for log-append-time topics (then the CRC is recomputed). Records are never
decoded on the produce or fetch path: a fetch serves stored bytes.

Reads return whole batches starting at the batch that contains the fetch offset; clients
skip the records below the offset they asked for, as with Kafka.

Index lists (base offsets, byte positions, timestamps) are parallel Python lists searched
with ``bisect``: appends are O(1), lookups O(log n). With a ``SegmentStore`` the log also
writes every batch to disk and is rebuilt from disk on open.
"""

from __future__ import annotations

import struct
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from typing import Final, NamedTuple

from crc32c import crc32c

from pykaf.broker._producers import DuplicateBatch, ProducerStateTable, last_sequence
from pykaf.broker._segments import SegmentStore
from pykaf.protocol._records import BatchHeader, decode_batches

__all__ = ["AppendResult", "PartitionLog"]

_I64: Final = struct.Struct(">q")
_I32: Final = struct.Struct(">i")
_U32: Final = struct.Struct(">I")
_I16: Final = struct.Struct(">h")
_LEADER_EPOCH_POS: Final = 12
_CRC_POS: Final = 17
_ATTRIBUTES_POS: Final = 21
_MAX_TIMESTAMP_POS: Final = 35
_TIMESTAMP_TYPE_BIT: Final = 0x08
_NO_TIMESTAMP: Final = -1
KAFKA_STORAGE_ERROR: Final = 56


class AppendResult(NamedTuple):
    """The outcome of one append: ``error`` is a Kafka error code (0: stored or duplicate)."""

    error: int
    base_offset: int = -1
    log_append_time: int = _NO_TIMESTAMP


class PartitionLog:
    """Batches of one partition, in offset order. Owned by the broker's event loop.

    A plain slotted class: its fields change on every append.
    """

    __slots__ = (
        "_bases",
        "_batches",
        "_ends",
        "_epochs",
        "_max_ts",
        "_run_max_ts",
        "_waiters",
        "byte_end",
        "log_end_offset",
        "log_start_offset",
        "producers",
        "store",
    )

    def __init__(self, *, store: SegmentStore | None = None, log_start_offset: int = 0) -> None:
        self._batches: list[bytes | bytearray] = []
        self._bases: list[int] = []
        # Global byte position where each batch ends; start of batch i is end(i) - size(i).
        self._ends: list[int] = []
        self._max_ts: list[int] = []
        self._run_max_ts: list[int] = []  # running max of _max_ts: sorted, for bisect
        # (leader epoch, first offset written in it), for OffsetForLeaderEpoch.
        self._epochs: list[tuple[int, int]] = []
        self._waiters: set[Callable[[], None]] = set()
        self.byte_end = 0
        self.log_start_offset = log_start_offset
        self.log_end_offset = log_start_offset
        self.producers = ProducerStateTable()
        self.store = store
        if store is not None:
            for loaded in store.open():
                self._add(loaded.data, loaded.header)
            # A DeleteRecords may have moved the start past batches still on disk.
            self._drop_below_start()
            self.log_end_offset = max(self.log_end_offset, log_start_offset)

    # -- offsets ----------------------------------------------------------------------

    @property
    def high_watermark(self) -> int:
        # Every replica lives in this process, so all of them have every acknowledged
        # batch at once: the high watermark is the log end.
        return self.log_end_offset

    def __len__(self) -> int:
        """Number of batches held."""
        return len(self._batches)

    def begin_epoch(self, epoch: int) -> None:
        """A new leader epoch starts at the current log end (a leadership change)."""
        if self._epochs and self._epochs[-1][0] >= epoch:
            return
        if self._epochs and self._epochs[-1][1] == self.log_end_offset:
            self._epochs[-1] = (epoch, self.log_end_offset)  # nothing written in the old one
        else:
            self._epochs.append((epoch, self.log_end_offset))

    @property
    def latest_epoch(self) -> int:
        """The newest leader epoch this log knows (from its batches or begin_epoch); -1: none.

        A restart must start leadership above it: a batch written at a lower epoch after
        a higher one would look like damage to recovery and to clients (KIP-101, KIP-320).
        """
        return self._epochs[-1][0] if self._epochs else -1

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """``(largest epoch <= epoch, its end offset)``, or ``(-1, -1)`` if none is known."""
        keys = [e for e, _ in self._epochs]
        i = bisect_right(keys, epoch)
        if i == 0:
            return -1, -1
        found = self._epochs[i - 1][0]
        end = self._epochs[i][1] if i < len(self._epochs) else self.log_end_offset
        return found, end

    # -- appending ----------------------------------------------------------------------

    def _add(self, data: bytes | bytearray, header: BatchHeader) -> None:
        """Index a batch read back from disk (offsets already assigned)."""
        max_ts = header.max_timestamp
        self._index(data, header.base_offset, header.next_offset, max_ts)
        if header.producer_id >= 0:
            append_time = max_ts if header.attributes & _TIMESTAMP_TYPE_BIT else _NO_TIMESTAMP
            self._remember_producer(header, header.base_offset, append_time)
        if not self._epochs or header.partition_leader_epoch > self._epochs[-1][0]:
            self._epochs.append((header.partition_leader_epoch, header.base_offset))

    def _index(self, data: bytes | bytearray, base: int, next_offset: int, max_ts: int) -> None:
        self._batches.append(data)
        self._bases.append(base)
        self.byte_end += len(data)
        self._ends.append(self.byte_end)
        self._max_ts.append(max_ts)
        run = self._run_max_ts
        run.append(max_ts if not run or max_ts > run[-1] else run[-1])
        self.log_end_offset = next_offset

    def _remember_producer(self, header: BatchHeader, base: int, append_time: int) -> None:
        self.producers.record(
            header.producer_id,
            header.producer_epoch,
            header.base_sequence,
            last_sequence(header.base_sequence, header.last_offset_delta),
            base,
            append_time,
        )

    def append(
        self,
        batch: bytearray,
        header: BatchHeader,
        *,
        leader_epoch: int,
        log_append_time: int | None,
    ) -> AppendResult:
        """Store one validated batch (CRC, magic, size already checked by the caller).

        ``batch`` is rewritten in place (offsets, leader epoch; attributes, max timestamp
        and CRC too when ``log_append_time`` is given) and then kept: the caller hands it
        over. Idempotent batches are checked against the producer's state first.
        """
        pid = header.producer_id
        if pid >= 0:
            verdict = self.producers.check(
                pid,
                header.producer_epoch,
                header.base_sequence,
                last_sequence(header.base_sequence, header.last_offset_delta),
            )
            if isinstance(verdict, DuplicateBatch):
                return AppendResult(0, verdict.base_offset, verdict.log_append_time)
            if verdict:
                return AppendResult(verdict)
        base = self.log_end_offset
        _I64.pack_into(batch, 0, base)
        _I32.pack_into(batch, _LEADER_EPOCH_POS, leader_epoch)
        append_time = _NO_TIMESTAMP
        if log_append_time is not None:
            append_time = log_append_time
            (attributes,) = _I16.unpack_from(batch, _ATTRIBUTES_POS)
            _I16.pack_into(batch, _ATTRIBUTES_POS, attributes | _TIMESTAMP_TYPE_BIT)
            _I64.pack_into(batch, _MAX_TIMESTAMP_POS, log_append_time)
            _U32.pack_into(batch, _CRC_POS, crc32c(memoryview(batch)[_ATTRIBUTES_POS:]))
        next_offset = base + header.last_offset_delta + 1
        if self.store is not None:
            try:
                self.store.append(batch, base, next_offset)
            except OSError:  # logged by the store, once per episode
                return AppendResult(KAFKA_STORAGE_ERROR)  # retriable: clients try again
        max_ts = append_time if log_append_time is not None else header.max_timestamp
        self._index(batch, base, next_offset, max_ts)
        if not self._epochs or leader_epoch > self._epochs[-1][0]:
            self._epochs.append((leader_epoch, base))
        if pid >= 0:
            self._remember_producer(header, base, append_time)
        self.wake_waiters()
        return AppendResult(0, base, append_time)

    # -- reading ------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int, min_one: bool) -> list[bytes | bytearray]:
        """Whole batches from the one holding ``offset``, at most ``max_bytes`` in all,
        or the first batch alone when it is larger and ``min_one`` is set (KIP-74).

        The caller checks ``log_start_offset <= offset <= log_end_offset`` first.
        """
        if offset >= self.log_end_offset or not self._bases:
            return []
        first = bisect_right(self._bases, offset) - 1
        first = max(first, 0)
        start_byte = self._ends[first] - len(self._batches[first])
        stop = bisect_right(self._ends, start_byte + max_bytes, lo=first)
        if stop == first:
            if not min_one:
                return []
            stop = first + 1
        return self._batches[first:stop]

    def bytes_available(self, offset: int) -> int:
        """Bytes a read from ``offset`` could return with no limit (for min_bytes)."""
        if offset >= self.log_end_offset or not self._bases:
            return 0
        first = max(bisect_right(self._bases, offset) - 1, 0)
        return self.byte_end - (self._ends[first] - len(self._batches[first]))

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """``(offset, timestamp)`` of the first record with a timestamp >= ``timestamp``."""
        index = bisect_left(self._run_max_ts, timestamp)
        for i in range(index, len(self._batches)):
            if self._max_ts[i] < timestamp:
                continue
            for batch in decode_batches(self._batches[i], verify_crc=False):
                for record in batch.records:
                    if record.timestamp >= timestamp and record.offset >= self.log_start_offset:
                        return record.offset, record.timestamp
        return None

    def max_timestamp_offset(self) -> tuple[int, int] | None:
        """``(offset, timestamp)`` of the first record holding the largest timestamp."""
        if not self._batches:
            return None
        found = self.offset_for_timestamp(self._run_max_ts[-1])
        if found is None or found[1] != self._run_max_ts[-1]:
            return None
        return found

    # -- deleting -----------------------------------------------------------------------

    def delete_records(self, before_offset: int) -> int:
        """Move the log start to ``before_offset`` (never back); return the new start."""
        if before_offset > self.log_start_offset:
            self.log_start_offset = before_offset
            self._drop_below_start()
            if self.store is not None:
                self.store.drop_before(before_offset)
        return self.log_start_offset

    def _drop_below_start(self) -> None:
        # Batches wholly below the start go; the one containing the start stays, and a
        # fetch from the start returns it whole (clients skip the records below).
        if self.log_start_offset >= self.log_end_offset:
            cut = len(self._bases)
        else:
            cut = bisect_right(self._bases, self.log_start_offset) - 1
        if cut <= 0:
            return
        del self._batches[:cut]
        del self._bases[:cut]
        del self._ends[:cut]
        del self._max_ts[:cut]
        del self._run_max_ts[:cut]

    # -- waiting for data ----------------------------------------------------------------

    def add_waiter(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (once) at the next append. Long-polling fetches use this."""
        self._waiters.add(callback)

    def remove_waiter(self, callback: Callable[[], None]) -> None:
        self._waiters.discard(callback)

    def wake_waiters(self) -> None:
        if self._waiters:
            waiters = list(self._waiters)
            self._waiters.clear()
            for callback in waiters:
                callback()

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    def remove(self) -> None:
        """Forget everything, on disk too (the topic was deleted)."""
        if self.store is not None:
            self.store.remove()
        self.wake_waiters()
