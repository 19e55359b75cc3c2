"""What happens to an ``AsyncProducer`` its program leaves open: the loop's end closes it
(``close_when_loop_ends``), with a short flush and one WARNING that says what was
buffered; the blocking ``Producer`` shares the bounds and the line (its interpreter-exit
hook). Kept apart from the producer: none of it runs on the produce path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Final, Protocol

__all__ = [
    "EXIT_FLUSH",
    "INTERRUPTED_FLUSH",
    "LeftOpen",
    "OPEN_GUARDS",
    "close_when_loop_ends",
    "warn_unclosed",
]

log = logging.getLogger("pykaf.producer")

#: Seconds an open producer flushes when its program ends (interpreter exit, the end of
#: ``asyncio.run``), and after Ctrl-C or a cancellation in ``with``, before failing what
#: is left: short, the user is leaving.
EXIT_FLUSH: Final = 5.0
INTERRUPTED_FLUSH: Final = 3.0


class LeftOpen(Protocol):
    """What the guard needs of an ``AsyncProducer`` (a protocol: the producer imports
    this module, not the other way round)."""

    @property
    def _closing(self) -> asyncio.Future[int] | None: ...

    def _buffered(self) -> int: ...

    async def close(self, timeout: float | None = None) -> int: ...

    async def _close(self, timeout: float | None) -> int: ...


def warn_unclosed(producer: object, pending: int, failed: int, ending: str) -> None:
    """The one line that says a producer was left open with records buffered."""
    if pending:
        log.warning(
            "%r was not closed before %s: %d record(s) were still buffered; after a flush"
            " of up to %gs, %d failed with ProducerClosedError (reported to their callbacks"
            " or on_error); call close() or use 'with'",
            producer,
            ending,
            pending,
            EXIT_FLUSH,
            failed,
        )


async def close_when_loop_ends(producer: LeftOpen) -> AsyncGenerator[None]:
    """An async generator the loop knows: ``asyncio.run`` closes it as it ends (after
    cancelling the tasks), which closes a producer the program left open."""
    try:
        yield
    finally:
        pending = producer._buffered()
        if producer._closing is None:
            failed = await producer.close(EXIT_FLUSH)
            warn_unclosed(producer, pending, failed, "its event loop ended")
        elif not producer._closing.done():
            # A close still under way, cut short with the loop (a second Ctrl-C): no more
            # waiting. (One that ended cut short leaves ``_closing`` None: the branch above
            # finishes it, and the engine's end is already done.)
            failed = await producer._close(0.0)
            if pending:
                log.warning(
                    "%r: its close was interrupted; %d record(s) still buffered failed with"
                    " ProducerClosedError (reported to their callbacks or on_error)",
                    producer,
                    failed,
                )


# The guards of open producers. Strong references on purpose (the loop keeps only weak
# ones): a producer the program dropped without close() still owes reports.
OPEN_GUARDS: set[AsyncGenerator[None]] = set()
