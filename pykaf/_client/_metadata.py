"""The client's view of the cluster: brokers, topics, partition leaders, and when to refresh.

Pure state: Metadata responses (kio entities of any version) go in with the time they
arrived; lookups and "is a refresh due?" come out. The asyncio layer decides when to send
Metadata requests; this module decides what the answers mean.

Refresh rules: a topic is fetched on first use; refreshed once its entry is older than
``max_age``; refreshed early once marked stale (an error that means the cache is wrong:
NOT_LEADER_OR_FOLLOWER, a newer leader epoch seen, ...), but not more often than
``min_refresh_interval``, so a storm of stale errors cannot turn into a storm of Metadata
requests. A response that carries an older leader epoch than the cache (an answer from a
broker that has not caught up) does not overwrite the newer entry (KIP-320).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from pykaf._client._address import Address
from pykaf._error_codes import error_for_code
from pykaf._errors import BrokerError
from pykaf._kafka_errors import LeaderNotAvailableError, UnknownTopicOrPartitionError

__all__ = [
    "BrokerChanges",
    "BrokerInfo",
    "ClusterMetadata",
    "MetadataCache",
    "PartitionInfo",
    "TopicInfo",
    "parse_metadata",
]

_UNKNOWN_TOPIC_OR_PARTITION: Final = 3
_NO_LEADER: Final = -1
_NO_EPOCH: Final = -1


def _error(code: int, what: str) -> BrokerError | None:
    return None if code == 0 else error_for_code(code, what)


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerInfo:
    """One broker as Metadata describes it."""

    node_id: int
    host: str
    port: int
    rack: str | None = None
    # Derived once: the client looks it up on every request it routes.
    address: Address = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", Address(host=self.host, port=self.port))


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionInfo:
    """One partition: its leader (-1: none right now) and the leader's epoch (-1: the
    broker did not say; Metadata v7+ does)."""

    topic: str
    partition: int
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    offline_replicas: tuple[int, ...] = ()
    error_code: int = 0

    @property
    def error(self) -> BrokerError | None:
        return _error(self.error_code, f"(partition {self.topic}-{self.partition})")


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicInfo:
    """One topic; ``partitions[i].partition == i`` (sorted, as Kafka numbers them)."""

    name: str
    topic_id: uuid.UUID | None
    internal: bool
    partitions: tuple[PartitionInfo, ...]
    error_code: int = 0

    @property
    def error(self) -> BrokerError | None:
        return _error(self.error_code, f"(topic {self.name!r})")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterMetadata:
    """A snapshot of the cluster: what ``AsyncClient.metadata()`` returns."""

    cluster_id: str | None
    controller_id: int | None
    brokers: Mapping[int, BrokerInfo]
    topics: Mapping[str, TopicInfo]


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerChanges:
    """How the broker list moved between two Metadata answers."""

    added: tuple[BrokerInfo, ...] = ()
    removed: tuple[BrokerInfo, ...] = ()
    # (before, after): same node id, new host, port or rack.
    moved: tuple[tuple[BrokerInfo, BrokerInfo], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.moved)


def _tuple_ints(values: Iterable[Any]) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def parse_metadata(response: Any) -> ClusterMetadata:
    """A kio MetadataResponse (any version) as plain values."""
    brokers = {
        int(b.node_id): BrokerInfo(
            node_id=int(b.node_id),
            host=str(b.host),
            port=int(b.port),
            rack=getattr(b, "rack", None),
        )
        for b in response.brokers
    }
    topics: dict[str, TopicInfo] = {}
    for t in response.topics:
        name = t.name
        if name is None:  # v10+ may answer by id only; nothing to key the cache by
            continue
        partitions = sorted(
            (
                PartitionInfo(
                    topic=name,
                    partition=int(p.partition_index),
                    leader=int(p.leader_id),
                    leader_epoch=int(getattr(p, "leader_epoch", _NO_EPOCH)),
                    replicas=_tuple_ints(p.replica_nodes),
                    isr=_tuple_ints(p.isr_nodes),
                    offline_replicas=_tuple_ints(getattr(p, "offline_replicas", ())),
                    error_code=int(p.error_code),
                )
                for p in t.partitions
            ),
            key=lambda p: p.partition,
        )
        topic_id = getattr(t, "topic_id", None)
        topics[name] = TopicInfo(
            name=name,
            # Kafka sends the all-zero UUID for "no id".
            topic_id=topic_id if topic_id and topic_id.int else None,
            internal=bool(getattr(t, "is_internal", False)),
            partitions=tuple(partitions),
            error_code=int(t.error_code),
        )
    controller = int(getattr(response, "controller_id", _NO_LEADER))
    return ClusterMetadata(
        cluster_id=getattr(response, "cluster_id", None),
        controller_id=controller if controller >= 0 else None,
        brokers=MappingProxyType(brokers),
        topics=MappingProxyType(topics),
    )


@dataclass(slots=True, kw_only=True)
class _TopicEntry:
    info: TopicInfo
    fetched_at: float
    stale: bool = False


@dataclass(slots=True, kw_only=True)
class MetadataCache:
    """Brokers and per-topic entries, with the refresh rules of the module doc."""

    max_age: float
    min_refresh_interval: float
    brokers: dict[int, BrokerInfo] = field(default_factory=dict)
    controller_id: int | None = None
    cluster_id: str | None = None
    _topics: dict[str, _TopicEntry] = field(default_factory=dict)
    _names_by_id: dict[uuid.UUID, str] = field(default_factory=dict)
    # When the last answer listing every topic arrived (None: never).
    _all_fetched_at: float | None = None

    # -- updates ----------------------------------------------------------------------

    def update(
        self, response: Any, now: float, requested: Iterable[str] | None
    ) -> tuple[ClusterMetadata, BrokerChanges]:
        """Apply a Metadata answer. ``requested`` None means it listed every topic (so a
        cached topic missing from it was deleted). Returns the answer as values, and how
        the brokers changed."""
        view = parse_metadata(response)
        changes = self._update_brokers(view.brokers)
        if view.controller_id is not None:
            self.controller_id = view.controller_id
        if view.cluster_id is not None:
            self.cluster_id = view.cluster_id
        for name, info in view.topics.items():
            self._store(name, info, now)
        if requested is None:
            self._all_fetched_at = now
            for name in [n for n in self._topics if n not in view.topics]:
                self._forget(name)
        else:
            for name in requested:
                if name not in view.topics:
                    # A broker that left a requested topic out has nothing to say about
                    # it: record it as unknown, like an explicit UNKNOWN_TOPIC_OR_PARTITION.
                    self._store(name, _unknown_topic(name), now)
        return view, changes

    def _update_brokers(self, brokers: Mapping[int, BrokerInfo]) -> BrokerChanges:
        if not brokers:
            # A broker still starting can answer with no brokers; keeping the old list
            # beats forgetting every address we know.
            return BrokerChanges()
        old = self.brokers
        added = tuple(b for i, b in brokers.items() if i not in old)
        removed = tuple(b for i, b in old.items() if i not in brokers)
        moved = tuple((old[i], b) for i, b in brokers.items() if i in old and old[i] != b)
        self.brokers = dict(brokers)
        return BrokerChanges(added=added, removed=removed, moved=moved)

    def _store(self, name: str, info: TopicInfo, now: float) -> None:
        entry = self._topics.get(name)
        stale = False
        if entry is not None and info.error_code == 0 and entry.info.error_code == 0:
            info, stale = _keep_newer_epochs(entry.info, info)
        if entry is not None and entry.info.topic_id is not None:
            self._names_by_id.pop(entry.info.topic_id, None)
        if info.topic_id is not None:
            self._names_by_id[info.topic_id] = name
        self._topics[name] = _TopicEntry(info=info, fetched_at=now, stale=stale)

    def _forget(self, name: str) -> None:
        entry = self._topics.pop(name, None)
        if entry is not None and entry.info.topic_id is not None:
            self._names_by_id.pop(entry.info.topic_id, None)

    def mark_stale(self, topic: str) -> None:
        """The cache is wrong about ``topic`` (a stale error came back): refresh early."""
        entry = self._topics.get(topic)
        if entry is not None:
            entry.stale = True

    def observe_leader_epoch(self, topic: str, partition: int, leader_epoch: int) -> bool:
        """A response named ``leader_epoch`` for a partition; True (and the topic marked
        stale) when it is newer than the cached one."""
        entry = self._topics.get(topic)
        if entry is None or leader_epoch < 0:
            return False
        parts = entry.info.partitions
        if partition < len(parts) and parts[partition].leader_epoch < leader_epoch:
            entry.stale = True
            return True
        return False

    # -- lookups ----------------------------------------------------------------------

    def topic(self, name: str) -> TopicInfo | None:
        entry = self._topics.get(name)
        return None if entry is None else entry.info

    def topic_name(self, topic_id: uuid.UUID) -> str | None:
        return self._names_by_id.get(topic_id)

    def known_topics(self) -> tuple[str, ...]:
        return tuple(self._topics)

    def refresh_due(self, name: str, now: float) -> bool:
        """Should ``name`` be fetched before it is used at ``now``?"""
        entry = self._topics.get(name)
        if entry is None:
            return True
        age = now - entry.fetched_at
        if entry.stale or entry.info.error_code != 0:
            return age >= self.min_refresh_interval
        return age >= self.max_age

    def brokers_due(self, now: float) -> bool:
        """Is the broker list itself older than ``max_age`` (and no topic refresh, which
        would carry it, is on its way)?"""
        newest = max((e.fetched_at for e in self._topics.values()), default=None)
        if self._all_fetched_at is not None:
            newest = self._all_fetched_at if newest is None else max(newest, self._all_fetched_at)
        return newest is None or now - newest >= self.max_age

    def note_broker_list_fetched(self, now: float) -> None:
        """A Metadata answer for no topic at all arrived (it carries the brokers only)."""
        self._all_fetched_at = (
            now if self._all_fetched_at is None else max(now, self._all_fetched_at)
        )

    def leader(self, topic: str, partition: int) -> PartitionInfo:
        """The cached partition, if it has a leader; else the typed error that says why."""
        info = self.topic(topic)
        if info is None:
            raise UnknownTopicOrPartitionError(f"(topic {topic!r} is not in the metadata cache)")
        if info.error_code != 0:
            raise error_for_code(info.error_code, f"(topic {topic!r})")
        if partition >= len(info.partitions) or info.partitions[partition].partition != partition:
            raise UnknownTopicOrPartitionError(
                f"(topic {topic!r} has {len(info.partitions)} partitions, not {partition + 1})"
            )
        part = info.partitions[partition]
        if part.leader < 0:
            raise LeaderNotAvailableError(f"(partition {topic}-{partition} has no leader)")
        return part

    def snapshot(self, topics: Iterable[str] | None = None) -> ClusterMetadata:
        names = self._topics if topics is None else topics
        chosen = {n: self._topics[n].info for n in names if n in self._topics}
        return ClusterMetadata(
            cluster_id=self.cluster_id,
            controller_id=self.controller_id,
            brokers=MappingProxyType(dict(self.brokers)),
            topics=MappingProxyType(chosen),
        )


def _unknown_topic(name: str) -> TopicInfo:
    return TopicInfo(
        name=name,
        topic_id=None,
        internal=False,
        partitions=(),
        error_code=_UNKNOWN_TOPIC_OR_PARTITION,
    )


def _keep_newer_epochs(old: TopicInfo, new: TopicInfo) -> tuple[TopicInfo, bool]:
    """``new``, except partitions where ``old`` has the newer leader epoch; True if any
    was kept (the answer came from a broker behind the one we heard from before)."""
    if old.topic_id is not None and new.topic_id is not None and old.topic_id != new.topic_id:
        return new, False  # a recreated topic: its epochs start again (as the Java client)
    kept = False
    merged: list[PartitionInfo] = []
    for part in new.partitions:
        before = old.partitions[part.partition] if part.partition < len(old.partitions) else None
        if (
            before is not None
            and before.partition == part.partition
            and part.leader_epoch >= 0
            and before.leader_epoch > part.leader_epoch
        ):
            merged.append(before)
            kept = True
        else:
            merged.append(part)
    if not kept:
        return new, False
    return (
        TopicInfo(
            name=new.name,
            topic_id=new.topic_id,
            internal=new.internal,
            partitions=tuple(merged),
            error_code=new.error_code,
        ),
        True,
    )
