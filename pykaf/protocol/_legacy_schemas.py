"""OffsetCommit v0 and v1, which kio does not ship, written in kio's own form.

Why ours: kio is generated from Kafka's current JSON schemas, and Kafka 4.0 deleted
OffsetCommit v0-v1 from them (KIP-896). Kafka 3.x still answered them and old clients
still send them (Debian's sarama 1.22 commits with v1), so the embedded broker decodes
them. The classes follow kio's generated code field for field (the layouts come from
Kafka 3.9's OffsetCommitRequest.json / OffsetCommitResponse.json, "validVersions": "0-9"),
so kio's generic reader and writer serve them like any other schema; the tests check
them byte for byte against kio's v2 where the layouts agree. pykaf's own client never
sends them (it negotiates from the KIP-896 floor).

- v0: group_id, then topics; no generation, member id or retention time.
- v1: adds generation_id and member_id, and a per-partition commit_timestamp (-1: the
  broker's time) that Kafka dropped in v2 in favour of a request-level retention time.
"""

from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from kio.schema.errors import ErrorCode
from kio.schema.request_header.v1.header import RequestHeader
from kio.schema.response_header.v0.header import ResponseHeader
from kio.schema.types import GroupId, TopicName
from kio.static.constants import EntityType
from kio.static.primitive import i16, i32, i64

__all__ = ["legacy_schema"]

_OFFSET_COMMIT: Final = 8


class _OffsetCommitRequestPart:
    """What every generated kio class of OffsetCommit's request says about itself."""

    __slots__ = ()
    __flexible__: ClassVar[bool] = False
    __api_key__: ClassVar[i16] = i16(_OFFSET_COMMIT)
    __header_schema__: ClassVar[type[RequestHeader]] = RequestHeader


class _OffsetCommitResponsePart:
    __slots__ = ()
    __flexible__: ClassVar[bool] = False
    __api_key__: ClassVar[i16] = i16(_OFFSET_COMMIT)
    __header_schema__: ClassVar[type[ResponseHeader]] = ResponseHeader


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitRequestPartitionV0(_OffsetCommitRequestPart):
    __type__: ClassVar = EntityType.nested
    __version__: ClassVar[i16] = i16(0)
    partition_index: i32 = field(metadata={"kafka_type": "int32"})
    committed_offset: i64 = field(metadata={"kafka_type": "int64"})
    committed_metadata: str | None = field(metadata={"kafka_type": "string"})


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitRequestTopicV0(_OffsetCommitRequestPart):
    __type__: ClassVar = EntityType.nested
    __version__: ClassVar[i16] = i16(0)
    name: TopicName = field(metadata={"kafka_type": "string"})
    partitions: tuple[OffsetCommitRequestPartitionV0, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitRequestV0(_OffsetCommitRequestPart):
    __type__: ClassVar = EntityType.request
    __version__: ClassVar[i16] = i16(0)
    group_id: GroupId = field(metadata={"kafka_type": "string"})
    topics: tuple[OffsetCommitRequestTopicV0, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitRequestPartitionV1(_OffsetCommitRequestPart):
    __type__: ClassVar = EntityType.nested
    __version__: ClassVar[i16] = i16(1)
    partition_index: i32 = field(metadata={"kafka_type": "int32"})
    committed_offset: i64 = field(metadata={"kafka_type": "int64"})
    commit_timestamp: i64 = field(metadata={"kafka_type": "int64"}, default=i64(-1))
    committed_metadata: str | None = field(metadata={"kafka_type": "string"})


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitRequestTopicV1(_OffsetCommitRequestPart):
    __type__: ClassVar = EntityType.nested
    __version__: ClassVar[i16] = i16(1)
    name: TopicName = field(metadata={"kafka_type": "string"})
    partitions: tuple[OffsetCommitRequestPartitionV1, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitRequestV1(_OffsetCommitRequestPart):
    __type__: ClassVar = EntityType.request
    __version__: ClassVar[i16] = i16(1)
    group_id: GroupId = field(metadata={"kafka_type": "string"})
    generation_id_or_member_epoch: i32 = field(metadata={"kafka_type": "int32"}, default=i32(-1))
    member_id: str = field(metadata={"kafka_type": "string"})
    topics: tuple[OffsetCommitRequestTopicV1, ...]


def _response_classes(version: int) -> type[Any]:
    # v0-v2 answer alike: topics, partitions, error codes (throttle time came in v3).
    @dataclass(frozen=True, slots=True, kw_only=True)
    class OffsetCommitResponsePartition(_OffsetCommitResponsePart):
        __type__: ClassVar = EntityType.nested
        __version__: ClassVar[i16] = i16(version)
        partition_index: i32 = field(metadata={"kafka_type": "int32"})
        error_code: ErrorCode = field(metadata={"kafka_type": "error_code"})

    @dataclass(frozen=True, slots=True, kw_only=True)
    class OffsetCommitResponseTopic(_OffsetCommitResponsePart):
        __type__: ClassVar = EntityType.nested
        __version__: ClassVar[i16] = i16(version)
        name: TopicName = field(metadata={"kafka_type": "string"})
        partitions: tuple[OffsetCommitResponsePartition, ...]

    @dataclass(frozen=True, slots=True, kw_only=True)
    class OffsetCommitResponse(_OffsetCommitResponsePart):
        __type__: ClassVar = EntityType.response
        __version__: ClassVar[i16] = i16(version)
        topics: tuple[OffsetCommitResponseTopic, ...]

    return OffsetCommitResponse


# (is_request, api key, version) -> class
_SCHEMAS: Final[dict[tuple[bool, int, int], type[Any]]] = {
    (True, _OFFSET_COMMIT, 0): OffsetCommitRequestV0,
    (True, _OFFSET_COMMIT, 1): OffsetCommitRequestV1,
    (False, _OFFSET_COMMIT, 0): _response_classes(0),
    (False, _OFFSET_COMMIT, 1): _response_classes(1),
}


def legacy_schema(is_request: bool, api_key: int, version: int) -> type[Any] | None:
    """Our class for a version kio lacks, or None."""
    return _SCHEMAS.get((is_request, api_key, version))
