"""``pykaf gateway --tls-cert/--tls-key/--tls-ca``: HTTPS, and a client certificate as
the credentials (the server fills the ASGI TLS extension for the app to read)."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import httpx
import pytest
from _processes import BrokerProcess, GatewayProcess, create_topic, free_port
from peers.tls import TlsFiles


def _context(tls_files: TlsFiles, *, with_cert: bool) -> ssl.SSLContext:
    files = tls_files.main
    context = ssl.create_default_context(cafile=str(files.ca_cert))
    if with_cert:
        context.load_cert_chain(str(files.client_cert), str(files.client_key))
    return context


def test_https_with_client_certificates_as_credentials(tls_files: TlsFiles, tmp_path: Path) -> None:
    files = tls_files.main
    broker = BrokerProcess.start(tmp_path / "data", free_port(), tmp_path / "broker.log")
    config = tmp_path / "gateway.toml"
    config.write_text("[security]\nclient_cert = true\n")
    try:
        create_topic(broker.bootstrap, "events", 1)
        gateway = GatewayProcess.start(
            [
                *("--config", str(config), "-b", broker.bootstrap, "--port", "0"),
                *("--tls-cert", str(files.server_cert), "--tls-key", str(files.server_key)),
                *("--tls-ca", str(files.ca_cert)),
            ],
            tmp_path / "gateway.log",
        )
        try:
            assert gateway.url.startswith("https://127.0.0.1:")
            with httpx.Client(verify=_context(tls_files, with_cert=True), timeout=30) as http:
                assert http.post(f"{gateway.url}/sync/events", content=b"x").status_code == 200
            with httpx.Client(verify=_context(tls_files, with_cert=False), timeout=30) as http:
                refused = http.post(f"{gateway.url}/sync/events", content=b"x")
                assert refused.status_code == 401
                assert http.get(f"{gateway.url}/healthz").status_code == 200  # public
            with pytest.raises(httpx.TransportError):  # plain HTTP to an HTTPS port
                httpx.get(gateway.url.replace("https", "http") + "/healthz", timeout=10)
        finally:
            assert gateway.terminate() == 0
    finally:
        broker.kill()
    lines = [json.loads(line) for line in gateway.log.read_text().splitlines() if line[:1] == "{"]
    principals = [line["principal"] for line in lines if line["path"] == "/sync/events"]
    assert principals[0] is not None  # the certificate's subject
    assert principals[1] is None


def test_required_client_certificates_refuse_the_handshake_without_one(
    tls_files: TlsFiles, tmp_path: Path
) -> None:
    files = tls_files.main
    gateway = GatewayProcess.start(
        [
            *("-b", "127.0.0.1:1", "--port", "0"),
            *("--tls-cert", str(files.server_cert), "--tls-key", str(files.server_key)),
            *("--tls-ca", str(files.ca_cert), "--tls-require-client-cert"),
        ],
        tmp_path / "gateway.log",
    )
    try:
        without = httpx.Client(verify=_context(tls_files, with_cert=False), timeout=10)
        with without, pytest.raises(httpx.TransportError):
            without.get(f"{gateway.url}/healthz")
        with httpx.Client(verify=_context(tls_files, with_cert=True), timeout=30) as http:
            assert http.get(f"{gateway.url}/healthz").status_code == 503  # no Kafka there
    finally:
        assert gateway.terminate() == 0
