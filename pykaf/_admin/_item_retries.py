"""Answer every item of an admin call, retrying the ones whose broker moved.

An admin call asks about many items (groups, partitions); each item is answered by a
broker that can move while we ask: a group's coordinator (NOT_COORDINATOR,
COORDINATOR_LOAD_IN_PROGRESS), a partition's leader (NOT_LEADER_OR_FOLLOWER), or the
connection breaks. ``settle`` asks again for those items only, with backoff, bounded in
attempts and by the call's deadline; an item still failing then keeps its last error.
Items that failed for good keep their own error at once, and never hide the others.
Each retry round is one INFO line (logger ``pykaf.admin``); the round count bounds them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

from pykaf._admin._outcomes import Outcomes
from pykaf._client._async_client import AsyncClient
from pykaf._client._backoff import Backoff
from pykaf._errors import ClientClosedError, KafkaTimeoutError, PykafError

__all__ = ["Deadline", "Failed", "admin_backoff", "retriable", "settle"]

log = logging.getLogger("pykaf.admin")

_BACKOFF_MAX: Final = 1.0  # seconds

_K = TypeVar("_K")
_V = TypeVar("_V")

# Enough for a coordinator or leader to move twice and load; the deadline bounds the rest.
MAX_ATTEMPTS: Final = 8
# A call may need a few requests in a row (find the coordinator, ask it, then the
# leaders): its whole budget is a few request timeouts, inside the blocking ``Admin``'s
# own bound (four request timeouts).
_REQUESTS_PER_CALL: Final = 3
# UNKNOWN_TOPIC_OR_PARTITION is retriable in Kafka (metadata may lag a creation), but an
# admin asking about a topic that does not exist wants to hear so now, not at the deadline.
_FINAL_CODES: Final = frozenset({3})


@dataclass(frozen=True, slots=True)
class Failed:
    """An item's error, as an attempt reports it (a value of its own, so a result type
    that is itself an error never gets confused with a failure)."""

    error: PykafError


class Deadline:
    """The time one admin call may take: each request gets what is left of it, capped
    at the request timeout."""

    __slots__ = ("_loop", "each", "end")

    def __init__(self, client: AsyncClient, timeout: float | None) -> None:
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
        ):
            raise ValueError(f"timeout must be > 0 seconds (or None), not {timeout!r}")
        self.each = float(client.settings.request_timeout if timeout is None else timeout)
        self._loop = asyncio.get_running_loop()
        self.end = self._loop.time() + self.each * _REQUESTS_PER_CALL

    def left(self) -> float:
        return self.end - self._loop.time()

    def request_timeout(self) -> float:
        """What the next request may take (never 0: the client refuses that)."""
        return max(0.001, min(self.each, self.left()))


def admin_backoff(client: AsyncClient) -> Backoff:
    """The waits between an admin call's attempts: from the client's ``retry_backoff``,
    growing to a second at most, or to ``retry_backoff`` itself when that is longer (a
    cap below it raised ValueError: every call that retried failed so)."""
    initial = client.settings.retry_backoff
    return Backoff(initial=initial, maximum=max(initial, _BACKOFF_MAX))


def retriable(error: PykafError) -> bool:
    if isinstance(error, ClientClosedError):
        return False
    if getattr(error, "code", None) in _FINAL_CODES:
        return False
    return bool(getattr(error, "retriable", False))


async def settle(
    client: AsyncClient,
    items: Iterable[_K],
    attempt: Callable[[list[_K]], Awaitable[Mapping[_K, _V | Failed]]],
    deadline: Deadline,
    *,
    what: Callable[[_K], str],
    before_retry: Callable[[list[_K]], Awaitable[object]] | None = None,
) -> Outcomes[_K, _V]:
    """Call ``attempt(pending)`` until every item has a result or a final error.

    ``attempt`` returns a result or ``Failed(error)`` per item; an item it leaves out,
    or an exception it raises, counts as a retriable failure of those items (a
    non-retriable exception is every pending item's final error; ``ClientClosedError``
    propagates). ``before_retry(pending)`` runs before each new attempt (a metadata
    refresh after a leader moved, say). ``what(item)`` names an item in messages.
    """
    pending = list(dict.fromkeys(items))
    ok: dict[_K, _V] = {}
    errors: dict[_K, PykafError] = {}
    last: dict[_K, PykafError] = {}
    backoff = admin_backoff(client)
    attempts = 0
    while pending:
        attempts += 1
        try:
            answers: Mapping[_K, _V | Failed] = await attempt(pending)
        except ClientClosedError:
            raise
        except PykafError as exc:
            answers = {item: Failed(exc) for item in pending}
        retry: list[_K] = []
        for item in pending:
            if item not in answers:
                last[item] = KafkaTimeoutError(f"no answer about {what(item)}")
                retry.append(item)
                continue
            answer = answers[item]
            if isinstance(answer, Failed):
                if retriable(answer.error):
                    last[item] = answer.error
                    retry.append(item)
                else:
                    errors[item] = answer.error
            else:
                ok[item] = answer
        pending = retry
        if not pending:
            break
        delay = backoff.delay(attempts, random.random())
        if attempts >= MAX_ATTEMPTS or deadline.left() <= delay:
            for item in pending:
                errors[item] = last[item]
            break
        log.info(
            "retrying %d item(s) in %.3g s (attempt %d failed): %s: %s",
            len(pending),
            delay,
            attempts,
            what(pending[0]),
            last[pending[0]],
        )
        await asyncio.sleep(delay)
        if before_retry is not None:
            try:
                await before_retry(pending)
            except ClientClosedError:
                raise
            except PykafError as exc:
                for item in pending:
                    last[item] = exc
    return Outcomes(ok, errors)
