"""The topics given to a consumer's constructor, looked up in the background.

``AsyncConsumer(topics=...)`` must assign (or subscribe) them, which needs metadata, which
needs a broker. Done inline, a first ``poll(timeout=2)`` with no broker reachable blocked
for the whole ``request_timeout``. Here the lookup is a task: a poll waits for it only up
to its own timeout; a broker out of reach is reported once per episode (WARNING, and
``ConsumerStartError`` to ``on_error``) and the lookup tried again; any other failure (an
unknown topic) is raised to the caller, and tried again at the next call. The topics are
kept here until they are applied, or until an explicit ``assign``/``subscribe``/
``unsubscribe`` supersedes them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

from pykaf._consumer._health import Health
from pykaf._errors import (
    BrokerConnectionError,
    ClientClosedError,
    ConsumerClosedError,
    ConsumerStartError,
    KafkaTimeoutError,
)

__all__ = ["InitialTopics"]


class InitialTopics:
    """Runs ``apply(topics)`` (assign or subscribe the constructor's topics) until it works."""

    def __init__(
        self,
        topics: list[str] | re.Pattern[str] | None,
        apply: Callable[[list[str] | re.Pattern[str]], Awaitable[None]],
        *,
        health: Health,
        retry_backoff: float,
        on_done: Callable[[], None],
    ) -> None:
        self._topics = topics  # None: none given, applied, or superseded
        self._apply = apply
        self._health = health
        self._retry_backoff = retry_backoff
        self._on_done = on_done  # wakes a poll waiting for data
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> bool:
        return self._task is not None

    def begin(self) -> None:
        """The consumer started: look the topics up, if there are any."""
        if self._topics is not None:
            self.launch()

    def launch(self, delay: float = 0.0) -> None:
        task = asyncio.get_running_loop().create_task(self._run(delay), name="pykaf-consumer-start")
        task.add_done_callback(lambda _: self._on_done())
        self._task = task

    async def _run(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        topics = self._topics
        assert topics is not None
        await self._apply(topics)
        self._topics = None

    async def ready(self, timeout: float | None, *, wait_retries: bool = True) -> bool:
        """Wait up to ``timeout`` (None: no bound) for the topics to be assigned or
        subscribed; False if not yet (or, with ``wait_retries=False``, after one failed
        attempt was reported)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            task = self._task
            if task is None:
                return True
            if not task.done():
                remaining = None if deadline is None else max(0.0, deadline - loop.time())
                await asyncio.wait({task}, timeout=remaining)
                if not task.done():
                    return False
            if task.cancelled():
                raise ConsumerClosedError("the consumer was closed while starting")
            error = task.exception()
            if error is None:
                self._task = None
                self._health.recovered("start", "consumer: topics looked up, reading")
                return True
            self.launch(self._retry_backoff)
            unreachable = isinstance(error, BrokerConnectionError | KafkaTimeoutError)
            if not unreachable or isinstance(error, ClientClosedError):
                raise error
            if self._health.failed(
                "start",
                f"consumer: the topics to read could not be looked up: {error}",
                hint="check that the bootstrap brokers are reachable; retrying at every poll",
            ):
                self._health.report(
                    ConsumerStartError(
                        f"the consumer could not look its topics up yet: {error}", cause=error
                    )
                )
            if not wait_retries:
                return False

    async def settle(self) -> None:
        """Before an explicit assign/subscribe: let the topics be applied (an unknown
        topic raises), or, brokers out of reach, drop them: the call made now supersedes
        them."""
        if not await self.ready(None, wait_retries=False):
            await self.drop()

    async def drop(self) -> None:
        """Stop looking the topics up and forget them (superseded)."""
        await self.stop()
        self._topics = None

    async def stop(self) -> None:
        """Cancel the lookup and collect its outcome (asyncio prints none at exit)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
