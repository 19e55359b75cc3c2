"""Through a real uvicorn server on 127.0.0.1 (both of its HTTP parsers, with the
gateway's protocol from ``uvicorn_options``): client-certificate authentication over TLS,
and the limits only the server can enforce (head size, slow heads)."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from test_kafboy import read_all
from test_security import FAST

from pykaf.broker import BlockingCluster
from pykaf.gateway import (
    Gateway,
    GatewaySettings,
    LimitSettings,
    SecuritySettings,
    create_app,
    uvicorn_options,
)

PARSERS = ["httptools", "h11"]


@contextmanager
def uvicorn_serving(app: Any, **options: Any) -> Iterator[str]:
    """``app`` on a uvicorn server in a thread, on a free port: its base URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False, **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started, "uvicorn did not start within 20 s"
        yield f"{'https' if options.get('ssl_certfile') else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)
        listener.close()
        assert not thread.is_alive(), "uvicorn did not stop within 20 s"


@contextmanager
def served(
    kafka: BlockingCluster,
    parser: str,
    security: SecuritySettings | None = None,
    limits: LimitSettings | None = None,
) -> Iterator[tuple[str, Gateway]]:
    """The gateway on a uvicorn server, served as ``uvicorn_options`` says: (URL, app)."""
    security = security or SecuritySettings()
    app = create_app(
        GatewaySettings(
            bootstrap=kafka.bootstrap,
            producer_options=FAST,
            security=security,
            limits=limits or LimitSettings(),
        )
    )
    with uvicorn_serving(app, **uvicorn_options(security, app.limits, parser=parser)) as url:  # type: ignore[arg-type]
        yield url, app


def tls_security(files: Any, **extra: Any) -> SecuritySettings:
    return SecuritySettings(
        client_cert=True,
        tls_certfile=str(files.server_cert),
        tls_keyfile=str(files.server_key),
        tls_ca_certs=str(files.ca_cert),
        **extra,
    )


def client_context(files: Any, *, client: Any = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(files.ca_cert))
    if client is not None:
        context.load_cert_chain(str(client.client_cert), str(client.client_key))
    return context


@pytest.mark.parametrize("parser", PARSERS)
def test_a_client_certificate_names_the_principal(
    kafka: BlockingCluster, tls_files: Any, parser: str
) -> None:
    files = tls_files.main
    security = tls_security(
        files,
        principal_header="x-principal",
        permissions={"pykaf client": {"events": ["produce"]}},
    )
    with served(kafka, parser, security) as (url, _):
        with_cert = client_context(files, client=files)
        with httpx.Client(base_url=url, verify=with_cert) as http:
            answer = http.post("/sync/events?partition=2", content=b"by certificate")
            assert answer.status_code == 200, answer.text
            for_a_proxy = {"Authorization": "Negotiate c29tZXRoaW5nIGVsc2U="}
            also = http.post("/async/events", content=b"x", headers=for_a_proxy)
            assert also.status_code == 202  # a scheme not configured: the certificate decides
            forbidden = http.post("/async/other", content=b"x")
            assert forbidden.status_code == 403
            assert "'pykaf client' may not produce to topic 'other'" in forbidden.text
        with httpx.Client(base_url=url, verify=client_context(files)) as http:
            anonymous = http.post("/async/events", content=b"x")
            assert anonymous.status_code == 401
            assert anonymous.json()["message"].endswith("send a client certificate")
            assert (
                anonymous.headers["www-authenticate"] == 'ClientCertificate realm="pykaf gateway"'
            )
    for _, record in read_all(kafka, "events", 2):
        assert list(record.headers) == [("x-principal", b"pykaf client")]


def test_mapped_certificates_only_and_a_stranger_ca_fails_the_handshake(
    kafka: BlockingCluster, tls_files: Any
) -> None:
    files = tls_files.main
    mapped = tls_security(files, client_cert_principals={"pykaf client": "svc-a"})
    unmapped = tls_security(files, client_cert_principals={"CN=someone else": "svc-b"})
    forbidding = {"permissions": {"svc-a": {"*": ["describe"]}}}
    with served(kafka, "auto", SecuritySettings(**{**vars(mapped), **forbidding})) as (url, _):
        with httpx.Client(base_url=url, verify=client_context(files, client=files)) as http:
            answer = http.post("/async/events", content=b"x")
            assert answer.status_code == 403
            assert "principal 'svc-a' may not produce" in answer.text
        # A certificate from a CA the server does not trust: no TLS session at all.
        stranger = client_context(files, client=tls_files.other)
        with (
            httpx.Client(base_url=url, verify=stranger) as http,
            pytest.raises(httpx.TransportError),
        ):
            http.post("/async/events", content=b"x")
    with (
        served(kafka, "auto", unmapped) as (url, _),
        httpx.Client(base_url=url, verify=client_context(files, client=files)) as http,
    ):
        assert http.post("/async/events", content=b"x").status_code == 401


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (bounded by the socket timeout)."""
    parts = []
    while chunk := sock.recv(65536):
        parts.append(chunk)
    return b"".join(parts)


@pytest.mark.parametrize("parser", PARSERS)
def test_a_request_head_past_max_header_bytes_is_431(kafka: BlockingCluster, parser: str) -> None:
    limits = LimitSettings(max_header_bytes=2048)
    with served(kafka, parser, limits=limits) as (url, app):
        with httpx.Client(base_url=url) as http:
            fits = http.post("/async/events", content=b"x", headers={"X-Fits": "a" * 1500})
            assert fits.status_code == 202, fits.text
            large = http.post("/async/events", content=b"x", headers={"X-Large": "a" * 4000})
            assert large.status_code == 431
            assert large.json() == {
                "error_code": 431,
                "message": "the request head is larger than the gateway's limit of 2048 bytes",
            }
        port = int(url.rsplit(":", 1)[1])
        # A head that fits, sent in one write with a body past the limit: what arrived
        # with the head bounds it from above only; the head itself is what counts.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            body = b"b" * 8000
            sock.sendall(
                b"POST /async/events HTTP/1.1\r\nHost: x\r\nX-Fits: %s\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (b"a" * 1500, len(body), body)
            )
            assert read_answer(sock).startswith(b"HTTP/1.1 202 ")
        # A head that never ends: refused as it grows, not held whole in memory.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"POST /async/events HTTP/1.1\r\nHost: x\r\nX-Endless: ")
            for _ in range(8):
                try:
                    sock.sendall(b"a" * 1024)
                except OSError:
                    break  # already refused and closed
            assert read_answer(sock).startswith(b"HTTP/1.1 431 ")
        assert app.limits.rejected["header_too_large"] == 2


@pytest.mark.parametrize("parser", PARSERS)
def test_a_slow_or_missing_request_head_is_408(kafka: BlockingCluster, parser: str) -> None:
    limits = LimitSettings(header_timeout=0.3)
    with served(kafka, parser, limits=limits) as (url, app):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(b"POST /async/events HTTP/1.1\r\nHost: x\r\n")  # and no more
            answer = read_answer(slow)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"no complete request head within 0.3 s" in answer
        with socket.create_connection(("127.0.0.1", port), timeout=10) as silent:
            assert read_answer(silent).startswith(b"HTTP/1.1 408 ")
        with httpx.Client(base_url=url) as http:  # a prompt client is untouched
            assert http.post("/async/events", content=b"x").status_code == 202
        assert app.limits.rejected["slow_header"] == 2


@pytest.mark.parametrize("parser", PARSERS)
def test_any_asgi_app_gets_the_tls_extension(tls_files: Any, parser: str) -> None:
    seen: list[dict[str, Any]] = []

    async def recorder(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append(scope.get("extensions", {}).get("tls"))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    files = tls_files.main
    options = uvicorn_options(tls_security(files), LimitSettings(), parser=parser)  # type: ignore[arg-type]
    assert options["ssl_cert_reqs"] == ssl.CERT_OPTIONAL
    with uvicorn_serving(recorder, **options) as url:
        with httpx.Client(base_url=url, verify=client_context(files, client=files)) as http:
            assert http.get("/").status_code == 204
            assert http.get("/").status_code == 204  # the same connection, read once
        with httpx.Client(base_url=url, verify=client_context(files)) as http:
            assert http.get("/").status_code == 204
    with_cert, again, without_cert = seen
    assert with_cert is again
    assert with_cert["client_cert_name"] == "CN=pykaf client,O=pykaf throwaway"
    (pem,) = with_cert["client_cert_chain"]
    assert ssl.PEM_cert_to_DER_cert(pem) == ssl.PEM_cert_to_DER_cert(files.client_cert.read_text())
    assert with_cert["tls_version"] in (0x0303, 0x0304)
    assert without_cert["client_cert_name"] is None
    assert without_cert["client_cert_chain"] == []


def test_serving_options_follow_the_security_settings(tls_files: Any) -> None:
    plain = uvicorn_options(SecuritySettings(), LimitSettings(max_header_bytes=4096))
    assert plain["h11_max_incomplete_event_size"] == 4096
    assert "ssl_certfile" not in plain
    with pytest.raises(ValueError, match="client_cert needs TLS"):
        uvicorn_options(SecuritySettings(client_cert=True), LimitSettings())
    files = tls_files.main
    required = tls_security(files, tls_client_cert="required")
    assert uvicorn_options(required, LimitSettings())["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    with pytest.raises(ValueError, match="parser must be"):
        uvicorn_options(SecuritySettings(), LimitSettings(), parser="zttp")  # type: ignore[arg-type]
