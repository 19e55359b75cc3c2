"""What the consumer telemetry and logging tests share: fast group settings, consumers
polling in the background, and a bounded wait."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from pykaf._consumer._async_consumer import AsyncConsumer
from pykaf.broker._group_model import GroupSettings

__all__ = ["FAST", "FAST_GROUPS", "LIMIT", "polling", "until"]

LIMIT = 20.0
FAST = {
    "session_timeout": 6.0,
    "heartbeat_interval": 0.1,
    "retry_backoff": 0.02,
    "reconnect_backoff": 0.01,
    "partition_assignment_strategy": ("range",),
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
}
FAST_GROUPS = GroupSettings(initial_rebalance_delay=0.05, min_session_timeout=0.05)


@contextlib.asynccontextmanager
async def polling(
    *consumers: AsyncConsumer, tolerate: tuple[type[Exception], ...] = ()
) -> AsyncIterator[None]:
    """Consumers polling in the background (a group's joins happen in poll); errors of
    ``tolerate`` raised by a poll are ignored and polling goes on."""

    async def poll(consumer: AsyncConsumer) -> None:
        while True:
            with contextlib.suppress(*tolerate):
                await consumer.poll(timeout=0.05)
            await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(poll(c)) for c in consumers]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def until(condition: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(LIMIT):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {LIMIT}s: {what}") from None
