"""A broker that keeps dropping its connections (it closes each one on a request it cannot
take) is flapping: after ``FLAP_WARNINGS`` warned episodes within ``FLAP_WINDOW`` seconds
one more WARNING says so with the count, then its drops are counted and told at most once
a window, its recoveries at DEBUG, until it stays up for a window. Before: a WARNING and
an INFO every second for as long as it went on (a consumer group on the mock cluster)."""

from __future__ import annotations

import logging

import pytest

from pykaf._client._address import Address
from pykaf._client._outages import FLAP_WARNINGS, FLAP_WINDOW, OutageLog
from pykaf.errors import BrokerConnectionError

ADDRESS = Address(host="127.0.0.1", port=9092)


def drops(outages: OutageLog, times: list[float]) -> None:
    """An episode at each time (a failure, then a connection 0.1 s later)."""
    for at in times:
        outages.broker_failed(ADDRESS, 1, BrokerConnectionError("connection lost"), at)
        outages.broker_reached(ADDRESS, 1, at + 0.1)


def flapped(caplog: pytest.LogCaptureFixture) -> OutageLog:
    """An outage log that has seen ten drops a second apart (t=100..109), its lines
    cleared; INFO and up captured."""
    caplog.set_level(logging.INFO, logger="pykaf.client")
    outages = OutageLog()
    drops(outages, [100.0 + i for i in range(10)])
    caplog.clear()
    return outages


def lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def test_a_flapping_broker_is_told_once_a_window_with_its_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="pykaf.client")
    outages = OutageLog()
    drops(outages, [100.0 + i for i in range(50)])  # one a second for 50 s
    warnings = lines(caplog, logging.WARNING)
    assert len(warnings) == FLAP_WARNINGS + 1, warnings
    assert all("has dropped" not in w for w in warnings[:FLAP_WARNINGS])
    assert f"It has dropped {FLAP_WARNINGS + 1} times in the last 60 s" in warnings[-1]
    assert len(lines(caplog, logging.INFO)) == FLAP_WARNINGS  # the ordinary recoveries
    caplog.clear()
    drops(outages, [100.0 + i for i in range(50, 70)])  # still at it, past a window
    (summary,) = lines(caplog, logging.WARNING)
    assert "It has dropped 61 times in the last 60 s" in summary
    # Told at the 4th drop (t=103), then once more a window later (t=163): 59 between.
    assert f"({int(FLAP_WINDOW) - 1} not told since the last time)" in summary
    assert lines(caplog, logging.INFO) == []


def test_a_broker_that_stays_up_for_a_window_is_warned_about_as_usual_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outages = flapped(caplog)
    drops(outages, [110.0 + FLAP_WINDOW])  # up for a whole window since the last drop
    (warning,) = lines(caplog, logging.WARNING)
    assert "has dropped" not in warning
    assert len(lines(caplog, logging.INFO)) == 1


def test_two_outages_a_few_seconds_apart_are_two_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pykaf.client")
    drops(OutageLog(), [100.0, 105.0])
    assert len(lines(caplog, logging.WARNING)) == 2
    assert len(lines(caplog, logging.INFO)) == 2


def test_a_long_outage_that_began_while_it_flapped_ends_at_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outages = flapped(caplog)
    outages.broker_failed(ADDRESS, 1, BrokerConnectionError("connection lost"), 110.0)
    outages.broker_reached(ADDRESS, 1, 700.0)  # down for ten minutes
    (recovered,) = lines(caplog, logging.INFO)
    assert "reachable again after 590.0 s" in recovered
