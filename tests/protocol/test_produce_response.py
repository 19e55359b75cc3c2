"""The hand-written ProduceResponse decoder reads exactly what kio's generic path reads."""

from __future__ import annotations

import datetime
import struct
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode

from pykaf._errors import LocalProtocolError, RemoteProtocolError
from pykaf.protocol._framing import ClientConnection, Response
from pykaf.protocol._messages import (
    build_request,
    build_response,
    decode_response,
    encode_response,
)
from pykaf.protocol._produce_request import _uvarint  # the request side's own
from pykaf.protocol._produce_response import (
    ProduceOutcomes,
    ThrottledOutcomes,
    decode_produce_frame,
    decode_produce_response,
)

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MS = datetime.timedelta(milliseconds=1)
_VERSIONS = range(3, 14)


def _ms(value: datetime.datetime | None) -> int:
    return -1 if value is None else (value - _EPOCH) // _MS


def _kio_outcomes(version: int, frame: bytes) -> tuple[int, ProduceOutcomes]:
    """kio's decode, mapped to outcomes the way the sender used to map kio's entities
    (topic name, or topic id from v13)."""
    correlation_id, response = decode_response(0, version, frame)
    out: ProduceOutcomes = {}
    for topic in response.responses or ():  # kio reads a null array as None
        key = topic.topic_id if version >= 13 else topic.name
        for part in topic.partition_responses or ():
            out[(key, int(part.index))] = (
                int(part.error_code),
                int(part.base_offset),
                _ms(part.log_append_time),
                getattr(part, "error_message", None),
            )
    return correlation_id, out


# -- building responses with kio -----------------------------------------------------

_text = st.text(max_size=8)
_long_text = st.one_of(_text, st.text(min_size=130, max_size=140))  # 2-byte varint lengths
_int32 = st.integers(-(2**31), 2**31 - 1)
_int64 = st.integers(-(2**63), 2**63 - 1)
# kio reads -1 as "no time", refuses other negatives and times past year 9999, and can be
# a millisecond off from about year 2300 on (it goes through a float): stay before 2100.
_append_time = st.one_of(st.none(), st.integers(0, 4_102_444_800_000))
_error_codes = st.sampled_from([int(code) for code in ErrorCode])


@st.composite
def _partition(draw: st.DrawFn, version: int) -> dict[str, Any]:
    part: dict[str, Any] = {
        "index": draw(_int32),
        "error_code": draw(_error_codes),
        "base_offset": draw(_int64),
        "log_append_time": draw(_append_time),
        "log_start_offset": draw(_int64),
        "record_errors": draw(
            st.lists(
                st.fixed_dictionaries(
                    {
                        "batch_index": _int32,
                        "batch_index_error_message": st.one_of(st.none(), _long_text),
                    }
                ),
                max_size=2,
            )
        ),
        "error_message": draw(st.one_of(st.none(), _long_text)),
    }
    if version >= 10 and draw(st.booleans()):
        part["current_leader"] = {"leader_id": draw(_int32), "leader_epoch": draw(_int32)}
    return part


@st.composite
def _frames(draw: st.DrawFn) -> tuple[int, bytes]:
    """``(version, frame payload)``: a kio-encoded ProduceResponse, length prefix cut."""
    version = draw(st.integers(3, 13))
    names: st.SearchStrategy[Any] = st.uuids() if version >= 13 else _long_text
    topics = []
    for _ in range(draw(st.integers(0, 3))):
        key = "topic_id" if version >= 13 else "name"
        parts = draw(st.lists(_partition(version), max_size=3))
        topics.append({key: draw(names), "partition_responses": parts})
    fields: dict[str, Any] = {"responses": topics, "throttle_time": draw(st.integers(0, 10**6))}
    if version >= 10 and draw(st.booleans()):
        fields["node_endpoints"] = [
            {"node_id": 1, "host": draw(_text), "port": 9092, "rack": draw(st.none() | _text)}
        ]
    response = build_response("Produce", version, **fields)
    return version, encode_response(0, version, draw(_int32), response)[4:]


def _header_size(version: int) -> int:
    return 5 if version >= 9 else 4


@settings(max_examples=300, deadline=None)
@given(_frames())
def test_same_outcomes_as_kio(case: tuple[int, bytes]) -> None:
    version, frame = case
    expected = _kio_outcomes(version, frame)
    assert decode_produce_frame(version, frame) == expected
    assert decode_produce_response(version, frame, _header_size(version)) == expected[1]
    # Any buffer will do, and bytes after the body are ignored.
    assert decode_produce_frame(version, bytearray(frame) + b"\x99\x00") == expected
    assert (
        decode_produce_response(version, memoryview(frame), _header_size(version)) == (expected[1])
    )
    # The throttle time too (KIP-219), carried only by an answer that has one.
    _, response = decode_response(0, version, frame)
    throttle_ms = response.throttle_time // datetime.timedelta(milliseconds=1)
    outcomes = decode_produce_frame(version, frame)[1]
    assert getattr(outcomes, "throttle_time_ms", 0) == throttle_ms
    assert isinstance(outcomes, ThrottledOutcomes) == (throttle_ms > 0)


def test_one_partition_outcome_in_every_version() -> None:
    for version in _VERSIONS:
        topic: dict[str, Any] = (
            {"topic_id": uuid.UUID(int=7)} if version >= 13 else {"name": "events"}
        )
        part: dict[str, Any] = {
            "index": 4,
            "error_code": 6 if version >= 8 else 0,
            "base_offset": 1234,
            "log_append_time": 1_700_000_000_123 if version % 2 else None,
            "record_errors": [],
            "error_message": "moved" if version >= 8 else None,
        }
        if version >= 10:
            part["current_leader"] = {"leader_id": 2, "leader_epoch": 9}
        response = build_response(
            "Produce",
            version,
            responses=[{**topic, "partition_responses": [part]}],
            throttle_time=5,
        )
        frame = encode_response(0, version, 42, response)[4:]
        key = uuid.UUID(int=7) if version >= 13 else "events"
        time = 1_700_000_000_123 if version % 2 else -1
        message = "moved" if version >= 8 else None
        code = 6 if version >= 8 else 0
        assert decode_produce_frame(version, frame) == (42, {(key, 4): (code, 1234, time, message)})
        outcomes = decode_produce_frame(version, frame)[1]
        assert isinstance(outcomes, ThrottledOutcomes)
        assert outcomes.throttle_time_ms == 5


def test_zero_topic_id_reads_as_none_like_kio() -> None:
    response = build_response(
        "Produce",
        13,
        responses=[{"topic_id": None, "partition_responses": [{"index": 0, "error_code": 0,
                    "base_offset": 1, "record_errors": []}]}],
        throttle_time=0,
    )  # fmt: skip
    frame = encode_response(0, 13, 1, response)[4:]
    assert decode_produce_frame(13, frame) == _kio_outcomes(13, frame)
    assert decode_produce_frame(13, frame)[1] == {(None, 0): (0, 1, -1, None)}


# -- bad bytes -----------------------------------------------------------------------


def _rich_frame(version: int) -> bytes:
    """A response that uses every field of its version (and every KIP-951 tag)."""
    parts = [
        {
            "index": i,
            "error_code": 6,
            "base_offset": 10 + i,
            "log_append_time": 1_700_000_000_000,
            "log_start_offset": 3,
            "record_errors": [
                {"batch_index": 1, "batch_index_error_message": "bad"},
                {"batch_index": 2, "batch_index_error_message": None},
            ],
            "error_message": "not the leader",
            "current_leader": {"leader_id": 1, "leader_epoch": 2},
        }
        for i in range(2)
    ]
    topic: dict[str, Any] = {"topic_id": uuid.UUID(int=1)} if version >= 13 else {"name": "t"}
    fields: dict[str, Any] = {
        "responses": [{**topic, "partition_responses": parts}],
        "throttle_time": 0,
    }
    if version >= 10:
        fields["node_endpoints"] = [{"node_id": 1, "host": "h", "port": 1, "rack": "r"}]
    return encode_response(0, version, 3, build_response("Produce", version, **fields))[4:]


@pytest.mark.parametrize("version", _VERSIONS)
def test_every_truncation_is_a_remote_protocol_error(version: int) -> None:
    frame = _rich_frame(version)
    assert decode_produce_frame(version, frame) == _kio_outcomes(version, frame)
    for cut in range(len(frame)):
        with pytest.raises(RemoteProtocolError, match=f"ProduceResponse v{version}: "):
            decode_produce_frame(version, frame[:cut])
    header = _header_size(version)
    for cut in range(header, len(frame)):
        with pytest.raises(RemoteProtocolError):
            decode_produce_response(version, frame[:cut], header)


def test_truncation_messages_say_where() -> None:
    frame = _rich_frame(9)
    with pytest.raises(RemoteProtocolError, match="v9: truncated in partition_responses"):
        decode_produce_frame(9, frame[:20])
    with pytest.raises(RemoteProtocolError, match="v9: truncated in the response header"):
        decode_produce_frame(9, frame[:4])
    with pytest.raises(RemoteProtocolError, match=r"v3: .*no room for a header"):
        decode_produce_frame(3, b"\x00")


def _any_outcome_or_remote_error(version: int, data: bytes) -> None:
    try:
        result = decode_produce_frame(version, data)
    except RemoteProtocolError:
        return
    correlation_id, outcomes = result
    assert isinstance(correlation_id, int)
    for (key, index), (code, base_offset, append_ms, message) in outcomes.items():
        assert isinstance(key, str | uuid.UUID | None)
        assert all(isinstance(n, int) for n in (index, code, base_offset, append_ms))
        assert message is None or isinstance(message, str)


@settings(max_examples=300, deadline=None)
@given(st.integers(3, 13), st.binary(max_size=120))
def test_random_bytes_decode_or_raise_remote_error(version: int, data: bytes) -> None:
    _any_outcome_or_remote_error(version, data)


@settings(max_examples=300, deadline=None)
@given(st.integers(3, 13), st.data())
def test_mutated_responses_decode_or_raise_remote_error(version: int, data: st.DataObject) -> None:
    frame = bytearray(_rich_frame(version))
    for _ in range(data.draw(st.integers(1, 4))):
        frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
    _any_outcome_or_remote_error(version, bytes(frame))


def _classic_frame(body: bytes) -> bytes:
    return struct.pack(">i", 1) + body


@pytest.mark.parametrize(
    ("version", "frame", "message"),
    [
        (3, _classic_frame(struct.pack(">i", -2)), "responses has a negative length -2"),
        (3, _classic_frame(struct.pack(">i", 2**31 - 1)), "claims 2147483647 topics"),
        (3, _classic_frame(struct.pack(">ih", 1, -1)), "a topic name is null"),
        (3, _classic_frame(struct.pack(">ih", 1, 2) + b"\xff\xfe"), "malformed responses"),
        (
            5,
            _classic_frame(struct.pack(">ih", 1, 1) + b"t" + struct.pack(">i", -5)),
            "partition_responses has a negative length -5",
        ),
        (
            5,
            _classic_frame(struct.pack(">ih", 1, 1) + b"t" + struct.pack(">i", 10**6)),
            "partition_responses claims 1000000 entries",
        ),
        (
            8,
            _classic_frame(
                struct.pack(">ih", 1, 1)
                + b"t"
                + struct.pack(">iihqqqih", 1, 0, 0, 0, -1, 0, -3, -1)
            ),
            "record_errors has a negative length -3",
        ),
        (
            8,
            _classic_frame(
                struct.pack(">ih", 1, 1) + b"t" + struct.pack(">iihqqqih", 1, 0, 0, 0, -1, 0, 0, -7)
            ),
            "an error_message has a negative length -7",
        ),
        (
            8,
            _classic_frame(
                struct.pack(">ih", 1, 1)
                + b"t"
                + struct.pack(">iihqqqih", 1, 0, 0, 0, -1, 0, 10**6, -1)
            ),
            "record_errors claims 1000000 entries",
        ),
        (
            8,
            _classic_frame(
                struct.pack(">ih", 1, 1)
                + b"t"
                + struct.pack(">iihqqqi", 1, 0, 0, 0, -1, 0, 1)
                + struct.pack(">ihhi", 0, -2, -1, 0)
            ),
            "a batch_index_error_message has a negative length -2",
        ),
        (
            9,
            b"\x00\x00\x00\x01\x00\x02\x02t\x02"
            + struct.pack(">ihqqq", 0, 0, 0, -1, 0)
            + _uvarint(10**6 + 1)
            + b"\x00\x00",
            "record_errors claims 1000000 entries",
        ),
        (9, b"\x00\x00\x00\x01\x00\xff\xff\xff\xff\xff\x01", "malformed responses: a varint"),
        (9, b"\x00\x00\x00\x01\x00\x02\x00", "a topic name is null"),
        (9, b"\x00\x00\x00\x01\x00\xff\xff\x03", "responses claims 65534 topics"),
        (9, b"\x00\x00\x00\x01\x00\x02\x02t\x80\x80\x04", "partition_responses claims 65535"),
        (9, b"\x00\x00\x00\x01\xff\xff\xff\xff\xff\x01", "malformed response header"),
    ],
)
def test_malformed_bytes_are_named(version: int, frame: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        decode_produce_frame(version, frame)


@pytest.mark.parametrize("version", [3, 8, 9, 13])
def test_null_arrays_read_as_empty_like_kio(version: int) -> None:
    header = struct.pack(">i", 9) + (b"\x00" if version >= 9 else b"")
    body = (b"\x00" if version >= 9 else b"\xff\xff\xff\xff") + bytes(4)
    body += b"\x00" if version >= 9 else b""
    assert _kio_outcomes(version, header + body) == (9, {})
    assert decode_produce_frame(version, header + body) == (9, {})


def test_local_errors_for_bad_calls() -> None:
    frame = _rich_frame(9)
    for version in (2, 14):
        with pytest.raises(LocalProtocolError, match=f"Produce v{version} is outside 3..13"):
            decode_produce_frame(version, frame)
        with pytest.raises(LocalProtocolError):
            decode_produce_response(version, frame, 5)
    for offset in (-1, len(frame) + 1):
        with pytest.raises(LocalProtocolError, match="outside the payload"):
            decode_produce_response(9, frame, offset)


# -- tagged fields -------------------------------------------------------------------


def _tags(fields: list[tuple[int, bytes]]) -> bytes:
    return _uvarint(len(fields)) + b"".join(
        _uvarint(tag) + _uvarint(len(value)) + value for tag, value in fields
    )


def _compact(data: bytes | None) -> bytes:
    return b"\x00" if data is None else _uvarint(len(data) + 1) + data


_TAG_SETS = st.lists(
    st.tuples(st.integers(1, 2**20), st.binary(max_size=200)), max_size=2, unique_by=lambda t: t[0]
).map(sorted)


@settings(max_examples=100, deadline=None)
@given(st.integers(9, 13), st.data())
def test_unknown_tagged_fields_are_skipped(version: int, data: st.DataObject) -> None:
    # Written by hand: kio cannot write tags it does not know, nor read them (it raises
    # KeyError "Unknown tagged field tag" where KIP-482 says skip). So the same response
    # is written twice, with unknown tags everywhere and with none, and kio reads the
    # second: both must decode alike.
    with_tags = struct.pack(">i", 77)
    without = struct.pack(">i", 77)

    def add(common: bytes, tags: bool = False) -> None:
        nonlocal with_tags, without
        with_tags += common + (_tags(data.draw(_TAG_SETS)) if tags else b"")
        without += common + (b"\x00" if tags else b"")

    add(b"", tags=True)  # the response header's
    header = len(with_tags)
    add(_uvarint(2 + 1))
    expected: ProduceOutcomes = {}
    for t in range(2):
        key: str | uuid.UUID = uuid.UUID(int=t + 1) if version >= 13 else f"topic-{t}"
        add(key.bytes if isinstance(key, uuid.UUID) else _compact(key.encode()))
        add(_uvarint(2 + 1))
        for index in range(2):
            message = data.draw(st.one_of(st.none(), _text))
            add(struct.pack(">ihqqq", index, 6, 100 + index, -1, 0))
            add(_uvarint(1 + 1))  # one record error, with its own tags
            add(struct.pack(">i", 0) + _compact(b"why"), tags=True)
            add(_compact(None if message is None else message.encode()), tags=True)
            expected[(key, index)] = (6, 100 + index, -1, message)
        add(b"", tags=True)  # the topic's
    add(struct.pack(">i", 0), tags=True)  # throttle_time_ms and the response's
    assert _kio_outcomes(version, without) == (77, expected)
    assert decode_produce_frame(version, without) == (77, expected)
    assert decode_produce_frame(version, with_tags) == (77, expected)
    assert decode_produce_response(version, with_tags, header) == expected


def test_log_append_time_passes_through_exactly() -> None:
    # Beyond what kio reads exactly (see _append_time): the wire value, unchanged.
    for ms in (10_574_017_066_751, 2**62, -5):
        response = build_response(
            "Produce",
            9,
            responses=[{"name": "t", "partition_responses": [{"index": 0, "error_code": 0,
                        "base_offset": 1, "record_errors": []}]}],
            throttle_time=0,
        )  # fmt: skip
        frame = bytearray(encode_response(0, 9, 1, response)[4:])
        at = frame.index(b"\xff" * 8)  # log_append_time_ms: -1, before log_start_offset
        frame[at : at + 8] = struct.pack(">q", ms)
        assert decode_produce_frame(9, frame) == (1, {("t", 0): (0, 1, ms, None)})


def test_the_client_wire_reads_send_produce_answers_by_hand() -> None:
    # send_produce(): the answer comes back as outcomes from the hand decoder; a Produce
    # sent as a kio entity, and every other request, still get kio entities.
    wire = ClientConnection(client_id="t")
    produce = build_request(
        0,
        9,
        transactional_id=None,
        acks=-1,
        timeout=datetime.timedelta(seconds=1),
        topic_data=[{"name": "events", "partition_data": [{"index": 0, "records": None}]}],
    )
    metadata = build_request(
        3,
        12,
        topics=None,
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=False,
    )
    wire.send_produce(9, acks=-1, timeout_ms=1000, topics=[("events", [(0, None)])])
    wire.send(produce)
    wire.send(metadata)
    part = {"index": 0, "error_code": 0, "base_offset": 77, "log_append_time": None}
    part |= {"record_errors": [], "error_message": None, "log_start_offset": 0}
    answer = build_response(
        "Produce", 9, responses=[{"name": "events", "partition_responses": [part]}], throttle_time=0
    )
    meta_answer = build_response(
        "Metadata", 12, throttle_time=0, brokers=[], cluster_id=None, controller_id=1, topics=[]
    )
    wire.receive_data(encode_response(0, 9, 0, answer) + encode_response(0, 9, 1, answer))
    wire.receive_data(encode_response(3, 12, 2, meta_answer))
    first, second, third = wire.next_event(), wire.next_event(), wire.next_event()
    assert isinstance(first, Response)
    assert isinstance(second, Response)
    assert isinstance(third, Response)
    assert first.response == {("events", 0): (0, 77, -1, None)}
    assert first.api_version == 9
    assert second.response == answer
    assert third.response == meta_answer


def test_send_produce_frames_the_same_bytes_as_the_entity_path() -> None:
    # The producer's entity-free path (plain values) against kio's entity, same ids.
    by_entity, by_values = ClientConnection(client_id="t"), ClientConnection(client_id="t")
    for version in (3, 8, 9, 12):
        request = build_request(
            0,
            version,
            transactional_id=None,
            acks=-1,
            timeout=datetime.timedelta(milliseconds=1500),
            topic_data=[{"name": "events", "partition_data": [{"index": 2, "records": b"rb"}]}],
        )
        expected = by_entity.send(request)
        got = by_values.send_produce(
            version, acks=-1, timeout_ms=1500, topics=[("events", [(2, b"rb")])]
        )
        assert got == expected
    assert by_values.in_flight == 4
    by_values.send_produce(9, acks=0, timeout_ms=1500, topics=[("events", [(0, b"x")])])
    assert by_values.in_flight == 4  # acks=0: no answer is expected
