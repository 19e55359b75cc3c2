"""The accumulator's topic table: which topics it knows, their partitions, their leaders.

Metadata (the event loop) writes it; appends only read it. Kept apart from the append
path because it changes on another rhythm (a metadata answer, not a record) and owns
the per-broker index the drain walks (``_by_node``), rebuilt only when a leader moves.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Final

from pykaf._producer._accumulator_state import AccumulatorState
from pykaf._producer._batches import PartitionQueue, TopicQueues
from pykaf.protocol._records import BATCH_OVERHEAD

__all__ = ["CAP_KEPT", "TopicTable"]

log = logging.getLogger("pykaf.producer")

# Seconds a cap taught by a refusal holds before a metadata answer lifts it (the topic's
# max.message.bytes may have been raised; if not, the next refusal teaches it again).
CAP_KEPT: Final = 600.0


class TopicTable(AccumulatorState):
    """The topics side of ``Accumulator`` (a mixin over its shared state)."""

    def knows(self, topic: str) -> bool:
        t = self._topics.get(topic)
        return t is not None and t.count > 0

    def partition_numbers(self, topic: str) -> list[int]:
        """The partition numbers known for ``topic`` (empty when it is not known)."""
        t = self._topics.get(topic)
        return [] if t is None else list(range(t.count))

    def topic(self, topic: str) -> TopicQueues | None:
        return self._topics.get(topic)

    def topics(self) -> list[str]:
        with self._lock:
            return list(self._topics)

    def set_topic(self, name: str, leaders: Sequence[int], topic_id: Any = None) -> bool:
        """The partitions of ``name`` and their leaders (-1: none), from metadata. True if
        a leader changed (batches may now go to another broker)."""
        with self._lock:
            t = self._topics.get(name)
            if t is None:
                t = self._topics[name] = TopicQueues(name, self._settings, self._rng)
            t.topic_id = topic_id
            if t.capped_at and self._clock() - t.capped_at >= CAP_KEPT:
                t.uncap(self._settings)
                log.info("topic %s: batches up to batch_size again (a cap lifted)", name)
            changed = False
            for index in range(len(t.parts), len(leaders)):
                t.parts.append(PartitionQueue(t, index))
            for index, part in enumerate(t.parts):
                leader = leaders[index] if index < len(leaders) else -1
                if part.leader != leader:
                    part.leader = leader
                    changed = True
            available = tuple(i for i, leader in enumerate(leaders) if leader >= 0)
            if available != t.available:
                t.available = available  # a new object: sticky strategies re-check it
            t.count = len(leaders)
            t.sticky = None
            if changed:
                self._reindex()
            return changed

    def refused_as_too_large(self, name: str, size: int) -> int:
        """The broker refused a batch of ``name`` of about ``size`` bytes as too large (the
        topic's max.message.bytes is below ``batch_size``): its batches are capped at half
        that from now on, and again if those are refused too. Without it, every batch
        was refused and split anew: a topic limited to 100 KB took 1 KiB records at a
        fifth of the rate with 256 KiB batches. Said at INFO, once per cap. Returns the
        topic's cap (for the batch's split). A metadata answer ``CAP_KEPT`` seconds on
        lifts it (``set_topic``)."""
        with self._lock:
            t = self._topics.get(name)
            # Half, rounded up: the refused batch splits in two, each at the cap.
            limit = max(-(-size // 2), BATCH_OVERHEAD + 1)
            if t is None:
                return limit
            if limit >= t.batch_limit:
                return t.batch_limit
            t.batch_limit = limit
            t.reserve = min(t.reserve, limit)
            t.capped_at = self._clock()
        log.info(
            "topic %s refused a batch of about %d bytes as too large (its max.message.bytes):"
            " its batches are now at most %d bytes (batch_size %d)",
            name,
            size,
            limit,
            self._settings.for_topic(name).batch_size,
        )
        return limit

    def _reindex(self) -> None:
        by_node: dict[int, list[PartitionQueue]] = {}
        for t in self._topics.values():
            for part in t.parts:
                if part.leader >= 0:
                    by_node.setdefault(part.leader, []).append(part)
        self._by_node = by_node

    def partitions(self) -> list[PartitionQueue]:
        with self._lock:
            return [p for t in self._topics.values() for p in t.parts]
