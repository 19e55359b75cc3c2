"""The raw client over TLS against the embedded broker, and every way TLS can be wrong:
each refused with a typed error naming the cause and what to fix, within a bounded time,
and shown at WARNING once per episode."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from peers.tls import CLIENT_KEY_PASSWORD, TlsFiles

from pykaf._client._async_client import AsyncClient
from pykaf._producer._async_producer import AsyncProducer
from pykaf.broker import Cluster
from pykaf.errors import (
    BrokerConnectionError,
    NoBrokersError,
    SecurityProtocolMismatchError,
    TlsCertificateError,
    TlsError,
    TlsHostnameMismatchError,
)

LIMIT = 20.0
FAST = {"request_timeout": 1.5, "reconnect_backoff": 0.01, "reconnect_backoff_max": 0.05}


def tls_cluster(files: TlsFiles, *, mutual: bool = False, other_host: bool = False) -> Cluster:
    certs = files.other if other_host else files.main
    return Cluster(
        1,
        security_protocol="SSL",
        ssl_certfile=certs.server_cert,
        ssl_keyfile=certs.server_key,
        ssl_cafile=files.main.ca_cert if mutual else None,
    )


@pytest_asyncio.fixture
async def tls(tls_files: TlsFiles) -> AsyncIterator[Cluster]:
    async with tls_cluster(tls_files) as cluster:
        yield cluster


async def test_raw_client_over_tls(tls: Cluster, tls_files: TlsFiles) -> None:
    async with (
        asyncio.timeout(LIMIT),
        AsyncClient(tls.bootstrap, ssl_cafile=tls_files.main.ca_cert) as client,
    ):
        metadata = await client.metadata()
        assert [b.port for b in metadata.brokers.values()] == [tls.brokers[0].port]
        versions = await client.api_versions()
        assert versions


async def test_a_ready_ssl_context_is_used(tls: Cluster, tls_files: TlsFiles) -> None:
    context = ssl.create_default_context(cafile=str(tls_files.main.ca_cert))
    async with asyncio.timeout(LIMIT), AsyncClient(tls.bootstrap, ssl_context=context) as client:
        assert (await client.metadata()).brokers


async def test_mutual_tls_with_a_client_certificate(tls_files: TlsFiles) -> None:
    enc = tls_files.encrypted  # signed by another CA than main's: refused by this broker
    main = tls_files.main
    async with asyncio.timeout(LIMIT), tls_cluster(tls_files, mutual=True) as cluster:
        async with AsyncClient(
            cluster.bootstrap,
            ssl_cafile=main.ca_cert,
            ssl_certfile=main.client_cert,
            ssl_keyfile=main.client_key,
        ) as client:
            assert (await client.metadata()).brokers
        # Without a certificate, or with one from a CA the broker does not trust: the
        # broker hangs up; the error says what it may want.
        for extra in (
            {},
            {
                "ssl_certfile": enc.client_cert,
                "ssl_keyfile": enc.client_key,
                "ssl_password": CLIENT_KEY_PASSWORD,
            },
        ):
            async with AsyncClient(
                cluster.bootstrap, ssl_cafile=main.ca_cert, **FAST, **extra
            ) as client:
                with pytest.raises(BrokerConnectionError, match="require a client certificate"):
                    await client.metadata()


async def test_untrusted_certificate_is_refused_at_once(tls: Cluster, tls_files: TlsFiles) -> None:
    async with (
        asyncio.timeout(LIMIT),
        AsyncClient(
            tls.bootstrap, ssl_cafile=tls_files.other.ca_cert, request_timeout=30.0
        ) as client,
    ):
        with pytest.raises(TlsCertificateError, match=r"not trusted.*ssl_cafile") as info:
            await client.metadata()
        assert not isinstance(info.value, TlsHostnameMismatchError)
        assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
        # Not retried until the request timeout (30 s; that would end in NoBrokersError):
        # a certificate does not fix itself.
        assert not info.value.retriable
        assert not isinstance(info.value, NoBrokersError)


async def test_hostname_mismatch_is_refused(tls_files: TlsFiles) -> None:
    # The certificate is from a trusted CA but names other.invalid, not 127.0.0.1.
    async with asyncio.timeout(LIMIT), tls_cluster(tls_files, other_host=True) as cluster:
        async with AsyncClient(
            cluster.bootstrap, ssl_cafile=tls_files.other.ca_cert, request_timeout=30.0
        ) as client:
            with pytest.raises(TlsHostnameMismatchError, match=r"not valid for 127\.0\.0\.1"):
                await client.metadata()
        async with AsyncClient(
            cluster.bootstrap, ssl_cafile=tls_files.other.ca_cert, ssl_check_hostname=False
        ) as client:
            assert (await client.metadata()).brokers


async def test_tls_client_at_a_plaintext_listener(tls_files: TlsFiles) -> None:
    async with (
        asyncio.timeout(LIMIT),
        Cluster(1) as plain,
        AsyncClient(plain.bootstrap, ssl_cafile=tls_files.main.ca_cert, **FAST) as client,
    ):
        with pytest.raises(NoBrokersError, match="is this the PLAINTEXT listener"):
            await client.metadata()


async def test_plaintext_client_at_a_tls_listener(tls: Cluster) -> None:
    # The embedded broker answers plaintext with Kafka's TLS alert, so the mistake is
    # named at once (before, it hung up silently and the client could only guess).
    async with asyncio.timeout(LIMIT), AsyncClient(tls.bootstrap, **FAST) as client:
        with pytest.raises(SecurityProtocolMismatchError, match="is this a TLS port"):
            await client.metadata()


async def test_the_tls_listener_answers_plaintext_with_kafkas_alert(
    tls: Cluster, tls_files: TlsFiles
) -> None:
    host, port = tls.bootstrap.split(",")[0].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"\x00\x00\x00\x10" + b"\x00" * 16)  # a Kafka frame, not TLS
        async with asyncio.timeout(LIMIT):
            assert await reader.read() == _UNEXPECTED_MESSAGE_ALERT  # then the close
    finally:
        writer.close()
    # The listener still serves TLS clients.
    async with (
        asyncio.timeout(LIMIT),
        AsyncClient(tls.bootstrap, ssl_cafile=tls_files.main.ca_cert) as client,
    ):
        assert (await client.metadata()).brokers


async def test_tls_failure_warns_once_per_episode_with_its_cause(
    tls: Cluster, tls_files: TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pykaf.client")
    async with (
        asyncio.timeout(LIMIT),
        AsyncClient(tls.bootstrap, ssl_cafile=tls_files.other.ca_cert, **FAST) as client,
    ):
        for _ in range(3):
            with pytest.raises(TlsCertificateError):
                await client.metadata()
    unreachable = [r.getMessage() for r in caplog.records if "is unreachable" in r.getMessage()]
    assert len(unreachable) == 1, unreachable
    assert "(TLS certificate refused)" in unreachable[0]
    assert "ssl_cafile" in unreachable[0]


# -- a Kafka-like TLS listener --------------------------------------------------------------
# Kafka's listener (Java's SSLEngine) answers bytes that are not TLS with an
# unexpected_message alert and flushes its alerts before hanging up. The embedded broker
# sends that alert for non-TLS bytes, but asyncio's TLS layer sends none when a handshake
# fails (a client certificate refused). This one does what Kafka does: a blocking ssl
# socket flushes its alerts, and non-TLS bytes get Java's alert.
_UNEXPECTED_MESSAGE_ALERT = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x0A])


@contextlib.contextmanager
def alerting_tls_listener(files: TlsFiles, *, mutual: bool) -> Iterator[str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.main.server_cert, files.main.server_key)
    if mutual:
        context.load_verify_locations(files.main.ca_cert)
        context.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        for _ in range(200):  # bounded: at most this many connections or 40 s
            if stop.is_set():
                return
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            sock.settimeout(2.0)
            with sock:
                try:
                    if sock.recv(1, socket.MSG_PEEK) != b"\x16":  # not a TLS handshake
                        sock.sendall(_UNEXPECTED_MESSAGE_ALERT)
                        raise ssl.SSLError("not TLS")
                    tls_sock = context.wrap_socket(sock, server_side=True)
                    tls_sock.recv(4)
                except (ssl.SSLError, OSError):
                    pass  # the alert went out; let the client read it before the close
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                    sock.recv(65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=10)
        listener.close()


async def test_plaintext_client_reads_a_tls_alert_as_a_mismatch(tls_files: TlsFiles) -> None:
    with alerting_tls_listener(tls_files, mutual=False) as address:
        async with asyncio.timeout(LIMIT), AsyncClient(address, request_timeout=30.0) as client:
            with pytest.raises(SecurityProtocolMismatchError, match="is this a TLS port"):
                await client.metadata()


async def test_refused_client_certificate_is_named(tls_files: TlsFiles) -> None:
    with alerting_tls_listener(tls_files, mutual=True) as address:
        async with (
            asyncio.timeout(LIMIT),
            AsyncClient(address, ssl_cafile=tls_files.main.ca_cert, request_timeout=30.0) as c,
        ):
            with pytest.raises(TlsCertificateError, match="refused the client's TLS certificate"):
                await c.metadata()


async def test_tls_client_reading_plaintext_names_the_listener(tmp_path: Path) -> None:
    # A plaintext service that answers anything (an HTTP server, say) is "wrong version".
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            await reader.read(100)
            writer.write(b"HTTP/1.0 400 Bad Request\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with (
            asyncio.timeout(LIMIT),
            AsyncClient(
                f"127.0.0.1:{port}", security_protocol="SSL", request_timeout=30.0
            ) as client,
        ):
            with pytest.raises(SecurityProtocolMismatchError, match="answered TLS with plaintext"):
                await client.metadata()
    finally:
        server.close()
    assert issubclass(SecurityProtocolMismatchError, TlsError)


async def test_a_producer_facing_an_untrusted_certificate_fails_at_once(
    tls: Cluster, tls_files: TlsFiles
) -> None:
    # Like a refused SASL password: waiting max_block (60 s here) cannot make the
    # broker's certificate trusted, so the producer's first send says so now.
    async with asyncio.timeout(LIMIT):
        with pytest.raises(TlsCertificateError, match="not trusted"):
            async with AsyncProducer(
                tls.bootstrap,
                ssl_cafile=tls_files.other.ca_cert,
                request_timeout=30.0,
                max_block=60.0,
                delivery_timeout=120.0,
            ) as producer:
                await producer.produce("t", b"v")
