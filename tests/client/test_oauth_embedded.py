"""pykaf's clients with OAUTHBEARER against the embedded broker (Kafka's unsecured JWT
validator): producer and group consumer with a sync and an async token provider, sessions
that end with their token renewed by replacement (KIP-368) without losing a record, and an
expired token refused by the broker with a typed error."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from peers.tls import TlsFiles

import pykaf
from pykaf.broker import Cluster, unsecured_token
from pykaf.errors import SaslAuthenticationError

LIMIT = 30.0
GROUP = {"session_timeout": 6.0, "heartbeat_interval": 0.5, "retry_backoff": 0.02}


def token_provider(principal: str, lifetime: float, calls: list[float]) -> Any:
    def provide() -> tuple[str, float]:
        calls.append(time.monotonic())
        return unsecured_token(principal, lifetime), time.time() + lifetime

    return provide


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SASL_PLAINTEXT"])
async def test_producer_and_group_consumer_with_oauthbearer(
    protocol: str, tls_files: TlsFiles
) -> None:
    tls: dict[str, Any] = {}
    client_tls: dict[str, Any] = {}
    if protocol == "SASL_SSL":
        tls = {"ssl_certfile": tls_files.main.server_cert, "ssl_keyfile": tls_files.main.server_key}
        client_tls = {"ssl_cafile": tls_files.main.ca_cert}
    calls: list[float] = []

    async def async_provider() -> tuple[str, float]:
        calls.append(time.monotonic())
        return unsecured_token("alice", 600), time.time() + 600

    async with (
        asyncio.timeout(LIMIT),
        Cluster(2, security_protocol=protocol, sasl_mechanisms=["OAUTHBEARER"], **tls) as cluster,
    ):
        await cluster.create_topic("tokens", 3)
        options = {
            "security_protocol": protocol,
            "sasl_mechanism": "OAUTHBEARER",
            **client_tls,
        }
        sent = [f"v{i}".encode() for i in range(100)]
        async with pykaf.AsyncProducer(
            cluster.bootstrap, sasl_oauth_token_provider=async_provider, **options
        ) as producer:
            for value in sent:
                await producer.produce("tokens", value)
            assert await producer.flush(LIMIT) == 0
        assert calls, "the async provider was never asked"
        got: list[bytes] = []
        sync_calls: list[float] = []
        async with pykaf.AsyncConsumer(
            cluster.bootstrap,
            group_id="token-group",
            auto_offset_reset="earliest",
            sasl_oauth_token_provider=token_provider("bob", 600, sync_calls),
            **GROUP,
            **options,
        ) as consumer:
            await consumer.subscribe(["tokens"])
            async for record in consumer:  # bounded by LIMIT
                got.append(record.value)
                if len(got) == len(sent):
                    break
            await consumer.commit()
        assert sorted(got) == sorted(sent)
        assert sync_calls


async def test_sessions_that_end_with_their_token_are_renewed_and_nothing_is_lost() -> None:
    # Tokens of 1.5 s: the broker ends each session then (a request after it closes the
    # connection), so the producer must move to a freshly authenticated connection with
    # a new token, several times, while records keep flowing.
    calls: list[float] = []
    errors: list[BaseException] = []
    async with (
        asyncio.timeout(LIMIT),
        Cluster(1, security_protocol="SASL_PLAINTEXT", sasl_mechanisms=["OAUTHBEARER"]) as cluster,
    ):
        await cluster.create_topic("renewed", 1)
        async with pykaf.AsyncProducer(
            cluster.bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="OAUTHBEARER",
            sasl_oauth_token_provider=token_provider("alice", 1.5, calls),
            linger=0.001,
        ) as producer:
            sent = 0
            while len(calls) < 4:  # bounded by LIMIT: a token lasts 1.5 s
                await producer.produce(
                    "renewed", b"%d" % sent, on_delivery=lambda _, e: e is None or errors.append(e)
                )
                sent += 1
                await asyncio.sleep(0.005)  # a steady trickle, not a burst
            assert await producer.flush(LIMIT) == 0
        assert errors == []
        async with pykaf.AsyncClient(
            cluster.bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="OAUTHBEARER",
            sasl_oauth_token_provider=token_provider("alice", 60, []),
        ) as client:
            metadata = await client.metadata(["renewed"])
            assert metadata.topics["renewed"].partitions
        got: list[int] = []
        async with pykaf.AsyncConsumer(
            cluster.bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="OAUTHBEARER",
            sasl_oauth_token_provider=token_provider("alice", 60, []),
            auto_offset_reset="earliest",
            stop_at_end=True,
        ) as consumer:
            await consumer.assign([pykaf.TopicPartition("renewed", 0)])
            async for record in consumer:
                got.append(int(record.value))
        assert got == list(range(sent))  # none lost, none twice, in order


async def test_a_token_the_broker_finds_expired_is_a_typed_refusal() -> None:
    def stale() -> tuple[str, float]:
        # The provider claims it is fresh; the token's own exp says otherwise.
        return unsecured_token("alice", -60), time.time() + 600

    async with (
        asyncio.timeout(LIMIT),
        Cluster(1, security_protocol="SASL_PLAINTEXT", sasl_mechanisms=["OAUTHBEARER"]) as cluster,
        pykaf.AsyncClient(
            cluster.bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="OAUTHBEARER",
            sasl_oauth_token_provider=stale,
        ) as client,
    ):
        with pytest.raises(SaslAuthenticationError, match="token was refused"):
            await client.metadata()
