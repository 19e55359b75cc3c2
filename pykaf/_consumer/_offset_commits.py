"""An ``AsyncConsumer``'s commits: explicit ones, the auto-commit schedule, the final one.

Apart from ``_async_consumer`` because commits run on their own schedule and in their own
tasks: ``commit()`` waits for the coordinator, ``commit_async()`` and auto-commit run in
the background (collected at close, so asyncio never prints a task nobody awaited), and
what ``close()`` still owes is computed here. What is committed by default is always the
position after what the application received (``_hand_out.HandOutTracker``), never what
was merely fetched. The OffsetCommit requests themselves are ``group._commit``'s, reached
through the membership (``group._driver.GroupMembership``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping

from pykaf._consumer._assignment import AssignedPartitions, Callback
from pykaf._consumer._hand_out import HandOutTracker
from pykaf._consumer._health import Health
from pykaf._consumer._partition_state import PartitionState
from pykaf._consumer._records import OffsetAndMetadata, TopicPartition
from pykaf._consumer._settings import ConsumerSettings
from pykaf._errors import PykafError

__all__ = ["OffsetCommits", "Offsets"]

logger = logging.getLogger("pykaf.consumer")

# What the application may pass to commit: per partition, the next offset to read.
Offsets = Mapping[TopicPartition, int | OffsetAndMetadata]


class OffsetCommits:
    """The commits of one consumer (see the module doc). ``in_flight`` holds the
    background commits still running; ``check_open`` raises once the consumer is closed."""

    def __init__(
        self,
        settings: ConsumerSettings,
        assignment: AssignedPartitions,
        handed: HandOutTracker[PartitionState],
        *,
        group_id: str | None,
        check_open: Callable[[], None],
        health: Health | None = None,
    ) -> None:
        self._settings = settings
        self._health = health or Health(logger, None)
        self._assignment = assignment
        self._handed = handed
        self._check_open = check_open
        self._auto_commit = settings.auto_commit(group_id)
        self._next_auto_commit = 0.0
        self.in_flight: set[asyncio.Task[None]] = set()

    def start_clock(self, now: float) -> None:
        """The consumer started at ``now`` (loop time): the first auto-commit is one
        interval later."""
        self._next_auto_commit = now + self._settings.auto_commit_interval

    def _chosen(self, offsets: Offsets | None) -> dict[TopicPartition, OffsetAndMetadata]:
        self._check_open()
        self._assignment.group()  # a commit needs a group
        if offsets is None:
            return self._handed.to_commit()
        out = {}
        for tp, value in offsets.items():
            if not isinstance(tp, TopicPartition):
                raise TypeError(f"commit keys are TopicPartition, not {tp!r}")
            out[tp] = value if isinstance(value, OffsetAndMetadata) else OffsetAndMetadata(value)
        return out

    async def commit(self, offsets: Offsets | None) -> None:
        chosen = self._chosen(offsets)
        if chosen:
            await self._assignment.group().commit(chosen)

    def commit_async(self, offsets: Offsets | None, callback: Callback | None) -> None:
        chosen = self._chosen(offsets)
        if chosen:
            self._in_background(chosen, callback)

    async def committed(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int | None]:
        self._check_open()
        found = await self._assignment.group().committed(list(tps))
        return {tp: (None if v is None else v.offset) for tp, v in found.items()}

    def auto_commit_if_due(self) -> None:
        """Every ``auto_commit_interval``: commit what was handed out, in the background
        (a failure is logged and the next one tries again)."""
        if not self._auto_commit:
            return
        now = asyncio.get_running_loop().time()
        if now < self._next_auto_commit:
            return
        self._next_auto_commit = now + self._settings.auto_commit_interval
        offsets = self._handed.to_commit()
        if offsets:
            self._in_background(offsets, None)

    def final_offsets(self) -> dict[TopicPartition, OffsetAndMetadata]:
        """What auto-commit still owes at close: the positions after what was handed out
        (a subscribed member's, of the partitions it owns)."""
        membership = self._assignment.membership
        if not self._auto_commit or membership is None:
            return {}
        offsets = self._handed.to_commit()
        if self._assignment.subscribed:
            owned = membership.assignment
            offsets = {tp: o for tp, o in offsets.items() if tp in owned}
        return offsets

    async def stop(self) -> None:
        """Cancel the background commits and collect their outcomes."""
        tasks = list(self.in_flight)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _in_background(
        self, offsets: dict[TopicPartition, OffsetAndMetadata], callback: Callback | None
    ) -> None:
        task = asyncio.get_running_loop().create_task(self._commit_then_tell(offsets, callback))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def _commit_then_tell(
        self, offsets: dict[TopicPartition, OffsetAndMetadata], callback: Callback | None
    ) -> None:
        error: BaseException | None = None
        try:
            await self._assignment.group().commit(offsets)
        except PykafError as exc:
            error = exc
            if callback is None:
                # Once per failing episode (auto-commit runs every few seconds for as long
                # as the group fails): WARNING first, then counted at DEBUG.
                self._health.failed(
                    "auto-commit",
                    f"auto-commit failed: {exc}",
                    hint="retried at the next one; what was handed out since the last"
                    " commit may be read again after a restart",
                )
        else:
            if callback is None:
                self._health.recovered("auto-commit", "auto-commit works again")
        if callback is not None:
            result = callback(offsets, error)
            if asyncio.iscoroutine(result):
                await result
