"""The pending index against a plain model (a set per partition), under hypothesis."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pykaf._producer.journal._pending import PendingIndex

RECORD, DONE, SEGMENT = 0, 1, 2
# (step, partition, first, last): RECORD appends the next serial to the partition, DONE
# marks [first, last] of it done, SEGMENT starts a new segment.
steps = st.lists(
    st.tuples(
        st.sampled_from([RECORD, RECORD, DONE, SEGMENT]),
        st.integers(0, 2),
        st.integers(0, 60),
        st.integers(0, 60),
    ),
    max_size=120,
)


@settings(max_examples=300)
@given(steps)
def test_the_index_agrees_with_a_set_model(plan: list[tuple[int, int, int, int]]) -> None:
    index = PendingIndex()
    index.add_segment(0)
    segments = [0]
    model: dict[int, tuple[int, int]] = {}  # pending serial -> (partition, segment)
    serial = 0
    for step, partition, first, last in plan:
        if step == RECORD:
            index.add(serial, "t", partition)
            model[serial] = (partition, segments[-1])
            serial += 1
        elif step == SEGMENT:
            if serial > segments[-1]:
                segments.append(serial)
                index.add_segment(serial)
        else:
            hit = [s for s, (p, _) in model.items() if p == partition and first <= s <= last]
            assert index.done("t", partition, first, last) == len(hit)
            for s in hit:
                del model[s]
    assert index.pending == len(model)
    for segment in segments:
        assert index.pending_in(segment) == sum(1 for _, seg in model.values() if seg == segment)
    for s in range(serial):
        for partition in range(3):
            expected = s in model and model[s][0] == partition
            assert index.is_pending(s, "t", partition) == expected
    by_partition: dict[tuple[str, int], int] = {}
    for partition, _ in model.values():
        by_partition[("t", partition)] = by_partition.get(("t", partition), 0) + 1
    assert index.by_partition() == by_partition


def test_in_order_acknowledgements_compact_the_arrays() -> None:
    index = PendingIndex()
    index.add_segment(0)
    for serial in range(20_000):
        index.add(serial, "t", 0)
    for serial in range(0, 19_990, 10):
        assert index.done("t", 0, serial, serial + 9) == 10
    assert index.pending == 10
    assert index.is_pending(19_995, "t", 0)
    assert not index.is_pending(5, "t", 0)
    part = index._partitions[("t", 0)]
    assert len(part.serials) < 5000  # the done head was dropped, not kept forever
