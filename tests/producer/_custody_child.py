"""A producer process for the custody crash tests, killed by its parent (SIGKILL).

``python _custody_child.py DIR BOOTSTRAP LEVEL``: opens a ``Producer`` with that custody
on journal DIR, sends one record and waits for it (metadata known, connection up), prints
``ready``, waits for a line on stdin (the parent takes the brokers down or holds their
answers meanwhile), then produces ``c<i>`` to partition i % 3 for ever, printing
``R <i>`` only after produce() returned: a printed line is a record the caller was told
is in custody, which must reach Kafka whatever happens to this process.
"""

from __future__ import annotations

import sys

from pykaf._producer._producer import Producer


def main(directory: str, bootstrap: str, level: str) -> None:
    producer = Producer(
        bootstrap,
        custody=level,
        journal_dir=directory,
        linger=0.002,
        request_timeout=2.0,
        retry_backoff_max=0.2,
        max_block=60.0,
    )
    producer.send("t", b"warm", partition=0).result(30)
    print("ready", flush=True)
    sys.stdin.readline()
    i = 0
    while True:
        producer.produce("t", b"c%d" % i, partition=i % 3)
        print(f"R {i}", flush=True)
        i += 1


if __name__ == "__main__":
    main(*sys.argv[1:4])
