"""``LogLimiter``: the first line of a key per window goes out, the rest are counted and
told (by a summary when the window ends, by the next line, or at flush). Time is a fake
clock; the timer is a list of callbacks the test runs itself."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from pykaf._telemetry._log_limit import LogLimiter

LOGGER = "pykaf.test-limit"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_storm_is_one_line_then_a_count_when_the_window_ends(
    caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    timers: list[tuple[float, Callable[[], object]]] = []
    limiter = LogLimiter(
        logging.getLogger(LOGGER),
        interval=10.0,
        unit="record(s)",
        clock=clock,
        schedule=lambda delay, callback: timers.append((delay, callback)),
    )
    assert limiter.log(logging.INFO, "E", "%d record(s) to t-%d retried", 5, 0, weight=5)
    for partition in range(1, 100):
        clock.now += 0.01
        assert not limiter.log(
            logging.INFO, "E", "%d record(s) to t-%d retried", 5, partition, weight=5
        )
    assert lines(caplog) == [(logging.INFO, "5 record(s) to t-0 retried")]
    assert [delay for delay, _ in timers] == [pytest.approx(10.0 - 0.01)]  # one timer
    clock.now = 110.0
    timers[0][1]()
    assert lines(caplog)[1] == (
        logging.INFO,
        "99 more like it held back, 495 record(s) in all in 10 s (the last: 5 record(s)"
        " to t-99 retried)",
    )
    # The window is over: the next line goes out at once.
    assert limiter.log(logging.INFO, "E", "again")
    assert lines(caplog)[2] == (logging.INFO, "again")


def test_keys_are_limited_apart(caplog: pytest.LogCaptureFixture, clock: Clock) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    limiter = LogLimiter(logging.getLogger(LOGGER), clock=clock)
    assert limiter.log(logging.ERROR, "A", "a1")
    assert limiter.log(logging.ERROR, "B", "b1")
    assert not limiter.log(logging.ERROR, "A", "a2")
    assert [m for _, m in lines(caplog)] == ["a1", "b1"]


def test_without_a_timer_the_next_line_or_flush_tells_the_count(
    caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    limiter = LogLimiter(logging.getLogger(LOGGER), interval=10.0, clock=clock)
    limiter.log(logging.WARNING, "k", "first")
    limiter.log(logging.WARNING, "k", "second")
    limiter.log(logging.WARNING, "k", "third")
    clock.now += 10.0
    limiter.log(logging.WARNING, "k", "fourth")
    limiter.log(logging.WARNING, "k", "fifth")
    assert [m for _, m in lines(caplog)] == [
        "first",
        "fourth [2 more like it held back since the line before]",
    ]
    clock.now += 1.0
    limiter.flush()
    assert lines(caplog)[-1] == (
        logging.WARNING,
        "1 more like it held back in 1 s (the last: fifth)",
    )
    limiter.flush()  # told once
    assert len(lines(caplog)) == 3


def test_a_level_nobody_logs_costs_nothing_and_counts_nothing(
    caplog: pytest.LogCaptureFixture, clock: Clock
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    limiter = LogLimiter(logging.getLogger(LOGGER), clock=clock)
    for _ in range(3):
        assert not limiter.log(logging.INFO, "k", "quiet")
    limiter.flush()
    assert lines(caplog) == []


def test_a_line_with_its_traceback(caplog: pytest.LogCaptureFixture, clock: Clock) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    limiter = LogLimiter(logging.getLogger(LOGGER), clock=clock)
    try:
        raise ValueError("boom")
    except ValueError:
        limiter.log(logging.ERROR, "cb", "a callback raised", exc_info=True)
    (record,) = [r for r in caplog.records if r.name == LOGGER]
    assert record.exc_info is not None
    assert record.exc_info[0] is ValueError
