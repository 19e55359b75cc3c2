"""Failed authentications: counted always, logged once per episode per client address.

A client retrying with a bad token may fail thousands of times a second; one WARNING when
its failures start (and one INFO line when they end, with their count) says everything a
log reader needs without a log storm. An episode ends when the address authenticates, or
after ``quiet`` seconds without a failure (the next failure opens a new episode).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FailureEpisodes"]

log = logging.getLogger("pykaf.gateway.security")

# Addresses tracked at once: a scan from many addresses must not grow memory without end
# (the oldest episode is forgotten; its next failure logs again, which is honest).
_MAX_ADDRESSES = 4096


@dataclass(slots=True)
class _Episode:
    failures: int
    last: float


class FailureEpisodes:
    def __init__(self, quiet: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.quiet = quiet
        self._clock = clock
        self._open: OrderedDict[str, _Episode] = OrderedDict()

    def failed(self, address: str, reason: str) -> None:
        now = self._clock()
        episode = self._open.get(address)
        if episode is not None and now - episode.last <= self.quiet:
            episode.failures += 1
            episode.last = now
            self._open.move_to_end(address)
            return
        if episode is not None:
            self._ended(address, episode, "went quiet")
        self._open[address] = _Episode(1, now)
        self._open.move_to_end(address)
        while len(self._open) > _MAX_ADDRESSES:
            self._open.popitem(last=False)
        log.warning(
            "authentication failed for a request from %s (%s); further failures from this"
            " address are counted, not logged, until it authenticates or is quiet for %g s",
            address,
            reason,
            self.quiet,
        )

    def succeeded(self, address: str) -> None:
        if self._open:  # the usual case is no open episode at all: one truth test
            episode = self._open.pop(address, None)
            if episode is not None:
                self._ended(address, episode, "then authenticated")

    def _ended(self, address: str, episode: _Episode, how: str) -> None:
        log.info("%d failed authentication(s) from %s, %s", episode.failures, address, how)
