"""The idempotence state machine: sequences, ordering on retry, resets, duplicates."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pykaf._producer._idempotence import (
    DUPLICATE_SEQUENCE_NUMBER,
    OUT_OF_ORDER_SEQUENCE_NUMBER,
    UNKNOWN_PRODUCER_ID,
    Idempotence,
    PartitionSequence,
    ProducerIdentity,
    Verdict,
    next_sequence,
)
from pykaf._producer._replay_identity import ReplayTally

NOT_LEADER = 6


class Part:
    def __init__(self) -> None:
        self.sequence: PartitionSequence | None = None
        self.in_flight = 0


class Batch:
    def __init__(self, count: int) -> None:
        self.records: list[tuple[object, object, object, object]] = [
            (None, b"x", None, None)
        ] * count
        self.identity: object | None = None
        self.base_sequence = -1
        self.encoded: bytes | None = b"old"
        self.pinned: object | None = None


def send(idem: Idempotence, part: Part, batch: Batch) -> bool:
    ok = idem.gate(part, batch)
    if ok:
        part.in_flight += 1
    return ok


def ack(idem: Idempotence, part: Part, batch: Batch) -> None:
    part.in_flight -= 1
    idem.succeeded(part, batch)


def primed(producer_id: int = 1) -> tuple[Idempotence, Part]:
    """A producer whose partition had its first batch (1 record, seq 0) acknowledged."""
    idem, part = Idempotence(), Part()
    idem.set_identity(producer_id, 0)
    first = Batch(1)
    assert send(idem, part, first)
    ack(idem, part, first)
    return idem, part


def test_one_batch_at_a_time_until_the_first_is_acknowledged() -> None:
    # A broker takes any first sequence from a producer it does not know: a second
    # batch must not be able to overtake a first one that fails.
    idem, part = Idempotence(), Part()
    idem.set_identity(1, 0)
    first, second = Batch(1), Batch(1)
    assert send(idem, part, first)
    assert not idem.gate(part, second)
    ack(idem, part, first)
    assert send(idem, part, second)


def test_the_parts_of_a_split_first_batch_go_one_at_a_time_until_one_is_acknowledged() -> None:
    # A first batch refused as too large is split; its parts keep its identity and
    # sequences, so they are retries to the gate. They went all at once: when the first
    # part met a retriable error, a broker without our state wrote a later part first
    # (reordered), then refused the first part as out of order, for good (5 of 12 seeded
    # runs of test_receipt_faults.py failed records so).
    idem, part = Idempotence(), Part()
    idem.set_identity(1, 0)
    whole = Batch(10)
    assert send(idem, part, whole)
    part.in_flight -= 1  # answered MESSAGE_TOO_LARGE: split in place
    first, second = Batch(5), Batch(5)
    for index, piece in enumerate((first, second)):
        piece.identity, piece.base_sequence = whole.identity, whole.base_sequence + 5 * index
    assert send(idem, part, first)
    assert not send(idem, part, second)  # not before the first part is acknowledged
    ack(idem, part, first)
    assert send(idem, part, second)
    assert second.base_sequence == 5


def test_nothing_goes_before_the_producer_id() -> None:
    idem, part, batch = Idempotence(), Part(), Batch(1)
    assert not idem.gate(part, batch)
    idem.set_identity(7, 0)
    assert idem.gate(part, batch)
    assert batch.base_sequence == 0
    assert batch.identity == idem.identity
    assert batch.encoded is None  # re-encoded with its sequence


def test_sequences_follow_record_counts() -> None:
    idem, part = primed()
    batches = [Batch(n) for n in (3, 1, 5)]
    for b in batches:
        assert send(idem, part, b)
    assert [b.base_sequence for b in batches] == [1, 4, 5]
    assert part.sequence is not None
    assert part.sequence.next_seq == 10


def test_at_most_five_in_flight_per_partition() -> None:
    idem, part = primed()
    for _ in range(5):
        assert send(idem, part, Batch(1))
    assert not idem.gate(part, Batch(1))


def test_a_retry_keeps_its_sequence() -> None:
    idem, part = primed()
    first, second = Batch(2), Batch(2)
    send(idem, part, first)
    send(idem, part, second)
    # The first fails (leader moved): not a sequence matter, the code decides.
    assert idem.classify(part, first, NOT_LEADER) is Verdict.OTHER
    # The second was out of order behind it: retried in order, no reset.
    assert idem.classify(part, second, OUT_OF_ORDER_SEQUENCE_NUMBER) is Verdict.RETRY
    assert not idem.wants_new
    part.in_flight = 0
    first.encoded = b"kept"
    assert send(idem, part, first)
    assert send(idem, part, second)
    assert (first.base_sequence, second.base_sequence) == (1, 3)
    assert first.encoded == b"kept"  # same bytes: the broker can deduplicate


def test_duplicate_is_success() -> None:
    idem, part, batch = Idempotence(), Part(), Batch(1)
    idem.set_identity(1, 0)
    send(idem, part, batch)
    assert idem.classify(part, batch, DUPLICATE_SEQUENCE_NUMBER) is Verdict.SUCCESS


def test_out_of_order_on_the_next_batch_resets() -> None:
    idem, part = primed()
    old = idem.identity
    b, c = Batch(1), Batch(1)
    send(idem, part, b)
    send(idem, part, c)
    # b is next in line (follows the last acknowledged): the broker lost our state.
    assert idem.classify(part, b, OUT_OF_ORDER_SEQUENCE_NUMBER) is Verdict.RETRY_RESET
    assert idem.wants_new
    # c behind it: just a retry.
    assert idem.classify(part, c, OUT_OF_ORDER_SEQUENCE_NUMBER) is Verdict.RETRY
    part.in_flight = 0
    assert not idem.gate(part, b)  # waits for the new identity
    new = idem.set_identity(1, 1)
    assert new != old
    assert send(idem, part, b)
    assert not idem.gate(part, c)  # a new identity: one at a time until acknowledged
    ack(idem, part, b)
    assert send(idem, part, c)
    assert (b.identity, b.base_sequence) == (new, 0)
    assert (c.identity, c.base_sequence) == (new, 1)


def test_unknown_producer_id_resets() -> None:
    idem, part, batch = Idempotence(), Part(), Batch(4)
    idem.set_identity(1, 0)
    send(idem, part, batch)
    assert idem.classify(part, batch, UNKNOWN_PRODUCER_ID) is Verdict.RETRY_RESET
    assert idem.wants_new


def test_a_reset_waits_for_the_partitions_in_flight_batches() -> None:
    idem, part = primed()
    a, b = Batch(1), Batch(1)
    send(idem, part, a)
    send(idem, part, b)
    idem.classify(part, a, UNKNOWN_PRODUCER_ID)
    part.in_flight -= 1  # a came back; b is still out
    idem.set_identity(2, 0)
    assert not idem.gate(part, a)
    part.in_flight = 0
    assert idem.gate(part, a)
    assert a.base_sequence == 0


def test_other_partitions_resend_old_batches_then_switch() -> None:
    idem = Idempotence()
    old = idem.set_identity(1, 0)
    other = Part()
    retry, fresh = Batch(2), Batch(1)
    send(idem, other, retry)
    other.in_flight = 0  # came back with a retriable error, waits to be resent
    # Another partition forced a new identity.
    idem.wants_new = True
    new = idem.set_identity(9, 0)
    # The old batch goes out again under the old identity: dedup still works.
    assert send(idem, other, retry)
    assert (retry.identity, retry.base_sequence) == (old, 0)
    # The next new batch waits for it, then starts the new identity at 0.
    assert not idem.gate(other, fresh)
    ack(idem, other, retry)
    assert send(idem, other, fresh)
    assert (fresh.identity, fresh.base_sequence) == (new, 0)


def test_a_failed_batch_with_a_sequence_resets_its_partition() -> None:
    idem, part = Idempotence(), Part()
    idem.set_identity(1, 0)
    a, b = Batch(1), Batch(1)
    send(idem, part, a)
    part.in_flight = 0
    idem.failed(part, a)
    assert idem.wants_new
    idem.set_identity(2, 0)
    assert send(idem, part, b)
    assert b.base_sequence == 0
    # An unsequenced batch failing (expired in the queue) changes nothing.
    idem2, part2 = Idempotence(), Part()
    idem2.set_identity(1, 0)
    idem2.failed(part2, Batch(1))
    assert not idem2.wants_new


def test_an_older_batch_refused_after_later_ones_were_written_fails() -> None:
    idem, part = primed()
    a, b = Batch(1), Batch(1)
    send(idem, part, a)
    send(idem, part, b)
    part.in_flight = 0
    idem.succeeded(part, b)  # the broker wrote b without a (it lost a): order is broken
    assert idem.classify(part, a, OUT_OF_ORDER_SEQUENCE_NUMBER) is Verdict.FAIL


def test_sequences_wrap() -> None:
    assert next_sequence(2**31 - 1, 1) == 0
    assert next_sequence(2**31 - 2, 5) == 3
    idem, part = Idempotence(), Part()
    idem.set_identity(1, 0)
    part.sequence = PartitionSequence()
    part.sequence.identity = idem.identity
    part.sequence.next_seq = 2**31 - 1
    batch = Batch(3)
    send(idem, part, batch)
    assert batch.base_sequence == 2**31 - 1
    assert part.sequence.next_seq == 2


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 50), st.booleans()), min_size=1, max_size=40))
def test_acknowledged_sequences_are_contiguous(steps: list[tuple[int, bool]]) -> None:
    """Whatever fails and is retried (in order, as the engine does), the sequences the
    broker acknowledges cover 1..n exactly once, in order."""
    idem, part = primed()
    queue = [Batch(n) for n, _ in steps]
    fail_first = [f for _, f in steps]
    acked: list[tuple[int, int]] = []
    attempt: dict[int, int] = {}
    while queue:
        window = []
        for batch in queue[:5]:
            if not send(idem, part, batch):
                break
            window.append(batch)
        returned = []
        failed_ahead = False
        for batch in window:
            tries = attempt.get(id(batch), 0)
            attempt[id(batch)] = tries + 1
            index = queue.index(batch)
            fails = failed_ahead or (fail_first[index] and tries == 0)
            part.in_flight -= 1
            if fails:
                code = OUT_OF_ORDER_SEQUENCE_NUMBER if failed_ahead else NOT_LEADER
                verdict = idem.classify(part, batch, code)
                assert verdict in (Verdict.RETRY, Verdict.OTHER)
                returned.append(batch)
                failed_ahead = True
            else:
                idem.succeeded(part, batch)
                acked.append((batch.base_sequence, len(batch.records)))
                fail_first[index] = False
        queue = [b for b in queue if b in returned] + [b for b in queue if b not in window]
        fail_first = [False] * len(queue)
    expected = 1
    for base, count in acked:
        assert base == expected
        expected += count
    assert not idem.wants_new


def pinned(producer_id: int, sequence: int, tally: ReplayTally) -> Batch:
    """A batch replayed after a crash with the identity it was journaled with."""
    batch = Batch(3)
    batch.identity = ProducerIdentity(producer_id=producer_id, epoch=0)
    batch.base_sequence = sequence
    batch.pinned = tally
    return batch


def test_a_replayed_batch_keeps_its_journaled_identity_and_goes_alone() -> None:
    idem, part = Idempotence(), Part()
    tally = ReplayTally("j", 6)
    first, second = pinned(4, 10, tally), pinned(4, 13, tally)
    assert not idem.gate(part, first)  # after this producer's own id, like every batch
    idem.set_identity(9, 0)
    assert send(idem, part, first)
    assert (first.identity, first.base_sequence) == (ProducerIdentity(producer_id=4, epoch=0), 10)
    assert not idem.gate(part, second)  # one at a time
    part.in_flight -= 1
    assert send(idem, part, second)
    assert idem.state(part).identity is None  # this producer's sequences are untouched


def test_a_replayed_batch_under_this_producers_own_id_is_sequenced_afresh() -> None:
    # A broker that lost everything may hand the crashed producer's id out again: the
    # replayed batch must not share sequences with this producer's own batches.
    idem, part = Idempotence(), Part()
    idem.set_identity(4, 0)
    tally = ReplayTally("j", 3)
    batch = pinned(4, 10, tally)
    assert send(idem, part, batch)
    assert batch.pinned is None
    assert (batch.identity, batch.base_sequence) == (idem.identity, 0)
    assert tally.snapshot().resent_unproven == 3
