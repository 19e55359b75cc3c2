"""``pykaf groups``: list, describe (members, assignments, committed offset, end and lag),
delete, reset-offsets (which moves where a pykaf consumer of the group resumes), end to
end on the embedded broker; bad input and ``--json`` documents."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from admin_cli import one_line_failure, produce_lines, pykaf, pykaf_json

from pykaf import Consumer, ConsumerRecord
from pykaf.broker import BlockingCluster

TOPIC = "t"
WRITTEN = {0: 5, 1: 3}
RESET_G = ("groups", "reset-offsets", "g", "--topic", TOPIC)


def group_consumer(bootstrap: str, group: str) -> Consumer:
    consumer = Consumer(
        bootstrap, group_id=group, auto_offset_reset="earliest", enable_auto_commit=False
    )
    consumer.subscribe([TOPIC])
    return consumer


def read(consumer: Consumer, count: int) -> list[ConsumerRecord]:
    """Exactly ``count`` records (bounded: 20 s), then commit what was read."""
    records: list[ConsumerRecord] = []
    deadline = time.monotonic() + 20
    while len(records) < count and time.monotonic() < deadline:
        records += consumer.poll(timeout=0.5)
    assert len(records) == count, records
    consumer.commit()
    return records


@pytest.fixture
def cluster(kafka_cluster_sync: BlockingCluster, capsys: pytest.CaptureFixture[str]) -> str:
    """A cluster with topic t (5 records on partition 0, 3 on 1) and group g, which read
    them all, committed, and left."""
    b = kafka_cluster_sync.bootstrap
    assert pykaf(capsys, b, "topics", "create", TOPIC, "--partitions", "2").status == 0
    produce_lines(b, TOPIC, WRITTEN)
    with group_consumer(b, "g") as consumer:
        read(consumer, sum(WRITTEN.values()))
    return b


@pytest.fixture
def active(cluster: str) -> Iterator[Consumer]:
    """Group g with one member that owns both partitions."""
    with group_consumer(cluster, "g") as consumer:
        deadline = time.monotonic() + 20
        while len(consumer.assignment()) < 2 and time.monotonic() < deadline:
            consumer.poll(timeout=0.2)
        yield consumer


def test_describe_shows_members_assignments_and_lag(
    cluster: str, active: Consumer, capsys: pytest.CaptureFixture[str]
) -> None:
    produce_lines(cluster, TOPIC, {0: 2})  # the group now lags 2 on partition 0
    run = pykaf(capsys, cluster, "groups", "describe", "g")
    assert run.status == 0, run.err
    lines = run.out.splitlines()
    assert lines[0].startswith("group g  state Stable  protocol ")
    assert lines[0].endswith("members 1")
    assert lines[1].split() == ["MEMBER", "CLIENT", "ID", "HOST", "ASSIGNMENT"]
    assert lines[2].split()[-1] == "t-0,t-1"
    assert lines[3].split() == ["TOPIC", "PARTITION", "COMMITTED", "END", "LAG"]
    assert [line.split() for line in lines[4:6]] == [
        ["t", "0", "5", "7", "2"],
        ["t", "1", "3", "3", "0"],
    ]
    assert lines[6] == "  total lag 2"

    listed = pykaf(capsys, cluster, "groups", "list").out.splitlines()
    assert listed[0].split() == ["GROUP", "STATE", "TYPE", "PROTOCOL", "TYPE", "COORDINATOR"]
    assert listed[1].split()[:2] == ["g", "Stable"]


def test_json_documents_have_the_documented_keys(
    cluster: str, active: Consumer, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = pykaf_json(capsys, cluster, "groups", "list")
    assert list(listed) == ["groups"]
    (group,) = listed["groups"]
    assert list(group) == ["group_id", "state", "type", "protocol_type", "coordinator"]
    assert (group["group_id"], group["protocol_type"]) == ("g", "consumer")

    doc = pykaf_json(capsys, cluster, "groups", "describe", "g")
    assert list(doc) == ["groups", "errors"]
    (described,) = doc["groups"]
    assert list(described) == [
        "group_id", "state", "protocol_type", "protocol", "coordinator", "members", "offsets"
    ]  # fmt: skip
    (member,) = described["members"]
    assert list(member) == [
        "member_id", "group_instance_id", "client_id", "client_host", "assignment"
    ]  # fmt: skip
    assert member["assignment"] == [{"topic": "t", "partition": 0}, {"topic": "t", "partition": 1}]
    offsets = described["offsets"]
    assert [(o["partition"], o["committed"], o["end_offset"], o["lag"]) for o in offsets] == [
        (0, 5, 5, 0),
        (1, 3, 3, 0),
    ]
    assert list(described["offsets"][0]) == [
        "topic", "partition", "committed", "end_offset", "lag", "metadata"
    ]  # fmt: skip


def test_reset_offsets_moves_where_the_group_resumes(
    cluster: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dry = pykaf_json(capsys, cluster, *RESET_G, "--to-offset", "2", "--dry-run")
    assert dry == {
        "group": "g",
        "dry_run": True,
        "partitions": [
            {"topic": "t", "partition": 0, "current": 5, "new": 2},
            {"topic": "t", "partition": 1, "current": 3, "new": 2},
        ],
        "errors": {},
    }
    run = pykaf(capsys, cluster, *RESET_G, "--to-offset", "2")
    assert run.status == 0, run.err
    assert run.out.splitlines()[-1] == "reset group g on 2 partition(s)"
    with group_consumer(cluster, "g") as consumer:
        resumed = read(consumer, 3 + 1)
    assert sorted((r.partition, r.offset) for r in resumed) == [(0, 2), (0, 3), (0, 4), (1, 2)]

    # To the earliest, then to a time before every record: the whole log again.
    for to in (["--to-earliest"], ["--to-datetime", "2001-01-01T00:00:00"]):
        assert pykaf(capsys, cluster, *RESET_G, *to).status == 0
        with group_consumer(cluster, "g") as consumer:
            assert len(read(consumer, 8)) == 8
    # To the latest, or a time after every record: nothing left to read.
    for to in (["--to-latest"], ["--to-datetime", "2999-01-01T00:00:00+00:00"]):
        pykaf(capsys, cluster, *RESET_G, "--to-offset", "0")
        doc = pykaf_json(capsys, cluster, *RESET_G, *to)
        assert [p["new"] for p in doc["partitions"]] == [5, 3]


def test_dry_run_changes_nothing(cluster: str, capsys: pytest.CaptureFixture[str]) -> None:
    run = pykaf(capsys, cluster, *RESET_G, "--to-earliest", "--dry-run")
    assert run.status == 0, run.err
    assert (
        run.out.splitlines()[-1]
        == "would reset (dry run, nothing changed) group g on 2 partition(s)"
    )
    (group,) = pykaf_json(capsys, cluster, "groups", "describe", "g")["groups"]
    assert [o["committed"] for o in group["offsets"]] == [5, 3]


def test_reset_is_refused_while_the_group_has_members(
    cluster: str, active: Consumer, capsys: pytest.CaptureFixture[str]
) -> None:
    run = pykaf(capsys, cluster, *RESET_G, "--to-earliest")
    one_line_failure(run, "group 'g' is not empty", "1 active member", "stop its consumers first")
    assert run.out == ""


def test_reset_seeds_a_group_that_has_no_offsets_yet(
    cluster: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = pykaf(
        capsys, cluster, "groups", "reset-offsets", "fresh", "--topic", TOPIC, "--to-offset", "4"
    )
    assert run.status == 0, run.err
    with group_consumer(cluster, "fresh") as consumer:
        resumed = read(consumer, 1)
    assert [(r.partition, r.offset) for r in resumed] == [(0, 4)]


def test_delete_empty_group_and_partial_failure(
    cluster: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = pykaf(capsys, cluster, "groups", "delete", "g", "nope")
    one_line_failure(run, "1 of 2 groups failed", "nope", "GroupIdNotFound", "check the group name")
    assert run.out == "deleted group g\n"
    assert pykaf(capsys, cluster, "groups", "list").out == "no groups\n"


def test_delete_refused_while_the_group_has_members(
    cluster: str, active: Consumer, capsys: pytest.CaptureFixture[str]
) -> None:
    one_line_failure(
        pykaf(capsys, cluster, "groups", "delete", "g"), "NonEmptyGroup", "stop its consumers first"
    )


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["describe", "nope"], "check the group name (pykaf groups list)"),
        (["delete", "nope"], "GroupIdNotFound"),
        (
            ["reset-offsets", "g", "--topic", "t", "--to-datetime", "yesterday"],
            "expected an ISO 8601 date-time",
        ),
        (["reset-offsets", "g", "--topic", "t", "--to-offset", "-3"], "an offset is >= 0"),
        (["reset-offsets", "g", "--topic", "ghost", "--to-latest"], "ghost"),
        (["reset-offsets", "g", "--topic", "t"], "one of the arguments --to-earliest"),
        (["reset-offsets", "g", "--to-latest"], "--topic"),
        (
            ["reset-offsets", "g", "--topic", "t", "--to-latest", "--to-earliest"],
            "not allowed with",
        ),
        (["describe"], "GROUP"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(
    cluster: str, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    one_line_failure(pykaf(capsys, cluster, "groups", *argv), says)
