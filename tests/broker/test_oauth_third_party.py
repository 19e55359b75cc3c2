"""Third-party clients with OAUTHBEARER against the embedded broker's default validator
(Kafka's unsecured JWT one): confluent-kafka with librdkafka's own unsecured tokens
(``sasl.oauthbearer.config=principal=...``), kafka-python and aiokafka with token
providers returning ``pykaf.broker.unsecured_token``; each produces, then reads back in a
group, over SASL_SSL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from _broker_clients import produce_all
from _secure_round_trips import aiokafka_round_trip, kafka_python_round_trip
from peers.tls import TlsFiles
from test_sasl_third_party import consume_in_group

from pykaf.broker import BlockingCluster, unsecured_token

pytestmark = pytest.mark.peer

COUNT = 200


@pytest.fixture(scope="module")
def oauth_cluster(tls_files: TlsFiles) -> Iterator[BlockingCluster]:
    with BlockingCluster(
        2,
        security_protocol="SASL_SSL",
        ssl_certfile=tls_files.main.server_cert,
        ssl_keyfile=tls_files.main.server_key,
        sasl_mechanisms=["OAUTHBEARER", "SCRAM-SHA-512"],
        users={"alice": "alice-secret"},
    ) as running:
        yield running


def test_confluent_kafka_with_librdkafkas_unsecured_tokens(
    oauth_cluster: BlockingCluster, tls_files: TlsFiles
) -> None:
    oauth_cluster.create_topic("rd-oauth", 3)
    conf: dict[str, Any] = {
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(tls_files.main.ca_cert),
        "sasl.mechanism": "OAUTHBEARER",
        "enable.sasl.oauthbearer.unsecure.jwt": True,
        "sasl.oauthbearer.config": "principal=alice lifeSeconds=600",
    }
    produce_all(oauth_cluster.bootstrap, "rd-oauth", COUNT, **conf)
    got = consume_in_group(oauth_cluster.bootstrap, "rd-oauth", "rd-oauth-group", COUNT, **conf)
    assert sorted(got) == list(range(COUNT))


def test_kafka_python_with_a_token_provider(
    oauth_cluster: BlockingCluster, tls_files: TlsFiles
) -> None:
    from kafka.net.sasl.oauth import AbstractTokenProvider

    class Tokens(AbstractTokenProvider):  # type: ignore[misc]
        def token(self) -> str:
            return unsecured_token("alice", 600)

    oauth_cluster.create_topic("kp-oauth", 2)
    got = kafka_python_round_trip(
        oauth_cluster.bootstrap,
        "kp-oauth",
        COUNT,
        security_protocol="SASL_SSL",
        ssl_cafile=str(tls_files.main.ca_cert),
        sasl_mechanism="OAUTHBEARER",
        sasl_oauth_token_provider=Tokens(),
    )
    assert sorted(got) == list(range(COUNT))


def test_aiokafka_with_a_token_provider(
    oauth_cluster: BlockingCluster, tls_files: TlsFiles
) -> None:
    from aiokafka.abc import AbstractTokenProvider
    from aiokafka.helpers import create_ssl_context

    class Tokens(AbstractTokenProvider):  # type: ignore[misc]
        async def token(self) -> str:
            return unsecured_token("alice", 600)

    oauth_cluster.create_topic("aio-oauth", 2)

    async def round_trip() -> list[int]:
        async with asyncio.timeout(60):
            return await aiokafka_round_trip(
                oauth_cluster.bootstrap,
                "aio-oauth",
                COUNT,
                security_protocol="SASL_SSL",
                ssl_context=create_ssl_context(cafile=str(tls_files.main.ca_cert)),
                sasl_mechanism="OAUTHBEARER",
                sasl_oauth_token_provider=Tokens(),
            )

    assert sorted(asyncio.run(round_trip())) == list(range(COUNT))
