"""A consumer's group work that must not fail silently, nor hang: a join that keeps
failing, and the final commit and leaving at ``close()``.

A join that runs out of its budget (the rebalance timeout) on retriable errors is not
raised to the polling application (which could only catch it and poll again): it is
logged once per episode and handed to ``on_error`` (``GroupJoinError``); the next poll
tries again. ``close()`` bounds the final commit and the leaving, each by its timeout;
a commit it could not make is logged at WARNING and handed to ``on_error``
(``FinalCommitError``, with the offsets), as the next member will read them again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from pykaf._consumer._health import Health
from pykaf._consumer._records import OffsetAndMetadata, TopicPartition
from pykaf._errors import ClientClosedError, FinalCommitError, GroupJoinError, PykafError

__all__ = ["close_group", "ensure_active_reported"]

logger = logging.getLogger("pykaf.consumer")


async def ensure_active_reported(
    membership: Any, health: Health, timeout: float | None, *, announce: bool
) -> Any:
    """``membership.ensure_active(timeout, announce=announce)``; a join out of budget on
    retriable errors is reported (see the module doc) and None returned."""
    try:
        return await membership.ensure_active(timeout, announce=announce)
    except PykafError as exc:
        if (
            isinstance(exc, ClientClosedError)
            or membership.fatal is not None
            or not getattr(exc, "retriable", False)
        ):
            raise
        group, budget = membership.group_id, membership.rebalance_timeout
        if health.failed(
            "join budget",
            f"group {group!r} could not be joined within its rebalance timeout"
            f" ({budget:g}s): {exc}",
            hint="nothing of the group's topics is read meanwhile; check the group"
            " coordinator; retrying at every poll",
        ):
            health.report(
                GroupJoinError(
                    f"group {group!r} could not be joined within {budget:g}s: {exc}", cause=exc
                )
            )
        return None


async def close_group(
    membership: Any,
    health: Health,
    *,
    offsets: dict[TopicPartition, OffsetAndMetadata],
    commits_in_flight: set[asyncio.Task[None]],
    bound: float,
) -> None:
    """The final commit of ``offsets`` (after the commits in flight), then leaving the
    group; each bounded by ``bound`` seconds (see the module doc)."""
    group = membership.group_id
    try:
        async with asyncio.timeout(bound):
            if commits_in_flight:
                await asyncio.gather(*commits_in_flight, return_exceptions=True)
            if offsets:
                await membership.commit(offsets, timeout=bound)
    except (TimeoutError, PykafError) as exc:
        reason = f"no answer within {bound:g}s" if type(exc) is TimeoutError else str(exc)
        error = FinalCommitError(
            f"the final commit of group {group!r} could not be made ({reason}):"
            f" {offsets_text(offsets)} will be read again by the next member",
            offsets=offsets,
            cause=exc,
        )
        logger.warning("%s", error)
        health.report(error)
    try:
        async with asyncio.timeout(bound):
            # Leaves the group (not a static member): on_revoked; committed above.
            await membership.close(commit_first=False)
    except TimeoutError:
        logger.warning(
            "group %r: leaving did not complete within %gs; the coordinator will notice"
            " when the session expires",
            group,
            bound,
        )


def offsets_text(offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> str:
    if not offsets:
        return "nothing"
    return ", ".join(f"{tp}@{o.offset}" for tp, o in sorted(offsets.items()))
