"""A child process for the journal tests: holds a journal's lock, or appends until killed.

``hold DIR``: open the store, print ``locked``, wait for stdin to close.
``append DIR SEED COUNT``: open the store, then per step append one to three records (one
partition of three, chosen by the seed) and now and then a DONE of the oldest pending
records of a partition, sync, and only then print what became durable: ``R serial partition`` or
``D partition first last`` (``T ...`` first: a DONE about to be appended, which a
kill may leave on disk unacknowledged). The parent SIGKILLs it at a random moment; a printed line is
the "acknowledged to the caller" the recovery must keep.
``unsynced DIR SEED COUNT``: append records (mostly one per call, the producer's hot path,
copied into the mapped segment) and print ``R serial`` right after each append, with no
sync: a SIGKILL must lose none of them (they are in the page cache).
``collecting DIR COUNT``: append COUNT records the producer's way (the lock-free tail
first) while a second thread writes DONE entries, syncs and reclaims, with the cyclic
collector running every few allocations and finalizers that let go of the GIL; then
reopen and print ``survivors ok`` when what is pending is exactly the records past the
last DONE, in order (``survivors BAD ...`` else).
"""

from __future__ import annotations

import gc
import os
import random
import sys
import threading
import time

from pykaf._producer.journal import Done, JournalRecord, JournalStore


def _store(directory: str) -> JournalStore:
    return JournalStore(directory, max_bytes=64 << 20, segment_bytes=16 * 1024)


def hold(directory: str) -> None:
    store = _store(directory)
    store.open()
    print("locked", flush=True)
    sys.stdin.read()
    store.close()


def append(directory: str, seed: int, count: int) -> None:
    store = _store(directory)
    store.open()
    pending = {
        p: [r.serial for r in store.read_pending(0, store.next_serial) if r.partition == p]
        for p in range(3)
    }
    print(f"open {store.next_serial}", flush=True)
    rng = random.Random(seed)
    for _ in range(count):
        serial = store.next_serial
        partition = rng.randrange(3)
        batch = [
            JournalRecord(
                serial + i, "t", partition, i, None, rng.randbytes(rng.randrange(900)), []
            )
            for i in range(rng.randint(1, 3))
        ]
        entries: list[JournalRecord | Done] = list(batch)
        done: Done | None = None
        other = rng.randrange(3)
        if pending[other] and rng.random() < 0.4:
            upto = pending[other][: rng.randint(1, len(pending[other]))]
            done = Done("t", other, upto[0], upto[-1])
            entries.append(done)
            # Said before the append: a kill after it may leave this DONE on disk.
            print(f"T {other} {upto[0]} {upto[-1]}", flush=True)
        store.append(entries)
        store.sync()
        if rng.random() < 0.1:
            store.reclaim()
        lines = [f"R {r.serial} {r.partition}" for r in batch]
        pending[partition].extend(r.serial for r in batch)
        if done is not None:
            lines.append(f"D {done.partition} {done.first_serial} {done.last_serial}")
            pending[other] = [s for s in pending[other] if s > done.last_serial]
        print("\n".join(lines), flush=True)
    store.close()


def unsynced(directory: str, seed: int, count: int) -> None:
    store = _store(directory)
    store.open()
    print(f"open {store.next_serial}", flush=True)
    rng = random.Random(seed)
    for _ in range(count):
        serial = store.next_serial
        records = [
            JournalRecord(serial + i, "t", 0, i, None, rng.randbytes(rng.randrange(2000)), [])
            for i in range(1 if rng.random() < 0.8 else 2)
        ]
        store.append(records)
        print("\n".join(f"R {r.serial}" for r in records), flush=True)
    store.close()


class _Garbage:
    """A reference cycle whose finalizer lets go of the GIL, as finalizer code may."""

    def __init__(self) -> None:
        self.cycle = self

    def __del__(self) -> None:
        time.sleep(0)


def collecting(directory: str, count: int) -> None:
    store = _store(directory)
    store.open()
    records = [
        JournalRecord(s, "t" if s % 11 else "u", (s // 7) % 3, 1, None, os.urandom(200), [])
        for s in range(count)
    ]
    stop = threading.Event()
    done_below = 0

    def commit() -> None:
        nonlocal done_below
        while not stop.is_set() or done_below < store.next_serial - 1_000:
            below = store.next_serial - 500  # the newest stay pending
            for first in range(done_below, below, 50):
                last = min(first + 49, below - 1)
                for partition in range(3):
                    store.append(
                        [Done("t", partition, first, last), Done("u", partition, first, last)]
                    )
            done_below = max(done_below, below)
            store.sync()
            store.reclaim()

    committer = threading.Thread(target=commit)
    committer.start()
    # Lists and small tuples come from free lists, which count no allocation: held empty.
    held = [[None] for _ in range(300)] + [(i, 0, 0, 0) for i in range(3_000)]
    gc.set_threshold(3, 1, 1)
    try:
        for r in records:
            _Garbage()
            if store.fast_append(r.serial, r.topic, r.partition, 1, None, r.value) < 0:
                store.append_record(r.serial, r.topic, r.partition, 1, None, r.value, None)
    finally:
        gc.set_threshold(700, 10, 10)
        del held
        stop.set()
        committer.join(60)
    store.sync()
    store.close()
    store = _store(directory)
    store.open()
    got = [(r.serial, r.value) for r in store.read_pending(0, store.next_serial)]
    store.close()
    want = [(r.serial, r.value) for r in records[done_below:]]
    print("survivors ok" if got == want else f"survivors BAD {len(got)} of {len(want)}")


if __name__ == "__main__":
    if sys.argv[1] == "hold":
        hold(sys.argv[2])
    elif sys.argv[1] == "collecting":
        collecting(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "unsynced":
        unsynced(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        append(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
