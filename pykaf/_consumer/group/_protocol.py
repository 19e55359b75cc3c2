"""The "consumer" protocol type's bytes: what members put in JoinGroup and SyncGroup.

A subscription (JoinGroup protocol metadata) and an assignment (SyncGroup) are each an
int16 version followed by the ``ConsumerProtocolSubscription`` / ``ConsumerProtocolAssignment``
structure of that version (kio's generated classes, from Kafka's own schemas):

- subscription v0: topics, user data; v1 adds owned partitions (KIP-429, cooperative
  rebalancing); v2 the member's generation (KIP-792); v3 its rack (KIP-881).
- assignment v0: partitions per topic, user data; v1..v3 change nothing on the wire.

Reading follows Java's ``ConsumerProtocol``: a version above the newest we know is read
as the newest (newer versions only append fields), trailing bytes are ignored, a
negative version is an error.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from kio.schema.consumer_protocol_assignment import v0 as assignment_v0
from kio.schema.consumer_protocol_assignment import v1 as assignment_v1
from kio.schema.consumer_protocol_assignment import v2 as assignment_v2
from kio.schema.consumer_protocol_assignment import v3 as assignment_v3
from kio.schema.consumer_protocol_subscription import v0 as subscription_v0
from kio.schema.consumer_protocol_subscription import v1 as subscription_v1
from kio.schema.consumer_protocol_subscription import v2 as subscription_v2
from kio.schema.consumer_protocol_subscription import v3 as subscription_v3
from kio.serial import entity_reader, entity_writer

from pykaf._consumer._records import TopicPartition
from pykaf._errors import LocalProtocolError, RemoteProtocolError
from pykaf.protocol._guard import check_bounds

__all__ = [
    "CONSUMER_PROTOCOL_TYPE",
    "LATEST_VERSION",
    "Assignment",
    "Subscription",
    "decode_assignment",
    "decode_subscription",
    "encode_assignment",
    "encode_subscription",
]

#: JoinGroup's ``protocol_type`` for consumers (Connect and others use their own).
CONSUMER_PROTOCOL_TYPE: Final = "consumer"
LATEST_VERSION: Final = 3

# kio's packages: the data class and its nested TopicPartition, per version.
_SUBSCRIPTION_MODULES: Final = (subscription_v0, subscription_v1, subscription_v2, subscription_v3)
_ASSIGNMENT_MODULES: Final = (assignment_v0, assignment_v1, assignment_v2, assignment_v3)


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscription:
    """What one member asks for. ``generation`` is -1 when unknown (v0/v1 peers, or a
    member that never joined); ``version`` is the version read (or to write)."""

    topics: tuple[str, ...]
    user_data: bytes | None = None
    owned_partitions: tuple[TopicPartition, ...] = ()
    generation: int = -1
    rack: str | None = None
    version: int = LATEST_VERSION


@dataclass(frozen=True, slots=True, kw_only=True)
class Assignment:
    """What the leader gives one member."""

    partitions: tuple[TopicPartition, ...]
    user_data: bytes | None = None
    version: int = LATEST_VERSION


def _check_version(version: int) -> None:
    if type(version) is not int or not 0 <= version <= LATEST_VERSION:
        raise LocalProtocolError(
            f"consumer protocol version must be 0..{LATEST_VERSION}, not {version!r}"
        )


def _grouped(partitions: Iterable[TopicPartition], nested: type[Any]) -> tuple[Any, ...]:
    # Topics in first-seen order, partitions as given: Java writes them the same way, and
    # a stable order keeps the bytes (and the broker's "metadata changed?" test) stable.
    by_topic: dict[str, list[int]] = defaultdict(list)
    for tp in partitions:
        by_topic[tp.topic].append(tp.partition)
    return tuple(nested(topic=t, partitions=tuple(p)) for t, p in by_topic.items())


def _flat(entries: tuple[Any, ...] | None, what: str) -> tuple[TopicPartition, ...]:
    # Another member wrote these: a null list reads as empty (as ``topics`` does), and a
    # negative partition is their error, not ours.
    try:
        return tuple(
            TopicPartition(str(entry.topic), int(p))
            for entry in entries or ()
            for p in entry.partitions or ()
        )
    except ValueError as exc:
        raise RemoteProtocolError(f"{what}: {exc}") from None


# kio builds a codec per class on first use: keep them (a handful of classes in all).
_WRITERS: dict[type[Any], Callable[[Any, Any], None]] = {}
_READERS: dict[type[Any], Callable[[bytes, int], tuple[Any, int]]] = {}


def _writer(cls: type[Any]) -> Callable[[Any, Any], None]:
    write = _WRITERS.get(cls)
    if write is None:
        write = _WRITERS[cls] = entity_writer(cls)
    return write


def _reader(cls: type[Any]) -> Callable[[bytes, int], tuple[Any, int]]:
    read = _READERS.get(cls)
    if read is None:
        read = _READERS[cls] = entity_reader(cls)
    return read


def _encode(version: int, entity: Any) -> bytes:
    buffer = io.BytesIO()
    buffer.write(version.to_bytes(2, "big", signed=True))
    _writer(type(entity))(buffer, entity)
    return buffer.getvalue()


def _decode(data: bytes, modules: tuple[Any, ...], name: str, what: str) -> tuple[int, Any]:
    raw = bytes(data)
    if len(raw) < 2:
        raise RemoteProtocolError(f"{what}: {len(raw)} bytes, too short for a version")
    version = int.from_bytes(raw[:2], "big", signed=True)
    if version < 0:
        raise RemoteProtocolError(f"{what}: negative version {version}")
    cls = getattr(modules[min(version, LATEST_VERSION)], name)
    # Another member wrote these bytes: bound their counts before kio allocates by them.
    check_bounds(cls, raw, 2, what=f"{what} v{version}")
    try:
        entity, _ = _reader(cls)(raw, 2)
    except Exception as exc:  # kio's DecodeError family, ValueError, OverflowError...
        raise RemoteProtocolError(f"{what} v{version}: {type(exc).__name__}: {exc}") from exc
    return version, entity


def encode_subscription(subscription: Subscription) -> bytes:
    """The JoinGroup metadata bytes for ``subscription`` at its ``version``."""
    version = subscription.version
    _check_version(version)
    module = _SUBSCRIPTION_MODULES[version]
    fields: dict[str, Any] = {
        "topics": tuple(subscription.topics),
        "user_data": subscription.user_data,
    }
    if version >= 1:
        fields["owned_partitions"] = _grouped(
            subscription.owned_partitions, module.data.TopicPartition
        )
    if version >= 2:
        fields["generation_id"] = subscription.generation
    if version >= 3:
        fields["rack_id"] = subscription.rack
    return _encode(version, module.ConsumerProtocolSubscription(**fields))


def decode_subscription(data: bytes) -> Subscription:
    """Read a member's JoinGroup metadata; ``RemoteProtocolError`` if it is not valid."""
    version, entity = _decode(
        data, _SUBSCRIPTION_MODULES, "ConsumerProtocolSubscription", "consumer subscription"
    )
    return Subscription(
        topics=tuple(str(t) for t in entity.topics or ()),
        user_data=None if entity.user_data is None else bytes(entity.user_data),
        owned_partitions=_flat(getattr(entity, "owned_partitions", ()), "consumer subscription"),
        generation=int(getattr(entity, "generation_id", -1)),
        rack=getattr(entity, "rack_id", None),
        version=version,
    )


def encode_assignment(assignment: Assignment) -> bytes:
    """The SyncGroup assignment bytes for one member."""
    version = assignment.version
    _check_version(version)
    module = _ASSIGNMENT_MODULES[version]
    entity = module.ConsumerProtocolAssignment(
        assigned_partitions=_grouped(assignment.partitions, module.data.TopicPartition),
        user_data=assignment.user_data,
    )
    return _encode(version, entity)


def decode_assignment(data: bytes) -> Assignment:
    """Read the assignment SyncGroup returned. Empty bytes are an empty assignment: the
    coordinator sends them to a member the leader gave nothing (or left out)."""
    if not data:
        return Assignment(partitions=())
    version, entity = _decode(
        data, _ASSIGNMENT_MODULES, "ConsumerProtocolAssignment", "consumer assignment"
    )
    return Assignment(
        partitions=_flat(entity.assigned_partitions, "consumer assignment"),
        user_data=None if entity.user_data is None else bytes(entity.user_data),
        version=version,
    )
