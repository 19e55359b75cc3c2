"""The cluster-view state machine, fed with kio Metadata responses: no I/O, explicit time."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from pykaf._client._metadata import MetadataCache, parse_metadata
from pykaf._client._stale import error_codes, partition_signals
from pykaf.errors import (
    LeaderNotAvailableError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from pykaf.protocol._messages import build_response

TOPIC_ID = uuid.UUID("0123456789abcdef0123456789abcdef")


def broker(node_id: int, port: int | None = None) -> dict[str, Any]:
    return {"node_id": node_id, "host": "127.0.0.1", "port": port or 9000 + node_id, "rack": None}


def partition(index: int, leader: int, epoch: int = 0, code: int = 0) -> dict[str, Any]:
    return {
        "error_code": code,
        "partition_index": index,
        "leader_id": leader,
        "leader_epoch": epoch,
        "replica_nodes": [leader],
        "isr_nodes": [leader],
        "offline_replicas": [],
    }


def topic(name: str, *partitions: dict[str, Any], code: int = 0) -> dict[str, Any]:
    return {
        "error_code": code,
        "name": name,
        "topic_id": TOPIC_ID if name == "t" else uuid.uuid4(),
        "is_internal": False,
        "partitions": list(partitions),
        "topic_authorized_operations": -(2**31),
    }


def metadata(brokers: list[dict[str, Any]], topics: list[dict[str, Any]], version: int = 12) -> Any:
    return build_response(
        "Metadata",
        version,
        throttle_time=0,
        brokers=brokers,
        cluster_id="c1",
        controller_id=brokers[0]["node_id"] if brokers else -1,
        topics=topics,
        error_code=0,
    )


def cache() -> MetadataCache:
    return MetadataCache(max_age=300.0, min_refresh_interval=0.1)


def test_parse_any_version() -> None:
    for version in (0, 1, 7, 12, 13):
        view = parse_metadata(
            metadata(
                [broker(1), broker(2)], [topic("t", partition(1, 2), partition(0, 1))], version
            )
        )
        assert sorted(view.brokers) == [1, 2]
        info = view.topics["t"]
        assert [p.partition for p in info.partitions] == [0, 1]  # sorted
        assert [p.leader for p in info.partitions] == [1, 2]
        assert view.controller_id == (None if version == 0 else 1)
        assert info.topic_id == (TOPIC_ID if version >= 10 else None)


def test_first_use_then_max_age() -> None:
    state = cache()
    assert state.refresh_due("t", 0.0)
    state.update(metadata([broker(1)], [topic("t", partition(0, 1))]), 100.0, ["t"])
    assert not state.refresh_due("t", 100.0)
    assert not state.refresh_due("t", 399.9)
    assert state.refresh_due("t", 400.0)
    assert state.leader("t", 0).leader == 1
    assert state.topic_name(TOPIC_ID) == "t"


def test_stale_refresh_is_rate_limited() -> None:
    state = cache()
    state.update(metadata([broker(1)], [topic("t", partition(0, 1))]), 10.0, ["t"])
    state.mark_stale("t")
    assert not state.refresh_due("t", 10.05)  # a storm of stale errors: not yet
    assert state.refresh_due("t", 10.2)
    state.update(metadata([broker(1)], [topic("t", partition(0, 1))]), 10.2, ["t"])
    assert not state.refresh_due("t", 10.4)  # the refresh cleared it


def test_missing_and_erroneous_topics_raise_typed_errors() -> None:
    state = cache()
    state.update(
        metadata([broker(1)], [topic("denied", code=29), topic("t", partition(0, -1))]),
        1.0,
        ["denied", "t", "absent"],
    )
    with pytest.raises(TopicAuthorizationFailedError):
        state.leader("denied", 0)
    with pytest.raises(UnknownTopicOrPartitionError):
        state.leader("absent", 0)  # asked for, left out of the answer
    with pytest.raises(UnknownTopicOrPartitionError, match="1 partitions"):
        state.leader("t", 1)
    with pytest.raises(LeaderNotAvailableError):
        state.leader("t", 0)
    with pytest.raises(UnknownTopicOrPartitionError, match="not in the metadata cache"):
        state.leader("never-asked", 0)
    # Errors are refreshed at the stale rate, not the max age.
    assert state.refresh_due("absent", 1.1)


def test_older_leader_epoch_does_not_overwrite_newer() -> None:
    state = cache()
    state.update(
        metadata([broker(1), broker(2)], [topic("t", partition(0, 2, epoch=5))]), 1.0, ["t"]
    )
    # A lagging broker answers with epoch 4 and the old leader: keep epoch 5, stay stale.
    state.update(
        metadata([broker(1), broker(2)], [topic("t", partition(0, 1, epoch=4))]), 2.0, ["t"]
    )
    assert state.leader("t", 0).leader == 2
    assert state.refresh_due("t", 2.1)
    state.update(
        metadata([broker(1), broker(2)], [topic("t", partition(0, 1, epoch=6))]), 3.0, ["t"]
    )
    assert state.leader("t", 0).leader == 1
    assert not state.refresh_due("t", 3.1)


def test_a_recreated_topic_starts_its_epochs_afresh() -> None:
    # Deleted and created again under the same name (a new topic id): its epochs start
    # at 0 again, and keeping the old topic's "newer" epoch would pin a dead leader.
    state = cache()
    state.update(
        metadata([broker(1), broker(2)], [topic("t", partition(0, 2, epoch=5))]), 1.0, ["t"]
    )
    recreated = topic("t", partition(0, 1, epoch=0))
    recreated["topic_id"] = uuid.UUID(int=7)
    state.update(metadata([broker(1), broker(2)], [recreated]), 2.0, ["t"])
    assert state.leader("t", 0).leader == 1
    assert not state.refresh_due("t", 2.1)


def test_newer_epoch_seen_in_a_response_marks_stale() -> None:
    state = cache()
    state.update(metadata([broker(1)], [topic("t", partition(0, 1, epoch=3))]), 1.0, ["t"])
    assert not state.observe_leader_epoch("t", 0, 3)
    assert not state.refresh_due("t", 1.2)
    assert state.observe_leader_epoch("t", 0, 4)
    assert state.refresh_due("t", 1.2)


def test_brokers_added_removed_moved() -> None:
    state = cache()
    _, changes = state.update(metadata([broker(1), broker(2)], []), 1.0, [])
    assert {b.node_id for b in changes.added} == {1, 2}
    _, changes = state.update(metadata([broker(2, port=7777), broker(3)], []), 2.0, [])
    assert [b.node_id for b in changes.added] == [3]
    assert [b.node_id for b in changes.removed] == [1]
    ((before, after),) = changes.moved
    assert (before.port, after.port) == (9002, 7777)
    # An answer with no brokers (a broker starting up) keeps the list.
    _, changes = state.update(metadata([], []), 3.0, [])
    assert not changes
    assert sorted(state.brokers) == [2, 3]


def test_all_topics_answer_forgets_deleted_topics() -> None:
    state = cache()
    state.update(
        metadata([broker(1)], [topic("a", partition(0, 1)), topic("t", partition(0, 1))]), 1.0, None
    )
    assert set(state.known_topics()) == {"a", "t"}
    state.update(metadata([broker(1)], [topic("a", partition(0, 1))]), 2.0, None)
    assert state.known_topics() == ("a",)
    assert state.topic_name(TOPIC_ID) is None
    assert set(state.snapshot().topics) == {"a"}


def produce_response(code: int, leader_id: int = -1, epoch: int = -1) -> Any:
    return build_response(
        "Produce",
        12,
        responses=[
            {
                "name": "t",
                "partition_responses": [
                    {
                        "index": 0,
                        "error_code": code,
                        "base_offset": -1,
                        "log_append_time": None,
                        "log_start_offset": -1,
                        "record_errors": [],
                        "error_message": None,
                        "current_leader": {"leader_id": leader_id, "leader_epoch": epoch},
                    }
                ],
            }
        ],
        throttle_time=0,
        node_endpoints=[],
    )


def test_stale_signals_in_responses() -> None:
    (signal,) = partition_signals(produce_response(6, leader_id=2, epoch=7))
    assert (signal.topic, signal.partition, signal.error_code) == ("t", 0, 6)
    assert (signal.leader_id, signal.leader_epoch) == (2, 7)
    assert partition_signals(produce_response(0)) == []
    assert partition_signals(produce_response(87)) == []  # not a metadata error
    assert error_codes(produce_response(87)) == {87}
    fetch = build_response(
        "Fetch",
        13,
        throttle_time=0,
        error_code=0,
        session_id=0,
        responses=[
            {
                "topic_id": TOPIC_ID,
                "partitions": [
                    {
                        "partition_index": 3,
                        "error_code": 74,
                        "high_watermark": -1,
                        "last_stable_offset": -1,
                        "log_start_offset": -1,
                        "aborted_transactions": None,
                        "preferred_read_replica": -1,
                        "records": None,
                    }
                ],
            }
        ],
    )
    (signal,) = partition_signals(fetch)
    assert (signal.topic, signal.partition, signal.error_code) == (TOPIC_ID, 3, 74)
    coordinator = build_response(
        "FindCoordinator",
        4,
        throttle_time=0,
        coordinators=[
            {
                "key": "g",
                "node_id": 1,
                "host": "h",
                "port": 1,
                "error_code": 16,
                "error_message": None,
            }
        ],
    )
    assert error_codes(coordinator) == {16}
