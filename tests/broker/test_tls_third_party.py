"""Third-party clients over TLS against the embedded broker: kafka-python and aiokafka
(produce, then consume in a group), kcat (produce, then consume)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import time

import pytest
from peers.tls import TlsFiles

from pykaf.broker import BlockingCluster, Cluster

pytestmark = pytest.mark.peer

COUNT = 200


def tls_cluster(files: TlsFiles) -> BlockingCluster:
    return BlockingCluster(
        1,
        security_protocol="SSL",
        ssl_certfile=files.main.server_cert,
        ssl_keyfile=files.main.server_key,
    )


def test_kafka_python_over_tls_in_a_group(tls_files: TlsFiles) -> None:
    from kafka import KafkaConsumer, KafkaProducer

    tls = {"security_protocol": "SSL", "ssl_cafile": str(tls_files.main.ca_cert)}
    with tls_cluster(tls_files) as cluster:
        cluster.create_topic("kp-tls", 2)
        producer = KafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all", **tls)
        try:
            futures = [producer.send("kp-tls", str(i).encode()) for i in range(COUNT)]
            producer.flush(30)
            for future in futures:
                future.get(timeout=10)
        finally:
            producer.close(5)
        consumer = KafkaConsumer(
            "kp-tls",
            bootstrap_servers=cluster.bootstrap,
            group_id="kp-tls-group",
            auto_offset_reset="earliest",
            consumer_timeout_ms=1000,
            **tls,
        )
        got: list[int] = []
        try:
            deadline = time.monotonic() + 30
            while len(got) < COUNT and time.monotonic() < deadline:
                got += [int(m.value) for m in consumer]
        finally:
            consumer.close()
        assert sorted(got) == list(range(COUNT))


async def test_aiokafka_over_tls_in_a_group(tls_files: TlsFiles) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    main = tls_files.main
    context = ssl.create_default_context(cafile=str(main.ca_cert))
    tls = {"security_protocol": "SSL", "ssl_context": context}
    async with (
        asyncio.timeout(60),
        Cluster(
            1, security_protocol="SSL", ssl_certfile=main.server_cert, ssl_keyfile=main.server_key
        ) as cluster,
    ):
        await cluster.create_topic("aio-tls", 2)
        producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, **tls)
        await producer.start()
        try:
            for i in range(COUNT):
                await producer.send("aio-tls", str(i).encode())
            await producer.flush()
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            "aio-tls",
            bootstrap_servers=cluster.bootstrap,
            group_id="aio-tls-group",
            auto_offset_reset="earliest",
            **tls,
        )
        await consumer.start()
        got: list[int] = []
        try:
            while len(got) < COUNT:
                batch = await consumer.getmany(timeout_ms=1000)
                got += [int(m.value) for msgs in batch.values() for m in msgs]
        finally:
            await consumer.stop()
        assert sorted(got) == list(range(COUNT))


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")
def test_kcat_over_tls(tls_files: TlsFiles) -> None:
    tls = ["-X", "security.protocol=SSL", "-X", f"ssl.ca.location={tls_files.main.ca_cert}"]
    with tls_cluster(tls_files) as cluster:
        cluster.create_topic("kcat-tls", 1)
        lines = "".join(f"{i}\n" for i in range(COUNT))
        subprocess.run(
            ["kcat", "-b", cluster.bootstrap, *tls, "-P", "-t", "kcat-tls"],
            input=lines,
            text=True,
            check=True,
            timeout=30,
        )
        out = subprocess.run(
            [
                *("kcat", "-b", cluster.bootstrap, *tls),
                *("-C", "-t", "kcat-tls", "-o", "beginning", "-e", "-q"),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        assert [int(v) for v in out.stdout.split()] == list(range(COUNT))
