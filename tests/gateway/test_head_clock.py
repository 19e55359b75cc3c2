"""``HeadClock``: the slow-head deadlines of one loop, one timer for all of them. A head
still open past its deadline is expired once (between 1 and 1.25 timeouts); a head
completed in time never is; the timer stops once nothing is open; one clock per loop."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from pykaf.gateway._head_clock import _CLOCKS, HeadClock


def test_open_heads_expire_once_and_completed_ones_never() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        clock = HeadClock.of(loop, 0.2)
        assert HeadClock.of(loop, 0.2) is clock
        expired: list[str] = []
        slow = lambda: expired.append("slow")  # noqa: E731
        prompt = lambda: expired.append("prompt")  # noqa: E731
        started = loop.time()
        clock.watch(slow)
        clock.watch(prompt)
        clock.unwatch(prompt)  # its head completed in time
        for _ in range(100):  # bounded: 100 x 10 ms
            if expired:
                break
            await asyncio.sleep(0.01)
        waited = loop.time() - started
        assert expired == ["slow"]
        assert 0.2 <= waited <= 0.2 * 1.25 + 0.1  # a scheduling margin on a busy machine
        assert clock.open == {}
        await asyncio.sleep(0.15)  # more checks would find nothing: still expired once
        assert expired == ["slow"]
        assert clock._timer is None  # nothing open: no timer left running

    asyncio.run(main())


def test_each_loop_has_its_own_clock_and_a_closed_loop_leaves_none_behind() -> None:
    async def clock_of_this_loop() -> HeadClock:
        return HeadClock.of(asyncio.get_running_loop(), 1.0)

    first = asyncio.run(clock_of_this_loop())
    assert first is not asyncio.run(clock_of_this_loop())
    gc.collect()
    assert first._loop() is None  # a clock does not keep its loop (and itself) alive
    assert all(clock is not first for clocks in _CLOCKS.values() for clock in clocks.values())


def test_a_refusal_that_fails_does_not_spare_the_other_slow_heads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        clock = HeadClock.of(loop, 0.05)
        expired: list[str] = []

        def broken() -> None:
            raise ConnectionResetError("the transport went away")

        clock.watch(broken)
        clock.watch(lambda: expired.append("other"))
        for _ in range(100):  # bounded: 100 x 10 ms
            if expired:
                break
            await asyncio.sleep(0.01)
        clock.watch(lambda: expired.append("later"))  # the clock still runs after it
        for _ in range(100):
            if len(expired) == 2:
                break
            await asyncio.sleep(0.01)
        return expired

    with caplog.at_level(logging.ERROR, logger="pykaf.gateway"):
        assert asyncio.run(main()) == ["other", "later"]
    assert "refusing a slow request head failed" in caplog.text
