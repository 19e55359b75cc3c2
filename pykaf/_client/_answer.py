"""A waiter of ``BrokerConnection.send_nowait``: a callback in the connection's queue of
futures, so an answer is handled in the loop turn it arrives, with no task."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["Answer"]


class Answer:
    """A waiter of ``send_nowait``: calls back instead of waking a coroutine. Quacks like
    the futures it shares the waiter queue with (``done``, ``set_result``,
    ``set_exception``)."""

    __slots__ = ("_callback", "_done", "_loop", "timer")

    def __init__(
        self,
        callback: Callable[[Any, BaseException | None], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._callback = callback
        self._loop = loop
        self._done = False
        self.timer: asyncio.TimerHandle | None = None

    def done(self) -> bool:
        return self._done

    def set_result(self, value: Any) -> None:
        self._call(value, None)

    def set_exception(self, error: BaseException) -> None:
        self._call(None, error)

    def _call(self, value: Any, error: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        try:
            self._callback(value, error)
        except Exception as exc:  # the connection must outlive a bug in its caller
            self._loop.call_exception_handler(
                {"message": "pykaf: a request's answer callback failed", "exception": exc}
            )
