"""The embedded broker's TLS listener: pykaf's producer, group consumer and raw client,
confluent-kafka, and the standalone ``pykaf broker --security-protocol SSL``, with and
without client certificates; bad listener settings refused with what to fix."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from _broker_clients import consume_all, produce_all
from _standalone import start_broker
from peers.tls import TlsFiles

import pykaf
from pykaf.broker import BlockingCluster, Cluster
from pykaf.broker.cli import main as broker_main

COUNT = 300
GROUP = {"session_timeout": 6.0, "heartbeat_interval": 0.5, "retry_backoff": 0.02}


def mutual_tls_cluster(files: TlsFiles) -> BlockingCluster:
    return BlockingCluster(
        2,
        security_protocol="SSL",
        ssl_certfile=files.main.server_cert,
        ssl_keyfile=files.main.server_key,
        ssl_cafile=files.main.ca_cert,
    )


def client_tls(files: TlsFiles) -> dict[str, Any]:
    return {
        "security_protocol": "SSL",
        "ssl_cafile": files.main.ca_cert,
        "ssl_certfile": files.main.client_cert,
        "ssl_keyfile": files.main.client_key,
    }


def test_producer_and_group_consumer_over_mutual_tls(tls_files: TlsFiles) -> None:
    with mutual_tls_cluster(tls_files) as cluster:
        cluster.create_topic("secure", 3)
        tls = client_tls(tls_files)
        with pykaf.Producer(cluster.bootstrap, **tls) as producer:
            futures = [producer.send("secure", f"v{i}".encode()) for i in range(COUNT)]
            producer.flush(30)
            assert {f.result(timeout=30).topic for f in futures} == {"secure"}
        got: list[bytes] = []
        with pykaf.Consumer(
            cluster.bootstrap,
            group_id="secure-group",
            topics=["secure"],
            auto_offset_reset="earliest",
            **GROUP,
            **tls,
        ) as consumer:
            for _ in range(100):  # bounded: 100 polls of at most 1 s
                got += [r.value for r in consumer.poll(timeout=1.0)]
                if len(got) >= COUNT:
                    break
            consumer.commit()
        assert sorted(got) == sorted(f"v{i}".encode() for i in range(COUNT))


async def test_async_client_over_tls_without_client_certificates(tls_files: TlsFiles) -> None:
    main = tls_files.main
    async with (
        asyncio.timeout(20),
        Cluster(
            3, security_protocol="SSL", ssl_certfile=main.server_cert, ssl_keyfile=main.server_key
        ) as cluster,
        pykaf.AsyncClient(cluster.bootstrap, ssl_cafile=main.ca_cert) as client,
    ):
        metadata = await client.metadata()
        # Advertised listeners are unchanged: the same hosts and ports, now TLS.
        assert sorted((b.host, b.port) for b in metadata.brokers.values()) == sorted(
            (b.host, b.port) for b in cluster.brokers
        )
        assert cluster.security_protocol == "SSL"


@pytest.mark.peer
def test_confluent_kafka_over_mutual_tls(tls_files: TlsFiles) -> None:
    main = tls_files.main
    conf = {
        "security.protocol": "SSL",
        "ssl.ca.location": str(main.ca_cert),
        "ssl.certificate.location": str(main.client_cert),
        "ssl.key.location": str(main.client_key),
    }
    with mutual_tls_cluster(tls_files) as cluster:
        cluster.create_topic("rdkafka-tls", 2)
        assert produce_all(cluster.bootstrap, "rdkafka-tls", COUNT, **conf) == []
        got = consume_all(cluster.bootstrap, "rdkafka-tls", 2, COUNT, **conf)
        values = sorted(int(m.value()) for msgs in got.values() for m in msgs)
        assert values == list(range(COUNT))


def test_standalone_broker_serves_tls(tls_files: TlsFiles, tmp_path: Path) -> None:
    main = tls_files.main
    broker = start_broker(
        tmp_path,
        brokers=1,
        args=(
            *("--security-protocol", "SSL"),
            *("--ssl-certfile", str(main.server_cert), "--ssl-keyfile", str(main.server_key)),
        ),
    )
    try:
        with pykaf.Client(broker.bootstrap, ssl_cafile=main.ca_cert, request_timeout=10) as c:
            assert c.metadata().brokers
    finally:
        assert broker.stop() == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"security_protocol": "SSL"}, "needs ssl_certfile"),
        ({"security_protocol": "TLS"}, "must be one of PLAINTEXT, SSL"),
        ({"security_protocol": "SASL_SSL"}, "needs users"),
        ({"ssl_cafile": "ca.pem"}, "given with security_protocol 'PLAINTEXT'"),
        ({"security_protocol": "SSL", "ssl_certfile": "/nope.pem"}, "ssl_certfile: no such"),
    ],
)
def test_bad_listener_settings_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Cluster(1, **options)


def test_bad_key_and_cli_errors(tls_files: TlsFiles, capsys: pytest.CaptureFixture[str]) -> None:
    main = tls_files.main
    with pytest.raises(ValueError, match="cannot be loaded"):
        Cluster(
            1, security_protocol="SSL", ssl_certfile=main.server_cert, ssl_keyfile=main.client_key
        )
    assert broker_main(["--port", "0", "--security-protocol", "SSL"]) == 2
    assert "needs ssl_certfile" in capsys.readouterr().err
