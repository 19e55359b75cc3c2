"""A group member's telemetry events: joined, rebalanced, lost, commit done or failed.

Apart from the driver (``_driver.GroupMembership``) so that the driver reads as the
protocol it follows, and the event fields are built in one place. Every method tests
``bus.active`` first (the cost rule of ``pykaf._telemetry._bus``): with nobody subscribed
an event costs one attribute read. These events are per join, per loss and per commit
request, never per record.

A lost membership is also logged here, at ERROR, once per loss: the application's
partitions were taken away without ``on_revoked``, and records handed out since the last
commit may be read again by another member.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from typing import Final

from pykaf._consumer._records import TopicPartition
from pykaf._consumer.group._rebalance_callbacks import partition_names
from pykaf._telemetry._bus import EventBus
from pykaf._telemetry._events import (
    CommitDone,
    CommitFailed,
    GroupJoined,
    GroupLost,
    GroupRebalanced,
)

__all__ = ["GroupTelemetry", "pairs"]

log = logging.getLogger("pykaf.consumer")

_EMPTY: Final[tuple[tuple[str, int], ...]] = ()


def pairs(partitions: Collection[TopicPartition]) -> tuple[tuple[str, int], ...]:
    """``(topic, partition)`` pairs, sorted: how events name partitions (the telemetry
    layer sits below the consumer's ``TopicPartition``)."""
    if not partitions:
        return _EMPTY
    return tuple(sorted((tp.topic, tp.partition) for tp in partitions))


class GroupTelemetry:
    """The events of one member of ``group_id`` (see the module doc)."""

    __slots__ = ("_bus", "_client_id", "group_id")

    def __init__(self, bus: EventBus, *, client_id: str | None, group_id: str) -> None:
        self._bus = bus
        self._client_id = client_id
        self.group_id = group_id

    def joined(
        self,
        *,
        member_id: str,
        generation: int,
        assignment: Collection[TopicPartition],
        revoked: Collection[TopicPartition],
        added: Collection[TopicPartition],
        duration: float,
    ) -> None:
        """A join completed: ``GroupJoined`` (the whole assignment), then
        ``GroupRebalanced`` (what this member gave up and got by it)."""
        bus = self._bus
        if not bus.active:
            return
        now = time.time()
        bus.emit(
            GroupJoined(
                time=now,
                client_id=self._client_id,
                group_id=self.group_id,
                member_id=member_id,
                generation=generation,
                assignment=pairs(assignment),
                duration=duration,
            )
        )
        self.rebalanced(revoked=revoked, assigned=added, duration=duration, now=now)

    def rebalanced(
        self,
        *,
        revoked: Collection[TopicPartition],
        assigned: Collection[TopicPartition],
        duration: float,
        now: float | None = None,
    ) -> None:
        """``GroupRebalanced`` alone: after a join, or when the member leaves (everything
        revoked, nothing assigned)."""
        bus = self._bus
        if not bus.active:
            return
        bus.emit(
            GroupRebalanced(
                time=time.time() if now is None else now,
                client_id=self._client_id,
                group_id=self.group_id,
                revoked=pairs(revoked),
                assigned=pairs(assigned),
                duration=duration,
            )
        )

    def lost(self, reason: str, partitions: Collection[TopicPartition]) -> None:
        """The membership was lost (``reason``: "session timeout", "fenced", ...): ERROR,
        and ``GroupLost``."""
        # ERROR when partitions were taken away from the application; a member that
        # owned nothing lost only its place (it rejoins): WARNING.
        log.log(
            logging.ERROR if partitions else logging.WARNING,
            "group %r: membership lost (%s); partitions lost: %s%s",
            self.group_id,
            reason,
            partition_names(partitions),
            " (records handed out since the last commit may be read again by another member)"
            if partitions
            else "",
        )
        bus = self._bus
        if bus.active:
            bus.emit(
                GroupLost(
                    time=time.time(),
                    client_id=self._client_id,
                    group_id=self.group_id,
                    reason=reason,
                    lost=pairs(partitions),
                )
            )

    def commit_done(self, partitions: int, latency: float) -> None:
        bus = self._bus
        if bus.active:
            bus.emit(
                CommitDone(
                    time=time.time(),
                    client_id=self._client_id,
                    group_id=self.group_id,
                    partitions=partitions,
                    latency=latency,
                )
            )

    def commit_failed(self, error: BaseException) -> None:
        bus = self._bus
        if bus.active:
            bus.emit(
                CommitFailed(
                    time=time.time(),
                    client_id=self._client_id,
                    group_id=self.group_id,
                    error=type(error).__name__,
                )
            )
