"""``pykaf certs DIR``: a CA, a server certificate for the hosts asked, a client
certificate; keys readable by their owner only; usable by ssl as they are."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest

from pykaf.cli import main

pytest.importorskip("cryptography")


def test_certs_writes_a_usable_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "certs"
    assert main(["certs", str(out), "--host", "broker.test", "--host", "10.1.2.3"]) == 0
    assert "--ssl-certfile" in capsys.readouterr().out
    names = {"ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key"}
    assert {p.name for p in out.iterdir()} == names
    for key in ("ca.key", "server.key", "client.key"):
        assert stat.S_IMODE((out / key).stat().st_mode) == 0o600
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(out / "server.pem", out / "server.key")
    client = ssl.create_default_context(cafile=str(out / "ca.pem"))
    client.load_cert_chain(out / "client.pem", out / "client.key")
    server.load_verify_locations(out / "ca.pem")
    server.verify_mode = ssl.CERT_REQUIRED
    # An in-memory handshake: the server certificate names the hosts asked for, and each
    # side trusts the other's certificate.
    for host, ok in (("broker.test", True), ("10.1.2.3", True), ("localhost", False)):
        assert _handshake(client, server, host) == ok


def test_certs_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["certs", str(tmp_path), "--days", "0"]) == 1
    assert "days must be" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["certs", str(tmp_path), "--client-key-password-env", "PYKAF_TEST_UNSET_VAR"])


def _handshake(client: ssl.SSLContext, server: ssl.SSLContext, host: str) -> bool:
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_hostname=host)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    c_done = s_done = False
    for _ in range(10):  # a TLS 1.3 handshake takes two or three flights
        for obj, done in ((c, c_done), (s, s_done)):
            if done:
                continue
            try:
                obj.do_handshake()
                if obj is c:
                    c_done = True
                else:
                    s_done = True
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError:
                return False
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if c_done and s_done:
            # TLS 1.3: the server checks the client certificate after the client is done.
            try:
                s.read(1)
            except ssl.SSLWantReadError:
                return True
            except ssl.SSLError:
                return False
    return False
