"""Idempotent producer state of one partition: epochs, sequences, the last five batches.

The rules follow Kafka's ProducerStateManager (Kafka >= 2.5, after KIP-360):

- A batch equal (same epoch, first and last sequence) to one of the producer's last five
  batches is a duplicate: it is not appended and the original offsets are returned with
  no error (what the client needs to complete a retried request).
- An epoch older than the producer's current one: INVALID_PRODUCER_EPOCH.
- A newer epoch must start at sequence 0: else OUT_OF_ORDER_SEQUENCE_NUMBER.
- Same epoch: the first sequence must follow the last one (wrapping at 2**31 - 1): else
  OUT_OF_ORDER_SEQUENCE_NUMBER.
- A producer id the partition has no state for accepts any sequence. (Kafka before 2.5
  answered UNKNOWN_PRODUCER_ID there; since KIP-360 the broker keeps producer state past
  the deletion of its records and no longer returns that code on produce.)
"""

from __future__ import annotations

from collections import deque
from typing import Final, NamedTuple

__all__ = [
    "BATCHES_TO_RETAIN",
    "DuplicateBatch",
    "ProducerStateTable",
    "last_sequence",
]

BATCHES_TO_RETAIN: Final = 5  # Kafka's ProducerStateEntry.NUM_BATCHES_TO_RETAIN
_MAX_SEQUENCE: Final = 2**31 - 1

INVALID_PRODUCER_EPOCH: Final = 47
OUT_OF_ORDER_SEQUENCE_NUMBER: Final = 45


class DuplicateBatch(NamedTuple):
    """Where the original of a duplicate batch was written."""

    base_offset: int
    log_append_time: int


class _BatchMeta(NamedTuple):
    first_seq: int
    last_seq: int
    base_offset: int
    log_append_time: int


class _Entry:
    # A plain slotted class, not a frozen dataclass: updated in place on every idempotent
    # append, the produce hot path.
    __slots__ = ("batches", "epoch")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.batches: deque[_BatchMeta] = deque(maxlen=BATCHES_TO_RETAIN)


def last_sequence(first_seq: int, last_offset_delta: int) -> int:
    """The sequence of a batch's last record (sequences wrap to 0 after 2**31 - 1)."""
    last = first_seq + last_offset_delta
    return last - _MAX_SEQUENCE - 1 if last > _MAX_SEQUENCE else last


class ProducerStateTable:
    """Producer id -> epoch and last batches, for one partition."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def check(
        self, producer_id: int, epoch: int, first_seq: int, last_seq: int
    ) -> DuplicateBatch | int:
        """0 to append, a Kafka error code to refuse, or the original of a duplicate."""
        entry = self._entries.get(producer_id)
        if entry is None:
            return 0
        if epoch == entry.epoch:
            for meta in entry.batches:
                if meta.first_seq == first_seq and meta.last_seq == last_seq:
                    return DuplicateBatch(meta.base_offset, meta.log_append_time)
        if epoch < entry.epoch:
            return INVALID_PRODUCER_EPOCH
        if epoch != entry.epoch:
            return 0 if first_seq == 0 else OUT_OF_ORDER_SEQUENCE_NUMBER
        if not entry.batches:
            return 0
        previous = entry.batches[-1].last_seq
        if first_seq == previous + 1 or (first_seq == 0 and previous == _MAX_SEQUENCE):
            return 0
        return OUT_OF_ORDER_SEQUENCE_NUMBER

    def record(
        self,
        producer_id: int,
        epoch: int,
        first_seq: int,
        last_seq: int,
        base_offset: int,
        log_append_time: int,
    ) -> None:
        """Remember an appended batch (after ``check`` returned 0, or while loading a log)."""
        entry = self._entries.get(producer_id)
        if entry is None or entry.epoch != epoch:
            # A new epoch forgets the old epoch's batches, as Kafka's entry update does.
            entry = _Entry(epoch)
            self._entries[producer_id] = entry
        entry.batches.append(_BatchMeta(first_seq, last_seq, base_offset, log_append_time))

    def epoch_of(self, producer_id: int) -> int | None:
        entry = self._entries.get(producer_id)
        return None if entry is None else entry.epoch
