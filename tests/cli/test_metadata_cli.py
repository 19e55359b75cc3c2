"""``pykaf metadata`` (kcat -L) and ``pykaf cluster`` end to end on the embedded broker."""

from __future__ import annotations

import re

import pytest
from admin_cli import one_line_failure, pykaf, pykaf_json

from pykaf.broker import BlockingCluster


def test_metadata_lays_out_brokers_topics_and_partitions_like_kcat(
    kafka_cluster_sync: BlockingCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    b = kafka_cluster_sync.bootstrap
    pykaf(capsys, b, "topics", "create", "m", "--partitions", "2", "--replication-factor", "3")
    run = pykaf(capsys, b, "metadata")
    assert run.status == 0, run.err
    lines = run.out.splitlines()
    assert lines[0].startswith("Metadata for all topics (cluster id ")
    assert lines[1] == " 3 brokers:"
    ports = [broker.split(":")[1] for broker in b.split(",")]
    assert lines[2].startswith(f"  broker 1 at 127.0.0.1:{ports[0]}")
    assert sum("(controller)" in line for line in lines[2:5]) == 1
    assert lines[5:8] == [" 1 topics:", '  topic "m" with 2 partitions', lines[7]]
    for partition, line in enumerate(lines[7:9]):
        assert re.fullmatch(
            rf"    partition {partition}, leader [123], replicas: [123],[123],[123],"
            r" isrs: [123],[123],[123]",
            line,
        ), line


def test_metadata_json_has_the_documented_keys(
    kafka_cluster_sync: BlockingCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    b = kafka_cluster_sync.bootstrap
    pykaf(capsys, b, "topics", "create", "m", "n", "--partitions", "1")
    doc = pykaf_json(capsys, b, "metadata", "-t", "n")
    assert list(doc) == ["cluster_id", "controller_id", "brokers", "topics"]
    assert [broker["id"] for broker in doc["brokers"]] == [1, 2, 3]
    assert list(doc["brokers"][0]) == ["id", "host", "port", "rack"]
    (topic,) = doc["topics"]
    assert list(topic) == ["topic", "topic_id", "internal", "error", "partitions"]
    assert (topic["topic"], topic["error"]) == ("n", None)
    assert list(topic["partitions"][0]) == [
        "partition", "leader", "leader_epoch", "replicas", "isr", "offline_replicas", "error"
    ]  # fmt: skip


def test_metadata_of_an_unknown_topic_fails_naming_it(
    kafka_cluster_sync: BlockingCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    run = pykaf(capsys, kafka_cluster_sync.bootstrap, "metadata", "-t", "ghost")
    one_line_failure(run, "ghost", "UnknownTopicOrPartition", "check the topic name")
    assert '  topic "ghost" with 0 partitions: UnknownTopicOrPartitionError' in run.out


def test_cluster_shows_id_controller_and_brokers(
    kafka_cluster_sync: BlockingCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    b = kafka_cluster_sync.bootstrap
    run = pykaf(capsys, b, "cluster")
    assert run.status == 0, run.err
    lines = run.out.splitlines()
    assert lines[0].startswith("cluster id ")
    assert lines[1].split() == ["BROKER", "HOST", "PORT", "RACK", "CONTROLLER"]
    assert [line.split()[:3] for line in lines[2:]] == [
        [str(i + 1), *address.split(":")] for i, address in enumerate(b.split(","))
    ]
    assert [line.split()[-1] for line in lines[2:]].count("yes") == 1


def test_cluster_api_versions_json(
    kafka_cluster_sync: BlockingCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = pykaf_json(capsys, kafka_cluster_sync.bootstrap, "cluster", "--api-versions")
    assert list(doc) == ["cluster_id", "controller_id", "brokers", "errors"]
    assert doc["controller_id"] in {1, 2, 3}
    assert doc["errors"] == {}
    for broker in doc["brokers"]:
        assert list(broker) == ["id", "host", "port", "rack", "api_versions"]
        apis = {api["name"]: api for api in broker["api_versions"]}
        assert list(apis["Produce"]) == ["key", "name", "min", "max", "used"]
        assert apis["ApiVersions"]["key"] == 18
        assert apis["Metadata"]["min"] <= apis["Metadata"]["used"] <= apis["Metadata"]["max"]
    table = pykaf(capsys, kafka_cluster_sync.bootstrap, "cluster", "--api-versions").out
    assert table.count(" API versions:") == 3
    assert "  KEY  API" in table


@pytest.mark.parametrize("command", [["metadata"], ["cluster"], ["cluster", "--api-versions"]])
def test_no_such_broker_is_one_line(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    run = pykaf(capsys, "127.0.0.1:1", *command, "-m", "0.5")
    one_line_failure(run, "no broker reachable")


def test_bad_option_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    one_line_failure(pykaf(capsys, "127.0.0.1:1", "metadata", "--frob"), "unrecognized")
    one_line_failure(pykaf(capsys, "127.0.0.1:1", "cluster", "-t", "x"), "unrecognized")
