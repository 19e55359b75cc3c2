"""The consumer protocol's subscription and assignment bytes: round trips at every
version, Java's forward-compatible reading, bad bytes, and the bytes of another client."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pykaf._consumer._records import TopicPartition as TP
from pykaf._consumer.group._protocol import (
    LATEST_VERSION,
    Assignment,
    Subscription,
    decode_assignment,
    decode_subscription,
    encode_assignment,
    encode_subscription,
)
from pykaf._errors import LocalProtocolError, RemoteProtocolError

names = st.text("abcxyz.-_", min_size=1, max_size=6)
partitions = st.lists(st.builds(TP, names, st.integers(0, 2**31 - 1)), max_size=8, unique=True)
user_data = st.none() | st.binary(max_size=16)


def grouped(tps: list[TP]) -> list[TP]:
    """The order the bytes keep: topics by first appearance, partitions as given."""
    order: dict[str, list[TP]] = {}
    for tp in tps:
        order.setdefault(tp.topic, []).append(tp)
    return [tp for group in order.values() for tp in group]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, LATEST_VERSION),
    st.lists(names, max_size=5),
    user_data,
    partitions,
    st.integers(-1, 2**31 - 1),
    st.none() | names,
)
def test_subscription_round_trip(
    version: int,
    topics: list[str],
    data: bytes | None,
    owned: list[TP],
    generation: int,
    rack: str | None,
) -> None:
    sent = Subscription(
        topics=tuple(topics),
        user_data=data,
        owned_partitions=tuple(owned),
        generation=generation,
        rack=rack,
        version=version,
    )
    got = decode_subscription(encode_subscription(sent))
    assert got.version == version
    assert got.topics == tuple(topics)
    assert got.user_data == data
    # Fields newer than the version are not on the wire: they read as their defaults.
    assert got.owned_partitions == (tuple(grouped(owned)) if version >= 1 else ())
    assert got.generation == (generation if version >= 2 else -1)
    assert got.rack == (rack if version >= 3 else None)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, LATEST_VERSION), partitions, user_data)
def test_assignment_round_trip(version: int, assigned: list[TP], data: bytes | None) -> None:
    sent = Assignment(partitions=tuple(assigned), user_data=data, version=version)
    got = decode_assignment(encode_assignment(sent))
    assert got == Assignment(partitions=tuple(grouped(assigned)), user_data=data, version=version)


def test_newer_versions_read_as_the_latest_with_trailing_fields_ignored() -> None:
    body = encode_subscription(
        Subscription(topics=("t",), owned_partitions=(TP("t", 1),), generation=7, rack="r1")
    )[2:]
    got = decode_subscription(struct.pack(">h", 9) + body + b"\x00\x00future fields")
    assert (got.version, got.topics, got.owned_partitions, got.generation, got.rack) == (
        9,
        ("t",),
        (TP("t", 1),),
        7,
        "r1",
    )
    assigned = encode_assignment(Assignment(partitions=(TP("t", 0),)))[2:]
    assert decode_assignment(struct.pack(">h", 5) + assigned + b"xx").partitions == (TP("t", 0),)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"\xff\xff" + b"\x00" * 8, b"\x00\x00\x00\x00\x00\x05\x00\x01a", b"\x00\x03"],
)
def test_bad_subscription_bytes_are_remote_errors(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_subscription(data)


def test_empty_assignment_bytes_are_an_empty_assignment() -> None:
    # The coordinator sends empty bytes to a member the leader left out.
    assert decode_assignment(b"") == Assignment(partitions=())
    with pytest.raises(RemoteProtocolError):
        decode_assignment(b"\x00\x00\x00\x00\x00\x09")


def test_we_refuse_to_write_an_unknown_version() -> None:
    with pytest.raises(LocalProtocolError, match=r"0\.\.3"):
        encode_subscription(Subscription(topics=(), version=4))
    with pytest.raises(LocalProtocolError):
        encode_assignment(Assignment(partitions=(), version=-1))


def test_same_bytes_as_aiokafka_at_v0() -> None:
    from aiokafka.coordinator.protocol import (
        ConsumerProtocolMemberAssignment,
        ConsumerProtocolMemberMetadata,
    )

    theirs = ConsumerProtocolMemberMetadata(0, ["orders", "audit"], b"ud").encode()
    ours = encode_subscription(Subscription(topics=("orders", "audit"), user_data=b"ud", version=0))
    assert ours == theirs
    theirs = ConsumerProtocolMemberAssignment(0, [("orders", [0, 2]), ("audit", [1])], b"").encode()
    ours = encode_assignment(
        Assignment(
            partitions=(TP("orders", 0), TP("orders", 2), TP("audit", 1)), user_data=b"", version=0
        )
    )
    assert ours == theirs
    got = ConsumerProtocolMemberAssignment.decode(ours)
    assert [(t, list(p)) for t, p in got.assignment] == [("orders", [0, 2]), ("audit", [1])]
