"""Recovery keeps every IDENTITY entry a replay needs (``Recovery.batch_identities``): all
the batches of a partition whose records are pending, not only the newest; the later
entry for the same records (a batch sent again after a reset) wins; a DONE of its range
drops it; a range only partly pending cannot be the same batch again and is left out."""

from __future__ import annotations

from pathlib import Path

from pykaf._producer.journal import Done, Identity, JournalRecord, JournalStore
from pykaf._producer.journal._identities import BatchIdentities
from pykaf._producer.journal._pending import PendingIndex

SEGMENT = 4096


def _record(serial: int, partition: int) -> JournalRecord:
    return JournalRecord(serial, "t", partition, serial, None, b"v%d" % serial, [])


def _identity(partition: int, sequence: int, serials: list[int], pid: int = 7) -> Identity:
    return Identity("t", partition, pid, 0, sequence, serials[0], serials[-1], len(serials))


def test_recovery_keeps_every_pending_batch_of_a_partition_in_order(tmp_path: Path) -> None:
    store = JournalStore(tmp_path, max_bytes=1 << 20, segment_bytes=SEGMENT)
    store.open()
    # Partition 0 holds serials 0, 2, 4, ... and partition 1 the odd ones.
    store.append([_record(s, s % 2) for s in range(24)])
    p0 = [
        _identity(0, 0, [0, 2, 4]),  # acknowledged below: dropped
        _identity(0, 3, [6, 8]),
        _identity(0, 5, [10, 12, 14]),  # sent again under a new identity below
        _identity(0, 8, [16, 18]),  # one record done: cannot be the same batch
    ]
    again = Identity("t", 0, 9, 1, 0, 10, 14, 3)
    p1 = [_identity(1, 0, [1, 3, 5, 7])]
    # Many entries per segment: some land in older segments than the newest one.
    for identity in [*p0, *p1, again]:
        store.append([identity])
    store.append([Done("t", 0, 0, 4), Done("t", 0, 18, 18)])
    store.sync()
    store.close()
    reopened = JournalStore(tmp_path, max_bytes=1 << 20, segment_bytes=SEGMENT)
    recovery = reopened.open()
    try:
        assert recovery.batch_identities == {
            ("t", 0): (p0[1], again),
            ("t", 1): (p1[0],),
        }
        assert recovery.identities[("t", 0)] == again  # the newest, as before
    finally:
        reopened.close()


def test_a_done_range_drops_its_identity_as_it_is_read() -> None:
    index = PendingIndex()
    index.add_segment(0)
    for serial in range(6):
        index.add(serial, "t", 0)
    batches = BatchIdentities()
    batches.add(_identity(0, 0, [0, 1, 2]))
    batches.add(_identity(0, 3, [3, 4, 5]))
    index.done("t", 0, 0, 2)
    batches.done(Done("t", 0, 0, 2))
    assert batches.relevant(index) == {("t", 0): (_identity(0, 3, [3, 4, 5]),)}
    assert index.pending_between("t", 0, 0, 5) == 3
    assert index.pending_between("t", 0, 4, 4) == 1
    assert index.pending_between("t", 1, 0, 5) == 0
