"""pykaf's producer, group consumer and raw client authenticating with SASL against the
embedded broker's SASL listeners, with each mechanism; refusals typed and the broker still
serving the others."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from peers.tls import TlsFiles

import pykaf
from pykaf._client._async_client import AsyncClient
from pykaf.broker import Cluster
from pykaf.errors import SaslAuthenticationError, SaslConfigurationError

LIMIT = 30.0
COUNT = 100
PASSWORD = "alice-secret-9"
GROUP = {"session_timeout": 6.0, "heartbeat_interval": 0.5, "retry_backoff": 0.02}


def sasl(mechanism: str, protocol: str, password: str = PASSWORD) -> dict[str, Any]:
    return {
        "security_protocol": protocol,
        "sasl_mechanism": mechanism,
        "sasl_username": "alice",
        "sasl_password": password,
    }


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_producer_and_group_consumer_over_sasl_ssl(
    mechanism: str, tls_files: TlsFiles
) -> None:
    async with (
        asyncio.timeout(LIMIT),
        Cluster(
            2,
            security_protocol="SASL_SSL",
            ssl_certfile=tls_files.main.server_cert,
            ssl_keyfile=tls_files.main.server_key,
            users={"alice": PASSWORD},
        ) as cluster,
    ):
        await cluster.create_topic("secure", 3)
        options = {**sasl(mechanism, "SASL_SSL"), "ssl_cafile": tls_files.main.ca_cert}
        sent = [f"v{i}".encode() for i in range(COUNT)]
        errors: list[BaseException] = []
        async with pykaf.AsyncProducer(cluster.bootstrap, **options) as producer:
            for value in sent:
                await producer.produce(
                    "secure", value, on_delivery=lambda _, e: e is None or errors.append(e)
                )
            assert await producer.flush(LIMIT) == 0
        assert errors == []
        got: list[bytes] = []
        async with pykaf.AsyncConsumer(
            cluster.bootstrap,
            group_id=f"group-{mechanism}",
            auto_offset_reset="earliest",
            **GROUP,
            **options,
        ) as consumer:
            await consumer.subscribe(["secure"])
            async for record in consumer:  # bounded by LIMIT
                got.append(record.value)
                if len(got) == COUNT:
                    break
            await consumer.commit()
        assert sorted(got) == sorted(sent)


async def test_raw_client_over_sasl_plaintext_and_its_refusals() -> None:
    async with (
        asyncio.timeout(LIMIT),
        Cluster(
            1,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanisms=["SCRAM-SHA-512", "PLAIN"],
            users={"alice": PASSWORD},
        ) as cluster,
    ):
        async with AsyncClient(
            cluster.bootstrap, **sasl("SCRAM-SHA-256", "SASL_PLAINTEXT")
        ) as client:
            with pytest.raises(SaslConfigurationError, match="it enables: SCRAM-SHA-512, PLAIN"):
                await client.metadata()
        async with AsyncClient(
            cluster.bootstrap, **sasl("SCRAM-SHA-512", "SASL_PLAINTEXT", "wrong-one")
        ) as client:
            with pytest.raises(SaslAuthenticationError, match="wrong password") as refused:
                await client.metadata()
            assert "wrong-one" not in repr(refused.value)
        # The broker still serves the right credentials.
        async with AsyncClient(
            cluster.bootstrap, **sasl("SCRAM-SHA-512", "SASL_PLAINTEXT")
        ) as client:
            assert (await client.metadata()).brokers
