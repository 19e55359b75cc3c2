"""``PeerLog``: what a client can make the server log is said once a minute with a
count (and counted for /metrics); the rest passes through unchanged."""

from __future__ import annotations

import logging

import pytest

from pykaf.gateway import LimitSettings
from pykaf.gateway._limits import Limits
from pykaf.gateway._peer_log import QUIET_FOR, PeerLog


def test_invalid_requests_are_said_once_a_minute_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [1000.0]
    limits = Limits(LimitSettings())
    log = PeerLog(logging.getLogger("test.peer"), limits, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.peer"):
        for _ in range(5):
            log.warning("Invalid HTTP request received.")
        now[0] += QUIET_FOR + 1
        log.warning("Unsupported upgrade request.")
        log.warning("Invalid HTTP request received.")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "Invalid HTTP request received." in lines[0]
    assert "more since" not in lines[0]
    assert "Unsupported upgrade request.; 4 more since the last line" in lines[1]
    assert limits.rejected["invalid_request"] == 7


def test_everything_else_goes_to_the_logger_unchanged(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.peer.other")
    log = PeerLog(logger, None)
    with caplog.at_level(logging.INFO, logger="test.peer.other"):
        log.error("Exception in ASGI application")
        log.error("Exception in ASGI application")
        log.info("%s - started", "x")
    assert [r.getMessage() for r in caplog.records] == [
        "Exception in ASGI application",
        "Exception in ASGI application",
        "x - started",
    ]
    assert log.level == logger.level
