"""Bounded exponential backoff with jitter, and the reconnect state of one broker address.

Pure: the clock reading (``now``, seconds on any monotonic clock) and the random draw
(``rand``, uniform in [0, 1)) are passed in, so every schedule can be tested exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Backoff", "ReconnectState"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """``initial * multiplier ** (attempt - 1)``, capped at ``maximum``, then jittered by
    ``±jitter`` (a fraction) and capped again, so the bound holds after jitter too.

    Jitter keeps many clients (or many connections of one client) that lost the same broker
    from reconnecting in lockstep when it comes back.
    """

    initial: float
    maximum: float
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not self.initial >= 0:
            raise ValueError(f"initial backoff must be >= 0 seconds, not {self.initial!r}")
        if not self.maximum >= self.initial:
            raise ValueError(
                f"maximum backoff ({self.maximum!r}) must be >= the initial ({self.initial!r})"
            )
        if not self.multiplier >= 1:
            raise ValueError(f"backoff multiplier must be >= 1, not {self.multiplier!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff jitter must be in [0, 1], not {self.jitter!r}")

    def delay(self, attempt: int, rand: float) -> float:
        """The wait before retry number ``attempt`` (1 after the first failure)."""
        if attempt <= 0:
            return 0.0
        # Compare exponents rather than computing huge powers: attempt may grow without bound.
        base = self.maximum
        if self.multiplier == 1 or attempt < 64:
            base = min(self.maximum, self.initial * self.multiplier ** (attempt - 1))
        spread = base * self.jitter * (2.0 * rand - 1.0)
        return min(self.maximum, max(0.0, base + spread))


class ReconnectState:
    """When the next connection attempt to one address may start, and why it failed last.

    Mutable on purpose (one per address, updated on every attempt); a value would have to
    be replaced in the owner's map on every failure for no gain.
    """

    __slots__ = ("_backoff", "failures", "last_error", "next_attempt_at")

    def __init__(self, backoff: Backoff) -> None:
        self._backoff = backoff
        self.failures = 0
        self.next_attempt_at = 0.0
        self.last_error: BaseException | None = None

    def ready(self, now: float) -> bool:
        """May a connection attempt start at ``now``?"""
        return now >= self.next_attempt_at

    def wait(self, now: float) -> float:
        """Seconds until an attempt may start (0 if one may start now)."""
        return max(0.0, self.next_attempt_at - now)

    @property
    def failing(self) -> bool:
        """True after a failure, until the next success."""
        return self.failures > 0

    def failed(self, now: float, rand: float, error: BaseException | None = None) -> float:
        """Record a failed attempt (or a connection lost); returns the delay scheduled."""
        self.failures += 1
        self.last_error = error
        delay = self._backoff.delay(self.failures, rand)
        self.next_attempt_at = now + delay
        return delay

    def succeeded(self) -> None:
        """A connection was established: the next failure starts from the initial delay."""
        self.failures = 0
        self.last_error = None
        self.next_attempt_at = 0.0
