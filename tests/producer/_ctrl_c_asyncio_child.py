"""Ctrl-C (a real SIGINT) into ``asyncio.run(main())`` while an ``AsyncProducer`` produces:
asyncio cancels ``main``, ``async with`` closes the producer. Prints what was produced and
reported, then (journal levels) what a new producer on the directory recovered.

    python _ctrl_c_asyncio_child.py memory|journal|journal_sync await|send
"""

from __future__ import annotations

import asyncio
import signal
import sys
import tempfile
from collections import Counter
from typing import Any

from pykaf import AsyncProducer, Producer
from pykaf.broker import BlockingCluster

CUSTODY, STYLE = sys.argv[1], sys.argv[2]
INTERRUPT_AFTER = 2_000  # records produced before the SIGINT
BOUND = 2_000_000  # records at most, should the interrupt never land

reports: Counter[str] = Counter()
reported: set[int] = set()
produced = 0


def report_for(n: int) -> Any:
    def report(metadata: object, error: BaseException | None) -> None:
        assert n not in reported, f"record {n} reported twice"
        reported.add(n)
        reports["ok" if error is None else type(error).__name__] += 1

    return report


def on_future(n: int) -> Any:
    report = report_for(n)

    def done(future: asyncio.Future[Any]) -> None:
        report(None, None if future.exception() is None else future.exception())

    return done


async def main(bootstrap: str, directory: str) -> None:
    global produced
    options: dict[str, Any] = {"custody": CUSTODY, "linger": 0.005}
    if CUSTODY != "memory":
        options["journal_dir"] = directory
    async with AsyncProducer(bootstrap, **options) as producer:
        await producer.produce("t", b"warm")
        await producer.flush(10)
        for n in range(BOUND):
            if STYLE == "await":
                await producer.produce("t", b"v%d" % n, on_delivery=report_for(n))
            else:
                producer.send("t", b"v%d" % n).add_done_callback(on_future(n))
                if n % 100 == 0:
                    await asyncio.sleep(0)
            produced = n + 1
            if produced == INTERRUPT_AFTER:
                # A real SIGINT, raised here so that where it lands does not depend on
                # thread timing: asyncio's handler cancels main() at the loop's next turn.
                signal.raise_signal(signal.SIGINT)


with BlockingCluster(brokers=1) as cluster, tempfile.TemporaryDirectory() as directory:
    cluster.create_topic("t", partitions=3)
    try:
        asyncio.run(main(cluster.bootstrap, directory))
        print("NOT INTERRUPTED")
    except KeyboardInterrupt:
        pass
    recovered = 0
    if CUSTODY != "memory":
        with Producer(cluster.bootstrap, custody=CUSTODY, journal_dir=directory) as again:
            recovered = sum(again.recovered().values())
            assert again.flush(30) == 0
    print("produced", produced, "reported", len(reported), dict(sorted(reports.items())),
          "recovered", recovered)  # fmt: skip
