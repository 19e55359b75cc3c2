"""Configs through AsyncAdmin and Admin against the embedded broker: describe (sources,
defaults, synonyms, documentation), incremental alter (set, delete, append, subtract) of
topics and brokers, Kafka's validation, validate_only, one bad resource among good ones,
the legacy AlterConfigs path of a broker without IncrementalAlterConfigs."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any, Final

import pytest

from pykaf import Admin, AsyncAdmin
from pykaf.admin import ConfigChange, ConfigResource
from pykaf.broker import BlockingCluster, CallNext, Cluster, RequestContext
from pykaf.errors import (
    InvalidConfigError,
    InvalidRequestError,
    UnknownTopicOrPartitionError,
    UnsupportedVersionError,
)

_LIMIT = 20.0
API_VERSIONS: Final = 18
INCREMENTAL_ALTER_CONFIGS: Final = 44
TOPIC = ConfigResource("topic", "orders")


async def test_describe_reports_sources_and_defaults(kafka_cluster: Cluster) -> None:
    await kafka_cluster.create_topic("orders", 1, configs={"retention.ms": "1000"})
    broker = ConfigResource("broker", "2")
    async with asyncio.timeout(_LIMIT), AsyncAdmin(kafka_cluster.bootstrap) as admin:
        described = await admin.describe_configs(
            [TOPIC, broker], include_synonyms=True, include_documentation=True
        )
    topic = described[TOPIC]
    assert topic["retention.ms"].value == "1000"
    assert topic["retention.ms"].source == "topic"
    assert not topic["retention.ms"].is_default
    assert topic["retention.ms"].synonyms == (("retention.ms", "1000", "topic"),)
    assert topic["segment.ms"].is_default
    assert topic["segment.ms"].source == "default"
    assert topic["max.message.bytes"].documentation
    assert described[broker]["broker.id"].value == "2"
    assert described[broker]["broker.id"].read_only
    assert described[broker]["broker.id"].source == "static_broker"


async def test_incremental_alter_set_delete_append_subtract(kafka_cluster: Cluster) -> None:
    await kafka_cluster.create_topic("orders", 1, configs={"retention.ms": "1000"})
    async with asyncio.timeout(_LIMIT), AsyncAdmin(kafka_cluster.bootstrap) as admin:
        altered = await admin.alter_configs(
            {
                TOPIC: [
                    ConfigChange("retention.ms", op="delete"),
                    ConfigChange("max.message.bytes", "2000"),
                    ConfigChange("cleanup.policy", "compact", op="append"),
                    ConfigChange("leader.replication.throttled.replicas", "0:1,1:2", op="append"),
                ]
            }
        )
        assert altered.errors == {}
        state = kafka_cluster.state.topics["orders"]
        assert state.configs == {
            "max.message.bytes": "2000",
            "cleanup.policy": "delete,compact",
            "leader.replication.throttled.replicas": "0:1,1:2",
        }
        assert state.max_message_bytes == 2000  # the produce path sees it at once
        altered = await admin.alter_configs(
            {TOPIC: [ConfigChange("cleanup.policy", "delete", op="subtract")]}
        )
        assert altered.errors == {}
        described = (await admin.describe_configs([TOPIC]))[TOPIC]
    assert described["cleanup.policy"].value == "compact"
    assert described["cleanup.policy"].source == "topic"
    assert described["retention.ms"].source == "default"
    assert described["retention.ms"].value == "604800000"


async def test_one_bad_resource_among_good_ones(kafka_cluster: Cluster) -> None:
    for name in ("orders", "bad-value", "bad-name", "bad-append"):
        await kafka_cluster.create_topic(name, 1)
    changes = {
        TOPIC: [ConfigChange("retention.ms", "5000")],
        ConfigResource("topic", "bad-value"): [ConfigChange("retention.ms", "soon")],
        ConfigResource("topic", "bad-name"): [ConfigChange("retention.msec", "1")],
        ConfigResource("topic", "bad-append"): [ConfigChange("retention.ms", "1", op="append")],
        ConfigResource("topic", "missing"): [ConfigChange("retention.ms", "1")],
        ConfigResource("broker", "1"): [ConfigChange("broker.id", "7")],
    }
    async with asyncio.timeout(_LIMIT), AsyncAdmin(kafka_cluster.bootstrap) as admin:
        altered = await admin.alter_configs(changes)
    assert list(altered.ok) == [TOPIC]
    errors = altered.errors
    assert isinstance(errors[ConfigResource("topic", "bad-value")], InvalidConfigError)
    assert "soon" in str(errors[ConfigResource("topic", "bad-value")])
    assert "bad-value" in str(errors[ConfigResource("topic", "bad-value")])
    assert isinstance(errors[ConfigResource("topic", "bad-name")], InvalidConfigError)
    assert "retention.msec" in str(errors[ConfigResource("topic", "bad-name")])
    assert isinstance(errors[ConfigResource("topic", "bad-append")], InvalidConfigError)
    assert isinstance(errors[ConfigResource("topic", "missing")], UnknownTopicOrPartitionError)
    assert isinstance(errors[ConfigResource("broker", "1")], InvalidRequestError)
    topics = kafka_cluster.state.topics
    assert topics["orders"].configs == {"retention.ms": "5000"}
    assert topics["bad-value"].configs == topics["bad-name"].configs == {}


async def test_validate_only_changes_nothing(kafka_cluster: Cluster) -> None:
    await kafka_cluster.create_topic("orders", 1)
    async with asyncio.timeout(_LIMIT), AsyncAdmin(kafka_cluster.bootstrap) as admin:
        checked = await admin.alter_configs(
            {TOPIC: [ConfigChange("retention.ms", "5")]}, validate_only=True
        )
        refused = await admin.alter_configs(
            {TOPIC: [ConfigChange("retention.ms", "-5")]}, validate_only=True
        )
    assert checked.errors == {}
    assert isinstance(refused.errors[TOPIC], InvalidConfigError)
    assert kafka_cluster.state.topics["orders"].configs == {}


async def test_broker_configs_go_to_that_broker(kafka_cluster: Cluster) -> None:
    seen: list[tuple[int, int]] = []

    async def record(ctx: RequestContext, request: Any, call_next: CallNext) -> Any:
        if ctx.api_key in (32, INCREMENTAL_ALTER_CONFIGS):
            seen.append((ctx.api_key, ctx.node_id))
        return await call_next(ctx, request)

    kafka_cluster.set_interceptor(record)
    three = ConfigResource("broker", "3")
    async with asyncio.timeout(_LIMIT), AsyncAdmin(kafka_cluster.bootstrap) as admin:
        altered = await admin.alter_configs({three: [ConfigChange("log.retention.ms", "9000")]})
        assert altered.errors == {}
        described = await admin.describe_configs([three, ConfigResource("broker", "1")])
    assert described[three]["log.retention.ms"].value == "9000"
    assert described[three]["log.retention.ms"].source == "dynamic_broker"
    assert described[ConfigResource("broker", "1")]["log.retention.ms"].source == "default"
    assert (INCREMENTAL_ALTER_CONFIGS, 3) in seen
    assert (32, 3) in seen
    assert (32, 1) in seen


def _without_incremental_alter(seen: list[int]) -> Any:
    """An interceptor making the brokers look like Kafka 2.2: no IncrementalAlterConfigs."""

    async def intercept(ctx: RequestContext, request: Any, call_next: CallNext) -> Any:
        seen.append(ctx.api_key)
        response = await call_next(ctx, request)
        if ctx.api_key == API_VERSIONS:
            keys = tuple(k for k in response.api_keys if k.api_key != INCREMENTAL_ALTER_CONFIGS)
            return dataclasses.replace(response, api_keys=keys)
        return response

    return intercept


async def test_legacy_alter_keeps_the_other_configs(kafka_cluster: Cluster) -> None:
    await kafka_cluster.create_topic(
        "orders", 1, configs={"retention.ms": "1000", "cleanup.policy": "compact"}
    )
    seen: list[int] = []
    kafka_cluster.set_interceptor(_without_incremental_alter(seen))
    async with asyncio.timeout(_LIMIT), AsyncAdmin(kafka_cluster.bootstrap) as admin:
        altered = await admin.alter_configs(
            {
                TOPIC: [
                    ConfigChange("segment.ms", "60000"),
                    ConfigChange("retention.ms", op="delete"),
                    ConfigChange("cleanup.policy", "delete", op="append"),
                ],
                ConfigResource("topic", "missing"): [ConfigChange("segment.ms", "1")],
            }
        )
    assert list(altered.ok) == [TOPIC]
    assert isinstance(
        altered.errors[ConfigResource("topic", "missing")], UnknownTopicOrPartitionError
    )
    assert kafka_cluster.state.topics["orders"].configs == {
        "cleanup.policy": "compact,delete",
        "segment.ms": "60000",
    }
    assert INCREMENTAL_ALTER_CONFIGS not in seen
    assert 33 in seen  # AlterConfigs


async def test_legacy_alter_refuses_to_erase_a_sensitive_config(kafka_cluster: Cluster) -> None:
    await kafka_cluster.create_topic("orders", 1, configs={"retention.ms": "1000"})
    seen: list[int] = []
    hide_legacy = _without_incremental_alter(seen)

    async def sensitive(ctx: RequestContext, request: Any, call_next: CallNext) -> Any:
        response = await hide_legacy(ctx, request, call_next)
        if ctx.api_key != 32:
            return response
        # As a broker reports a password config: sensitive, value null.
        results = tuple(
            dataclasses.replace(
                r,
                configs=tuple(
                    dataclasses.replace(c, is_sensitive=True, value=None)
                    if c.name == "retention.ms"
                    else c
                    for c in r.configs
                ),
            )
            for r in response.results
        )
        return dataclasses.replace(response, results=results)

    kafka_cluster.set_interceptor(sensitive)
    async with asyncio.timeout(_LIMIT), AsyncAdmin(kafka_cluster.bootstrap) as admin:
        altered = await admin.alter_configs({TOPIC: [ConfigChange("segment.ms", "60000")]})
    error = altered.errors[TOPIC]
    assert isinstance(error, UnsupportedVersionError)
    assert "retention.ms" in str(error)
    assert 33 not in seen
    assert kafka_cluster.state.topics["orders"].configs == {"retention.ms": "1000"}


@pytest.mark.parametrize(
    ("call", "error", "says"),
    [
        (lambda a: a.describe_configs(TOPIC), TypeError, "wrap a single"),
        (lambda a: a.describe_configs([TOPIC, TOPIC]), ValueError, "repeated"),
        (lambda a: a.describe_configs(["orders"]), TypeError, "ConfigResource('topic'"),
        (lambda a: a.describe_configs([ConfigResource("topic", "")]), ValueError, "name"),
        (lambda a: a.describe_configs([ConfigResource("broker", "b1")]), ValueError, "node id"),
        (lambda a: a.alter_configs([TOPIC]), TypeError, "maps each ConfigResource"),
        (lambda a: a.alter_configs({TOPIC: ConfigChange("a", "1")}), TypeError, "a list"),
        (lambda a: a.alter_configs({TOPIC: [("a", "1")]}), TypeError, "is a ConfigChange"),
        (
            lambda a: a.alter_configs({TOPIC: [ConfigChange("a", "1"), ConfigChange("a", "2")]}),
            ValueError,
            "once per call",
        ),
    ],
)
async def test_bad_input_is_refused_before_sending(call, error, says) -> None:  # type: ignore[no-untyped-def]
    async with AsyncAdmin("127.0.0.1:1", request_timeout=1) as admin:
        with pytest.raises(error) as caught:
            await call(admin)
    assert says in str(caught.value)


def test_the_blocking_admin(kafka_cluster_sync: BlockingCluster) -> None:
    kafka_cluster_sync.create_topic("orders", 1)
    with Admin(kafka_cluster_sync.bootstrap, request_timeout=_LIMIT) as admin:
        altered = admin.alter_configs({TOPIC: [ConfigChange("retention.ms", "1234")]})
        assert altered.errors == {}
        described = admin.describe_configs([TOPIC])
    assert described[TOPIC]["retention.ms"].value == "1234"
    assert described[TOPIC]["retention.ms"].source == "topic"


async def test_altered_topic_configs_survive_a_restart(tmp_path: Path) -> None:
    async with asyncio.timeout(_LIMIT):
        async with Cluster(brokers=1, data_dir=tmp_path) as cluster:
            await cluster.create_topic("orders", 1)
            async with AsyncAdmin(cluster.bootstrap) as admin:
                altered = await admin.alter_configs({TOPIC: [ConfigChange("retention.ms", "4321")]})
                assert altered.errors == {}
        async with (
            Cluster(brokers=1, data_dir=tmp_path) as cluster,
            AsyncAdmin(cluster.bootstrap) as admin,
        ):
            described = (await admin.describe_configs([TOPIC]))[TOPIC]
    assert described["retention.ms"].value == "4321"
    assert described["retention.ms"].source == "topic"
