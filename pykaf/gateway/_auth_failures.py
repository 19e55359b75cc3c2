"""Failed authentications: counted always, logged once per episode per client address,
and budgeted per address.

A client retrying with a bad token may fail thousands of times a second; one WARNING when
its failures start (and one INFO line when they end, with their count) says everything a
log reader needs without a log storm. An episode ends when the address authenticates, or
after ``quiet`` seconds without a failure (the next failure opens a new episode).

``FailureBudget``: a password check with scrypt or PBKDF2 costs milliseconds of CPU, so
wrong passwords sent in a loop are a cheap way to load the gateway (and to guess). Each
address has a few failures to spend; past them it is refused (429) before its
credentials are looked at.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FailureBudget", "FailureEpisodes"]

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


@dataclass(slots=True)
class _Budget:
    left: float  # tries left: up to the limit, one more back every window / limit
    at: float  # when ``left`` was brought up to date
    refused: int  # requests refused since the address ran out (0: not out)


class FailureBudget:
    """Failed authentications each client address may have: ``limit`` at once, then one
    more every ``window / limit`` seconds (a token bucket per address; ``limit`` None: no
    budget). Only failures spend it: an address that authenticates is not slowed.

    ``wait(address)`` > 0 means: refuse it, without looking at its credentials. A slow
    check holds one try while it runs (``reserve``, then ``release``), so concurrent
    guesses from one address cannot exceed its budget either. One WARNING when an address
    is first refused, one INFO line when its budget is whole again (with how many
    requests were refused meanwhile): never a line per refusal.
    """

    def __init__(
        self, limit: int | None, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self._rate = 0.0 if limit is None else limit / window  # tries back per second
        self._clock = clock
        self._budgets: OrderedDict[str, _Budget] = OrderedDict()
        self._swept = clock()

    def __bool__(self) -> bool:
        """Whether some address spent tries lately. The usual case is none: then a
        request costs one truth test here, not an address lookup."""
        return bool(self._budgets)

    def wait(self, address: str) -> int:
        """0 when ``address`` may try its credentials, else the whole seconds (>= 1)
        until it may (a refusal: counted, and logged once per episode)."""
        budget = self._current(address, create=False)
        if budget is None or budget.left >= 1.0:
            return 0
        return self._refuse(address, budget)

    def reserve(self, address: str) -> int:
        """Hold one try of ``address`` for a check that runs now: 0 when held (then
        ``release`` it), else ``wait``'s answer (nothing held)."""
        budget = self._current(address, create=True)
        if budget is None:
            return 0
        if budget.left < 1.0:
            return self._refuse(address, budget)
        budget.left -= 1.0
        return 0

    def release(self, address: str) -> None:
        budget = self._budgets.get(address)
        if budget is not None and self.limit is not None:
            budget.left = min(float(self.limit), budget.left + 1.0)

    def failed(self, address: str) -> None:
        budget = self._current(address, create=True)
        if budget is not None:
            budget.left = max(0.0, budget.left - 1.0)

    def _current(self, address: str, *, create: bool) -> _Budget | None:
        """``address``'s budget brought up to now (None: no budget, or a whole one not
        asked to be created; a whole budget is forgotten)."""
        if self.limit is None:
            return None
        now = self._clock()
        if now - self._swept >= self.window:
            self._sweep(now)
        budget = self._budgets.get(address)
        if budget is None:
            if not create:
                return None
            budget = self._budgets[address] = _Budget(float(self.limit), now, 0)
            while len(self._budgets) > _MAX_ADDRESSES:
                # The oldest is forgotten: it comes back whole, which costs at most
                # ``limit`` more checks from it.
                self._budgets.popitem(last=False)
            return budget
        self._refill(address, budget, now)
        if budget.left >= self.limit and not create:
            del self._budgets[address]
            return None
        self._budgets.move_to_end(address)
        return budget

    def _refill(self, address: str, budget: _Budget, now: float) -> None:
        assert self.limit is not None
        budget.left = min(float(self.limit), budget.left + (now - budget.at) * self._rate)
        budget.at = now
        if budget.refused and budget.left >= self.limit:
            log.info(
                "%s may try to authenticate again: %d request(s) from it were refused"
                " while it had no tries left",
                address,
                budget.refused,
            )
            budget.refused = 0

    def _sweep(self, now: float) -> None:
        # Whole budgets are forgotten (and their episodes ended) at most once a window:
        # an address that stopped trying must not keep the check on every request.
        self._swept = now
        for address, budget in list(self._budgets.items()):
            self._refill(address, budget, now)
            if self.limit is not None and budget.left >= self.limit:
                del self._budgets[address]

    def _refuse(self, address: str, budget: _Budget) -> int:
        budget.refused += 1
        if budget.refused == 1:
            log.warning(
                "%s failed to authenticate %d times within %g s: its requests get 429,"
                " without their credentials being checked, until it has a try again"
                " (one every %g s); refusals are counted, not logged, until its budget"
                " is whole",
                address,
                self.limit,
                self.window,
                self.window / (self.limit or 1),
            )
        return max(1, math.ceil((1.0 - budget.left) / self._rate))
