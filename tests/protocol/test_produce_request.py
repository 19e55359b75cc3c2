"""The hand-written Produce encoder writes exactly what kio's generic path writes."""

from __future__ import annotations

import datetime
import uuid
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykaf._errors import LocalProtocolError
from pykaf.protocol import encode_request
from pykaf.protocol._framing import ClientConnection
from pykaf.protocol._messages import request_class
from pykaf.protocol._produce_request import (
    ProduceTopic,
    encode_produce_entity,
    encode_produce_request,
)


def _kio_request(
    version: int,
    acks: int,
    timeout_ms: int,
    transactional_id: str | None,
    topics: list[ProduceTopic],
) -> Any:
    request = request_class(0, version)
    topic_cls = get_args(request.__dataclass_fields__["topic_data"].type)[0]
    part_cls = get_args(topic_cls.__dataclass_fields__["partition_data"].type)[0]
    topic_data = []
    for name, parts in topics:
        partitions = tuple(part_cls(index=i, records=r) for i, r in parts)
        if version >= 13:
            topic_data.append(topic_cls(topic_id=name, partition_data=partitions))
        else:
            topic_data.append(topic_cls(name=name, partition_data=partitions))
    return request(
        transactional_id=transactional_id,
        acks=acks,
        timeout=datetime.timedelta(milliseconds=timeout_ms),
        topic_data=tuple(topic_data),
    )


_text = st.text(max_size=12)
_partitions = st.lists(
    st.tuples(st.integers(0, 2**31 - 1), st.one_of(st.none(), st.binary(max_size=300))),
    max_size=4,
)


@st.composite
def _cases(draw: st.DrawFn) -> tuple[Any, ...]:
    version = draw(st.integers(3, 13))
    names: st.SearchStrategy[Any] = st.one_of(st.none(), st.uuids()) if version >= 13 else _text
    topics = draw(st.lists(st.tuples(names, _partitions), max_size=3))
    return (
        version,
        draw(st.integers(0, 2**31 - 1)),
        draw(st.one_of(st.none(), _text)),
        draw(st.sampled_from([0, 1, -1])),
        draw(st.integers(0, 2**31 - 1)),
        draw(st.one_of(st.none(), _text)),
        topics,
    )


@settings(max_examples=400, deadline=None)
@given(_cases())
def test_identical_to_kio(case: tuple[Any, ...]) -> None:
    version, correlation_id, client_id, acks, timeout_ms, transactional_id, topics = case
    expected = encode_request(
        _kio_request(version, acks, timeout_ms, transactional_id, topics),
        correlation_id=correlation_id,
        client_id=client_id,
    )
    got = encode_produce_request(
        version,
        correlation_id=correlation_id,
        client_id=client_id,
        acks=acks,
        timeout_ms=timeout_ms,
        topics=topics,
        transactional_id=transactional_id,
    )
    assert got == expected


@pytest.mark.parametrize("version", [3, 9, 12, 13])
def test_large_records_use_multibyte_lengths(version: int) -> None:
    name: Any = uuid.uuid4() if version >= 13 else "t" * 200
    topics: list[ProduceTopic] = [(name, [(5, b"x" * 70_000)])]
    expected = encode_request(
        _kio_request(version, -1, 30_000, "tx" * 100, topics), correlation_id=7, client_id="c"
    )
    got = encode_produce_request(
        version,
        correlation_id=7,
        client_id="c",
        acks=-1,
        timeout_ms=30_000,
        topics=topics,
        transactional_id="tx" * 100,
    )
    assert got == expected


@pytest.mark.parametrize(
    ("version", "topics", "correlation_id"),
    [
        (2, [], 0),
        (14, [], 0),
        (9, [], -1),
        (13, [("by-name", [])], 0),
        (12, [(uuid.uuid4(), [])], 0),
        (3, [(None, [])], 0),
    ],
)
def test_rejects_what_it_cannot_encode(version: int, topics: Any, correlation_id: int) -> None:
    with pytest.raises(LocalProtocolError):
        encode_produce_request(
            version,
            correlation_id=correlation_id,
            client_id=None,
            acks=1,
            timeout_ms=1,
            topics=topics,
        )


@settings(max_examples=100, deadline=None)
@given(_cases())
def test_client_connection_frames_produce_entities_identically(case: tuple[Any, ...]) -> None:
    version, correlation_id, client_id, acks, timeout_ms, transactional_id, topics = case
    request = _kio_request(version, acks, timeout_ms, transactional_id, topics)
    conn = ClientConnection(client_id=client_id, first_correlation_id=correlation_id)
    data = conn.send(request)
    assert data == encode_request(request, correlation_id=correlation_id, client_id=client_id)
    # The response is still expected (acks=0 excepted), under the same correlation id.
    assert conn.in_flight == (0 if acks == 0 else 1)


def test_sub_millisecond_timeout_falls_back_to_kio() -> None:
    request = _kio_request(9, 1, 0, None, [("t", [(0, b"r")])])
    odd = type(request)(
        transactional_id=None,
        acks=1,
        timeout=datetime.timedelta(microseconds=1500),
        topic_data=request.topic_data,
    )
    assert encode_produce_entity(odd, 9, correlation_id=1, client_id=None) is None
    conn = ClientConnection(client_id=None, first_correlation_id=1)
    assert conn.send(odd) == encode_request(odd, correlation_id=1, client_id=None)
