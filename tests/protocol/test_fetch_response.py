"""The hand-written FetchResponse encoder against kio's, byte for byte, every version."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykaf._errors import LocalProtocolError
from pykaf.protocol._fetch_response import (
    MAX_FETCH_VERSION,
    MIN_FETCH_VERSION,
    FetchAnswer,
    FetchPartitionAnswer,
    FetchTopicAnswer,
    NodeEndpoint,
    encode_fetch_response,
    fetch_response_entity,
)
from pykaf.protocol._messages import decode_response, encode_response
from pykaf.protocol._records import decode_batches, encode_batch

VERSIONS = range(MIN_FETCH_VERSION, MAX_FETCH_VERSION + 1)
TOPIC_ID = uuid.UUID("0123456789abcdef0123456789abcdef")


def batch(base_offset: int, *values: bytes) -> bytes:
    return encode_batch([(b"k", v, [], 1_700_000_000_000) for v in values], base_offset=base_offset)


def kio_frame(version: int, correlation_id: int, answer: FetchAnswer) -> bytes:
    return encode_response(1, version, correlation_id, fetch_response_entity(version, answer))


def ours(version: int, correlation_id: int, answer: FetchAnswer) -> bytes:
    return b"".join(encode_fetch_response(version, correlation_id, answer))


def full_answer() -> FetchAnswer:
    """Every field away from its default, several batches, several topics."""
    first, second = batch(0, b"a", b"b"), batch(2, b"c")
    return FetchAnswer(
        throttle_time_ms=25,
        error_code=0,
        session_id=0,
        topics=[
            FetchTopicAnswer(
                topic="alpha",
                topic_id=TOPIC_ID,
                partitions=[
                    FetchPartitionAnswer(
                        partition_index=0,
                        high_watermark=3,
                        last_stable_offset=3,
                        log_start_offset=0,
                        aborted_transactions=[(7, 1), (8, 2)],
                        preferred_read_replica=2,
                        records=[first, bytearray(second), memoryview(second)],
                    ),
                    FetchPartitionAnswer(
                        partition_index=1,
                        error_code=6,
                        current_leader=(2, 5),
                        diverging_epoch=(4, 100),
                        snapshot_id=(90, 3),
                        records=None,
                    ),
                ],
            ),
            FetchTopicAnswer(topic="beta", topic_id=None, partitions=[]),
        ],
        node_endpoints=[NodeEndpoint(node_id=2, host="127.0.0.1", port=9093, rack="r1")],
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_every_field_matches_kio_byte_for_byte(version: int) -> None:
    answer = full_answer()
    assert ours(version, 12345, answer) == kio_frame(version, 12345, answer)


@pytest.mark.parametrize("version", VERSIONS)
def test_defaults_and_an_empty_answer_match_kio(version: int) -> None:
    for answer in (
        FetchAnswer(),
        FetchAnswer(
            topics=[
                FetchTopicAnswer(topic="t", partitions=[FetchPartitionAnswer(partition_index=0)])
            ]
        ),
        FetchAnswer(
            error_code=70, session_id=0, node_endpoints=[NodeEndpoint(node_id=1, host="h", port=1)]
        ),
    ):
        assert ours(version, 0, answer) == kio_frame(version, 0, answer)


@pytest.mark.parametrize("version", VERSIONS)
def test_stored_batches_are_handed_over_uncopied(version: int) -> None:
    stored = [bytearray(batch(0, b"x" * 300)), bytearray(batch(1, b"y"))]
    answer = FetchAnswer(
        topics=[
            FetchTopicAnswer(
                topic="t",
                partitions=[
                    FetchPartitionAnswer(partition_index=0, high_watermark=2, records=stored)
                ],
            )
        ]
    )
    parts = encode_fetch_response(version, 1, answer)
    assert all(len(p) for p in parts)  # nothing empty for the writer to send
    assert any(p is stored[0] for p in parts)
    assert any(p is stored[1] for p in parts)
    # Read back with kio's decoder (after the length prefix): the batches come back whole.
    frame = b"".join(parts)
    assert int.from_bytes(frame[:4], "big") == len(frame) - 4
    correlation_id, response = decode_response(1, version, frame[4:], strict=True)
    assert correlation_id == 1
    [topic] = response.responses
    [part] = topic.partitions
    assert part.records == b"".join(stored)
    assert [r.value for b in decode_batches(part.records) for r in b.records] == [
        b"x" * 300,
        b"y",
    ]


int32 = st.integers(-(2**31), 2**31 - 1)
int64 = st.integers(-(2**63), 2**63 - 1)
pairs_32_64 = st.tuples(int32, int64)
tag_pair = st.one_of(st.just((-1, -1)), st.tuples(int32, int32))
epoch_end = st.one_of(st.just((-1, -1)), st.tuples(int32, int64))
end_epoch = st.one_of(st.just((-1, -1)), st.tuples(int64, int32))
text = st.text(min_size=0, max_size=20)
records = st.one_of(st.none(), st.lists(st.binary(max_size=200), max_size=3))
partitions = st.builds(
    FetchPartitionAnswer,
    partition_index=int32,
    error_code=st.sampled_from([0, 1, 3, 6, 74, 100]),
    high_watermark=int64,
    last_stable_offset=int64,
    log_start_offset=int64,
    aborted_transactions=st.one_of(st.none(), st.lists(st.tuples(int64, int64), max_size=3)),
    preferred_read_replica=int32,
    records=records,
    diverging_epoch=epoch_end,
    current_leader=tag_pair,
    snapshot_id=end_epoch,
)
topics = st.builds(
    FetchTopicAnswer,
    topic=text,
    topic_id=st.one_of(st.none(), st.uuids()),
    partitions=st.lists(partitions, max_size=4),
)
answers = st.builds(
    FetchAnswer,
    throttle_time_ms=st.integers(0, 2**31 - 1),
    error_code=st.sampled_from([0, 70, 71]),
    session_id=int32,
    topics=st.lists(topics, max_size=3),
    node_endpoints=st.lists(
        st.builds(
            NodeEndpoint,
            node_id=int32,
            host=text,
            port=int32,
            rack=st.one_of(st.none(), text),
        ),
        max_size=2,
    ),
)


@settings(max_examples=300, deadline=None)
@given(version=st.sampled_from(list(VERSIONS)), answer=answers, correlation_id=int32)
def test_any_answer_matches_kio(version: int, answer: FetchAnswer, correlation_id: int) -> None:
    assert ours(version, correlation_id, answer) == kio_frame(version, correlation_id, answer)


def test_bad_values_are_local_errors_naming_the_version() -> None:
    with pytest.raises(LocalProtocolError, match="Fetch v3 is outside"):
        encode_fetch_response(3, 0, FetchAnswer())
    with pytest.raises(LocalProtocolError, match="correlation_id"):
        encode_fetch_response(12, 2**31, FetchAnswer())
    too_big = FetchAnswer(
        topics=[
            FetchTopicAnswer(topic="t", partitions=[FetchPartitionAnswer(partition_index=2**31)])
        ]
    )
    with pytest.raises(LocalProtocolError, match="cannot encode Fetch v12 response"):
        encode_fetch_response(12, 0, too_big)
