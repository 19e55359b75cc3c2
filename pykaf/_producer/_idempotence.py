"""The idempotent producer's state: producer id and epoch, per-partition sequences.

Pure and single-threaded (the event loop's); the sender asks it three things:

- ``gate(partition, batch)``: may this batch go now? It assigns the batch its sequence
  the first time it is sent. A retried batch keeps its sequence and identity, so the
  broker recognises a batch it already wrote and answers with the original offset.
- ``classify(partition, batch, code)``: what an error code on a batch means here.

Until the broker has acknowledged a partition's first batch under an identity, only one
batch of that partition is in flight: a broker takes any first sequence from a producer it
does not know, so a second batch must not be able to overtake a first one that failed.
- ``succeeded`` / ``failed``: the outcome, to track acknowledged sequences.

Resetting (the Java client's rules, KIP-360): OUT_OF_ORDER_SEQUENCE_NUMBER on the batch
that is next in line (its sequence follows the last acknowledged one), or
UNKNOWN_PRODUCER_ID, means the broker lost this producer's state; a batch that fails for
good after getting a sequence leaves a gap. Either way the partition must start over from
sequence 0 under a new identity: the engine asks InitProducerId for one (passing the
current id and epoch, which brokers that support it bump), and the partition switches
once none of its batches is in flight. OUT_OF_ORDER_SEQUENCE_NUMBER on a later batch only
says an earlier one failed: it is retried, in order, behind it.

While a batch is being resent, nothing new of its partition is sent (``resending``): a
batch written but not answered (a lost connection, or REQUEST_TIMED_OUT after the write)
is recognised as a duplicate only among the producer's last five batches of the
partition (Kafka's NUM_BATCHES_TO_RETAIN). Past them the broker answers
OUT_OF_ORDER_SEQUENCE_NUMBER, and the batch fails although its records are in the log.
Only the batches sequenced with it (at most four behind it, ``MAX_IN_FLIGHT``) can then be
written after it, however many times its resends are refused. The Java client sends new
batches beside a resend and can fail it this way (by delivery timeout, resending it until
then); so did pykaf, found by the receipt fault sweep (33 records in about 1 run in 150).

A batch replayed after a crash with the identity it was journaled with (``pinned``, see
``_replay_identity``) keeps it: the gate lets it go alone, and its answers are read by
the engine (``_outcomes``), never here, so they cannot reset the current identity.

Other partitions switch to a new identity lazily: batches already sequenced under the old
one are resent under it (so the broker can still deduplicate them), and the first new
batch after all of those waits until nothing of the partition is in flight, then starts
at sequence 0 under the new identity.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final, Protocol

__all__ = [
    "DUPLICATE_SEQUENCE_NUMBER",
    "INVALID_PRODUCER_EPOCH",
    "OUT_OF_ORDER_SEQUENCE_NUMBER",
    "UNKNOWN_PRODUCER_ID",
    "Idempotence",
    "PartitionSequence",
    "ProducerIdentity",
    "Verdict",
    "next_sequence",
]

OUT_OF_ORDER_SEQUENCE_NUMBER: Final = 45
DUPLICATE_SEQUENCE_NUMBER: Final = 46
INVALID_PRODUCER_EPOCH: Final = 47
UNKNOWN_PRODUCER_ID: Final = 59
PRODUCER_FENCED: Final = 90
MAX_IN_FLIGHT: Final = 5
_MAX_SEQUENCE: Final = 2**31 - 1


def next_sequence(sequence: int, count: int) -> int:
    """``sequence + count``, wrapping to 0 after 2**31 - 1 as Kafka's sequences do."""
    return (sequence + count) & _MAX_SEQUENCE


@dataclass(frozen=True, slots=True, kw_only=True)
class ProducerIdentity:
    """A producer id and epoch from InitProducerId."""

    producer_id: int
    epoch: int


class Verdict(enum.Enum):
    SUCCESS = "success"  # a duplicate: the broker has it already
    RETRY = "retry"  # send again, in order, same sequence
    RETRY_RESET = "retry_reset"  # the partition starts over under a new identity; retry
    FAIL = "fail"  # can never succeed: fail the batch (its partition starts over)
    OTHER = "other"  # not an idempotence matter: the error's own retriable flag decides


class _BatchLike(Protocol):
    identity: object | None
    base_sequence: int
    pinned: Any  # a _replay_identity.ReplayTally (duck-typed: this module stays pure)
    records: list[tuple[object, object, object, object]]
    encoded: bytes | None


class _PartitionLike(Protocol):
    sequence: PartitionSequence | None
    in_flight: int


class PartitionSequence:
    """One partition's sequence space. Mutable, slotted (updated per batch)."""

    __slots__ = ("identity", "last_acked", "next_seq", "resending", "reset_pending")

    def __init__(self) -> None:
        self.identity: ProducerIdentity | None = None
        self.next_seq = 0
        self.last_acked = -1  # the sequence of the last record acknowledged (-1: none)
        self.reset_pending = False
        # A batch was resent under this identity: new batches wait for the partition's
        # batches in flight to come back (the module doc).
        self.resending = False

    def __repr__(self) -> str:
        return (
            f"<PartitionSequence {self.identity} next={self.next_seq} acked={self.last_acked}"
            f"{' reset' if self.reset_pending else ''}>"
        )


class Idempotence:
    """The producer's identity and the sequence rules of the module doc."""

    def __init__(self) -> None:
        self.identity: ProducerIdentity | None = None
        # A new identity is wanted (a reset); no batch goes out until it is set.
        self.wants_new = True

    def set_identity(self, producer_id: int, epoch: int) -> ProducerIdentity:
        self.identity = ProducerIdentity(producer_id=producer_id, epoch=epoch)
        self.wants_new = False
        return self.identity

    @staticmethod
    def state(part: _PartitionLike) -> PartitionSequence:
        seq = part.sequence
        if seq is None:
            seq = part.sequence = PartitionSequence()
        return seq

    def gate(self, part: _PartitionLike, batch: _BatchLike) -> bool:
        """May ``batch`` (the head of ``part``) be sent now? Assigns its sequence."""
        current = self.identity
        if current is None or self.wants_new:
            return False
        if part.in_flight >= MAX_IN_FLIGHT:
            return False
        seq = self.state(part)
        identity = batch.identity
        if identity is not None:  # a batch sent before (a fresh one pays nothing here)
            if batch.pinned is not None:
                if getattr(identity, "producer_id", None) != current.producer_id:
                    # Replayed after a crash with its journaled identity and sequence,
                    # kept as they are (so the broker can recognise it); one at a time,
                    # so nothing overtakes it even where the broker accepts any sequence
                    # from a producer it forgot.
                    return part.in_flight == 0
                # The broker gave us the crashed producer's id again: it lost that
                # producer (a restart without its logs), and our own batches would share
                # its sequences: sequenced afresh below, unproven (the tally counts it).
                batch.pinned.unpin(batch)
            elif identity is seq.identity and not seq.reset_pending:
                # A retry: same identity, same sequence. Until the broker acknowledged
                # one of this identity's batches, one at a time, as fresh batches below:
                # the parts of a split batch are all retries, and when the first part
                # met a retriable error a broker without our state wrote a later one
                # first (reordered; the first then refused as out of order, for good).
                if part.in_flight and seq.last_acked < 0:
                    return False
                seq.resending = True
                return True
        if seq.resending:
            if part.in_flight:
                return False  # a resent batch first comes back (the module doc)
            seq.resending = False
        if part.in_flight and seq.last_acked < 0:
            # A broker accepts any first sequence from a producer it has no state for:
            # one batch at a time until it has ours, so a later batch can never be
            # written before an earlier one that failed.
            return False
        if seq.identity is not current or seq.reset_pending:
            if part.in_flight:
                return False  # the old identity's batches come back first
            seq.identity = current
            seq.next_seq = 0
            seq.last_acked = -1
            seq.reset_pending = False
            seq.resending = False
        batch.identity = current
        batch.base_sequence = seq.next_seq
        batch.encoded = None
        seq.next_seq = next_sequence(seq.next_seq, len(batch.records))
        return True

    def resized(self, part: _PartitionLike, batch: _BatchLike) -> None:
        """``batch``, just sequenced (the last of its partition), now holds another
        number of records (``transform_batch``): the next sequence follows those."""
        seq = self.state(part)
        if batch.identity is seq.identity and batch.base_sequence >= 0:
            seq.next_seq = next_sequence(batch.base_sequence, len(batch.records))

    def withdraw(self, part: _PartitionLike, batch: _BatchLike) -> None:
        """``batch``, just sequenced (the last of its partition), will never be sent:
        its sequences go back, so the next batch takes them (no gap, no reset)."""
        seq = self.state(part)
        if batch.identity is seq.identity and batch.base_sequence >= 0:
            seq.next_seq = batch.base_sequence
        batch.identity = None
        batch.base_sequence = -1

    def succeeded(self, part: _PartitionLike, batch: _BatchLike) -> None:
        seq = self.state(part)
        if batch.identity is seq.identity and batch.base_sequence >= 0:
            seq.last_acked = next_sequence(batch.base_sequence, len(batch.records) - 1)

    def classify(self, part: _PartitionLike, batch: _BatchLike, code: int) -> Verdict:
        """What error ``code`` on ``batch`` means for the sequences."""
        if code == DUPLICATE_SEQUENCE_NUMBER:
            return Verdict.SUCCESS
        seq = self.state(part)
        if code == OUT_OF_ORDER_SEQUENCE_NUMBER:
            if seq.reset_pending or batch.identity is not seq.identity:
                return Verdict.RETRY
            expected = next_sequence(seq.last_acked, 1)
            if batch.base_sequence != expected:
                if (
                    seq.last_acked >= 0
                    and 0 < (expected - batch.base_sequence) & _MAX_SEQUENCE < 2**30
                ):
                    # Older than what the broker acknowledged already: a resend can only
                    # be refused again (the broker lost it, and later ones are written).
                    return Verdict.FAIL
                return Verdict.RETRY  # an earlier batch failed; this one follows it
            self.request_reset(part)
            return Verdict.RETRY_RESET
        if code in (UNKNOWN_PRODUCER_ID, INVALID_PRODUCER_EPOCH, PRODUCER_FENCED):
            if batch.identity is seq.identity and not seq.reset_pending:
                self.request_reset(part)
            return Verdict.RETRY_RESET
        return Verdict.OTHER

    def failed(self, part: _PartitionLike, batch: _BatchLike) -> None:
        """``batch`` failed for good (reported to the caller). If it had a sequence, the
        broker may or may not have it: the partition starts over."""
        seq = self.state(part)
        if batch.identity is not None and batch.identity is seq.identity:
            self.request_reset(part)

    def request_reset(self, part: _PartitionLike) -> None:
        self.state(part).reset_pending = True
        self.wants_new = True
