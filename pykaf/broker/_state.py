"""Cluster state shared by every broker of an embedded cluster: nodes, topics, leaders.

All N listeners live in one process and one event loop, so there is one state object and
no replication: every replica is the same in-memory log. Leadership is bookkeeping (which
node answers for a partition, with which leader epoch), so that clients see a real
multi-broker cluster: leaders spread round-robin, brokers that can go down, a coordinator
per group.

With a ``data_dir`` the state is persisted: partition logs in segment files (``_segments``),
committed offsets in an append-only log (``_offsets_log``) and the rest in one JSON
document (``_metastore``), rewritten on every change of it (rare: topic admin, leader
moves, producer id blocks). Leader epochs are saved before any client can see them and a
restart starts above every stored one, so an epoch never goes back.
"""

from __future__ import annotations

import base64
import re
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pykaf._error_codes import error_for_code
from pykaf.broker._configs import (
    DEFAULT_MAX_MESSAGE_BYTES,
    TOPIC_CONFIGS,
    validate_topic_configs,
)
from pykaf.broker._log import PartitionLog
from pykaf.broker._metastore import read_metadata, write_metadata
from pykaf.broker._segments import DEFAULT_SEGMENT_BYTES, SegmentStore

__all__ = [
    "BrokerNode",
    "ClusterState",
    "PartitionState",
    "TopicState",
    "validate_topic_name",
]

_TOPIC_NAME: Final = re.compile(r"[a-zA-Z0-9._-]+")
_MAX_TOPIC_NAME: Final = 249
_PRODUCER_ID_BLOCK: Final = 1000

INVALID_TOPIC_EXCEPTION: Final = 17
TOPIC_ALREADY_EXISTS: Final = 36
INVALID_PARTITIONS: Final = 37
INVALID_REPLICATION_FACTOR: Final = 38
INVALID_CONFIG: Final = 40
UNKNOWN_TOPIC_OR_PARTITION: Final = 3

# One request must not be able to make the broker allocate without bound (a fuzzer's
# CreateTopics with 2**31-1 partitions did). Real clusters sit far below this.
MAX_PARTITIONS_PER_TOPIC = 10_000


def _too_many_partitions(count: int) -> str:
    return (
        f"{count} partitions requested; the embedded broker allows at most"
        f" {MAX_PARTITIONS_PER_TOPIC} per topic."
    )


def validate_topic_name(name: str) -> str | None:
    """Why ``name`` cannot be a topic (Kafka's rules), or None."""
    if not name:
        return "a topic name cannot be empty"
    if name in (".", ".."):
        return f"topic name {name!r} is not allowed"
    if len(name) > _MAX_TOPIC_NAME:
        return f"topic name is {len(name)} characters; {_MAX_TOPIC_NAME} at most"
    if not _TOPIC_NAME.fullmatch(name):
        return f"topic name {name!r} may only contain ASCII letters, digits, '.', '_', '-'"
    return None


@dataclass(slots=True, kw_only=True)
class BrokerNode:
    """One broker of the cluster. Mutable: its port is known once it listens, and fault
    injection takes it down and up."""

    node_id: int
    host: str
    port: int = 0
    rack: str | None = None
    up: bool = True
    #: Ports of the listeners beside the main one, by name (its security protocol).
    listener_ports: dict[str, int] = field(default_factory=dict)

    def port_on(self, listener: str | None) -> int:
        """The port advertised to a client that came in on ``listener`` (None: the main
        one): as Kafka, a broker advertises the listener the request arrived on."""
        return self.port if listener is None else self.listener_ports.get(listener, self.port)


class PartitionState:
    """Leadership and log of one partition (mutable: leaders move, epochs grow)."""

    __slots__ = ("index", "leader", "leader_epoch", "log", "replicas", "topic")

    def __init__(
        self,
        topic: TopicState,
        index: int,
        *,
        leader: int,
        replicas: tuple[int, ...],
        log: PartitionLog,
        leader_epoch: int = 0,
    ) -> None:
        self.topic = topic
        self.index = index
        self.leader = leader
        self.leader_epoch = leader_epoch
        self.replicas = replicas
        self.log = log
        log.begin_epoch(leader_epoch)


class TopicState:
    """One topic: id, explicit configs and partitions. The two configs the produce path
    reads are cached as attributes so it never parses strings per batch."""

    __slots__ = (
        "configs",
        "log_append_time",
        "max_message_bytes",
        "name",
        "partitions",
        "topic_id",
    )

    def __init__(self, name: str, topic_id: uuid.UUID, configs: Mapping[str, str]) -> None:
        self.name = name
        self.topic_id = topic_id
        self.partitions: list[PartitionState] = []
        self.configs: dict[str, str] = {}
        self.max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES
        self.log_append_time = False
        self.set_configs(configs)

    def set_configs(self, configs: Mapping[str, str]) -> None:
        self.configs = dict(configs)
        self.max_message_bytes = int(self.config("max.message.bytes"))
        self.log_append_time = self.config("message.timestamp.type") == "LogAppendTime"

    def config(self, name: str) -> str:
        """The effective value: the topic's own, else Kafka's default."""
        value = self.configs.get(name)
        if value is not None:
            return value
        default = TOPIC_CONFIGS[name].default
        return "" if default is None else default


class ClusterState:
    """Everything the brokers of one embedded cluster know. Owned by one event loop."""

    def __init__(
        self,
        *,
        node_ids: Sequence[int],
        host: str = "127.0.0.1",
        auto_create_topics: bool = True,
        default_partitions: int = 1,
        default_replication_factor: int | None = None,
        data_dir: str | Path | None = None,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fsync: bool = False,
    ) -> None:
        if not node_ids:
            raise ValueError("a cluster needs at least one broker")
        if default_partitions < 1:
            raise ValueError("default_partitions must be at least 1")
        self.brokers: dict[int, BrokerNode] = {
            node_id: BrokerNode(node_id=node_id, host=host) for node_id in node_ids
        }
        self.auto_create_topics = auto_create_topics
        self.default_partitions = default_partitions
        # Replicas cost nothing here (one shared log), and more than one lets a leader
        # move when a broker goes down, as in a real cluster; Kafka's own default is 1.
        self.default_replication_factor = default_replication_factor or min(3, len(node_ids))
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.segment_bytes = segment_bytes
        # fsync every append (segments, offsets log) before answering; see README.
        self.fsync = fsync
        self.topics: dict[str, TopicState] = {}
        self.topics_by_id: dict[uuid.UUID, TopicState] = {}
        self.cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        self.transactional_ids: dict[str, tuple[int, int]] = {}
        # Opaque, JSON-serialisable data of the group coordinator (committed offsets...),
        # persisted with the rest; see save().
        self.group_data: dict[str, Any] = {}
        # Called first by close(): parts that own timers (the group coordinator) stop them.
        self.close_hooks: list[Callable[[], None]] = []
        self._next_producer_id = 0
        self._producer_id_limit = 0  # ids below this are reserved in the stored document
        self._next_leader = 0
        if self.data_dir is not None:
            self._load()
            self.save()  # the restart's new epochs are on disk before a client sees them

    # -- brokers ------------------------------------------------------------------------

    def up_brokers(self) -> list[BrokerNode]:
        return [node for node in self.brokers.values() if node.up]

    @property
    def controller_id(self) -> int:
        up = self.up_brokers()
        return min(node.node_id for node in up) if up else -1

    def coordinator_for(self, key: str) -> BrokerNode | None:
        """The broker coordinating a group (or transactional id): a stable hash of the key
        over the brokers that are up, like Kafka's partition of __consumer_offsets."""
        up = sorted(self.up_brokers(), key=lambda node: node.node_id)
        if not up:
            return None
        return up[zlib.crc32(key.encode()) % len(up)]

    def set_broker_up(self, node_id: int, up: bool) -> None:
        """Take a broker down (its leaderships move to other live replicas) or back up."""
        self.brokers[node_id].up = up
        moved = False
        if up:
            # Partitions left without any leader get this broker if it is a replica.
            for partition in self.all_partitions():
                if partition.leader == -1 and node_id in partition.replicas:
                    self._move_leader(partition, node_id)
                    moved = True
        else:
            for partition in self.all_partitions():
                if partition.leader == node_id:
                    live = [r for r in partition.replicas if r != node_id and self.brokers[r].up]
                    self._move_leader(partition, live[0] if live else -1)
                    moved = True
        if moved:
            self.save()  # one write for every partition that moved

    def move_leader(self, partition: PartitionState, node_id: int) -> None:
        """Make ``node_id`` (-1: nobody) the leader, starting a new leader epoch."""
        self._move_leader(partition, node_id)
        self.save()

    def _move_leader(self, partition: PartitionState, node_id: int) -> None:
        # The caller saves: the new epoch is on disk before any client can learn it, so a
        # restart (even after SIGKILL) never hands out a lower one (see _load).
        partition.leader = node_id
        partition.leader_epoch += 1
        partition.log.begin_epoch(partition.leader_epoch)
        partition.log.wake_waiters()  # long-polling fetches answer NOT_LEADER at once

    # -- topics -------------------------------------------------------------------------

    def all_partitions(self) -> Iterable[PartitionState]:
        for topic in self.topics.values():
            yield from topic.partitions

    def partition(self, topic: str, index: int) -> PartitionState | None:
        state = self.topics.get(topic)
        if state is None or not 0 <= index < len(state.partitions):
            return None
        return state.partitions[index]

    def _assign(self, count: int, start_index: int, replication: int) -> list[tuple[int, ...]]:
        """Replica lists for ``count`` new partitions: leaders round-robin over the up
        brokers, a different starting broker for every topic (as Kafka's assignment)."""
        nodes = sorted(node.node_id for node in self.up_brokers()) or sorted(self.brokers)
        start = self._next_leader
        self._next_leader += 1
        assignment = []
        for i in range(count):
            first = (start + start_index + i) % len(nodes)
            assignment.append(tuple(nodes[(first + k) % len(nodes)] for k in range(replication)))
        return assignment

    def _new_log(self, topic: str, index: int, log_start: int = 0) -> PartitionLog:
        if self.data_dir is None:
            return PartitionLog(log_start_offset=log_start)
        store = SegmentStore(
            self.data_dir / f"{topic}-{index}", segment_bytes=self.segment_bytes, fsync=self.fsync
        )
        return PartitionLog(store=store, log_start_offset=log_start)

    def check_new_topic(
        self,
        name: str,
        num_partitions: int | None,
        replication_factor: int | None,
        configs: Mapping[str, str | None] | None,
    ) -> tuple[int, int, dict[str, str]]:
        """Validate a topic creation; ``(partitions, replication, configs)`` or raise the
        Kafka error (``BrokerError`` with its code)."""
        problem = validate_topic_name(name)
        if problem is not None:
            raise error_for_code(INVALID_TOPIC_EXCEPTION, problem)
        if name in self.topics:
            raise error_for_code(TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists.")
        partitions = self.default_partitions if num_partitions in (None, -1) else num_partitions
        assert partitions is not None
        if partitions < 1:
            raise error_for_code(INVALID_PARTITIONS, "Number of partitions must be larger than 0.")
        if partitions > MAX_PARTITIONS_PER_TOPIC:
            raise error_for_code(INVALID_PARTITIONS, _too_many_partitions(partitions))
        replication = (
            self.default_replication_factor
            if replication_factor in (None, -1)
            else replication_factor
        )
        assert replication is not None
        if replication < 1:
            raise error_for_code(
                INVALID_REPLICATION_FACTOR, "Replication factor must be larger than 0."
            )
        if replication > len(self.brokers):
            raise error_for_code(
                INVALID_REPLICATION_FACTOR,
                f"Replication factor: {replication} larger than available brokers:"
                f" {len(self.brokers)}.",
            )
        try:
            kept = validate_topic_configs(configs or {})
        except ValueError as exc:
            raise error_for_code(INVALID_CONFIG, str(exc)) from None
        return partitions, replication, kept

    def create_topic(
        self,
        name: str,
        num_partitions: int | None = None,
        replication_factor: int | None = None,
        configs: Mapping[str, str | None] | None = None,
        *,
        assignment: Sequence[tuple[int, ...]] | None = None,
    ) -> TopicState:
        """Create a topic (``assignment``: explicit replica lists, leader first)."""
        partitions, replication, kept = self.check_new_topic(
            name, num_partitions, replication_factor, configs
        )
        topic = TopicState(name, uuid.uuid4(), kept)
        replica_lists = assignment or self._assign(partitions, 0, replication)
        for index, replicas in enumerate(replica_lists):
            topic.partitions.append(
                PartitionState(
                    topic,
                    index,
                    leader=replicas[0],
                    replicas=replicas,
                    log=self._new_log(name, index),
                )
            )
        self.topics[name] = topic
        self.topics_by_id[topic.topic_id] = topic
        self.save()
        return topic

    def auto_create(self, name: str) -> TopicState | None:
        """The topic, created with the defaults if auto-creation is on and the name valid."""
        topic = self.topics.get(name)
        if topic is not None or not self.auto_create_topics:
            return topic
        if validate_topic_name(name) is not None:
            return None
        return self.create_topic(name)

    def delete_topic(self, name: str) -> TopicState:
        topic = self.topics.pop(name, None)
        if topic is None:
            raise error_for_code(
                UNKNOWN_TOPIC_OR_PARTITION, "This server does not host this topic-partition."
            )
        del self.topics_by_id[topic.topic_id]
        for partition in topic.partitions:
            partition.log.remove()
        self.save()
        return topic

    def check_new_partitions(self, name: str, count: int) -> TopicState:
        topic = self.topics.get(name)
        if topic is None:
            raise error_for_code(UNKNOWN_TOPIC_OR_PARTITION, f"The topic '{name}' does not exist.")
        current = len(topic.partitions)
        if count < current:
            raise error_for_code(
                INVALID_PARTITIONS,
                f"Topic currently has {current} partitions, which is higher than the"
                f" requested {count}.",
            )
        if count == current:
            raise error_for_code(INVALID_PARTITIONS, f"Topic already has {current} partitions.")
        if count > MAX_PARTITIONS_PER_TOPIC:
            raise error_for_code(INVALID_PARTITIONS, _too_many_partitions(count))
        return topic

    def create_partitions(self, name: str, count: int) -> TopicState:
        topic = self.check_new_partitions(name, count)
        current = len(topic.partitions)
        replication = len(topic.partitions[0].replicas) if topic.partitions else 1
        for offset, replicas in enumerate(self._assign(count - current, current, replication)):
            index = current + offset
            topic.partitions.append(
                PartitionState(
                    topic,
                    index,
                    leader=replicas[0],
                    replicas=replicas,
                    log=self._new_log(name, index),
                )
            )
        self.save()
        return topic

    # -- producer ids -------------------------------------------------------------------

    def allocate_producer_id(self) -> int:
        producer_id = self._next_producer_id
        self._next_producer_id += 1
        if self._next_producer_id > self._producer_id_limit:
            # Reserve a block in the stored document, so ids never repeat after a restart
            # without a write per InitProducerId (Kafka allocates blocks the same way).
            self._producer_id_limit = self._next_producer_id + _PRODUCER_ID_BLOCK
            self.save()
        return producer_id

    def init_transactional(self, transactional_id: str) -> tuple[int, int]:
        """``(producer id, epoch)`` for a transactional id: same id, epoch bumped per call."""
        known = self.transactional_ids.get(transactional_id)
        if known is None or known[1] >= 32766:
            known = (self.allocate_producer_id(), 0)
        else:
            known = (known[0], known[1] + 1)
        self.transactional_ids[transactional_id] = known
        self.save()
        return known

    # -- persistence --------------------------------------------------------------------

    def _document(self) -> dict[str, Any]:
        return {
            "cluster_id": self.cluster_id,
            "next_producer_id": self._producer_id_limit,
            "transactional_ids": {k: list(v) for k, v in self.transactional_ids.items()},
            "group_data": self.group_data,
            "topics": {
                topic.name: {
                    "id": str(topic.topic_id),
                    "configs": topic.configs,
                    "partitions": [
                        {
                            "replicas": list(p.replicas),
                            "leader": p.leader,
                            "leader_epoch": p.leader_epoch,
                            "log_start": p.log.log_start_offset,
                        }
                        for p in topic.partitions
                    ],
                }
                for topic in self.topics.values()
            },
        }

    def save(self) -> None:
        """Write the metadata document (no-op without a data directory)."""
        if self.data_dir is not None:
            write_metadata(self.data_dir, self._document())

    def _load(self) -> None:
        assert self.data_dir is not None
        doc = read_metadata(self.data_dir)
        if doc is None:
            return
        self.cluster_id = str(doc.get("cluster_id", self.cluster_id))
        self._next_producer_id = self._producer_id_limit = int(doc.get("next_producer_id", 0))
        self.transactional_ids = {
            str(k): (int(v[0]), int(v[1])) for k, v in doc.get("transactional_ids", {}).items()
        }
        self.group_data = dict(doc.get("group_data", {}))
        for name, entry in doc.get("topics", {}).items():
            topic = TopicState(name, uuid.UUID(entry["id"]), entry.get("configs", {}))
            for index, part in enumerate(entry["partitions"]):
                replicas = tuple(r for r in part["replicas"] if r in self.brokers)
                if not replicas:  # restarted with fewer brokers
                    replicas = self._assign(1, index, 1)[0]
                leader = part["leader"] if part["leader"] in replicas else replicas[0]
                log = self._new_log(name, index, int(part.get("log_start", 0)))
                # A restart is a new leadership: a new epoch, as Kafka's would be, above
                # both the stored one and any the segments hold (a document written by an
                # older version may lag behind the batches).
                stored_epoch = int(part.get("leader_epoch", 0))
                topic.partitions.append(
                    PartitionState(
                        topic,
                        index,
                        leader=leader,
                        replicas=replicas,
                        log=log,
                        leader_epoch=max(stored_epoch, log.latest_epoch) + 1,
                    )
                )
            self.topics[name] = topic
            self.topics_by_id[topic.topic_id] = topic
        self._next_leader = len(self.topics)

    def close(self) -> None:
        for hook in self.close_hooks:
            hook()
        self.save()
        for partition in self.all_partitions():
            partition.log.close()
