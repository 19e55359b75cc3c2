"""A plaintext listener beside a TLS one: each client is told the addresses of the
listener it came in on (metadata, coordinators), so a TLS client stays on TLS and a
plaintext one on plaintext, through a group and a broker restart."""

from __future__ import annotations

import asyncio
import select
import subprocess
import sys
from pathlib import Path

import pytest
from peers.tls import TlsFiles

import pykaf
from pykaf.broker import Cluster

GROUP = {"session_timeout": 6.0, "heartbeat_interval": 0.5, "retry_backoff": 0.02}


def two_listeners(files: TlsFiles) -> Cluster:
    return Cluster(
        2,
        security_protocol="SSL",
        ssl_certfile=files.main.server_cert,
        ssl_keyfile=files.main.server_key,
        extra_listeners=["PLAINTEXT"],
    )


async def test_each_client_is_told_its_own_listener(tls_files: TlsFiles) -> None:
    async with asyncio.timeout(30), two_listeners(tls_files) as cluster:
        assert cluster.listeners == ("SSL", "PLAINTEXT")
        plain_bootstrap = cluster.bootstrap_for("plaintext")
        assert plain_bootstrap != cluster.bootstrap
        async with (
            pykaf.AsyncClient(cluster.bootstrap, ssl_cafile=tls_files.main.ca_cert) as tls,
            pykaf.AsyncClient(plain_bootstrap) as plain,
        ):
            tls_ports = {b.port for b in (await tls.metadata()).brokers.values()}
            plain_ports = {b.port for b in (await plain.metadata()).brokers.values()}
        assert tls_ports == {b.port for b in cluster.brokers}
        assert plain_ports == {int(a.rsplit(":", 1)[1]) for a in plain_bootstrap.split(",")}
        # A broker restarted by fault injection comes back on both of its ports.
        await cluster.faults.broker_down(2)
        await cluster.faults.broker_up(2)
        assert cluster.bootstrap_for("PLAINTEXT") == plain_bootstrap
        with pytest.raises(ValueError, match="no 'SASL_SSL' listener"):
            cluster.bootstrap_for("SASL_SSL")


async def test_group_on_each_listener(tls_files: TlsFiles) -> None:
    async with asyncio.timeout(60), two_listeners(tls_files) as cluster:
        await cluster.create_topic("both", 2)
        tls = {"ssl_cafile": tls_files.main.ca_cert}
        for bootstrap, options in (
            (cluster.bootstrap, tls),
            (cluster.bootstrap_for("PLAINTEXT"), {}),
        ):
            async with pykaf.AsyncProducer(bootstrap, **options) as producer:
                for i in range(20):
                    await producer.send("both", f"{bootstrap}-{i}".encode())
        seen: dict[str, list[bytes]] = {}
        for name, bootstrap, options in (
            ("tls", cluster.bootstrap, tls),
            ("plain", cluster.bootstrap_for("PLAINTEXT"), {}),
        ):
            async with pykaf.AsyncConsumer(
                bootstrap,
                group_id=f"group-{name}",  # the coordinator is found through the listener
                topics=["both"],
                auto_offset_reset="earliest",
                **GROUP,
                **options,
            ) as consumer:
                got: list[bytes] = []
                for _ in range(50):  # bounded
                    got += [r.value for r in await consumer.poll(timeout=1.0)]
                    if len(got) >= 40:
                        break
                await consumer.commit()
                seen[name] = sorted(got)
        assert seen["tls"] == seen["plain"]
        assert len(seen["tls"]) == 40


def test_bad_listeners_are_refused(tls_files: TlsFiles) -> None:
    main = tls_files.main
    with pytest.raises(ValueError, match="one listener per security protocol"):
        Cluster(1, extra_listeners=["PLAINTEXT"])
    with pytest.raises(ValueError, match="needs ssl_certfile"):
        Cluster(1, extra_listeners=["SSL"])
    with pytest.raises(ValueError, match="port 70000"):
        Cluster(
            1,
            security_protocol="SSL",
            ssl_certfile=main.server_cert,
            ssl_keyfile=main.server_key,
            extra_listeners=[("PLAINTEXT", 70000)],
        )


def test_standalone_prints_each_listener(tls_files: TlsFiles, tmp_path: Path) -> None:
    main = tls_files.main
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "pykaf.broker", "--port", "0", "--brokers", "2"),
            *("--listener", "SSL", "--ssl-certfile", str(main.server_cert)),
            *("--ssl-keyfile", str(main.server_key)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "no addresses printed within 20 s"
        plain = proc.stdout.readline().strip()
        ssl_line = proc.stdout.readline().strip()
        assert ssl_line.startswith("SSL="), (plain, ssl_line)
        with pykaf.Client(
            ssl_line.removeprefix("SSL="), ssl_cafile=main.ca_cert, request_timeout=10
        ) as client:
            assert len(client.metadata().brokers) == 2
        with pykaf.Client(plain, request_timeout=10) as client:
            assert len(client.metadata().brokers) == 2
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
