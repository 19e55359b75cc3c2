"""Failure episodes: the first failure of a thing begins one, repeats are counted, the first
success ends it.

The rule "WARNING once per episode, repeats counted, INFO on recovery" is the same for a
broker that cannot be reached, a cluster with no broker at all, a group that cannot be joined
and a fetch never answered; this is its one bookkeeping, pure (time is passed in), so the
client's outage log and the consumer's health share it and word their own lines.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Episode", "Episodes"]

K = TypeVar("K", bound=Hashable)


@dataclass(slots=True)
class Episode:
    since: float  # when the first failure of the episode happened
    failures: int


class Episodes(Generic[K]):
    """The failure episodes going on, by key."""

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open: dict[K, Episode] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._open

    def failures(self, key: K) -> int:
        """Failures of ``key`` in its current episode (0 when none is going on)."""
        episode = self._open.get(key)
        return 0 if episode is None else episode.failures

    def failed(self, key: K, now: float) -> Episode:
        """Count one failure of ``key``; ``failures == 1`` on the result means it began an
        episode (the caller's cue to log at WARNING)."""
        episode = self._open.get(key)
        if episode is None:
            episode = self._open[key] = Episode(since=now, failures=1)
        else:
            episode.failures += 1
        return episode

    def ended(self, key: K) -> Episode | None:
        """``key`` works again: the episode it ends (to report at INFO), or None."""
        return self._open.pop(key, None)
