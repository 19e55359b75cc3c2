"""How a consumer's background failures are told: once per episode, never silently.

A failing episode (no metadata for the topics, a group that cannot be joined, a broker
that does not answer fetches) is logged at WARNING when it starts, with its cause and what
to check; repeats are counted (DEBUG), and the recovery is logged at INFO with the count and
how long the episode lasted.
Failures the application must hear about go to the consumer's ``on_error(error)``
callback too (in the loop's thread; a callback that raises is logged, never propagated).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from typing import Any, TypeAlias

from pykaf._client._episodes import Episodes

__all__ = ["ConsumerErrorCallback", "Health", "check_on_error"]

ConsumerErrorCallback: TypeAlias = Callable[[BaseException], Any]


def check_on_error(on_error: object) -> ConsumerErrorCallback | None:
    if on_error is not None and not callable(on_error):
        raise TypeError(f"on_error must be a function (error), not {on_error!r}")
    if inspect.iscoroutinefunction(on_error):
        # Nothing awaits it: its body would never run (the producer's refuses it too).
        raise TypeError(
            "on_error is an async function, which the consumer does not await: pass a plain"
            " function (it may start a task with asyncio.create_task for async work)"
        )
    return on_error


class Health:
    """Episodes per key ("start", "join", "fetch 3"...) for one consumer."""

    def __init__(
        self,
        logger: logging.Logger,
        on_error: ConsumerErrorCallback | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self.on_error = on_error
        self._clock = clock
        self._failing: Episodes[str] = Episodes()

    def failing(self, key: str) -> bool:
        return key in self._failing

    def failures(self, key: str) -> int:
        """Failures of ``key`` in its current episode (0 when none is going on)."""
        return self._failing.failures(key)

    def failed(self, key: str, message: str, *, hint: str = "") -> bool:
        """One failure of ``key``; True when it starts an episode (logged at WARNING)."""
        count = self._failing.failed(key, self._clock()).failures
        if count == 1:
            self._logger.warning("%s%s", message, f" ({hint})" if hint else "")
            return True
        self._logger.debug("%s (failure %d of this episode)", message, count)
        return False

    def recovered(self, key: str, message: str | None) -> None:
        """``key`` works again: ends its episode (logged at INFO unless ``message`` is
        None, for an episode another key already tells of)."""
        episode = self._failing.ended(key)
        if episode is not None and message is not None:
            self._logger.info(
                "%s (after %d failure(s) in %.1f s)",
                message,
                episode.failures,
                self._clock() - episode.since,
            )

    def report(self, error: BaseException) -> None:
        """Hand ``error`` to ``on_error`` (if any)."""
        on_error = self.on_error
        if on_error is None:
            return
        try:
            returned = on_error(error)
        except Exception:
            self._logger.exception("the consumer's on_error callback raised")
            return
        if inspect.iscoroutine(returned):  # an async callable check_on_error could not see
            returned.close()
            self._logger.error("the consumer's on_error returned a coroutine, not awaited")
