"""A producer process for the replay-deduplication tests, killed by its parent (SIGKILL).

``python _dedup_child.py DIR BOOTSTRAP COUNT``: a ``Producer`` with custody "journal"
whose DONE entries are held, so none is written: the store writes none at once (its
``try_append_dones`` says it cannot), the sender does not write the queued ones before
its next batch (as when that write fails: a full disk) and the group commit, which
writes them instead, waits a minute. It sends ``a<i>`` to partition 0 one at a time,
each its own batch, waits for each acknowledgement, then prints ``acked`` and waits to
be killed. Its journal then
holds COUNT batches the broker has, with their IDENTITY entries and no DONE: what a crash
right after the acknowledgements leaves.
"""

from __future__ import annotations

import sys

from pykaf._producer._producer import Producer


def main(directory: str, bootstrap: str, count: str) -> None:
    producer = Producer(
        bootstrap,
        custody="journal",
        journal_dir=directory,
        journal_fsync_interval=60.0,
        linger=0.0,
        request_timeout=5.0,
    )
    producer._accumulator.store.try_append_dones = lambda dones: False
    type(producer._accumulator.commit).dones_waiting = property(lambda self: False)
    for i in range(int(count)):
        producer.send("t", b"a%d" % i, partition=0).result(30)
    print("acked", flush=True)
    sys.stdin.readline()


if __name__ == "__main__":
    main(*sys.argv[1:4])
