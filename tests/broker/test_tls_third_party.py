"""Third-party clients over TLS against the embedded broker: kafka-python and aiokafka
(produce, then consume in a group), kcat (produce, then consume)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess

import pytest
from _secure_round_trips import aiokafka_round_trip, kafka_python_round_trip
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
    tls = {"security_protocol": "SSL", "ssl_cafile": str(tls_files.main.ca_cert)}
    with tls_cluster(tls_files) as cluster:
        cluster.create_topic("kp-tls", 2)
        got = kafka_python_round_trip(cluster.bootstrap, "kp-tls", COUNT, **tls)
        assert sorted(got) == list(range(COUNT))


async def test_aiokafka_over_tls_in_a_group(tls_files: TlsFiles) -> None:
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
        got = await aiokafka_round_trip(cluster.bootstrap, "aio-tls", COUNT, **tls)
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
