"""Third-party clients over SASL_SSL against the embedded broker: confluent-kafka (SCRAM-SHA-512
and PLAIN, in a group; and against the standalone ``pykaf broker``), kafka-python and aiokafka
(SCRAM-SHA-512, in a group), kcat (PLAIN, produce then consume in a group).

kcat's librdkafka (before 2.6.1, librdkafka#4895) repeats the client nonce in its SCRAM
client-final message; the broker checks the nonce as RFC 5802 and Kafka 4 do, so kcat gets
PLAIN here."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _broker_clients import produce_all, quiet
from _secure_round_trips import aiokafka_round_trip, kafka_python_round_trip
from _standalone import start_broker
from peers.tls import TlsFiles

from pykaf.broker import BlockingCluster, Cluster

pytestmark = pytest.mark.peer

COUNT = 200
USERS = {"alice": "alice-secret", "bob": "bob-secret"}


@pytest.fixture(scope="module")
def sasl_ssl_cluster(tls_files: TlsFiles) -> Iterator[BlockingCluster]:
    with BlockingCluster(
        2,
        security_protocol="SASL_SSL",
        ssl_certfile=tls_files.main.server_cert,
        ssl_keyfile=tls_files.main.server_key,
        sasl_mechanisms=["SCRAM-SHA-512", "PLAIN"],
        users=USERS,
    ) as running:
        yield running


def rdkafka_sasl(files: TlsFiles, mechanism: str, user: str = "alice") -> dict[str, Any]:
    return {
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(files.main.ca_cert),
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": USERS.get(user, "wrong"),
    }


def consume_in_group(bootstrap: str, topic: str, group: str, count: int, **conf: Any) -> list[int]:
    from confluent_kafka import Consumer

    consumer = Consumer(
        quiet(
            **{
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "fetch.queue.backoff.ms": 10,
                **conf,
            }
        )
    )
    got: list[int] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 45
        while len(got) < count and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.2):
                assert msg.error() is None, msg.error()
                got.append(int(msg.value()))
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return got


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
def test_confluent_kafka_over_sasl_ssl_in_a_group(
    sasl_ssl_cluster: BlockingCluster, tls_files: TlsFiles, mechanism: str
) -> None:
    topic = f"rdkafka-{mechanism.lower()}"
    sasl_ssl_cluster.create_topic(topic, 2)
    conf = rdkafka_sasl(tls_files, mechanism)
    assert produce_all(sasl_ssl_cluster.bootstrap, topic, COUNT, **conf) == []
    got = consume_in_group(sasl_ssl_cluster.bootstrap, topic, f"{topic}-group", COUNT, **conf)
    assert sorted(got) == list(range(COUNT))


def test_confluent_kafka_with_a_wrong_password_gets_an_authentication_error(
    sasl_ssl_cluster: BlockingCluster, tls_files: TlsFiles
) -> None:
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient

    errors: list[Any] = []
    conf = rdkafka_sasl(tls_files, "SCRAM-SHA-512", user="mallory")
    conf["error_cb"] = errors.append
    admin = AdminClient(quiet(**{"bootstrap.servers": sasl_ssl_cluster.bootstrap, **conf}))
    deadline = time.monotonic() + 20
    while not errors and time.monotonic() < deadline:
        admin.poll(0.2)
    assert errors, "no error reported within 20 s"
    assert errors[0].code() == KafkaError._AUTHENTICATION
    # The broker's answer arrived over TLS before it closed the connection.
    assert "invalid credentials for SCRAM-SHA-512" in errors[0].str()
    assert "wrong" not in errors[0].str()


def test_standalone_broker_serves_sasl_ssl_to_confluent_kafka(
    tls_files: TlsFiles, tmp_path: Path
) -> None:
    main = tls_files.main
    broker = start_broker(
        tmp_path,
        brokers=1,
        args=(
            *("--security-protocol", "SASL_SSL"),
            *("--ssl-certfile", str(main.server_cert), "--ssl-keyfile", str(main.server_key)),
            *("--sasl-mechanism", "SCRAM-SHA-512", "--sasl-mechanism", "PLAIN"),
            *("--user", f"alice:{USERS['alice']}", "--user", f"bob:{USERS['bob']}"),
        ),
    )
    try:
        conf = rdkafka_sasl(tls_files, "SCRAM-SHA-512", user="bob")
        assert produce_all(broker.bootstrap, "standalone-sasl", 50, **conf) == []
        got = consume_in_group(broker.bootstrap, "standalone-sasl", "standalone", 50, **conf)
        assert sorted(got) == list(range(50))
    finally:
        assert broker.stop() == 0
    assert USERS["bob"] not in broker.stderr()


def test_kafka_python_over_sasl_ssl_scram_in_a_group(
    sasl_ssl_cluster: BlockingCluster, tls_files: TlsFiles
) -> None:
    sasl = {
        "security_protocol": "SASL_SSL",
        "ssl_cafile": str(tls_files.main.ca_cert),
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "bob",
        "sasl_plain_password": USERS["bob"],
    }
    sasl_ssl_cluster.create_topic("kp-sasl", 2)
    got = kafka_python_round_trip(sasl_ssl_cluster.bootstrap, "kp-sasl", COUNT, **sasl)
    assert sorted(got) == list(range(COUNT))


async def test_aiokafka_over_sasl_ssl_scram_in_a_group(tls_files: TlsFiles) -> None:
    main = tls_files.main
    sasl = {
        "security_protocol": "SASL_SSL",
        "ssl_context": ssl.create_default_context(cafile=str(main.ca_cert)),
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "alice",
        "sasl_plain_password": USERS["alice"],
    }
    async with (
        asyncio.timeout(60),
        Cluster(
            1,
            security_protocol="SASL_SSL",
            ssl_certfile=main.server_cert,
            ssl_keyfile=main.server_key,
            sasl_mechanisms=["SCRAM-SHA-512"],
            users=USERS,
        ) as cluster,
    ):
        await cluster.create_topic("aio-sasl", 2)
        got = await aiokafka_round_trip(cluster.bootstrap, "aio-sasl", COUNT, **sasl)
        assert sorted(got) == list(range(COUNT))


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")
def test_kcat_over_sasl_ssl_plain_in_a_group(tls_files: TlsFiles) -> None:
    main = tls_files.main
    sasl = [
        *("-X", "security.protocol=SASL_SSL", "-X", f"ssl.ca.location={main.ca_cert}"),
        *("-X", "sasl.mechanism=PLAIN", "-X", "sasl.username=alice"),
        *("-X", f"sasl.password={USERS['alice']}"),
    ]
    with BlockingCluster(
        1,
        security_protocol="SASL_SSL",
        ssl_certfile=main.server_cert,
        ssl_keyfile=main.server_key,
        sasl_mechanisms=["PLAIN"],
        users=USERS,
    ) as cluster:
        cluster.create_topic("kcat-sasl", 1)
        lines = "".join(f"{i}\n" for i in range(COUNT))
        subprocess.run(
            ["kcat", "-b", cluster.bootstrap, *sasl, "-P", "-t", "kcat-sasl"],
            input=lines,
            text=True,
            check=True,
            timeout=30,
        )
        out = subprocess.run(
            [
                *("kcat", "-b", cluster.bootstrap, *sasl, "-G", "kcat-sasl-group"),
                *("-X", "auto.offset.reset=earliest", "-e", "-q", "kcat-sasl"),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert sorted(int(v) for v in out.stdout.split()) == list(range(COUNT))
