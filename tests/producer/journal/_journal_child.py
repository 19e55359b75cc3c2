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
"""

from __future__ import annotations

import random
import sys

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


if __name__ == "__main__":
    if sys.argv[1] == "hold":
        hold(sys.argv[2])
    elif sys.argv[1] == "unsynced":
        unsynced(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        append(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
