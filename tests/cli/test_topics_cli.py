"""``pykaf topics``: list, describe (with configs), create, delete, alter, end to end on the
embedded broker; partial failures, bad input and ``--json`` documents."""

from __future__ import annotations

import subprocess
import sys

import pytest
from admin_cli import one_line_failure, pykaf, pykaf_json

from pykaf.broker import BlockingCluster
from pykaf.cli._main import main
from pykaf.cli._tables import table


def test_create_then_describe_shows_partitions_and_configs(
    kafka_cluster_sync: BlockingCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    b = kafka_cluster_sync.bootstrap
    created = pykaf(
        capsys, b, "topics", "create", "orders", "--partitions", "3",
        "--replication-factor", "2", "--config", "retention.ms=60000",
        "--config", "cleanup.policy=compact",
    )  # fmt: skip
    assert created.status == 0, created.err
    assert "created topic orders: 3 partition(s), replication factor 2" in created.out

    described = pykaf(capsys, b, "topics", "describe", "orders")
    assert described.status == 0, described.err
    lines = described.out.splitlines()
    assert lines[0].startswith("topic orders  id ")
    assert "partitions 3  replication factor 2" in lines[0]
    assert lines[1].split() == ["PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "OFFLINE"]
    assert [line.split()[0] for line in lines[2:5]] == ["0", "1", "2"]
    assert "  configs (non-default):" in lines
    configs = {
        line.split()[0]: line.split()[1:]
        for line in lines[lines.index("  configs (non-default):") + 2 :]
    }
    assert configs == {"cleanup.policy": ["compact", "topic"], "retention.ms": ["60000", "topic"]}

    # --all-configs shows the defaults too.
    everything = pykaf(capsys, b, "topics", "describe", "orders", "--all-configs")
    assert "configs (all):" in everything.out
    assert len(everything.out.splitlines()) > len(lines)


def test_describe_json_has_the_documented_keys(
    kafka_cluster_sync: BlockingCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    b = kafka_cluster_sync.bootstrap
    assert (
        pykaf(
            capsys, b, "topics", "create", "t", "--partitions", "2", "--config", "retention.ms=5000"
        ).status
        == 0
    )
    doc = pykaf_json(capsys, b, "topics", "describe", "t")
    assert list(doc) == ["topics", "errors"]
    assert doc["errors"] == {}
    (topic,) = doc["topics"]
    assert list(topic) == ["name", "topic_id", "internal", "partitions", "configs"]
    assert topic["name"] == "t"
    assert [p["partition"] for p in topic["partitions"]] == [0, 1]
    assert list(topic["partitions"][0]) == [
        "partition", "leader", "leader_epoch", "replicas", "isr", "offline_replicas"
    ]  # fmt: skip
    assert topic["configs"] == {
        "retention.ms": {
            "value": "5000", "source": "topic", "is_default": False, "read_only": False,
            "sensitive": False,
        }
    }  # fmt: skip


def test_list_create_delete_json_documents(
    kafka_cluster_sync: BlockingCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    b = kafka_cluster_sync.bootstrap
    created = pykaf_json(capsys, b, "topics", "create", "a", "b", "--partitions", "2")
    assert list(created) == ["validate_only", "topics", "errors"]
    assert [t["name"] for t in created["topics"]] == ["a", "b"]
    assert list(created["topics"][0]) == [
        "name", "topic_id", "partitions", "replication_factor", "configs"
    ]  # fmt: skip
    listed = pykaf_json(capsys, b, "topics", "list")
    assert listed == {
        "topics": [
            {"name": n, "topic_id": listed["topics"][i]["topic_id"], "internal": False,
             "partitions": 2}
            for i, n in enumerate(["a", "b"])
        ]
    }  # fmt: skip
    table = pykaf(capsys, b, "topics", "list").out.splitlines()
    assert table[0].split() == ["TOPIC", "PARTITIONS", "INTERNAL", "TOPIC", "ID"]
    assert [line.split()[:3] for line in table[1:]] == [["a", "2", "no"], ["b", "2", "no"]]
    deleted = pykaf_json(capsys, b, "topics", "delete", "a")
    assert deleted["topics"] == [{"name": "a", "topic_id": listed["topics"][0]["topic_id"]}]
    assert deleted["errors"] == {}
    assert [t["name"] for t in pykaf_json(capsys, b, "topics", "list")["topics"]] == ["b"]


def test_validate_only_creates_nothing(
    kafka_cluster_sync: BlockingCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    b = kafka_cluster_sync.bootstrap
    run = pykaf(capsys, b, "topics", "create", "maybe", "--partitions", "4", "--validate-only")
    assert run.status == 0, run.err
    assert "would create topic maybe: 4 partition(s)" in run.out
    assert pykaf(capsys, b, "topics", "list").out.strip() == "no topics"


def test_alter_sets_deletes_and_grows(
    kafka_cluster_sync: BlockingCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    b = kafka_cluster_sync.bootstrap
    pykaf(
        capsys,
        b,
        "topics",
        "create",
        "t",
        "--partitions",
        "1",
        "--config",
        "cleanup.policy=compact",
    )
    run = pykaf(
        capsys, b, "topics", "alter", "t", "--config", "retention.ms=1000",
        "--delete-config", "cleanup.policy", "--partitions", "3",
    )  # fmt: skip
    assert run.status == 0, run.err
    assert (
        "altered topic t: partitions -> 3, set retention.ms=1000, delete cleanup.policy" in run.out
    )
    (topic,) = pykaf_json(capsys, b, "topics", "describe", "t")["topics"]
    assert len(topic["partitions"]) == 3
    assert {k: v["value"] for k, v in topic["configs"].items()} == {"retention.ms": "1000"}
    doc = pykaf_json(capsys, b, "topics", "alter", "t", "--config", "retention.ms=2000")
    assert doc == {
        "validate_only": False,
        "topics": [
            {"name": "t", "changes": [{"name": "retention.ms", "op": "set", "value": "2000"}],
             "partitions": None}
        ],
        "errors": {},
    }  # fmt: skip


def test_partial_failure_prints_the_others_and_names_the_failed_ones(
    kafka_cluster_sync: BlockingCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    b = kafka_cluster_sync.bootstrap
    pykaf(capsys, b, "topics", "create", "a", "c")
    run = pykaf(capsys, b, "topics", "delete", "a", "missing", "c")
    one_line_failure(run, "1 of 3 topics failed", "missing", "UnknownTopicOrPartition")
    assert run.out.splitlines() == ["deleted topic a", "deleted topic c"]

    pykaf(capsys, b, "topics", "create", "d")
    described = pykaf(capsys, b, "topics", "describe", "d", "gone")
    one_line_failure(described, "1 of 2 topics failed", "gone")
    assert described.out.startswith("topic d ")
    doc = pykaf(capsys, b, "topics", "describe", "d", "gone", "--json")
    assert doc.status == 1
    assert '"gone": "UnknownTopicOrPartitionError' in doc.out


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["describe", "nope"], "or create it (pykaf topics create)"),
        (["delete", "nope"], "check the topic name"),
        (["alter", "nope", "--config", "retention.ms=1"], "nope"),
        (["create", "x", "--config", "retention.ms"], "expected NAME=VALUE"),
        (["create", "x", "--partitions", "0"], "partitions must be >= 1"),
        (["create", "x", "--partitions", "many"], "invalid int value"),
        (["alter", "x"], "nothing to change"),
        (["frobnicate"], "invalid choice"),
        (["list", "-m", "0"], "-m 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(
    kafka_cluster_sync: BlockingCluster,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    says: str,
) -> None:
    one_line_failure(pykaf(capsys, kafka_cluster_sync.bootstrap, "topics", *argv), says)


def test_no_action_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["topics"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "pykaf topics: the following arguments are required: ACTION (see pykaf topics --help)"
    ]


def test_existing_topic_is_refused(
    kafka_cluster_sync: BlockingCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    b = kafka_cluster_sync.bootstrap
    pykaf(capsys, b, "topics", "create", "x")
    one_line_failure(pykaf(capsys, b, "topics", "create", "x"), "TopicAlreadyExists")


def test_no_broker_then_debug_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    run = pykaf(capsys, "127.0.0.1:1", "topics", "list", "-m", "0.5")
    one_line_failure(run, "no broker reachable", "check -b/--bootstrap")
    debug = pykaf(capsys, "127.0.0.1:1", "topics", "list", "-m", "0.5", "--debug")
    assert debug.status == 1
    assert "Traceback (most recent call last)" in debug.err
    assert debug.err.rstrip().splitlines()[-1].startswith("pykaf topics list: no broker reachable")


def test_exit_status_through_python_m_pykaf(kafka_cluster_sync: BlockingCluster) -> None:
    b = kafka_cluster_sync.bootstrap
    ok = subprocess.run(
        [sys.executable, "-m", "pykaf", "topics", "create", "p", "-b", b],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (ok.returncode, ok.stderr) == (0, "")
    bad = subprocess.run(
        [sys.executable, "-m", "pykaf", "topics", "describe", "p", "q", "-b", b],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 1
    assert bad.stdout.startswith("topic p ")
    assert len(bad.stderr.splitlines()) == 1


def test_bootstrap_from_the_environment(
    kafka_cluster_sync: BlockingCluster,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYKAF_BOOTSTRAP", kafka_cluster_sync.bootstrap)
    assert main(["topics", "create", "env"]) == 0
    assert main(["topics", "list"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split()[0] == "env"


def test_tables_align_numbers_right_and_show_unknowns_as_a_dash() -> None:
    rows = [("t", 0, None, (1, 2), True), ("long-name", 10, 12345, (), False)]
    assert table(("TOPIC", "P", "COMMITTED", "REPLICAS", "OK"), rows).splitlines() == [
        "TOPIC       P  COMMITTED  REPLICAS  OK",
        "t           0          -  1,2       yes",
        "long-name  10      12345  -         no",
    ]
