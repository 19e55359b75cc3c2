"""Ctrl-C (a real SIGINT) into ``asyncio.run(main())`` while an ``AsyncConsumer`` hands out
buffered records: asyncio cancels ``main`` at the loop's next turn. Prints how many
records were handed out and what the group committed.

    python _consumer_ctrl_c_asyncio_child.py iterate|poll
"""

from __future__ import annotations

import asyncio
import signal
import sys

from pykaf import Admin, AsyncConsumer, Producer
from pykaf.broker import BlockingCluster

STYLE = sys.argv[1]
RECORDS = 30_000  # over 3 partitions: about 3 MiB, one fetch round of 1 MiB each
INTERRUPT_AFTER = 1_000

handed = 0


async def main(bootstrap: str) -> None:
    global handed
    async with AsyncConsumer(
        bootstrap, group_id="g", topics=["t"], auto_offset_reset="earliest"
    ) as consumer:
        if STYLE == "iterate":
            async for _record in consumer:
                handed += 1
                if handed == INTERRUPT_AFTER:
                    signal.raise_signal(signal.SIGINT)  # lands where asyncio lets it
        else:
            while True:
                before = handed
                handed += len(await consumer.poll(timeout=5.0, max_records=500))
                if before < INTERRUPT_AFTER <= handed:
                    signal.raise_signal(signal.SIGINT)


with BlockingCluster(brokers=1) as cluster:
    cluster.create_topic("t", partitions=3)
    with Producer(cluster.bootstrap) as producer:
        for i in range(RECORDS):
            producer.produce("t", b"value %05d" % i, partition=i % 3)
        assert producer.flush(30) == 0
    try:
        asyncio.run(main(cluster.bootstrap))
        print("NOT INTERRUPTED")
    except KeyboardInterrupt:
        pass
    with Admin(cluster.bootstrap) as admin:
        offsets = admin.list_group_offsets("g").ok
    committed = sum(o.committed or 0 for o in offsets.values())
    print("handed", handed, "committed", committed)
