"""``on_error`` and ``close(timeout)``: bad arguments are refused with a clear error, and
an episode is told once (WARNING), counted, and its end told at INFO; a callback that
raises is logged and never stops the consumer."""

from __future__ import annotations

import logging

import pytest

from pykaf._consumer._async_consumer import AsyncConsumer
from pykaf._consumer._consumer import Consumer
from pykaf._consumer._health import Health

LOGGER = "pykaf.consumer"


def test_on_error_must_be_callable() -> None:
    with pytest.raises(TypeError, match="on_error must be a function"):
        AsyncConsumer("127.0.0.1:9", on_error="print")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on_error must be a function"):
        Consumer("127.0.0.1:9", on_error=42)  # type: ignore[arg-type]


def test_an_async_on_error_is_refused_or_said_not_to_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing awaits on_error: an ``async def`` one is refused at construction, and an
    async callable that slips past (a coroutine returned) is said at ERROR. Before: both
    accepted, and the body never ran."""

    async def on_error(_error: BaseException) -> None:
        raise AssertionError("never called")

    with pytest.raises(TypeError, match="on_error is an async function"):
        AsyncConsumer("127.0.0.1:9", on_error=on_error)
    with pytest.raises(TypeError, match="on_error is an async function"):
        Consumer("127.0.0.1:9", on_error=on_error)
    # A plain callable returning a coroutine: what iscoroutinefunction cannot see.
    hidden = lambda error: on_error(error)  # noqa: E731, PLW0108
    health = Health(logging.getLogger(LOGGER), hidden)
    with caplog.at_level(logging.ERROR, LOGGER):
        health.report(RuntimeError("a failure"))
    told = [r.levelname for r in caplog.records if "not awaited" in r.getMessage()]
    assert told == ["ERROR"]


@pytest.mark.parametrize("bad", [0, -1.0, "2", True, float("nan")])
async def test_close_timeout_must_be_positive_seconds(bad: object) -> None:
    consumer = AsyncConsumer("127.0.0.1:9")
    with pytest.raises(ValueError, match="close timeout must be > 0 seconds"):
        await consumer.close(bad)  # type: ignore[arg-type]
    await consumer.close()
    sync = Consumer("127.0.0.1:9")
    with pytest.raises(ValueError, match="close timeout must be > 0 seconds"):
        sync.close(bad)  # type: ignore[arg-type]
    sync.close()


def test_an_episode_warns_once_counts_repeats_and_tells_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    now = [10.0]
    health = Health(logging.getLogger(LOGGER), None, clock=lambda: now[0])
    assert health.failed("x", "x is down", hint="check x")
    now[0] += 1.0
    assert not health.failed("x", "x is down", hint="check x")
    assert not health.failed("x", "x is down", hint="check x")
    now[0] += 1.5
    health.recovered("x", "x is back")
    assert health.failed("x", "x is down again")  # a new episode
    levels = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert levels == [
        (logging.WARNING, "x is down (check x)"),
        (logging.DEBUG, "x is down (failure 2 of this episode)"),
        (logging.DEBUG, "x is down (failure 3 of this episode)"),
        (logging.INFO, "x is back (after 3 failure(s) in 2.5 s)"),
        (logging.WARNING, "x is down again"),
    ]


def test_an_on_error_that_raises_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    def broken(error: BaseException) -> None:
        raise RuntimeError("oops")

    health = Health(logging.getLogger(LOGGER), broken)
    health.report(ValueError("seen"))  # does not raise
    assert any("on_error callback raised" in r.getMessage() for r in caplog.records)
