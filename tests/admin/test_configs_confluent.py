"""Configs beside confluent-kafka's AdminClient on one embedded cluster: confluent's
incremental_alter_configs now works against the embedded broker (it answered
UNSUPPORTED_VERSION before IncrementalAlterConfigs existed), and both clients read the
same values and sources after either one's change."""

from __future__ import annotations

from typing import Any, Final

import pytest
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigSource,
)
from confluent_kafka.admin import ConfigResource as ConfluentResource

from pykaf import Admin
from pykaf.admin import ConfigChange, ConfigResource
from pykaf.broker import BlockingCluster

pytestmark = pytest.mark.peer

_LIMIT: Final = 20.0
# confluent's ConfigSource names, as pykaf's ConfigEntry.source says them.
_SOURCES: Final = {
    ConfigSource.DYNAMIC_TOPIC_CONFIG.value: "topic",
    ConfigSource.DYNAMIC_BROKER_CONFIG.value: "dynamic_broker",
    ConfigSource.STATIC_BROKER_CONFIG.value: "static_broker",
    ConfigSource.DEFAULT_CONFIG.value: "default",
}


def _confluent(cluster: BlockingCluster) -> AdminClient:
    return AdminClient({"bootstrap.servers": cluster.bootstrap, "log_level": 3})


def _theirs(confluent: AdminClient, kind: str, name: str) -> dict[str, Any]:
    resource = ConfluentResource(kind, name)
    return dict(confluent.describe_configs([resource])[resource].result(timeout=_LIMIT))


def _same(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert set(ours) == set(theirs)
    for name, entry in ours.items():
        other = theirs[name]
        assert (entry.value, entry.source, entry.read_only) == (
            other.value,
            _SOURCES[int(getattr(other.source, "value", other.source))],
            other.is_read_only,
        ), name


def test_confluent_incremental_alter_then_both_read_the_same(
    kafka_cluster_sync: BlockingCluster,
) -> None:
    kafka_cluster_sync.create_topic("orders", 2)
    confluent = _confluent(kafka_cluster_sync)
    resource = ConfluentResource(
        "topic",
        "orders",
        incremental_configs=[
            ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry(
                "cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND
            ),
        ],
    )
    confluent.incremental_alter_configs([resource])[resource].result(timeout=_LIMIT)
    assert kafka_cluster_sync.state.topics["orders"].configs == {
        "retention.ms": "3600000",
        "cleanup.policy": "delete,compact",
    }
    topic = ConfigResource("topic", "orders")
    with Admin(kafka_cluster_sync.bootstrap, request_timeout=_LIMIT) as admin:
        ours = dict(admin.describe_configs([topic])[topic])
    _same(ours, _theirs(confluent, "topic", "orders"))
    assert ours["retention.ms"].source == "topic"


def test_pykaf_alter_then_both_read_the_same(kafka_cluster_sync: BlockingCluster) -> None:
    kafka_cluster_sync.create_topic("orders", 1, configs={"segment.ms": "60000"})
    topic, broker = ConfigResource("topic", "orders"), ConfigResource("broker", "2")
    with Admin(kafka_cluster_sync.bootstrap, request_timeout=_LIMIT) as admin:
        altered = admin.alter_configs(
            {
                topic: [
                    ConfigChange("segment.ms", op="delete"),
                    ConfigChange("max.message.bytes", "5000"),
                ],
                broker: [ConfigChange("log.retention.ms", "7200000")],
            }
        )
        assert altered.errors == {}
        ours = admin.describe_configs([topic, broker])
    confluent = _confluent(kafka_cluster_sync)
    _same(dict(ours[topic]), _theirs(confluent, "topic", "orders"))
    _same(dict(ours[broker]), _theirs(confluent, "broker", "2"))
    assert ours[topic]["segment.ms"].is_default
    assert ours[broker]["log.retention.ms"].source == "dynamic_broker"


def test_confluent_sees_pykaf_refusals_the_same_way(kafka_cluster_sync: BlockingCluster) -> None:
    kafka_cluster_sync.create_topic("orders", 1)
    confluent = _confluent(kafka_cluster_sync)
    resource = ConfluentResource(
        "topic",
        "orders",
        incremental_configs=[
            ConfigEntry("retention.ms", "7", incremental_operation=AlterConfigOpType.APPEND)
        ],
    )
    with pytest.raises(Exception, match=r"INVALID_CONFIG|append"):
        confluent.incremental_alter_configs([resource])[resource].result(timeout=_LIMIT)
    assert kafka_cluster_sync.state.topics["orders"].configs == {}
