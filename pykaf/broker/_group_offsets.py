"""Committed offsets of consumer groups: the one part of a group that is persisted.

Kafka keeps commits in ``__consumer_offsets``; here they live in a dict, mirrored into
``ClusterState.group_data["offsets"]`` (JSON: group -> topic -> partition -> entry) so that
a cluster with a data directory keeps them across a restart. Membership is not persisted:
after a restart every group is Empty with its offsets, as if all members had left.

An offset remembers the id of the topic it was committed for: when a topic is deleted and
created again under the same name, the old offsets no longer count (Kafka deletes them
with the topic; reading them as absent has the same effect for clients).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from pykaf.broker._state import ClusterState

__all__ = ["CommittedOffset", "OffsetStore"]

_KEY: Final = "offsets"


@dataclass(frozen=True, slots=True, kw_only=True)
class CommittedOffset:
    """One committed position: what OffsetFetch returns for a partition."""

    offset: int
    leader_epoch: int
    metadata: str
    commit_time_ms: int
    topic_id: str  # str(uuid) of the topic at commit time

    def to_json(self) -> list[Any]:
        return [self.offset, self.leader_epoch, self.metadata, self.commit_time_ms, self.topic_id]

    @classmethod
    def from_json(cls, entry: list[Any]) -> CommittedOffset:
        return cls(
            offset=int(entry[0]),
            leader_epoch=int(entry[1]),
            metadata=str(entry[2]),
            commit_time_ms=int(entry[3]),
            topic_id=str(entry[4]),
        )


class OffsetStore:
    """Committed offsets per group, topic and partition (owned by the cluster's loop)."""

    def __init__(self, state: ClusterState) -> None:
        self._state = state
        self._offsets: dict[str, dict[str, dict[int, CommittedOffset]]] = {}
        stored = state.group_data.get(_KEY)
        if not isinstance(stored, dict):
            stored = {}
        # The JSON mirror is updated entry by entry, so a commit costs one entry, not a
        # rebuild of every group's offsets.
        self._mirror: dict[str, dict[str, dict[str, list[Any]]]] = stored
        state.group_data[_KEY] = stored
        for group, topics in stored.items():
            for topic, partitions in topics.items():
                for partition, entry in partitions.items():
                    self._put(group, topic, int(partition), CommittedOffset.from_json(entry))

    def _put(self, group: str, topic: str, partition: int, value: CommittedOffset) -> None:
        self._offsets.setdefault(group, {}).setdefault(topic, {})[partition] = value

    def groups(self) -> Iterator[str]:
        """Every group with at least one committed offset."""
        return iter(list(self._offsets))

    def has_offsets(self, group: str) -> bool:
        return bool(self._offsets.get(group))

    def commit(self, group: str, entries: Iterable[tuple[str, int, CommittedOffset]]) -> None:
        """Store ``(topic, partition, offset)`` entries and persist them (one write)."""
        changed = False
        for topic, partition, value in entries:
            self._put(group, topic, partition, value)
            self._mirror.setdefault(group, {}).setdefault(topic, {})[str(partition)] = (
                value.to_json()
            )
            changed = True
        if changed:
            self._state.save()

    def get(self, group: str, topic: str, partition: int) -> CommittedOffset | None:
        """The committed offset, or None (also when its topic was deleted or recreated)."""
        value = self._offsets.get(group, {}).get(topic, {}).get(partition)
        if value is None or not self._topic_matches(topic, value):
            return None
        return value

    def all_for(self, group: str) -> dict[str, dict[int, CommittedOffset]]:
        """Every live committed offset of a group, by topic and partition."""
        out: dict[str, dict[int, CommittedOffset]] = {}
        for topic, partitions in self._offsets.get(group, {}).items():
            for partition, value in partitions.items():
                if self._topic_matches(topic, value):
                    out.setdefault(topic, {})[partition] = value
        return out

    def _topic_matches(self, topic: str, value: CommittedOffset) -> bool:
        current = self._state.topics.get(topic)
        return current is not None and str(current.topic_id) == value.topic_id

    def delete(self, group: str, topic: str, partition: int) -> None:
        """Forget one committed offset (persisted)."""
        topics = self._offsets.get(group, {})
        if topics.get(topic, {}).pop(partition, None) is None:
            return
        if not topics[topic]:
            del topics[topic]
        if not topics:
            self._offsets.pop(group, None)
        mirror = self._mirror.get(group, {})
        mirror.get(topic, {}).pop(str(partition), None)
        if not mirror.get(topic, True):
            del mirror[topic]
        if not mirror:
            self._mirror.pop(group, None)
        self._state.save()

    def delete_group(self, group: str) -> None:
        """Forget every offset of a group (persisted)."""
        if self._offsets.pop(group, None) is not None or group in self._mirror:
            self._mirror.pop(group, None)
            self._state.save()
