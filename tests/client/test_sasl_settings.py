"""SASL client settings: Kafka's names, forwarded by the producer and consumer, every
mistake refused with what to fix, and the password never shown."""

from __future__ import annotations

import pytest
from peers.tls import TlsFiles

from pykaf._client._settings import ClientSettings
from pykaf._consumer._settings import ConsumerSettings
from pykaf._producer._settings import ProducerSettings

SECRET = "s3cret-never-shown"


def _token() -> tuple[str, float]:
    return "token", 4_102_444_800.0


def test_sasl_protocols_and_mechanisms_are_accepted(tls_files: TlsFiles) -> None:
    plain = ClientSettings(
        security_protocol="SASL_PLAINTEXT", sasl_username="alice", sasl_password=SECRET
    )
    assert plain.security_protocol == "SASL_PLAINTEXT"
    assert plain.sasl_mechanism == "PLAIN"  # Kafka's default
    assert plain.tls is None
    scram = ClientSettings(
        security_protocol="sasl_ssl",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="alice",
        sasl_password=SECRET,
        ssl_cafile=tls_files.main.ca_cert,
    )
    assert scram.security_protocol == "SASL_SSL"
    assert scram.tls is not None  # SASL_SSL builds the TLS context as SSL does
    oauth = ClientSettings(
        security_protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER", sasl_oauth_token_provider=_token
    )
    assert oauth.tls is not None


def test_password_never_in_repr() -> None:
    options = {"security_protocol": "SASL_SSL", "sasl_username": "alice", "sasl_password": SECRET}
    for settings in (
        ClientSettings(**options),  # type: ignore[arg-type]
        ProducerSettings.from_options(options),
        ConsumerSettings.from_options(options),
    ):
        assert SECRET not in repr(settings)
        assert SECRET not in str(settings)
        assert "alice" in repr(settings)


def test_producer_and_consumer_forward_the_sasl_settings() -> None:
    options = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_username": "alice",
        "sasl_password": SECRET,
    }
    for settings in (
        ProducerSettings.from_options(options),
        ConsumerSettings.from_options(options),
    ):
        assert settings.client.sasl_mechanism == "SCRAM-SHA-256"
        assert settings.client.sasl_password == SECRET


def _refused(message: str, **options: object) -> None:
    with pytest.raises(ValueError, match=message) as info:
        ClientSettings(**options)  # type: ignore[arg-type]
    assert SECRET not in str(info.value)


def test_mistakes_are_refused_with_what_to_fix(tls_files: TlsFiles) -> None:
    _refused(
        "security_protocol='SASL_PLAINTEXT' with sasl_mechanism='PLAIN' needs sasl_username"
        " and sasl_password",
        security_protocol="SASL_PLAINTEXT",
    )
    _refused(
        "needs sasl_password",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="alice",
    )
    _refused(
        "sasl_mechanism must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER, not"
        " 'scram-sha-256' \\(did you mean 'SCRAM-SHA-256'\\?\\)",
        security_protocol="SASL_SSL",
        sasl_mechanism="scram-sha-256",
    )
    _refused("sasl_mechanism must be one of", sasl_mechanism="GSSAPI")
    _refused(
        "sasl_username, sasl_password given with security_protocol='PLAINTEXT': SASL needs"
        " security_protocol='SASL_SSL' \\(or 'SASL_PLAINTEXT'\\)",
        sasl_username="alice",
        sasl_password=SECRET,
    )
    _refused(
        "sasl_password given with security_protocol='SSL': SASL needs security_protocol='SASL_SSL'",
        ssl_cafile=tls_files.main.ca_cert,
        sasl_password=SECRET,
    )
    _refused(
        "sasl_mechanism='OAUTHBEARER' needs sasl_oauth_token_provider",
        security_protocol="SASL_SSL",
        sasl_mechanism="OAUTHBEARER",
    )
    _refused(
        "OAUTHBEARER' authenticates with the token alone",
        security_protocol="SASL_SSL",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauth_token_provider=_token,
        sasl_password=SECRET,
    )
    _refused(
        "sasl_oauth_token_provider is for sasl_mechanism='OAUTHBEARER'",
        security_protocol="SASL_SSL",
        sasl_username="alice",
        sasl_password=SECRET,
        sasl_oauth_token_provider=_token,
    )
    _refused(
        "sasl_oauth_token_provider must be a callable",
        security_protocol="SASL_SSL",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauth_token_provider="token",
    )
    _refused("sasl_password must be a non-empty str", security_protocol="SASL_SSL", sasl_password=1)
    _refused("sasl_username must be a non-empty str", sasl_username="")
