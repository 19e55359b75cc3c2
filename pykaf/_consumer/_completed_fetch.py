"""One partition's part of a fetch answer, decoded batch by batch as it is handed out.

The broker's bytes are kept as they came and decoded only when the application takes
records: straight into ``ConsumerRecord`` subclasses by the C decoder (one call per
batch, no per-record Python work), skipping records below the position (brokers send
whole batches), control batches, and for read_committed the batches of aborted
transactions -- Kafka's algorithm: the answer lists ``(producer_id, first_offset)`` of
aborted transactions; a producer's transactional batches are skipped from that offset
until its ABORT marker.

The batch walk is our own (not ``decode_batches``): it reads the few header fields it needs
with one ``struct`` call, so a consumer's per-batch cost stays small next to the records.

A batch that cannot be read (a failed CRC, malformed records, a size over
``max_decompressed_batch_bytes``) never costs the records before it: they are handed out
first, and the error is raised on the next take, carrying the partition and offsets
(``RecordBatchError``) so that the application can ``seek`` past it.
"""

from __future__ import annotations

import heapq
import struct
from typing import Final, Generic, Protocol, TypeVar

from crc32c import crc32c

from pykaf._consumer._records import ConsumerRecord, TopicPartition, record_class
from pykaf._errors import (
    CorruptRecordError,
    DecompressionLimitError,
    PykafError,
    RecordBatchError,
    UnsupportedMagicError,
)
from pykaf.protocol._compression import DEFAULT_MAX_DECOMPRESSED, Compression, decompress
from pykaf.protocol._records import ControlType, Record, TimestampType, parse_control_record

# The record loops of the protocol layer, called per batch without its generic iterator:
# the consumer's hot path.
from pykaf.protocol._records import _codec as _record_codec

__all__ = [
    "BATCH_OVERHEAD",
    "LOG_OVERHEAD",
    "CompletedFetch",
    "FetchedPartition",
    "StateT",
    "next_fetch_offset",
]


class FetchedPartition(Protocol):
    """What decoding needs of a partition's fetch state: which partition it is. The state
    itself (``_partition_state.PartitionState``) is a type parameter, so this module does not
    import the one that holds it (which imports this one)."""

    @property
    def tp(self) -> TopicPartition: ...


StateT = TypeVar("StateT", bound=FetchedPartition)

_HEADER: Final = struct.Struct(">qiibIhiqqqhii")
_LENGTH: Final = struct.Struct(">qi")  # base offset, batch length
_LAST_DELTA: Final = struct.Struct(">i")
BATCH_OVERHEAD: Final = _HEADER.size
LOG_OVERHEAD: Final = 12  # base offset and batch length: what the length does not count
_MIN_BATCH_LENGTH: Final = BATCH_OVERHEAD - LOG_OVERHEAD
_LAST_DELTA_POS: Final = 23
_CRC_START: Final = 21
_COMPRESSION_MASK: Final = 0x07
_LOG_APPEND_TIME_BIT: Final = 0x08
_TRANSACTIONAL_BIT: Final = 0x10
_CONTROL_BIT: Final = 0x20


class CompletedFetch(Generic[StateT]):
    """One partition's records from one fetch answer, decoded as they are handed out."""

    __slots__ = (
        "aborted",
        "aborted_pids",
        "batch_next",
        "data",
        "error",
        "generation",
        "index",
        "max_decompressed",
        "next_position",
        "next_position_epoch",
        "pos",
        "records",
        "size",
        "state",
    )

    def __init__(
        self,
        state: StateT,
        generation: int,
        data: bytes,
        aborted: list[tuple[int, int]] | None,
        max_decompressed: int = DEFAULT_MAX_DECOMPRESSED,
    ) -> None:
        self.state = state
        self.max_decompressed = max_decompressed
        # A batch that could not be read after records that could: raised on the next take.
        self.error: PykafError | None = None
        self.generation = generation
        self.data = data
        self.size = len(data)
        self.pos = 0  # the next batch to read
        # Decoded records of the current batch not yet handed, from ``index`` on.
        self.records: list[ConsumerRecord] = []
        self.index = 0
        # The position once everything read so far is handed (-1: nothing read yet).
        self.next_position = -1
        self.next_position_epoch: int | None = None
        self.batch_next = -1  # the offset after the batch decoded last
        # read_committed: (first_offset, producer_id) of aborted transactions not reached
        # yet (a heap), and producers whose transaction is aborted at the current batch.
        self.aborted = aborted
        self.aborted_pids: set[int] = set()
        if aborted:
            heapq.heapify(aborted)

    def chunk(self, position: int, limit: int, verify_crc: bool) -> list[ConsumerRecord] | None:
        """Up to ``limit`` records at or after ``position``; [] when only skipped batches
        were read; None once the data is used up. Afterwards ``next_position`` is the
        position past what was returned (and skipped). A batch that cannot be read
        raises (a ``RecordBatchError`` saying where), after the records before it."""
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        records = self.records
        index = self.index
        if index < len(records):
            # The rest of a batch decoded before (a poll took part of it).
            end = index + limit
            out = records[index:end]
            if end >= len(records):
                self.records, self.index = [], 0
                self.next_position = self.batch_next
            else:
                self.index = end
                self.next_position = out[-1][0] + 1
            return out
        out = []
        while len(out) < limit:
            try:
                batch = self._decode(position, verify_crc)
            except PykafError as exc:
                if not out:
                    raise
                self.error = exc  # hand out what came before it first
                return out
            if batch is None:
                return out if out else None
            if not batch:
                continue
            room = limit - len(out)
            if len(batch) > room:
                out += batch[:room]
                self.records, self.index = batch, room
                self.next_position = batch[room - 1][0] + 1
                return out
            if out:
                out += batch
            else:
                out = batch
            self.next_position = self.batch_next
        return out

    def _decode(self, position: int, verify_crc: bool) -> list[ConsumerRecord] | None:
        """The next batch's records to hand out (maybe none: below the position, control,
        aborted); None at the end of the data (a truncated last batch included)."""
        try:
            return self._decode_batch(position, verify_crc)
        except RecordBatchError as exc:
            raise self._located(exc, position) from None

    def _located(self, exc: RecordBatchError, position: int) -> RecordBatchError:
        """``exc`` with where it happened (the batch at ``self.pos``), and what to do."""
        data = self.data
        base, _ = _LENGTH.unpack_from(data, self.pos)
        (last_delta,) = _LAST_DELTA.unpack_from(data, self.pos + _LAST_DELTA_POS)
        offset = max(base, position, self.next_position)
        next_offset = base + last_delta + 1
        if data[self.pos + 16] != 2 or next_offset <= offset:
            next_offset = offset + 1  # no v2 header to trust
        tp = self.state.tp
        if isinstance(exc, DecompressionLimitError):
            message = (
                f"{tp}: the batch at offset {base} decompresses to more than"
                f" {self.max_decompressed} bytes, the consumer's max_decompressed_batch_bytes:"
                " raise that setting to read it"
            )
            located: RecordBatchError = DecompressionLimitError(message)
            located.__cause__ = exc
        else:
            located = exc
        located.topic, located.partition = tp.topic, tp.partition
        located.offset, located.next_offset = offset, next_offset
        located.args = (
            f"{located.args[0] if located.args else exc}; seek({tp.topic!r}, {tp.partition},"
            f" {next_offset}) to skip it",
        )
        return located

    def _decode_batch(self, position: int, verify_crc: bool) -> list[ConsumerRecord] | None:
        data = self.data
        total = len(data)
        while True:
            pos = self.pos
            if total - pos < BATCH_OVERHEAD:
                return None
            base, length = _LENGTH.unpack_from(data, pos)
            end = pos + LOG_OVERHEAD + length
            magic = data[pos + 16]
            if magic != 2:
                if magic in (0, 1):
                    raise UnsupportedMagicError(
                        f"{self.state.tp} at offset {base}: a record batch with magic {magic}"
                        " (the pre-0.11 format) cannot be read; upgrade the producer"
                    )
                raise CorruptRecordError(f"{self.state.tp} at offset {base}: magic {magic}")
            if length < _MIN_BATCH_LENGTH:
                raise CorruptRecordError(
                    f"{self.state.tp} at offset {base}: batch length {length} is too small"
                )
            if end > total:
                return None  # truncated: the next fetch starts at it
            (
                _,
                _,
                leader_epoch,
                _,
                crc,
                attributes,
                last_delta,
                base_ts,
                max_ts,
                producer_id,
                _,
                _,
                count,
            ) = _HEADER.unpack_from(data, pos)
            next_offset = base + last_delta + 1
            if next_offset <= position or next_offset <= self.next_position:
                self.pos = end
                continue  # wholly before the position: the broker starts at a batch
            if verify_crc and crc32c(memoryview(data)[pos + _CRC_START : end]) != crc:
                raise CorruptRecordError(
                    f"{self.state.tp}: the batch at offset {base} failed its CRC32C check"
                )
            if (
                self.aborted is not None
                and producer_id >= 0
                and self._aborted(attributes, producer_id, next_offset - 1, data, pos, end)
            ) or attributes & _CONTROL_BIT:
                self.pos = end
                self.batch_next = self.next_position = next_offset
                return []
            # ``self.pos`` moves past the batch only once it is read: until then it tells
            # ``_located`` where a failure happened.
            start = pos + BATCH_OVERHEAD
            batch_end = end
            buf: bytes = data
            codec = attributes & _COMPRESSION_MASK
            if codec:
                if codec > Compression.ZSTD:
                    raise CorruptRecordError(
                        f"{self.state.tp}: the batch at offset {base} names unknown codec {codec}"
                    )
                buf = decompress(
                    Compression(codec), memoryview(data)[start:end], max_size=self.max_decompressed
                )
                start, end = 0, len(buf)
            log_append = attributes & _LOG_APPEND_TIME_BIT
            kind = record_class(
                self.state.tp.topic,
                self.state.tp.partition,
                TimestampType.LOG_APPEND_TIME if log_append else TimestampType.CREATE_TIME,
                leader_epoch if leader_epoch >= 0 else None,
            )
            try:
                records: list[ConsumerRecord] = _record_codec.decode_records(
                    buf, start, end, count, base, base_ts, max_ts if log_append else None, kind
                )
            except ValueError as exc:
                raise CorruptRecordError(
                    f"{self.state.tp}: the batch at offset {base} has malformed records: {exc}"
                ) from exc
            self.pos = batch_end
            self.batch_next = next_offset
            self.next_position_epoch = leader_epoch if leader_epoch >= 0 else None
            if base < position and records:
                # The batch straddles the position: drop what was handed already.
                skip = 0
                while skip < len(records) and records[skip][0] < position:
                    skip += 1
                records = records[skip:]
            if not records:
                self.next_position = next_offset
            return records

    def _aborted(
        self, attributes: int, producer_id: int, last_offset: int, data: bytes, pos: int, end: int
    ) -> bool:
        """read_committed: should this batch be skipped as part of an aborted transaction?
        Keeps the set of aborted producers in step (Kafka's CompletedFetch rules)."""
        heap = self.aborted
        assert heap is not None
        pids = self.aborted_pids
        while heap and heap[0][0] <= last_offset:
            pids.add(heapq.heappop(heap)[1])
        if attributes & _CONTROL_BIT:
            if producer_id in pids and self._control_type(data, pos, end) is ControlType.ABORT:
                pids.discard(producer_id)
            return False  # control batches are skipped anyway
        return bool(attributes & _TRANSACTIONAL_BIT) and producer_id in pids

    @staticmethod
    def _control_type(data: bytes, pos: int, end: int) -> ControlType:
        header = _HEADER.unpack_from(data, pos)
        try:
            records = _record_codec.decode_records(
                data, pos + BATCH_OVERHEAD, end, header[12], header[0], header[7], None, Record
            )
        except ValueError as exc:
            raise CorruptRecordError(
                f"control batch at offset {header[0]} has malformed records: {exc}"
            ) from exc
        if not records:
            raise CorruptRecordError(f"control batch at offset {header[0]} has no record")
        kind: ControlType = parse_control_record(records[0])
        return kind


def next_fetch_offset(data: bytes, fetch_offset: int) -> int:
    """The offset after the last whole batch in ``data`` (``fetch_offset`` if none):
    where the next fetch starts while this answer waits to be handed out."""
    pos = 0
    total = len(data)
    offset = fetch_offset
    while total - pos >= BATCH_OVERHEAD:
        base, length = _LENGTH.unpack_from(data, pos)
        end = pos + LOG_OVERHEAD + length
        if length < _MIN_BATCH_LENGTH or end > total:
            break
        (delta,) = _LAST_DELTA.unpack_from(data, pos + _LAST_DELTA_POS)
        offset = max(offset, base + delta + 1)
        pos = end
    return offset
