"""Batches that expire (delivery_timeout) while no broker answers free their memory in
the pump that fails them, not at a later pump that may never come: with every broker
down and nothing else to do the loop sleeps, and a journal's feeder waiting for that
memory waited with it (500 records unreported past flush(30) in 1 run of 30 of
``test_custody_spill.py::test_journal_delivery_timeout_fails_journaled_records_that_wait_too_long``)."""

from __future__ import annotations

import asyncio
from typing import Any

from pykaf._producer._async_producer import AsyncProducer
from pykaf.broker import Cluster

OUTAGE: dict[str, Any] = {
    "request_timeout": 0.5,
    "delivery_timeout": 0.6,
    "max_block": 0.5,
    "linger": 0.002,
    "retry_backoff_max": 0.1,
}


async def test_expired_batches_free_their_memory_in_the_pump_that_fails_them() -> None:
    async with Cluster(brokers=1) as cluster:
        await cluster.create_topic("t", 1)
        async with AsyncProducer(cluster.bootstrap, **OUTAGE) as producer:
            await producer.send("t", b"warm", partition=0)
            await cluster.faults.broker_down(1)
            reports: list[Any] = []
            engine = producer._engine
            assert engine is not None
            accumulator = producer._accumulator
            after_pumps: list[tuple[int, int]] = []  # (reports so far, bytes held)
            pump = engine.pump

            def watched() -> None:
                pump()
                after_pumps.append((len(reports), accumulator.used))

            engine.pump = watched  # type: ignore[method-assign]
            for _ in range(20):
                await producer.produce("t", bytes(1000), on_delivery=lambda m, e: reports.append(e))
            async with asyncio.timeout(10):
                while len(reports) < 20:
                    await asyncio.sleep(0.01)
            # The pump that reported the last of them freed their memory before it ended.
            first = next(held for count, held in after_pumps if count == 20)
            assert first == 0, f"{first} bytes still held after the pump that failed them"
            await cluster.faults.broker_up(1)
