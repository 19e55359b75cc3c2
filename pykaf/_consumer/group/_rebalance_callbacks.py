"""The application's rebalance callbacks: what they are, and how the group driver calls them.

Apart from the group driver (``_driver.GroupMembership``) because this is the contract with
the application rather than with the coordinator: the driver decides *when* (inside
``ensure_active``, ``leave``, ``close``, ``unsubscribe``, so in the caller's task, never in
a background one); this module says *how*. ``on_revoked`` runs before partitions are given
up (the application may commit there; with auto-commit on, the positions are committed
first), ``on_lost`` when they were taken without that chance, ``on_assigned`` after every
completed join. Each is a function or a coroutine function of a ``frozenset`` of
``TopicPartition``; an exception in one is logged and the rebalance goes on (a callback
must not be able to wedge the membership half-way through a rebalance).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import TypeAlias

from pykaf._consumer._records import TopicPartition

__all__ = ["RebalanceCallback", "call_rebalance_callback", "partition_names"]

log = logging.getLogger("pykaf.consumer")

#: A rebalance callback: called with the partitions concerned; may be a coroutine.
RebalanceCallback: TypeAlias = Callable[[frozenset[TopicPartition]], Awaitable[None] | None]


async def call_rebalance_callback(
    callback: RebalanceCallback | None,
    what: str,
    partitions: frozenset[TopicPartition],
    *,
    group_id: str,
) -> None:
    """Call ``callback(partitions)`` (awaited if it returns an awaitable); an exception is
    logged with ``what`` (the callback's name) and swallowed (module doc)."""
    if callback is None:
        return
    try:
        result = callback(partitions)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("group %r: the %s callback raised", group_id, what)


def partition_names(partitions: Collection[TopicPartition]) -> str:
    """``partitions`` for a log line, sorted; "nothing" when empty."""
    return ", ".join(str(tp) for tp in sorted(partitions)) or "nothing"
