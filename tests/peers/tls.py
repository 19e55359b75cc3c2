"""TLS material for tests: a throwaway CA with server and client certificates, made once
per session (``pykaf certs`` writes the same files), and a second, unrelated set whose CA
the first does not trust and whose server certificate names another host."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pykaf.cli._certs import CertificateFiles, write_certificates

__all__ = ["TlsFiles", "tls_files"]

CLIENT_KEY_PASSWORD = "test-client-key-password"


@dataclass(frozen=True)
class TlsFiles:
    #: CA, server certificate for localhost/127.0.0.1, client certificate.
    main: CertificateFiles
    #: Another CA; its server certificate is for other.invalid only.
    other: CertificateFiles
    #: main's CA again, with the client key encrypted with CLIENT_KEY_PASSWORD.
    encrypted: CertificateFiles


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    pytest.importorskip("cryptography")
    base = tmp_path_factory.mktemp("tls")
    return TlsFiles(
        main=write_certificates(base / "main"),
        other=write_certificates(base / "other", hosts=["other.invalid"]),
        encrypted=write_certificates(base / "encrypted", client_key_password=CLIENT_KEY_PASSWORD),
    )
