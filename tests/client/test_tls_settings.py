"""TLS client settings: the context is built once from the files, every mistake is refused
with a message naming what to fix, and the key's password never shows."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from peers.tls import CLIENT_KEY_PASSWORD, TlsFiles

from pykaf._client._settings import ClientSettings
from pykaf._consumer._settings import ConsumerSettings
from pykaf._producer._settings import ProducerSettings


def test_plaintext_by_default_and_ssl_when_files_are_given(tls_files: TlsFiles) -> None:
    assert ClientSettings().security_protocol == "PLAINTEXT"
    assert ClientSettings().tls is None
    settings = ClientSettings(ssl_cafile=tls_files.main.ca_cert)
    assert settings.security_protocol == "SSL"
    assert isinstance(settings.tls, ssl.SSLContext)
    assert settings.tls.check_hostname
    assert settings.tls.verify_mode == ssl.CERT_REQUIRED
    # The system's CAs when no file is given: what managed clusters need.
    assert ClientSettings(security_protocol="ssl").tls is not None
    context = ssl.create_default_context()
    given = ClientSettings(ssl_context=context)
    assert given.security_protocol == "SSL"
    assert given.tls is context


def test_client_certificate_and_encrypted_key(tls_files: TlsFiles) -> None:
    enc = tls_files.encrypted
    settings = ClientSettings(
        ssl_cafile=enc.ca_cert,
        ssl_certfile=enc.client_cert,
        ssl_keyfile=enc.client_key,
        ssl_password=CLIENT_KEY_PASSWORD,
    )
    assert settings.tls is not None
    with pytest.raises(ValueError, match="ssl_password") as info:
        ClientSettings(
            ssl_certfile=enc.client_cert, ssl_keyfile=enc.client_key, ssl_password="wrong"
        )
    assert "wrong" not in str(info.value)


def test_password_never_in_repr(tls_files: TlsFiles) -> None:
    enc = tls_files.encrypted
    settings = ClientSettings(
        ssl_certfile=enc.client_cert, ssl_keyfile=enc.client_key, ssl_password=CLIENT_KEY_PASSWORD
    )
    assert CLIENT_KEY_PASSWORD not in repr(settings)
    assert CLIENT_KEY_PASSWORD not in str(settings)
    producer = ProducerSettings.from_options(
        {
            "ssl_certfile": enc.client_cert,
            "ssl_keyfile": enc.client_key,
            "ssl_password": CLIENT_KEY_PASSWORD,
        }
    )
    assert CLIENT_KEY_PASSWORD not in repr(producer)
    assert producer.client.tls is not None


def test_producer_and_consumer_forward_the_tls_settings(tls_files: TlsFiles) -> None:
    options = {"security_protocol": "SSL", "ssl_cafile": str(tls_files.main.ca_cert)}
    for settings in (
        ProducerSettings.from_options(options),
        ConsumerSettings.from_options(options),
    ):
        assert settings.client.security_protocol == "SSL"
        assert settings.client.tls is not None
    with pytest.raises(TypeError, match="unknown client setting 'tls'"):
        ClientSettings.from_options({"tls": None})


def _refused(message: str, **options: object) -> None:
    with pytest.raises(ValueError, match=message):
        ClientSettings(**options)  # type: ignore[arg-type]


def test_mistakes_are_refused_with_what_to_fix(tls_files: TlsFiles, tmp_path: Path) -> None:
    main = tls_files.main
    _refused("security_protocol must be one of PLAINTEXT, SSL", security_protocol="TLS")
    _refused(
        "security_protocol='SASL_PLAINTEXT' with ssl_cafile: TLS settings need"
        " security_protocol='SASL_SSL'",
        security_protocol="SASL_PLAINTEXT",
        ssl_cafile=main.ca_cert,
    )
    _refused("ssl_cafile: no such file", ssl_cafile=tmp_path / "missing.pem")
    _refused("ssl_cafile .* holds no usable CA certificate", ssl_cafile=main.client_key)
    _refused("ssl_keyfile needs ssl_certfile", ssl_keyfile=main.client_key)
    _refused("ssl_password needs ssl_certfile", ssl_password="x")
    _refused(
        "cannot be loaded .*belong together",
        ssl_certfile=main.client_cert,
        ssl_keyfile=main.server_key,
    )
    _refused(
        "ssl_context and ssl_cafile were both given",
        ssl_context=ssl.create_default_context(),
        ssl_cafile=main.ca_cert,
    )
    _refused(
        "ssl_context and ssl_check_hostname=False",
        ssl_context=ssl.create_default_context(),
        ssl_check_hostname=False,
    )
    _refused(
        "security_protocol='PLAINTEXT' with ssl_cafile: TLS settings need security_protocol='SSL'",
        security_protocol="PLAINTEXT",
        ssl_cafile=main.ca_cert,
    )
    _refused("ssl_cafile must be a path", ssl_cafile=42)
    _refused("ssl_check_hostname must be True or False", ssl_check_hostname="no")


def test_hostname_check_can_be_turned_off(tls_files: TlsFiles) -> None:
    settings = ClientSettings(ssl_cafile=tls_files.main.ca_cert, ssl_check_hostname=False)
    assert settings.tls is not None
    assert not settings.tls.check_hostname
    assert settings.tls.verify_mode == ssl.CERT_REQUIRED  # the chain is still checked
