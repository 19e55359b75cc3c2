"""HandOutTracker, pure: positions and commits never run ahead of the records handed out."""

from __future__ import annotations

from consumer_helpers import data_batch, values
from test_fetch_state import TP, answer, new_state, positioned

from pykaf._consumer._fetch_state import FetchState
from pykaf._consumer._hand_out import HandOut, HandOutTracker
from pykaf._consumer._partition_state import PartitionState
from pykaf._consumer._records import TopicPartition


class Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def chunk_of_five() -> tuple[FetchState, HandOutTracker[PartitionState], Wakes]:
    """A tracker handing out offsets 0..4 of TP, none handed yet."""
    state = new_state()
    positioned(state)
    assert answer(state, data_batch(values("r", 5), base_offset=0))
    wakes = Wakes()
    tracker: HandOutTracker[PartitionState] = HandOutTracker(state, wakes)
    got = state.take_chunk(100)
    assert got is not None
    tracker.current = HandOut(*got)
    return state, tracker, wakes


def test_positions_and_commits_stop_after_the_last_record_handed() -> None:
    state, tracker, _ = chunk_of_five()
    assert state.positions()[TP][0] == 5  # the cursor is past the whole chunk already
    assert tracker.positions() == {TP: 0}
    assert tracker.current is not None
    handed = [next(tracker.current.iterator) for _ in range(2)]
    assert [r.offset for r in handed] == [0, 1]
    assert tracker.positions() == {TP: 2}
    assert tracker.to_commit()[TP].offset == 2


def test_cut_fetches_again_from_the_first_record_not_handed() -> None:
    state, tracker, wakes = chunk_of_five()
    assert tracker.current is not None
    next(tracker.current.iterator)
    tracker.cut(TopicPartition("other", 0))  # another partition: nothing to cut
    assert tracker.current is not None
    assert wakes.count == 0
    tracker.cut(TP)
    assert tracker.current is None
    assert state.positions()[TP][0] == 1
    assert state.partitions[TP].fetch_offset == 1
    assert wakes.count == 1


def test_a_chunk_handed_in_full_needs_no_refetch() -> None:
    state, tracker, wakes = chunk_of_five()
    assert tracker.current is not None
    assert [r.offset for r in tracker.current.iterator] == [0, 1, 2, 3, 4]
    assert tracker.positions() == {TP: 5}
    tracker.abandon()
    assert tracker.current is None
    assert state.positions()[TP][0] == 5
    assert wakes.count == 0
