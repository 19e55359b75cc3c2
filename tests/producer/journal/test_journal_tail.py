"""``JournalTail``: the produce path's appends without the store's lock (C), and the store
that settles it whenever it takes its lock. Same files as the locked path, the store's
state as if every append had been its own, and no entry torn or lost while another
thread writes DONE entries, syncs, rolls and reclaims beside it."""

from __future__ import annotations

import contextlib
import gc
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pykaf._producer.journal import Done, Identity, JournalRecord, JournalStore
from pykaf._producer.journal._record_writer import JournalTail

needs_tail = pytest.mark.skipif(JournalTail is None, reason="the C journal tail is not built")


def _append(store: JournalStore, record: JournalRecord) -> str:
    """Append as the producer does: the lock-free way first. Returns which way took it."""
    serial, topic, partition, stamp, key, value, headers = record
    if store.fast_append(serial, topic, partition, stamp, key, value, headers or None) >= 0:
        return "tail"
    store.append_record(serial, topic, partition, stamp, key, value, headers or None)
    return "locked"


# Headers of every shape the format holds: UTF-8 names, a value of None, an empty one.
_HEADERS = [("trace-id", b"0123456789abcdef"), ("clé", None), ("empty", b"")]


def _records(count: int, size: int = 300) -> list[JournalRecord]:
    # Runs of a partition (a sticky partitioner), two topics, keys now and then.
    return [
        JournalRecord(
            serial,
            "t" if serial % 11 else "tópico",
            (serial // 7) % 3,
            1_700_000_000_000 + serial,
            None if serial % 3 else b"key-%d" % serial,
            os.urandom(size),
            list(_HEADERS[: serial % 5]) if serial % 2 else [],
        )
        for serial in range(count)
    ]


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*.journal"))}


def _reopened(directory: Path, segment_bytes: int) -> list[JournalRecord]:
    store = JournalStore(directory, max_bytes=1 << 26, segment_bytes=segment_bytes)
    store.open()
    try:
        return list(store.read_pending(0, store.next_serial))
    finally:
        store.close()


def _identity_of(record: JournalRecord) -> Identity:
    # As the sender journals one before a Produce request: a batch's id, epoch, sequence.
    return Identity(
        record.topic,
        record.partition,
        4_000 + record.serial,
        3,
        record.serial,
        0,
        record.serial,
        record.serial + 1,
    )


def _write_both_ways(
    tmp_path: Path, records: list[JournalRecord], *, identity_every: int = 0
) -> tuple[Counter[str], dict[str, dict[tuple[str, int], Identity]]]:
    """``records`` (and, with ``identity_every``, an identity after every that many) into
    ``tmp_path / "locked"`` through the locked path and into ``tmp_path / "tail"`` the
    producer's way (lock-free first). Returns the ways the tail side took ("tail",
    "locked", "identity tail") and each side's identities before it closed."""
    ways: Counter[str] = Counter()
    identities = {}
    for name, fast in (("locked", False), ("tail", True)):
        store = JournalStore(tmp_path / name, max_bytes=1 << 22, segment_bytes=64 * 1024)
        store.open()
        for record in records:
            if fast:
                ways[_append(store, record)] += 1
            else:
                store.append([record])
            if identity_every and record.serial % identity_every == identity_every - 1:
                identity = _identity_of(record)
                if fast and store.fast_identity(*identity) >= 0:
                    ways["identity tail"] += 1
                else:
                    store.append([identity])
        assert store.next_serial == len(records)
        identities[name] = store.identities()  # the lock settles what the tail wrote
        store.close()
    return ways, identities


@needs_tail
def test_the_tail_writes_the_same_files_as_the_locked_path(tmp_path: Path) -> None:
    records = _records(400)
    ways, _ = _write_both_ways(tmp_path, records)
    assert ways["tail"] > len(records) // 2  # the tail took most of them
    assert _files(tmp_path / "tail") == _files(tmp_path / "locked")
    assert _reopened(tmp_path / "tail", 64 * 1024) == records


@needs_tail
def test_the_store_sees_what_the_tail_wrote(store: JournalStore) -> None:
    # Without its lock taken since: the properties add the tail's count in.
    value = b"v" * 100
    store.append_record(0, "t", 0, 0, None, value, None)  # maps the segment
    store.append_record(1, "t", 0, 0, None, value, None)  # arms the tail
    used = store.used_bytes
    for serial in range(2, 7):
        assert store.fast_append(serial, "t", 1, 0, None, value) > 0
    assert store.next_serial == 7
    assert store.pending_records == 7
    assert store.used_bytes > used
    # Taking the lock settles it: the index knows each record's partition.
    assert store.identities() == {}
    assert store.pending_records == 7
    store.append([Done("t", 1, 2, 6)])
    assert store.pending_records == 2
    assert [r.serial for r in store.read_pending(0, store.next_serial)] == [0, 1]


@needs_tail
def test_the_tail_refuses_what_the_locked_path_must_do(store: JournalStore) -> None:
    value = b"v" * 10
    assert store.fast_append(0, "t", 0, 0, None, value) == -1  # not armed yet
    store.append_record(0, "t", 0, 0, None, value, None)
    store.append_record(1, "t", 0, 0, None, value, None)
    assert store.fast_append(1, "t", 0, 0, None, value) == -1  # a serial already taken
    refused: list[tuple[object, ...]] = [
        (2, "t", -1, 0, None, value),  # a partition out of range
        (2, "t", 2**31, 0, None, value),
        (2, "t", 0, 2**63, None, value),  # a timestamp past int64
        (2, "t", 0, 0, None, bytearray(value)),  # not bytes: the locked path converts
        (2, "t", 0, 0, "k", value),
        (2, b"t", 0, 0, None, value),
        (2, "\udcff", 0, 0, None, value),  # not UTF-8
        (2, "t" * 65_536, 0, 0, None, value),
        (2, "t", 0, 0, None, b"x" * 8192),  # past the segment: a roll is the lock's
        # Headers of another shape than the producer's checked list: the lock's to say.
        (2, "t", 0, 0, None, value, (("h", b"v"),)),
        (2, "t", 0, 0, None, value, [["h", b"v"]]),
        (2, "t", 0, 0, None, value, [("h", b"v", b"w")]),
        (2, "t", 0, 0, None, value, [(b"h", b"v")]),
        (2, "t", 0, 0, None, value, [("h", "v")]),
        (2, "t", 0, 0, None, value, [("h", bytearray(b"v"))]),
        (2, "t", 0, 0, None, value, [("\udcff", b"v")]),
        (2, "t", 0, 0, None, value, [("h" * 65_536, b"v")]),
        (2, "t", 0, 0, None, value, [("h", b"v")] * 65_536),
        (2, "t", 0, 0, None, value, [("h", b"x" * 8192)]),  # past the segment
    ]
    before = store.used_bytes
    for args in refused:
        assert store.fast_append(*args) == -1, args  # type: ignore[arg-type]
    assert store.used_bytes == before
    assert store.next_serial == 2
    assert store.fast_append(2, "t", 0, 0, None, value) > 0
    assert store.fast_append(3, "t", 0, 0, None, value, [("h", b"v"), ("n", None)]) > 0
    assert store.fast_append(4, "t", 0, 0, None, value, None) > 0  # no headers, said so
    assert [r.headers for r in store.read_pending(2, 5)] == [[], [("h", b"v"), ("n", None)], []]


@needs_tail
def test_a_record_with_headers_on_the_locked_path_arms_the_tail(store: JournalStore) -> None:
    # Before, only the header-less locked append armed it: a producer whose records all
    # had headers took the lock for every one (0.21x the memory level's rate).
    value = b"v" * 10
    store.append_record(0, "t", 0, 0, None, value, [("h", b"v")])  # maps the segment
    store.append_record(1, "t", 0, 0, None, value, [("h", b"v")])
    assert store.fast_append(2, "t", 0, 0, None, value, [("h", b"w")]) > 0
    assert [r.headers for r in store.read_pending(0, 3)] == [[("h", b"v")]] * 2 + [[("h", b"w")]]


@needs_tail
def test_a_record_with_headers_larger_than_a_segment_is_journaled_once(
    store: JournalStore,
) -> None:
    # The entry ends past the segment's size (a record larger than a segment fills one
    # alone): the tail is left unarmed rather than armed past its limit. Arming it there
    # raised ValueError after the entry was written: produce() failed for a record that
    # was in the journal, or the accumulator journaled it again under another serial.
    big = b"x" * (store.segment_bytes + 1000)
    assert store.append_record(0, "t", 0, 0, None, big, [("h", b"v")]) > store.segment_bytes
    assert store.fast_append(1, "t", 0, 0, None, b"small", [("h", b"v")]) == -1
    store.append_record(1, "t", 0, 0, None, b"small", [("h", b"v")])  # the next segment
    assert [r.serial for r in store.read_pending(0, 2)] == [0, 1]
    assert store.pending_records == 2


@needs_tail
def test_a_tail_is_armed_only_when_settled_and_disarms_past_its_mark() -> None:
    tail = JournalTail()
    target = bytearray(4096)
    assert tail.append(0, "t", 0, 0, None, b"v") == -1
    tail.arm(memoryview(target), 0, 4096, 0, 100)
    end = tail.append(0, "t", 0, 0, None, b"v" * 40)
    assert 0 < end < 100
    assert tail.armed
    assert tail.append(1, "t", 0, 0, None, b"v" * 80) > 100
    assert not tail.armed  # past drop_at: the store drops pages, then arms again
    assert tail.append(2, "t", 0, 0, None, b"v") == -1
    with pytest.raises(RuntimeError, match="settled"):
        tail.arm(memoryview(target), 0, 4096, 2, 10_000)
    pos, next_serial, added, runs, identities = tail.settle()
    assert (next_serial, added, identities) == (2, pos, None)
    assert runs == [("t", 0, 0, 2)]
    # Kept until applied (a store's apply cut short gets it again), and not armable then.
    assert tail.settle() == (pos, next_serial, added, runs, None)
    with pytest.raises(RuntimeError, match="settled"):
        tail.arm(memoryview(target), 0, 4096, 2, 10_000)
    tail.applied()
    assert tail.settle() is None
    with pytest.raises(ValueError, match="do not fit"):
        tail.arm(memoryview(target), 0, 4097, 2, 10_000)
    with pytest.raises(BufferError):
        tail.arm(memoryview(bytes(100)), 0, 50, 2, 10_000)


@needs_tail
def test_runs_split_by_topic_partition_and_gaps() -> None:
    tail = JournalTail()
    tail.arm(memoryview(bytearray(8192)), 0, 8192, 0, 8192)
    for serial, topic, partition in [
        (0, "a", 0),
        (1, "a", 0),
        (2, "a", 1),
        (3, "b", 1),
        (5, "b", 1),  # a serial skipped (taken by the locked path)
        (6, "b", 1),
    ]:
        assert tail.append(serial, topic, partition, 0, None, b"v") > 0
    assert tail.settle()[3] == [("a", 0, 0, 2), ("a", 1, 2, 3), ("b", 1, 3, 4), ("b", 1, 5, 7)]


@needs_tail
def test_a_writer_and_a_committer_together_lose_and_tear_nothing(tmp_path: Path) -> None:
    # One thread appends as the producer does; another writes DONE entries for what
    # was appended, syncs and reclaims, as the group commit does: small segments, so
    # the lock is taken (and the tail settled) between appends all the time.
    directory = tmp_path / "j"
    store = JournalStore(directory, max_bytes=1 << 26, segment_bytes=16 * 1024)
    store.open()
    records = _records(6_000, size=200)
    done_below = 0
    stop = threading.Event()
    errors: list[BaseException] = []

    def commit() -> None:
        nonlocal done_below
        try:
            while not stop.is_set() or done_below < store.next_serial - 1_000:
                below = store.next_serial - 500  # the newest stay pending
                for first in range(done_below, below, 50):
                    last = min(first + 49, below - 1)
                    for partition in range(3):
                        store.append([Done("t", partition, first, last)])
                        store.append([Done("tópico", partition, first, last)])
                done_below = max(done_below, below)
                store.sync()
                store.reclaim()
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    committer = threading.Thread(target=commit)
    committer.start()
    ways = [_append(store, record) for record in records]
    stop.set()
    committer.join(60)
    assert not committer.is_alive()
    assert not errors
    store.sync()
    assert store.next_serial == len(records)
    pending = store.pending_records
    store.close()
    assert "tail" in ways
    assert "locked" in ways
    survivors = _reopened(directory, 16 * 1024)
    assert survivors == records[done_below:]  # intact, in order, none lost
    assert len(survivors) == pending


@needs_tail
def test_identities_through_the_tail_write_what_the_locked_path_writes(tmp_path: Path) -> None:
    records = _records(300)
    ways, identities = _write_both_ways(tmp_path, records, identity_every=5)
    # The newest identity of each partition, on both sides.
    expected = {(r.topic, r.partition): _identity_of(r) for r in records if r.serial % 5 == 4}
    assert identities == {"locked": expected, "tail": expected}
    assert ways["identity tail"] > 30  # the tail took most of the 60
    assert _files(tmp_path / "tail") == _files(tmp_path / "locked")
    reopened = JournalStore(tmp_path / "tail", max_bytes=1 << 22, segment_bytes=64 * 1024)
    assert reopened.open().identities == expected
    reopened.close()


@needs_tail
def test_the_tail_refuses_identities_the_locked_path_must_do(store: JournalStore) -> None:
    good = ("t", 0, 7, 1, 0, 0, 0, 1)
    assert store.fast_identity(*good) == -1  # not armed yet
    store.append_record(0, "t", 0, 0, None, b"v", None)
    store.append_record(1, "t", 0, 0, None, b"v", None)  # arms the tail
    refused: list[tuple[object, ...]] = [
        ("t", -1, 7, 1, 0, 0, 0, 1),  # a partition out of range
        ("t", 2**31, 7, 1, 0, 0, 0, 1),
        ("t", 0, 2**63, 1, 0, 0, 0, 1),  # a producer id past int64
        ("t", 0, 7, 2**15, 0, 0, 0, 1),  # an epoch past int16
        ("t", 0, 7, 1, 2**31, 0, 0, 1),  # a sequence past int32
        ("t", 0, 7, 1, 0, -1, 0, 1),  # a serial below zero
        ("t", 0, 7, 1, 0, 0, 2**64, 1),
        ("t", 0, 7, 1, 0, 0, 0, 2**32),  # a count past uint32
        ("t", 0, 7, 1, 0, 0, 0, True),  # not an int
        (b"t", 0, 7, 1, 0, 0, 0, 1),
        ("\udcff", 0, 7, 1, 0, 0, 0, 1),  # not UTF-8
        ("t" * 4096, 0, 7, 1, 0, 0, 0, 1),  # past the segment: a roll is the lock's
    ]
    before = store.used_bytes
    for args in refused:
        assert store.fast_identity(*args) == -1, args  # type: ignore[arg-type]
    assert store.used_bytes == before
    assert store.fast_identity(*good) > 0
    assert store.used_bytes > before
    assert store.identities() == {("t", 0): Identity(*good)}


@needs_tail
def test_a_tail_that_wrote_identities_only_settles_them() -> None:
    tail = JournalTail()
    target = bytearray(4096)
    tail.arm(memoryview(target), 0, 4096, 5, 60)
    first = tail.identity("t", 1, 7, 0, 10, 2, 4, 3)
    assert first == 8 + 41 + 1  # prefix, fixed fields, topic
    assert tail.records == 0
    assert tail.added == first
    with pytest.raises(RuntimeError, match="settled"):
        tail.arm(memoryview(target), first, 4096, 5, 10_000)
    end = tail.identity("u", 0, 8, 0, 0, 5, 5, 1)
    assert end == 2 * first
    assert not tail.armed  # past drop_at, as for a record
    assert tail.identity("u", 0, 8, 0, 1, 6, 6, 1) == -1
    assert tail.settle() == (
        end,
        5,
        end,
        None,
        [("t", 1, 7, 0, 10, 2, 4, 3), ("u", 0, 8, 0, 0, 5, 5, 1)],
    )
    tail.applied()
    assert tail.settle() is None
    tail.arm(memoryview(target), end, 4096, 5, 10_000)  # settled: armable again


def test_without_the_extension_the_store_takes_the_locked_path(store: JournalStore) -> None:
    if JournalTail is not None:
        pytest.skip("the C journal tail is built")
    store.append_record(0, "t", 0, 0, None, b"v", None)
    assert store.fast_append(1, "t", 0, 0, None, b"v") == -1


class _SettleWhenCollected:
    """Garbage in a reference cycle whose finalizer settles the tail, as another thread
    may do while a finalizer's Python code has let go of the GIL, and then reuses the
    buffer the tail let go of (as a store that rolls and unmaps the segment)."""

    def __init__(self, tail: Any, target: bytearray, settled: list[object]) -> None:
        self.cycle = self
        self.tail, self.target, self.settled = tail, target, settled

    def __del__(self) -> None:
        self.settled.append(self.tail.settle())
        self.tail.applied()
        self.target[:] = b"\xaa" * len(self.target)  # reused: nothing may land here now


class _Allocated:
    """An object the collector counts: allocating one may start a collection."""


@contextlib.contextmanager
def _collecting_at_every_allocation() -> Iterator[None]:
    # Lists and small tuples come from free lists, which count no allocation: held
    # empty, every list or tuple a call makes may start a collection.
    held = [[None] for _ in range(200)] + [(i, 0, 0, 0) for i in range(3000)]
    held += [(i, 0, 0, 0, 0, 0, 0, 0) for i in range(3000)]
    threshold = gc.get_threshold()
    gc.set_threshold(1, 1, 1)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        del held


@needs_tail
@pytest.mark.skipif(
    sys.version_info >= (3, 12),
    reason="3.12+ runs the collector only between bytecodes, never inside a C call's allocation",
)
@pytest.mark.parametrize("write", ["record", "identity"])
def test_nothing_is_written_into_a_buffer_a_collection_settled_mid_append(write: str) -> None:
    # The tail's appends are atomic under the GIL only if nothing inside them can run
    # Python code. Before, a run or an identity was noted in a Python list between the
    # checks and the write: an allocation there could start a collection, a finalizer
    # could run (and let another thread settle the tail and unmap the segment), and the
    # entry was then written where the tail no longer had a buffer (a SIGSEGV in a full
    # test run, in tail_append).
    tail = JournalTail()
    target = bytearray(4096)
    tail.arm(memoryview(target), 0, 4096, 0, 4096)
    first = tail.append(0, "a", 0, 0, None, b"v" * 20)
    settled: list[object] = []
    with _collecting_at_every_allocation():
        _SettleWhenCollected(tail, target, settled)
        if write == "record":
            end = tail.append(1, "b", 0, 0, None, b"w" * 20)  # a new run: the old one noted
        else:
            end = tail.identity("b", 0, 7, 0, 0, 0, 0, 1)
        kept = []  # kept alive: an object freed at once gives its count back
        for _ in range(10):  # else at a later allocation
            if settled:
                break
            kept.append(_Allocated())
    assert settled, "the finalizer never ran"
    # Written before the finalizer let go of the buffer, or not at all: never after.
    assert bytes(target[first:]) == b"\xaa" * (4096 - first)
    assert end > first  # armed when called: written
    state = settled[0]  # and reported by the finalizer's settle
    assert isinstance(state, tuple)
    assert state[0] == end
    if write == "record":
        assert state[3] == [("a", 0, 0, 1), ("b", 0, 1, 2)]
    else:
        assert state[4] == [("b", 0, 7, 0, 0, 0, 0, 1)]


CHILD = Path(__file__).with_name("_journal_child.py")


@needs_tail
def test_appends_beside_a_committer_survive_collections_that_let_go_of_the_gil(
    tmp_path: Path,
) -> None:
    # The store-level twin of the test above, in a child process (the old code died of
    # SIGSEGV there at once): an appender and a committer thread, the collector running
    # every few allocations, finalizers that let the other thread run mid-append.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, str(CHILD), "collecting", str(tmp_path / "j"), "6000"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "survivors ok"
