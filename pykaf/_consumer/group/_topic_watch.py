"""The subscribed topics over time: what a pattern matches, and partition counts that grow.

Apart from the group driver (``_driver.GroupMembership``) because it answers a different
question on a different clock: not "is this member in the group" but "has the set of
partitions to share changed". Every ``metadata_max_age`` it looks at the metadata: topics
newly matching a subscribed pattern (any member), and partitions added to the group's
topics since the leader computed the assignment (the leader only, as in Java's
``ConsumerCoordinator``), each of which asks the membership for a rebalance.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable

from pykaf._client._async_client import AsyncClient
from pykaf._consumer.group._membership import Membership
from pykaf._errors import ClientClosedError, PykafError

__all__ = ["TopicWatch"]

log = logging.getLogger("pykaf.consumer")


class TopicWatch:
    """The pattern subscribed to (if any) and the leader's snapshot of partition counts;
    ``run()`` is the background task that compares them with the metadata."""

    def __init__(
        self,
        client: AsyncClient,
        state: Membership,
        *,
        group_id: str,
        is_leader: Callable[[], bool],
    ) -> None:
        self._client = client
        self._state = state
        self._group_id = group_id
        self._is_leader = is_leader
        self.pattern: re.Pattern[str] | None = None
        # The leader's partition counts of the group's topics, as its last assignment
        # saw them: a change asks for a rebalance (new partitions get consumers).
        self.snapshot: dict[str, int] = {}

    async def matching_topics(self, pattern: re.Pattern[str] | None = None) -> frozenset[str]:
        """Every topic ``pattern`` (default: the subscription's) matches in full, internal
        topics excluded (as Java)."""
        pattern = pattern or self.pattern
        assert pattern is not None
        view = await self._client.metadata(None)
        return frozenset(
            name
            for name, info in view.topics.items()
            if not info.internal and info.error_code == 0 and pattern.fullmatch(name)
        )

    async def run(self) -> None:
        """Every ``metadata_max_age``: topics newly matching the pattern, and partitions
        added to the group's topics (the leader's job), ask for a rebalance."""
        period = self._client.settings.metadata_max_age
        while True:
            await asyncio.sleep(period)
            try:
                await self._check()
            except PykafError as exc:
                if isinstance(exc, ClientClosedError):
                    return
                log.debug("group %r: metadata check failed: %s", self._group_id, exc)

    async def _check(self) -> None:
        state = self._state
        if self.pattern is not None:
            matched = await self.matching_topics()
            if state.subscribed and matched != state.subscription:
                log.info("group %r: the pattern now matches %s", self._group_id, sorted(matched))
                state.subscribe(matched)
        if self._is_leader() and self.snapshot:
            view = await self._client.metadata(sorted(self.snapshot))
            counts = {n: len(i.partitions) for n, i in view.topics.items() if i.error_code == 0}
            changed = sorted(t for t in self.snapshot if counts.get(t) != self.snapshot[t])
            if changed:
                state.request_rejoin(f"partitions changed in {', '.join(changed)}")
