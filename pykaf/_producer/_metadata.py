"""The producer's view of its topics: partitions and leaders, kept current.

One metadata request at a time (``refresh`` coalesces what is asked meanwhile), retried
with backoff while a topic is still missing and somebody needs it: a caller waiting for a
new topic (``ensure_topic``, bounded by ``max_block``), or batches queued for leaderless
partitions. Answers go into the accumulator (``set_topic``: partitions, leaders, topic
id); ``on_change`` (the engine's pump) runs after each. The last error per topic is kept
(``errors``): a batch that expires for want of a leader reports it.

A caller waiting for a topic fails at once when waiting cannot help: a name Kafka's rules
refuse (checked here, before any request), or a non-retriable answer (INVALID_TOPIC,
TOPIC_AUTHORIZATION_FAILED). A wait that cannot reach the cluster goes on up to
``max_block`` (a broker may come back), and says so at WARNING once per episode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import Callable, Iterable
from typing import Any

from pykaf._client._async_client import AsyncClient
from pykaf._client._backoff import Backoff
from pykaf._errors import (
    BrokerError,
    KafkaTimeoutError,
    ProducerClosedError,
    PykafError,
    SaslError,
    TlsError,
    UnknownBrokerError,
)
from pykaf._kafka_errors import (
    InvalidTopicError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from pykaf._producer._accumulator import Accumulator
from pykaf._producer._settings import ProducerSettings

__all__ = ["ProducerMetadata", "check_topic_name"]

log = logging.getLogger("pykaf.producer")

_WARN_AFTER = 5.0  # s a caller waits for a topic's metadata before a WARNING says why

# Kafka's own rule (org.apache.kafka.common.internals.Topic): legal characters, length.
_LEGAL_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")
_TOPIC_RULES = (
    "a topic name may use only ASCII letters, digits, '.', '_' and '-', at most 249"
    " characters, and may not be '.' or '..'"
)
_WHAT_TO_FIX: dict[type[BaseException], str] = {
    InvalidTopicError: _TOPIC_RULES,
    TopicAuthorizationFailedError: (
        "this client may not use it: grant its principal Describe and Write on the topic"
    ),
}


def check_topic_name(topic: object) -> str:
    """``topic`` if Kafka could accept it as a topic name; else a typed error at once
    (``TypeError`` for a non-str, ``InvalidTopicError`` for a name the broker refuses)."""
    if not isinstance(topic, str) or not topic:
        raise TypeError(f"topic must be a non-empty str, not {topic!r}")
    if _LEGAL_TOPIC.fullmatch(topic) is None or topic in (".", ".."):
        raise InvalidTopicError(f"topic {topic!r} is not a valid name: {_TOPIC_RULES}")
    return topic


def _final(topic: str, error: BaseException) -> BaseException | None:
    """The error to fail a caller waiting for ``topic`` with at once, when waiting
    cannot help (a non-retriable answer about the topic); None: keep waiting."""
    if not isinstance(error, BrokerError) or error.retriable:
        return None
    if isinstance(error, UnknownBrokerError):
        return error  # its code is all there is to say
    fix = _WHAT_TO_FIX.get(type(error), "waiting will not change the broker's answer")
    named = type(error)(f"topic {topic!r}: {fix}")
    named.__cause__ = error
    return named


class ProducerMetadata:
    """See the module doc; lives on the engine's loop."""

    def __init__(
        self,
        client: AsyncClient,
        accumulator: Accumulator,
        settings: ProducerSettings,
        loop: asyncio.AbstractEventLoop,
        backoff: Backoff,
        *,
        on_change: Callable[[], None],
    ) -> None:
        self._client = client
        self._accumulator = accumulator
        self._settings = settings
        self._loop = loop
        self._backoff = backoff
        self._on_change = on_change
        self._stale: set[str] = set()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self.errors: dict[str, BaseException] = {}
        # Topics a broker said do not exist (UNKNOWN_TOPIC_OR_PARTITION), since when (the
        # loop's clock): a journaled producer fails their records once this lasts.
        self.absent_since: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        self._unreachable = False  # a WARNING for the current episode was logged
        self._unreachable_since = 0.0  # when that episode began (the loop's clock)
        self._unreachable_failures = 0  # failed requests in it
        self.closing = False
        self._bug_said = False  # an unexpected error in the refresh was logged, none since

    def refresh(self, topics: Iterable[str]) -> None:
        """Fetch metadata for ``topics`` soon (one request at a time)."""
        self._stale.update(topics)
        if self._task is None and not self.closing and self._stale:
            self._task = self._loop.create_task(self._loop_task())

    async def _loop_task(self) -> None:
        attempt = 0
        try:
            while not self.closing:
                wanted = self._stale | set(self._waiters)
                if not wanted:
                    return
                self._stale.clear()
                self._kick.clear()
                try:
                    missing = await self._ask(wanted)
                except Exception:
                    # A bug, none of the client's errors: said once per episode with its
                    # traceback, then asked again as after a failure. Before, it ended the
                    # task, and callers waiting for the topic waited out max_block.
                    level = logging.DEBUG if self._bug_said else logging.ERROR
                    self._bug_said = True
                    log.log(level, "a metadata refresh failed; trying again", exc_info=True)
                    missing = set(wanted)
                else:
                    self._bug_said = False  # got through: the episode, if any, is over
                # Ask again for what is still missing, if someone still needs it: a
                # caller waiting for the topic, or batches for leaderless partitions.
                again = {t for t in missing if t in self._waiters or self._accumulator.knows(t)}
                self._stale.update(again)
                if again:
                    attempt += 1
                    delay = self._backoff.delay(attempt, random.random())
                else:
                    attempt = 0
                    delay = self._settings.retry_backoff  # stale signals meanwhile share one
                # A caller waiting for a new topic cuts the wait short.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._kick.wait()
        finally:
            self._task = None

    async def _ask(self, wanted: set[str]) -> set[str]:
        """One metadata request for ``wanted``; the topics still missing."""
        asked_at = self._loop.time()
        try:
            view = await self._client.metadata(wanted)
        except (PykafError, OSError) as exc:
            for topic in wanted:
                self.errors[topic] = exc
            if isinstance(exc, SaslError | TlsError):
                # Credentials or a certificate refused: waiting will not fix them, say
                # it now.
                self._fail_waiters(exc)
            self._warn_waiting(exc, asked_at)
            return set(wanted)
        if self._unreachable:
            self._answered_again()
        return self._apply(wanted, view)

    def _fail_waiters(self, error: BaseException) -> None:
        waiters, self._waiters = self._waiters, {}
        for futures in waiters.values():
            for waiter in futures:
                if not waiter.done():
                    waiter.set_exception(error)

    def _warn_waiting(self, error: BaseException | str, asked_at: float) -> None:
        """Once per episode: callers block in send()/produce() because no metadata comes
        (the episode began when the request that failed first was sent, at ``asked_at``)."""
        if self._unreachable:
            self._unreachable_failures += 1
            return
        if not self._waiters:
            return
        self._unreachable = True
        self._unreachable_since = asked_at
        self._unreachable_failures = 1
        log.warning(
            "producer: no metadata for %s (%s); send()/produce() wait up to max_block"
            " (%gs) for a broker to answer",
            ", ".join(repr(t) for t in sorted(self._waiters)),
            error,
            self._settings.max_block,
        )

    def _answered_again(self) -> None:
        """The end of the episode ``_warn_waiting`` began, told at INFO."""
        self._unreachable = False
        failures = self._unreachable_failures
        log.info(
            "producer: metadata answered again after %.1f s, %d failed request%s",
            self._loop.time() - self._unreachable_since,
            failures,
            "" if failures == 1 else "s",
        )

    def _apply(self, topics: Iterable[str], view: Any) -> set[str]:
        """Take a metadata answer in; returns the topics still without a usable answer."""
        missing: set[str] = set()
        brokers = view.brokers
        changed = False
        for name in topics:
            info = view.topics.get(name)
            if info is None or info.error_code != 0 or not info.partitions:
                error: BaseException = (
                    info.error
                    if info is not None and info.error is not None
                    else KafkaTimeoutError(f"topic {name!r} has no partitions in the metadata")
                )
                self.errors[name] = error
                if isinstance(error, UnknownTopicOrPartitionError):
                    self.absent_since.setdefault(name, self._loop.time())
                final = _final(name, error)
                if final is not None:
                    for waiter in self._waiters.pop(name, []):
                        if not waiter.done():
                            waiter.set_exception(final)
                missing.add(name)
                continue
            leaders = [p.leader if p.leader in brokers else -1 for p in info.partitions]
            if any(leader < 0 for leader in leaders):
                missing.add(name)  # ask again later for the leaderless ones
            self.errors.pop(name, None)
            self.absent_since.pop(name, None)
            changed |= self._accumulator.set_topic(name, leaders, info.topic_id)
            for waiter in self._waiters.pop(name, []):
                if not waiter.done():
                    waiter.set_result(None)
        if changed or topics:
            self._on_change()
        return missing

    async def ensure_topic(self, topic: str, timeout: float) -> None:
        """Wait (up to ``timeout`` s) until ``topic``'s partitions are known."""
        check_topic_name(topic)
        deadline = self._loop.time() + timeout
        while not self._accumulator.knows(topic):
            if self.closing:
                raise ProducerClosedError("the producer is closed")
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._waiters.setdefault(topic, []).append(waiter)
            self._kick.set()
            self.refresh((topic,))
            remaining = deadline - self._loop.time()
            try:
                await self._wait_warning_once(topic, waiter, remaining)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if self.closing and (current is None or not current.cancelling()):
                    raise ProducerClosedError("the producer was closed") from None
                raise
            except TimeoutError:
                waiters = self._waiters.get(topic, [])
                if waiter in waiters:
                    waiters.remove(waiter)
                if not waiters:
                    self._waiters.pop(topic, None)
                last = self.errors.get(topic)
                raise KafkaTimeoutError(
                    f"topic {topic!r} is not in the cluster metadata after {timeout:g}s"
                    f" (max_block){f': {last}' if last else ''}; does it exist?"
                ) from None

    async def _wait_warning_once(
        self, topic: str, waiter: asyncio.Future[None], remaining: float
    ) -> None:
        """Wait for ``waiter`` up to ``remaining`` s; past half of max_block (at most
        _WARN_AFTER s) without an answer, say so once per episode: the caller is blocked
        in send()/produce(), and may not know why (no broker answers, say)."""
        remaining = max(0.0, remaining)
        quiet = min(remaining, _WARN_AFTER, self._settings.max_block / 2)
        try:
            async with asyncio.timeout(quiet):
                await asyncio.shield(waiter)
            return
        except TimeoutError:
            if waiter.done() or remaining <= quiet:
                raise
        last = self.errors.get(topic)
        self._warn_waiting(
            last if last is not None else "no metadata answer yet", self._loop.time() - quiet
        )
        async with asyncio.timeout(remaining - quiet):
            await waiter

    def waiting_for(self, topic: str) -> bool:
        """Is a caller waiting in ``ensure_topic`` for ``topic``?"""
        return bool(self._waiters.get(topic))

    def close(self) -> None:
        """Stop: callers waiting in ``ensure_topic`` get ``ProducerClosedError``."""
        self.closing = True
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.cancel()
        self._waiters.clear()
        if self._task is not None:
            self._task.cancel()
