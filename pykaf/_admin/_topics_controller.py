"""What the topic calls share: checking the names asked about, turning an item's error
code into its typed error, and sending to the controller with a bounded retry when the
controller moved (NOT_CONTROLLER) or its connection broke (the controller went down, or
closed the connection before answering)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import random
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, Final, TypeVar

from pykaf._admin._calls import send
from pykaf._admin._cluster_versions import require_api
from pykaf._admin._item_retries import admin_backoff
from pykaf._client._async_client import AsyncClient
from pykaf._error_codes import error_for_code
from pykaf._errors import BrokerConnectionError, BrokerError
from pykaf._kafka_errors import NotControllerError
from pykaf.protocol._messages import Payload

__all__ = ["check_names", "item_error", "request_timeout_ms", "to_controller"]

NOT_CONTROLLER: Final = 41
# A controller move settles within one metadata refresh; a few tries cover a second move
# during the first retry, and the bound keeps a flapping cluster from looping forever.
_CONTROLLER_ATTEMPTS: Final = 4
# What an item's error says when an earlier attempt of the call went unanswered (its
# connection broke after the request was sent): that attempt may have done the work, so
# TOPIC_ALREADY_EXISTS for a create (or UNKNOWN_TOPIC_OR_PARTITION for a delete) may be
# this very call's doing, as with the Java client, which says nothing of it.
_MAY_HAVE_DONE_IT: Final = "an earlier attempt of this call went unanswered and may have done it"

_K = TypeVar("_K", bound=Hashable)


def check_names(names: Iterable[str], what: str) -> list[str]:
    """``names`` as a list, refusing what Kafka would refuse or a caller would regret: a
    bare str (a list of its characters), non-str or empty names, duplicates."""
    if isinstance(names, str | bytes):
        raise TypeError(f"{what}s is a list of names; wrap a single name in a list: [{names!r}]")
    try:
        listed = list(names)
    except TypeError:
        raise TypeError(f"{what}s is an iterable of str, not {type(names).__name__}") from None
    for name in listed:
        if not isinstance(name, str):
            raise TypeError(f"a {what} name is a str, not {type(name).__name__} ({name!r})")
        if not name:
            raise ValueError(f"a {what} name must not be empty")
    repeated = sorted({n for n in listed if listed.count(n) > 1})
    if repeated:
        raise ValueError(f"each {what} may be named once; repeated: {repeated}")
    return listed


def item_error(code: int, message: str | None, what: str) -> BrokerError:
    """The typed error of one item's code, its message naming the item (the broker's
    message too, unless it only repeats the code's description)."""
    error = error_for_code(int(code))
    if message and message.strip() != type(error).description:
        return error_for_code(int(code), f"({what}) {message}")
    return error_for_code(int(code), f"({what})")


def request_timeout_ms(client: AsyncClient, timeout: float | None) -> int:
    """The broker-side timeout of a topic call: the caller's bound, in milliseconds."""
    return int((client.settings.request_timeout if timeout is None else timeout) * 1000)


async def to_controller(
    client: AsyncClient,
    api: str,
    items: Sequence[_K],
    build: Callable[[int, Sequence[_K]], Payload],
    answers: Callable[[Any], Iterable[tuple[_K, Any]]],
    *,
    timeout: float | None,
) -> dict[_K, Any]:
    """Send ``build(version, items)`` to the controller; return each item's answer entry
    (``answers(response)`` yields ``(item, entry)``; entries have ``error_code``). Items
    answered NOT_CONTROLLER are asked again of the new controller, a bounded number of
    times; the client forgets the old controller on that answer."""
    # A cluster without the API at all (librdkafka's mock cluster, tansu for some) says so
    # as UNSUPPORTED_VERSION before the controller is even looked up.
    await require_api(client, api, "any", timeout=timeout)
    pending = list(items)
    got: dict[_K, Any] = {}
    unanswered = False
    backoff = admin_backoff(client)
    for attempt in range(_CONTROLLER_ATTEMPTS):
        last = attempt == _CONTROLLER_ATTEMPTS - 1
        try:
            _version, response = await send(
                client,
                api,
                functools.partial(_build_for, build, tuple(pending)),
                to="controller",
                timeout=timeout,
            )
        except NotControllerError:  # no controller named right now: ask the metadata again
            if last:
                raise
            await client.metadata([], timeout=timeout)
            continue
        except BrokerConnectionError as exc:
            # The controller went down or dropped the connection: the metadata names
            # the next one (after a backoff, so a cluster electing one is not hurried).
            if last:
                raise
            # Only a request that was written may have been done (refused at connect:
            # nothing was; the note said so all the same before).
            unanswered = unanswered or not exc.never_sent
            await asyncio.sleep(backoff.delay(attempt + 1, random.random()))
            await client.metadata([], timeout=timeout)
            continue
        retry = []
        asked = set(pending)
        for item, entry in answers(response):
            if item not in asked:
                continue  # an answer about something not asked: not ours to report
            if int(entry.error_code) == NOT_CONTROLLER and not last:
                retry.append(item)
            else:
                got[item] = _noted(entry) if unanswered else entry
        pending = retry
        if not pending:
            break
    return got


def _noted(entry: Any) -> Any:
    """``entry`` with an error, its message saying an earlier attempt may have done it."""
    if not int(entry.error_code) or isinstance(entry, type) or not dataclasses.is_dataclass(entry):
        return entry
    if "error_message" not in {f.name for f in dataclasses.fields(entry)}:
        return entry  # a version whose answer carries no message
    said = getattr(entry, "error_message", None)
    noted = f"{said}; {_MAY_HAVE_DONE_IT}" if said else _MAY_HAVE_DONE_IT
    return dataclasses.replace(entry, error_message=noted)  # type: ignore[type-var]


def _build_for(
    build: Callable[[int, Sequence[_K]], Payload], items: Sequence[_K], version: int
) -> Payload:
    return build(version, items)
