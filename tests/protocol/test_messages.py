"""The message layer: API registry, build_*, headers, encode/decode and their errors."""

from __future__ import annotations

import datetime
import io
import struct
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode
from kio.schema.index import api_key_map, schema_name_map
from kio.schema.metadata.v4.request import MetadataRequest as MetadataRequestV4
from kio.schema.request_header.v1.header import RequestHeader as RequestHeaderV1
from kio.schema.request_header.v2.header import RequestHeader as RequestHeaderV2
from kio.serial import entity_writer
from kio.static.constants import EntityType

from pykaf._errors import (
    LocalProtocolError,
    MissingFieldsError,
    PykafError,
    RemoteProtocolError,
    UnknownApiError,
)
from pykaf.protocol._apis import KIP_896_FLOORS, all_apis, api_spec
from pykaf.protocol._messages import (
    build_request,
    build_response,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    payload_api,
    peek_request,
    request_class,
    request_header_version,
    response_class,
    response_header_version,
)

# -- registry ------------------------------------------------------------------------


def test_registry_covers_every_kio_api_up_to_kios_newest_version() -> None:
    specs = {s.key: s for s in all_apis()}
    assert set(specs) == set(api_key_map)
    for key, snake in api_key_map.items():
        versions = [v for v, k in schema_name_map[snake].items() if EntityType.request in k]
        assert specs[key].max_version == max(versions)
        assert specs[key].min_version >= min(versions)
        assert specs[key].snake_name == snake


@pytest.mark.parametrize(
    ("name", "floor"),
    [
        ("Produce", 3),
        ("Fetch", 4),
        ("ListOffsets", 1),
        ("Metadata", 0),
        ("OffsetCommit", 2),
        ("OffsetFetch", 1),
        ("FindCoordinator", 0),
        ("JoinGroup", 2),  # kio ships v0-v1 (re-added in Kafka 4.0.1); KIP-896 drops them
        ("CreateTopics", 2),
        ("ApiVersions", 0),
    ],
)
def test_kip_896_floors(name: str, floor: int) -> None:
    assert api_spec(name).min_version == floor


def test_floor_table_names_real_apis() -> None:
    # A misspelt name in the table would silently leave that API at kio's floor.
    for name, floor in KIP_896_FLOORS.items():
        assert api_spec(name).name == name
        assert api_spec(name).min_version >= floor


@pytest.mark.parametrize(
    "spelling", ["ListOffsets", "list_offsets", "listoffsets", "LIST-OFFSETS", 2]
)
def test_lookup_by_key_and_any_spelling(spelling: int | str) -> None:
    spec = api_spec(spelling)
    assert (spec.key, spec.name) == (2, "ListOffsets")


def test_unknown_api_names_close_matches_or_choices() -> None:
    with pytest.raises(UnknownApiError, match="did you mean Metadata"):
        api_spec("Metdata")
    with pytest.raises(UnknownApiError, match=r"known APIs are: .*Produce"):
        api_spec("qwertyuiop")
    with pytest.raises(UnknownApiError, match="key 4; pykaf knows the keys 0-3, 8-"):
        api_spec(4)
    with pytest.raises(UnknownApiError):
        api_spec(True)


def test_class_lookup_and_version_range() -> None:
    assert request_class("Metadata", 12).__name__ == "MetadataRequest"
    assert response_class(3, 12).__version__ == 12
    assert request_class("list_offsets", 1).__api_key__ == 2
    with pytest.raises(UnknownApiError, match=r"Produce v2 is not supported.*v3\.\.v13"):
        request_class("Produce", 2)
    with pytest.raises(UnknownApiError, match=r"Fetch v3 is not supported"):
        response_class("Fetch", 3)
    # Group and offset APIs reach below the floor (old clients), the client's floor stays.
    assert response_class("JoinGroup", 1).__version__ == 1
    assert api_spec("JoinGroup").min_version == 2
    with pytest.raises(UnknownApiError, match="v99"):
        response_class("Fetch", 99)


# -- build ---------------------------------------------------------------------------

METADATA_SUPERSET = {
    "topics": [{"name": "orders", "topic_id": None}],
    "allow_auto_topic_creation": False,
    "include_cluster_authorized_operations": False,
    "include_topic_authorized_operations": False,
    "not_a_field_anywhere": 1,
}


@pytest.mark.parametrize("version", api_spec("Metadata").versions)
def test_build_drops_what_the_version_lacks(version: int) -> None:
    request = build_request("Metadata", version, **METADATA_SUPERSET)
    assert type(request) is request_class("Metadata", version)
    assert request.topics[0].name == "orders"
    if version >= 4:
        assert request.allow_auto_topic_creation is False
    assert not hasattr(request, "not_a_field_anywhere")


_TOPIC_ID = "6f1d2a3b-0000-4000-8000-000000000001"


@pytest.mark.parametrize(
    ("api", "version", "fields", "missing"),
    [
        (
            "OffsetFetch",
            10,
            {"groups": [{"group_id": "g", "topics": [{"name": "t", "partition_indexes": [0]}]}]},
            "groups[0].topics[0].topic_id (this version has it in place of name)",
        ),
        (
            "Fetch",
            13,
            {
                "replica_id": -1,
                "max_wait": 0,
                "min_bytes": 1,
                "topics": [{"topic": "t", "partitions": []}],
                "forgotten_topics_data": [],
                "rack_id": "",
            },
            "topics[0].topic_id (this version has it in place of topic)",
        ),
    ],
    ids=["offset-fetch-v10", "fetch-v13"],
)
def test_a_name_dropped_for_a_topic_id_is_not_sent_as_a_zero_id(
    api: str, version: int, fields: dict[str, object], missing: str
) -> None:
    with pytest.raises(MissingFieldsError) as info:
        build_request(api, version, **fields)
    assert info.value.missing == (missing,)


def test_a_superset_with_the_topic_id_builds_every_version() -> None:
    topic = {"name": "t", "topic_id": _TOPIC_ID, "partition_indexes": [0]}
    for version in api_spec("OffsetFetch").versions:
        fields = {
            "group_id": "g",
            "topics": [topic],
            "groups": [{"group_id": "g", "topics": [topic]}],
        }
        request = build_request("OffsetFetch", version, **fields)
        assert type(request) is request_class("OffsetFetch", version)
    # Nothing dropped, nothing demanded: a topic id may stay unset where names remain.
    metadata = build_request(
        "Metadata", 12, topics=[{"name": "t"}], include_topic_authorized_operations=False
    )
    assert metadata.topics[0].topic_id is None


def test_missing_fields_are_named_with_paths() -> None:
    with pytest.raises(MissingFieldsError) as info:
        build_request("Produce", 9, topic_data=[{"partition_data": [{"index": 0}]}, {}])
    assert info.value.missing == (
        "acks",
        "timeout",
        "topic_data[0].name",
        "topic_data[0].partition_data[0].records",
        "topic_data[1].name",
        "topic_data[1].partition_data",
    )
    assert info.value.api == "Produce"
    assert info.value.version == 9
    assert "topic_data[0].name" in str(info.value)


def test_build_converts_plain_values() -> None:
    topic = uuid.uuid4()
    request = build_request(
        "Fetch",
        13,
        max_wait=500,
        min_bytes=1,
        max_bytes=1 << 20,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=[
            {
                "topic_id": str(topic),
                "partitions": [
                    {"partition": 0, "fetch_offset": 10, "partition_max_bytes": 1 << 20}
                ],
            }
        ],
        forgotten_topics_data=(),
        rack_id="",
    )
    assert request.max_wait == datetime.timedelta(milliseconds=500)
    assert request.topics[0].topic_id == topic
    assert isinstance(request.topics, tuple)
    response = build_response(
        "Heartbeat", 4, throttle_time=datetime.timedelta(seconds=1), error_code=27
    )
    assert response.error_code is ErrorCode.rebalance_in_progress
    assert response.throttle_time == datetime.timedelta(seconds=1)


def test_build_accepts_entities_of_other_versions() -> None:
    old = MetadataRequestV4(topics=(), allow_auto_topic_creation=True)
    new = build_request("Metadata", 12, topics=old.topics, include_topic_authorized_operations=True)
    assert new.topics == ()
    v4 = build_request("Metadata", 4, topics=[{"name": "a"}], allow_auto_topic_creation=True)
    v12 = build_request("Metadata", 12, topics=v4.topics, include_topic_authorized_operations=False)
    assert v12.topics[0].name == "a"
    assert v12.topics[0].topic_id is None  # uuid fields default to the zero UUID (None)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"topics": "orders"}, "topics: expected a list or tuple"),
        ({"topics": [42]}, r"topics\[0\]: expected a dict"),
        ({"topics": [{"name": "a"}], "allow_auto_topic_creation": None}, "may not be None"),
    ],
)
def test_build_rejects_wrong_kinds(fields: dict[str, object], match: str) -> None:
    with pytest.raises(LocalProtocolError, match=match):
        build_request("Metadata", 4, **fields)


def test_build_rejects_bad_conversions() -> None:
    with pytest.raises(LocalProtocolError, match="error_code: 31337 is not a Kafka error code"):
        build_response("Heartbeat", 4, throttle_time=0, error_code=31337)
    with pytest.raises(LocalProtocolError, match="throttle_time: expected milliseconds"):
        build_response("Heartbeat", 4, throttle_time="1s", error_code=0)
    with pytest.raises(LocalProtocolError, match=r"throttle_time: .* out of a timedelta's range"):
        build_response("Heartbeat", 4, throttle_time=2**80, error_code=0)
    with pytest.raises(LocalProtocolError, match="throttle_time: 2147483648 ms does not fit int32"):
        encode_response(12, 4, 1, build_response("Heartbeat", 4, throttle_time=2**31, error_code=0))
    with pytest.raises(LocalProtocolError, match=r"topics\[0\].topic_id: 'nope' is not a UUID"):
        build_request(
            "Metadata",
            12,
            topics=[{"name": None, "topic_id": "nope"}],
            include_topic_authorized_operations=False,
        )


def test_tagged_fields_without_kio_default_get_kafkas_implicit_default() -> None:
    # kio declares UpdateRaftVoterResponse.current_leader (tag 0) without a default; an
    # absent tag means the nested defaults, with zeros where the JSON gives none.
    response = build_response("UpdateRaftVoter", 0, throttle_time=0, error_code=0)
    leader = response.current_leader
    assert (leader.leader_id, leader.leader_epoch, leader.host, leader.port) == (-1, -1, "", 0)
    frame = encode_response(82, 0, 1, response)
    assert decode_response(82, 0, frame[4:]) == (1, response)


# -- headers -------------------------------------------------------------------------


def test_header_versions() -> None:
    assert request_header_version("Metadata", 8) == 1
    assert request_header_version("Metadata", 9) == 2
    assert response_header_version("Metadata", 8) == 0
    assert response_header_version("Metadata", 9) == 1
    assert request_header_version("ApiVersions", 3) == 2
    assert response_header_version("ApiVersions", 3) == 0  # always v0, KIP-511
    assert request_header_version("SaslHandshake", 1) == 1


def _kio_header(
    cls: type, key: int, version: int, correlation_id: int, client_id: str | None
) -> bytes:
    buffer = io.BytesIO()
    entity_writer(cls)(
        buffer,
        cls(
            request_api_key=key,
            request_api_version=version,
            correlation_id=correlation_id,
            client_id=client_id,
        ),
    )
    return buffer.getvalue()


@pytest.mark.parametrize("client_id", [None, "", "pykaf", "ünïcødé-client"])
def test_request_header_bytes_match_kio(client_id: str | None) -> None:
    v8 = build_request(
        "Metadata",
        8,
        topics=None,
        allow_auto_topic_creation=True,
        include_cluster_authorized_operations=False,
        include_topic_authorized_operations=False,
    )
    frame = encode_request(v8, correlation_id=77, client_id=client_id)
    header = _kio_header(RequestHeaderV1, 3, 8, 77, client_id)
    assert frame[4 : 4 + len(header)] == header
    assert struct.unpack(">i", frame[:4])[0] == len(frame) - 4
    v9 = build_request(
        "Metadata",
        9,
        topics=None,
        allow_auto_topic_creation=True,
        include_cluster_authorized_operations=False,
        include_topic_authorized_operations=False,
    )
    frame = encode_request(v9, correlation_id=77, client_id=client_id)
    header = _kio_header(RequestHeaderV2, 3, 9, 77, client_id)
    assert frame[4 : 4 + len(header)] == header
    decoded_header, decoded = decode_request(frame[4:])
    assert type(decoded_header) is RequestHeaderV2
    assert decoded_header.client_id == client_id
    assert decoded == v9


def test_api_versions_response_header_is_v0_even_when_flexible() -> None:
    response = build_response("ApiVersions", 3, error_code=0, api_keys=[], throttle_time=0)
    frame = encode_response(18, 3, 5, response)
    # length, correlation id, then straight to the body's error code: no tag byte.
    assert frame[4:8] == struct.pack(">i", 5)
    assert frame[8:10] == b"\x00\x00"
    assert decode_response(18, 3, frame[4:]) == (5, response)
    heartbeat = build_response("Heartbeat", 4, throttle_time=0, error_code=0)
    frame = encode_response(12, 4, 5, heartbeat)
    assert frame[8:9] == b"\x00"  # header v1: empty tagged fields
    assert len(frame) == 4 + 4 + 1 + 4 + 2 + 1


def test_unknown_tagged_header_fields_are_skipped() -> None:
    v9 = build_request(
        "Metadata",
        9,
        topics=None,
        allow_auto_topic_creation=True,
        include_cluster_authorized_operations=False,
        include_topic_authorized_operations=False,
    )
    frame = encode_request(v9, correlation_id=1, client_id="c")
    prefix = peek_request(frame[4:])
    payload = frame[4:]
    tagged = payload[: prefix.end] + b"\x01\x07\x02xy" + payload[prefix.end + 1 :]
    assert decode_request(tagged)[1] == v9
    heartbeat = build_response("Heartbeat", 4, throttle_time=0, error_code=0)
    body = encode_response(12, 4, 9, heartbeat)[4:]
    tagged = body[:4] + b"\x02\x00\x00\x05\x03abc" + body[5:]
    assert decode_response(12, 4, tagged) == (9, heartbeat)


# -- errors --------------------------------------------------------------------------


def test_encode_errors_name_the_field() -> None:
    produce = build_request("Produce", 9, acks=70000, timeout=5, topic_data=[])
    with pytest.raises(
        LocalProtocolError, match=r"Produce v9 request: acks: 70000 does not fit int16"
    ):
        encode_request(produce, correlation_id=1, client_id=None)
    produce = build_request(
        "Produce",
        9,
        acks=1,
        timeout=5,
        topic_data=[{"name": "t", "partition_data": [{"index": 2**31, "records": b""}]}],
    )
    with pytest.raises(
        LocalProtocolError, match=r"topic_data\[0\]\.partition_data\[0\]\.index: 2147483648"
    ):
        encode_request(produce, correlation_id=1, client_id=None)
    metadata = build_request("Metadata", 4, topics=[{"name": 5}], allow_auto_topic_creation=True)
    with pytest.raises(LocalProtocolError, match=r"topics\[0\]\.name: expected a str"):
        encode_request(metadata, correlation_id=1, client_id=None)


def test_encode_rejects_wrong_objects_and_ids() -> None:
    heartbeat = build_response("Heartbeat", 4, throttle_time=0, error_code=0)
    with pytest.raises(LocalProtocolError, match="expected a kio request"):
        encode_request(heartbeat, correlation_id=1, client_id=None)
    with pytest.raises(LocalProtocolError, match="expected a kio request"):
        encode_request(object(), correlation_id=1, client_id=None)
    request = build_request("Heartbeat", 4, group_id="g", generation_id=1, member_id="m")
    with pytest.raises(LocalProtocolError, match="correlation_id"):
        encode_request(request, correlation_id=2**31, client_id=None)
    with pytest.raises(LocalProtocolError, match="client_id"):
        encode_request(request, correlation_id=1, client_id="x" * 40000)
    with pytest.raises(LocalProtocolError, match="Heartbeat v4 response given where API key 3"):
        encode_response(3, 12, 1, heartbeat)
    assert payload_api(request) == (12, 4)
    assert payload_api(heartbeat) == (12, 4)


def _metadata_response_frame() -> bytes:
    response = build_response(
        "Metadata",
        12,
        throttle_time=0,
        brokers=[{"node_id": 1, "host": "localhost", "port": 9092}],
        cluster_id="c",
        controller_id=1,
        topics=[
            {
                "error_code": 0,
                "name": "t",
                "is_internal": False,
                "partitions": [],
                "topic_authorized_operations": 0,
            }
        ],
    )
    return encode_response(3, 12, 42, response)[4:]


def test_decode_errors_are_remote_and_name_the_api() -> None:
    payload = _metadata_response_frame()
    with pytest.raises(RemoteProtocolError, match="malformed Metadata v12 response"):
        decode_response(3, 12, payload[:-3])
    with pytest.raises(RemoteProtocolError, match="Metadata v12 response has 2 unread trailing"):
        decode_response(3, 12, payload + b"\x00\x00", strict=True)
    # Lenient by default, like Kafka's Java client (librdkafka appends bytes).
    assert decode_response(3, 12, payload + b"\x00\x00") == decode_response(3, 12, payload)
    with pytest.raises(RemoteProtocolError, match="too short"):
        decode_response(3, 12, b"\x00\x01")
    with pytest.raises(RemoteProtocolError, match="malformed Metadata v12 response"):
        decode_response(3, 12, payload[:5] + b"\xff" * 40)
    # An unknown error code is bad bytes too (kio's ErrorCode is a closed enum).
    heartbeat = build_response("Heartbeat", 0, error_code=0)
    bad = bytearray(encode_response(12, 0, 1, heartbeat)[4:])
    bad[4:6] = struct.pack(">h", 9999)
    with pytest.raises(RemoteProtocolError, match="malformed Heartbeat v0 response"):
        decode_response(12, 0, bad)


def test_decode_request_errors() -> None:
    with pytest.raises(RemoteProtocolError, match="too short"):
        decode_request(b"\x00\x03\x00")
    unknown = struct.pack(">hhih", 4, 0, 1, -1)
    with pytest.raises(RemoteProtocolError, match="API key 4 v0"):
        decode_request(unknown)
    with pytest.raises(RemoteProtocolError, match="client_id runs past"):
        decode_request(struct.pack(">hhih", 3, 4, 1, 10) + b"abc")
    request = build_request("Heartbeat", 4, group_id="g", generation_id=1, member_id="m")
    frame = encode_request(request, correlation_id=1, client_id=None)
    with pytest.raises(RemoteProtocolError, match="malformed Heartbeat v4 request"):
        decode_request(frame[4:-2])
    # bytearray and memoryview payloads decode without a copy.
    assert decode_request(bytearray(frame[4:]))[1] == request
    assert decode_request(memoryview(bytearray(frame))[4:])[1] == request


def test_api_versions_unsupported_version_answer_decodes_as_v0() -> None:
    old_broker_answer = build_response(
        "ApiVersions",
        0,
        error_code=35,
        api_keys=[{"api_key": 18, "min_version": 0, "max_version": 2}],
    )
    payload = encode_response(18, 0, 3, old_broker_answer)[4:]
    correlation_id, response = decode_response(18, 4, payload)
    assert correlation_id == 3
    assert response == old_broker_answer
    assert response.__version__ == 0


_PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.binary(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["name", "index", "records", "topic_id", "x"]), inner)
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    api=st.sampled_from(["Produce", "Metadata", "Fetch", "Heartbeat"]),
    fields=st.dictionaries(
        st.sampled_from(
            [
                "acks",
                "timeout",
                "topic_data",
                "topics",
                "max_wait",
                "error_code",
                "group_id",
                "generation_id",
                "member_id",
                "allow_auto_topic_creation",
                "throttle_time",
            ]
        ),
        _PLAIN,
    ),
)
def test_fuzz_build_and_encode_raise_only_pykaf_errors(api: str, fields: dict[str, object]) -> None:
    for version in (api_spec(api).min_version, api_spec(api).max_version):
        try:
            request = build_request(api, version, **fields)
            encode_request(request, correlation_id=0, client_id=None)
        except PykafError:
            pass
