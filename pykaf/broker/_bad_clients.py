"""Clients that break the protocol, told in the log once a minute with a count.

A broker closes the connection of a client that sends what it cannot parse (a frame too
short, a header that runs past its frame, an unknown API, bytes before authentication)
and said so at WARNING, once per connection: any client could write as many lines as it
opened connections. Broken on purpose (2,000 connections of garbage), that was 1,998
lines; and a broker whose stderr was a pipe nobody drained stopped answering, its event
loop blocked in the log handler's write (5,000 connections took 446 s, then every
client timed out). Now: the first is said at once, the next ones are counted for a
minute and said with the count; a quiet minute starts over. Each one is still told at
DEBUG.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

__all__ = ["BadClients"]

QUIET_FOR: Final = 60.0  # seconds between two lines about bad clients


class BadClients:
    """One broker's log of protocol violations by its clients (see the module doc)."""

    def __init__(
        self, logger: logging.Logger, node_id: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger = logger
        self._node_id = node_id
        self._clock = clock
        self._quiet_until = float("-inf")
        self._held = 0  # violations since the last line
        self.count = 0  # every one so far

    def closed(self, peer: str, why: BaseException) -> None:
        """The connection from ``peer`` was closed for ``why``."""
        self.count += 1
        # Each one at DEBUG (nothing is formatted unless DEBUG is on).
        self._logger.debug("broker %d: closing connection from %s: %s", self._node_id, peer, why)
        now = self._clock()
        if now < self._quiet_until:
            self._held += 1
            return
        held, self._held = self._held, 0
        self._quiet_until = now + QUIET_FOR
        self._logger.warning(
            "broker %d: closing connection from %s: %s%s (said at most once a minute)",
            self._node_id,
            peer,
            why,
            f"; {held} more connection(s) closed for breaking the protocol since the last line"
            if held
            else "",
        )
