"""Read a response for the signs that the client's cluster view is out of date.

Raw requests are returned to the caller as they came, errors included; the client only
looks at them to learn: a partition error that means "the leader moved" (stale metadata),
a newer leader epoch in a ``current_leader`` field (KIP-951), or a coordinator or
controller that is no longer one. kio responses differ per API and version, so the walk
is by shape: a list of topics (keyed by ``name``, ``topic`` or ``topic_id``), each with a
list of partitions (``partition_index``, ``index`` or ``partition``) carrying
``error_code``. Field plans are cached per kio class.
"""

from __future__ import annotations

import dataclasses
import types
import uuid
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "CONTROLLER_STALE_CODES",
    "COORDINATOR_STALE_CODES",
    "LEADER_APIS",
    "METADATA_STALE_CODES",
    "PartitionSignal",
    "error_codes",
    "partition_signals",
]

# Codes after which Kafka's own client refreshes metadata (its InvalidMetadataException
# family): the leader or the topic is not where the cache says.
METADATA_STALE_CODES: Final = frozenset(
    {
        3,  # UNKNOWN_TOPIC_OR_PARTITION
        5,  # LEADER_NOT_AVAILABLE
        6,  # NOT_LEADER_OR_FOLLOWER
        56,  # KAFKA_STORAGE_ERROR: the replica went offline, a new leader follows
        74,  # FENCED_LEADER_EPOCH: our epoch is older than the leader's
        75,  # UNKNOWN_LEADER_EPOCH: our epoch is newer than the broker's (it lags)
        100,  # UNKNOWN_TOPIC_ID
        103,  # INCONSISTENT_TOPIC_ID
    }
)
COORDINATOR_STALE_CODES: Final = frozenset({15, 16})  # COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR
CONTROLLER_STALE_CODES: Final = frozenset({41})  # NOT_CONTROLLER

# APIs whose answers are per partition, from the partition's leader: Produce, Fetch,
# ListOffsets, DeleteRecords, OffsetForLeaderEpoch, DescribeProducers, WriteTxnMarkers.
LEADER_APIS: Final = frozenset({0, 1, 2, 21, 23, 61, 27})

_TOPIC_KEYS: Final = ("name", "topic", "topic_id")
_PARTITION_KEYS: Final = ("partition_index", "index", "partition")
_MAX_DEPTH: Final = 6


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionSignal:
    """A partition whose answer says the cache may be wrong."""

    topic: str | uuid.UUID
    partition: int
    error_code: int
    # From ``current_leader`` (KIP-951), -1 when absent or unknown.
    leader_id: int = -1
    leader_epoch: int = -1


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plan:
    # Names of the fields holding tuples of entities, and the element class of each.
    lists: tuple[str, ...]
    topic_key: str | None
    partition_key: str | None
    has_error: bool
    has_current_leader: bool
    # Every field holding entities, alone or in tuples (for error_codes).
    children: tuple[str, ...]


_PLANS: dict[type, _Plan] = {}


def _is_entity_tuple(tp: Any) -> bool:
    """``tuple[Entity, ...]`` or ``tuple[Entity, ...] | None``."""
    if getattr(tp, "__origin__", None) is tuple:
        args: tuple[Any, ...] = getattr(tp, "__args__", ())
        return bool(args) and dataclasses.is_dataclass(args[0])
    if isinstance(tp, types.UnionType):
        return any(_is_entity_tuple(arg) for arg in tp.__args__)
    return False


def _plan(cls: type) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is not None:
        return plan
    fields = {f.name: f.type for f in dataclasses.fields(cls)}
    lists = tuple(name for name, tp in fields.items() if _is_entity_tuple(tp))
    plan = _Plan(
        lists=lists,
        topic_key=next((k for k in _TOPIC_KEYS if k in fields), None),
        partition_key=next((k for k in _PARTITION_KEYS if k in fields), None),
        has_error="error_code" in fields,
        has_current_leader="current_leader" in fields,
        children=lists
        + tuple(
            n for n, tp in fields.items() if isinstance(tp, type) and dataclasses.is_dataclass(tp)
        ),
    )
    _PLANS[cls] = plan
    return plan


def _is_entity(value: object) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def partition_signals(
    response: Any, stale_codes: frozenset[int] = METADATA_STALE_CODES
) -> list[PartitionSignal]:
    """Partitions answered with a code in ``stale_codes``, or naming a current leader."""
    signals: list[PartitionSignal] = []
    plan = _plan(type(response))
    for list_name in plan.lists:
        for topic in getattr(response, list_name):
            if not _is_entity(topic):
                break
            tplan = _plan(type(topic))
            if tplan.topic_key is None:
                continue
            key = getattr(topic, tplan.topic_key)
            for inner in tplan.lists:
                for part in getattr(topic, inner):
                    if not _is_entity(part):
                        break
                    signal = _partition_signal(part, key, stale_codes)
                    if signal is not None:
                        signals.append(signal)
    return signals


def _partition_signal(
    part: Any, topic: str | uuid.UUID, stale_codes: frozenset[int]
) -> PartitionSignal | None:
    pplan = _plan(type(part))
    if pplan.partition_key is None or not pplan.has_error:
        return None
    code = int(part.error_code)
    leader_id = leader_epoch = -1
    if pplan.has_current_leader:
        current = part.current_leader
        leader_id, leader_epoch = int(current.leader_id), int(current.leader_epoch)
    if code not in stale_codes and leader_epoch < 0:
        return None
    return PartitionSignal(
        topic=topic,
        partition=int(getattr(part, pplan.partition_key)),
        error_code=code,
        leader_id=leader_id,
        leader_epoch=leader_epoch,
    )


def error_codes(response: Any) -> set[int]:
    """Every non-zero ``error_code`` anywhere in ``response`` (records are not entered)."""
    found: set[int] = set()
    _collect(response, found, 0)
    return found


def _collect(entity: Any, found: set[int], depth: int) -> None:
    if depth > _MAX_DEPTH:
        return
    plan = _plan(type(entity))
    if plan.has_error:
        code = int(entity.error_code)
        if code:
            found.add(code)
    for name in plan.children:
        value = getattr(entity, name)
        if isinstance(value, tuple):
            for item in value:
                if not _is_entity(item):
                    break
                _collect(item, found, depth + 1)
        elif _is_entity(value):
            _collect(value, found, depth + 1)
