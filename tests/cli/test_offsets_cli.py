"""``pykaf offsets TOPIC``: earliest, latest and by-time offsets per partition, end to end
on the embedded broker; bad offset specs and ``--json``."""

from __future__ import annotations

import pytest
from admin_cli import one_line_failure, pykaf, pykaf_json

from pykaf import Producer
from pykaf.broker import BlockingCluster

# Record timestamps (ms): partition 0 gets 1000, 2000, 3000; partition 1 gets 1500.
STAMPS = {0: (1000, 2000, 3000), 1: (1500,)}


@pytest.fixture
def cluster(kafka_cluster_sync: BlockingCluster, capsys: pytest.CaptureFixture[str]) -> str:
    b = kafka_cluster_sync.bootstrap
    assert pykaf(capsys, b, "topics", "create", "t", "--partitions", "3").status == 0
    with Producer(b) as producer:
        for partition, stamps in STAMPS.items():
            for stamp in stamps:
                producer.produce("t", b"v", partition=partition, timestamp=stamp)
        producer.flush()
    return b


def test_earliest_and_latest_per_partition(
    cluster: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = pykaf(capsys, cluster, "offsets", "t")
    assert run.status == 0, run.err
    assert [line.split() for line in run.out.splitlines()] == [
        ["PARTITION", "EARLIEST", "LATEST"],
        ["0", "0", "3"],
        ["1", "0", "1"],
        ["2", "0", "0"],
    ]


def test_at_a_time_and_one_partition(cluster: str, capsys: pytest.CaptureFixture[str]) -> None:
    run = pykaf(capsys, cluster, "offsets", "t", "-p", "0", "--at", "@1500")
    assert [line.split() for line in run.out.splitlines()] == [
        ["PARTITION", "EARLIEST", "LATEST", "AT", "@1500"],
        ["0", "0", "3", "1"],
    ]
    doc = pykaf_json(capsys, cluster, "offsets", "t", "--at", "1970-01-01T00:00:02Z")
    assert doc == {
        "topic": "t",
        "at": 2000,
        "partitions": [
            {"partition": 0, "earliest": 0, "latest": 3, "at": 1},
            {"partition": 1, "earliest": 0, "latest": 1, "at": -1},
            {"partition": 2, "earliest": 0, "latest": 0, "at": -1},
        ],
    }
    plain = pykaf_json(capsys, cluster, "offsets", "t", "-p", "1", "-p", "2")
    assert plain["at"] is None
    assert [p["partition"] for p in plain["partitions"]] == [1, 2]
    assert all(p["at"] is None for p in plain["partitions"])


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["ghost"], "check the topic name"),
        (["t", "-p", "7"], "topic 't' has no partition 7 (it has 3: 0..2)"),
        (["t", "-p", "x"], "invalid int value"),
        (["t", "--at", "@soon"], "expected @MILLISECONDS"),
        (["t", "--at", "tomorrow"], "expected an ISO 8601 date-time"),
        ([], "TOPIC"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(
    cluster: str, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    one_line_failure(pykaf(capsys, cluster, "offsets", *argv), says)
