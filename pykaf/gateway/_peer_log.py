"""What a client can make the server log: once a minute, with a count, not once a request.

uvicorn's HTTP protocols log a WARNING for every request they cannot parse ("Invalid HTTP
request received.", answered 400) and every unsupported upgrade: any client can write as
many lines as it sends requests. Broken on purpose (3,000 connections of garbage), that
was 2,144 WARNING lines; and a server whose stderr is a pipe nobody drains stopped
answering altogether, its event loop blocked in the log handler's write.

``PeerLog`` stands in for the protocol's logger: such a warning is said at once, then
counted for a minute and said again with the count (the first after a quiet minute is
said at once again), and counted in ``Limits.rejected["invalid_request"]`` (/metrics).
Everything else the protocol or its request cycle logs (an error of the app's, with its
trace) goes to the logger unchanged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from pykaf.gateway._limits import Limits

__all__ = ["PeerLog"]

QUIET_FOR: Final = 60.0  # seconds between two lines about invalid requests


class PeerLog:
    """The protocol's ``logger``: ``warning`` throttled (see the module doc), the rest
    passed on. One per server, shared by its connections."""

    def __init__(
        self,
        logger: logging.Logger,
        limits: Limits | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._limits = limits
        self._clock = clock
        self._lock = threading.Lock()  # servers in threads share nothing else; cheap
        self._quiet_until = float("-inf")
        self._held = 0  # warnings counted since the last line

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        if self._limits is not None:
            self._limits.rejected["invalid_request"] += 1
        now = self._clock()
        with self._lock:
            if now < self._quiet_until:
                self._held += 1
                return
            held, self._held = self._held, 0
            self._quiet_until = now + QUIET_FOR
        text = msg % args if args else msg
        more = f"; {held} more since the last line" if held else ""
        self._logger.warning(
            "a client's request was refused (400 or closed): %s%s (said at most once a"
            " minute, with a count; /metrics counts every one)",
            text,
            more,
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)
