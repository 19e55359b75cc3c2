"""Committed offsets of consumer groups: the one part of a group that is persisted.

Kafka keeps commits in ``__consumer_offsets``; here they live in a dict and, with a data
directory, in an append-only compacted log (``_offsets_log``): a commit appends one entry,
whatever the number of stored groups. Membership is not persisted: after a restart every
group is Empty with its offsets, as if all members had left. Offsets that an older version
kept in the metadata document are moved into the log once.

An offset remembers the id of the topic it was committed for: when a topic is deleted and
created again under the same name, the old offsets no longer count (Kafka deletes them
with the topic; reading them as absent has the same effect for clients, and compaction
drops them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from pykaf.broker._offsets_log import OffsetChange, OffsetsLog
from pykaf.broker._state import ClusterState

__all__ = ["CommittedOffset", "OffsetStore"]

_LEGACY_KEY: Final = "offsets"  # where the metadata document kept them before the log


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
        self._log: OffsetsLog | None = None
        legacy = state.group_data.pop(_LEGACY_KEY, None)
        if state.data_dir is None:
            return
        self._log = OffsetsLog(state.data_dir, fsync=state.fsync)
        for group, topics in self._log.open().items():
            for topic, partitions in topics.items():
                for partition, entry in partitions.items():
                    self._put(group, topic, partition, CommittedOffset.from_json(entry))
        state.close_hooks.append(self._log.close)
        if isinstance(legacy, dict) and legacy:
            for group, topics in legacy.items():
                changes = [
                    (topic, int(partition), entry)
                    for topic, partitions in topics.items()
                    for partition, entry in partitions.items()
                ]
                for topic, partition, entry in changes:
                    self._put(group, topic, partition, CommittedOffset.from_json(entry))
                self._log.append(group, changes)
            state.save()  # the document without them: they live in the log now

    def _put(self, group: str, topic: str, partition: int, value: CommittedOffset) -> None:
        self._offsets.setdefault(group, {}).setdefault(topic, {})[partition] = value

    def _persist(self, group: str, changes: list[OffsetChange] | None) -> None:
        """Append a change already applied in memory."""
        if self._log is not None:
            self._log.append(group, changes)
            self._compact_if_due()

    def _compact_if_due(self) -> None:
        # After the change is in memory too: compaction writes what memory holds.
        if self._log is not None and self._log.compaction_due():
            try:
                self._log.compact(self._live())
            except OSError as exc:  # the commit itself is on disk; compaction can wait
                self._log.health.failed(exc)

    def _live(self) -> Iterator[tuple[str, list[OffsetChange]]]:
        for group in self._offsets:
            changes: list[OffsetChange] = [
                (topic, partition, value.to_json())
                for topic, partitions in self.all_for(group).items()
                for partition, value in partitions.items()
            ]
            if changes:
                yield group, changes

    def groups(self) -> Iterator[str]:
        """Every group with at least one committed offset."""
        return iter(list(self._offsets))

    def has_offsets(self, group: str) -> bool:
        return bool(self._offsets.get(group))

    def commit(self, group: str, entries: Iterable[tuple[str, int, CommittedOffset]]) -> None:
        """Store ``(topic, partition, offset)`` entries and persist them (one append)."""
        values = list(entries)
        if not values:
            return
        # On disk first: a commit that fails to persist (raised) must not be served.
        if self._log is not None:
            self._log.append(group, [(t, index, value.to_json()) for t, index, value in values])
        for topic, partition, value in values:
            self._put(group, topic, partition, value)
        self._compact_if_due()

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
        self._persist(group, [(topic, partition, None)])

    def delete_group(self, group: str) -> None:
        """Forget every offset of a group (persisted)."""
        if self._offsets.pop(group, None) is not None:
            self._persist(group, None)
