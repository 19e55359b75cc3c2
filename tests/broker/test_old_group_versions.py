"""The group and offset APIs at the oldest versions kio knows (below Kafka 4's floor), as
old clients send them: Debian's sarama 1.22 joins with JoinGroup v1 and commits with
OffsetCommit v1; Kafka 3.x answered all of these."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from wire_client import WireClient

from pykaf.broker import BlockingCluster
from pykaf.broker._group_model import GroupSettings
from pykaf.broker._group_offsets import CommittedOffset
from pykaf.broker._groups import configure_groups, group_coordinator
from pykaf.protocol._apis import BELOW_FLOOR_FOR_OLD_CLIENTS, api_spec
from pykaf.protocol._messages import decode_request, encode_request, request_class

NONE = 0
UNKNOWN_MEMBER_ID = 25
FAST = GroupSettings(initial_rebalance_delay=0.05, min_session_timeout=0.05)
PROTOCOLS = [{"name": "range", "metadata": b"\x00\x00\x00\x00\x00\x01\x00\x01t\xff\xff\xff\xff"}]


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=1) as running:
        running.create_topic("t", 2)
        running.call(lambda: configure_groups(running.state, FAST))
        yield running


@pytest.fixture
def client(cluster: BlockingCluster) -> Iterator[WireClient]:
    with WireClient(str(cluster.brokers[0]), timeout=10.0) as wire:
        yield wire


def committed(cluster: BlockingCluster, group: str) -> dict[int, CommittedOffset]:
    offsets = cluster.call(lambda: group_coordinator(cluster.state).offsets.all_for(group))
    return dict(offsets.get("t", {}))


def join_v(client: WireClient, version: int, group: str) -> Any:
    return client.request(
        "JoinGroup",
        version,
        group_id=group,
        session_timeout=10_000,
        rebalance_timeout=10_000,
        member_id="",
        protocol_type="consumer",
        protocols=PROTOCOLS,
    )


def test_the_broker_advertises_every_version_kio_knows(client: WireClient) -> None:
    response = client.request("ApiVersions", 0)
    advertised = {
        int(k.api_key): (int(k.min_version), int(k.max_version)) for k in response.api_keys
    }
    for name in BELOW_FLOOR_FOR_OLD_CLIENTS:
        spec = api_spec(name)
        assert advertised[spec.key] == (spec.oldest_version, spec.max_version), name
    assert advertised[api_spec("JoinGroup").key][0] == 0
    assert advertised[api_spec("OffsetCommit").key][0] == 0
    # pykaf's own client still negotiates from Kafka 4's floor.
    assert api_spec("JoinGroup").min_version == 2
    assert api_spec("OffsetCommit").min_version == 2


@pytest.mark.parametrize("join_version", [0, 1])
def test_an_old_consumer_joins_syncs_commits_and_leaves(
    cluster: BlockingCluster, client: WireClient, join_version: int
) -> None:
    group = f"old-{join_version}"
    found = client.request("FindCoordinator", 0, key=group)
    assert (found.error_code, found.node_id) == (NONE, 1)
    joined = join_v(client, join_version, group)
    assert joined.error_code == NONE
    assert joined.leader == joined.member_id
    assert [m.member_id for m in joined.members] == [joined.member_id]
    member, generation = joined.member_id, joined.generation_id
    if join_version == 0:
        # v0 has no rebalance timeout; the session timeout stands in, as in Kafka.
        stored = cluster.call(
            lambda: group_coordinator(cluster.state).groups[group].members[member]
        )
        assert stored.rebalance_timeout_ms == stored.session_timeout_ms == 10_000
    synced = client.request(
        "SyncGroup",
        0,
        group_id=group,
        generation_id=generation,
        member_id=member,
        assignments=[{"member_id": member, "assignment": b"A"}],
    )
    assert (synced.error_code, synced.assignment) == (NONE, b"A")
    beat = client.request(
        "Heartbeat", 0, group_id=group, generation_id=generation, member_id=member
    )
    assert beat.error_code == NONE
    commit = client.request(
        "OffsetCommit",
        1,
        group_id=group,
        generation_id_or_member_epoch=generation,
        member_id=member,
        topics=[
            {
                "name": "t",
                "partitions": [
                    {
                        "partition_index": 0,
                        "committed_offset": 5,
                        "commit_timestamp": 1234,
                        "committed_metadata": "m",
                    },
                    {
                        "partition_index": 1,
                        "committed_offset": 7,
                        "commit_timestamp": -1,
                        "committed_metadata": None,
                    },
                ],
            }
        ],
    )
    assert [p.error_code for p in commit.topics[0].partitions] == [NONE, NONE]
    stored_offsets = committed(cluster, group)
    assert stored_offsets[0].offset == 5
    assert stored_offsets[0].commit_time_ms == 1234  # v1's per-partition timestamp
    assert stored_offsets[1].commit_time_ms > 1234  # -1: the broker's time
    fetched = client.request(
        "OffsetFetch", 1, group_id=group, topics=[{"name": "t", "partition_indexes": [0, 1]}]
    )
    assert [(p.committed_offset, p.metadata) for p in fetched.topics[0].partitions] == [
        (5, "m"),
        (7, ""),
    ]
    # A commit with a wrong generation is refused at v1 as at later versions.
    stale = client.request(
        "OffsetCommit",
        1,
        group_id=group,
        generation_id_or_member_epoch=generation,
        member_id="someone-else",
        topics=[
            {
                "name": "t",
                "partitions": [
                    {"partition_index": 0, "committed_offset": 9, "committed_metadata": ""}
                ],
            }
        ],
    )
    assert stale.topics[0].partitions[0].error_code == UNKNOWN_MEMBER_ID
    listed = client.request("ListGroups", 0)
    assert (group, "consumer") in {(g.group_id, g.protocol_type) for g in listed.groups}
    described = client.request("DescribeGroups", 0, groups=[group])
    assert described.groups[0].group_state == "Stable"
    left = client.request("LeaveGroup", 0, group_id=group, member_id=member)
    assert left.error_code == NONE
    deleted_offset = client.request(
        "OffsetDelete",
        0,
        group_id=group,
        topics=[{"name": "t", "partitions": [{"partition_index": 1}]}],
    )
    assert deleted_offset.error_code == NONE
    assert set(committed(cluster, group)) == {0}
    gone = client.request("DeleteGroups", 0, groups_names=[group])
    assert gone.results[0].error_code == NONE


def commit_v0(client: WireClient, group: str, partition: int, offset: int) -> int:
    answer = client.request(
        "OffsetCommit",
        0,
        group_id=group,
        topics=[
            {
                "name": "t",
                "partitions": [
                    {
                        "partition_index": partition,
                        "committed_offset": offset,
                        "committed_metadata": "x",
                    }
                ],
            }
        ],
    )
    return int(answer.topics[0].partitions[0].error_code)


def test_offset_commit_v0_commits_as_a_simple_consumer(
    cluster: BlockingCluster, client: WireClient
) -> None:
    assert commit_v0(client, "simple", 1, 42) == NONE
    assert committed(cluster, "simple")[1].offset == 42
    # ... but not into a group with live members, which v0 cannot name itself one of.
    assert join_v(client, 1, "busy").error_code == NONE
    assert commit_v0(client, "busy", 0, 1) == UNKNOWN_MEMBER_ID


def test_list_offsets_v1_finds_log_ends(cluster: BlockingCluster, client: WireClient) -> None:
    answer = client.request(
        "ListOffsets",
        1,
        replica_id=-1,
        topics=[{"name": "t", "partitions": [{"partition_index": 0, "timestamp": -1}]}],
    )
    part = answer.topics[0].partitions[0]
    assert (part.error_code, part.offset) == (NONE, 0)


@pytest.mark.parametrize("version", [0, 1])
def test_legacy_offset_commit_schemas_round_trip_and_match_kio_v2(version: int) -> None:
    fields: dict[str, Any] = {
        "group_id": "g",
        "generation_id_or_member_epoch": 3,
        "member_id": "m",
        "topics": [
            {
                "name": "t",
                "partitions": [
                    {
                        "partition_index": 2,
                        "committed_offset": 9,
                        "commit_timestamp": 77,
                        "committed_metadata": "meta",
                    }
                ],
            }
        ],
    }
    cls = request_class("OffsetCommit", version)
    from pykaf.protocol._messages import build_request

    request = build_request("OffsetCommit", version, **fields)
    assert type(request) is cls
    frame = encode_request(request, correlation_id=5, client_id="c")
    header, decoded = decode_request(frame[4:])
    assert decoded == request
    assert int(header.request_api_version) == version
    # Where the layouts agree (v0's body is v2's without generation, member and retention),
    # our bytes are kio's bytes.
    if version == 0:
        v2 = build_request("OffsetCommit", 2, retention_time=-1, **fields)
        ours = encode_request(request, correlation_id=5, client_id="c")
        kios = encode_request(v2, correlation_id=5, client_id="c")
        group_part = 2 + 1  # "g"
        header_size = 4 + 2 + 2 + 4 + 2 + 1
        middle = 4 + 2 + 1 + 8  # generation, member "m", retention
        assert ours[header_size + group_part :] == kios[header_size + group_part + middle :]
