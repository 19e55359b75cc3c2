"""OAUTHBEARER on the embedded broker, on the wire: Kafka's unsecured JWT validator by
default, a validator of one's own, expired and malformed tokens refused (and the broker
still serving), a session that ends with its token (KIP-368) and in-band
re-authentication on the same connection."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from _standalone import start_broker
from wire_client import WireClient

from pykaf.broker import BlockingCluster, UnsecuredJwtValidator, unsecured_token
from pykaf.broker._sasl_auth import BrokerUsers
from pykaf.protocol._sasl import sasl_client

LIMIT = 10.0


@pytest.fixture(scope="module")
def oauth_cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(
        1, security_protocol="SASL_PLAINTEXT", sasl_mechanisms=["OAUTHBEARER"]
    ) as running:
        yield running


def validated_by(validator: Any) -> BlockingCluster:
    """One broker whose OAUTHBEARER tokens ``validator`` judges."""
    return BlockingCluster(
        1,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanisms=["OAUTHBEARER"],
        oauth_validator=validator,
    )


def connect(cluster: BlockingCluster) -> WireClient:
    return WireClient(cluster.bootstrap)


def bearer(client: WireClient, token: str) -> Any:
    """SaslHandshake + SaslAuthenticate with ``token``; the last response."""
    assert client.request("SaslHandshake", 1, mechanism="OAUTHBEARER").error_code == 0
    machine = sasl_client("OAUTHBEARER", token=token)
    response = client.request("SaslAuthenticate", 2, auth_bytes=machine.initial())
    if response.error_code == 0 and response.auth_bytes:
        # A refusal document: the client answers \x01 and the broker fails the exchange.
        reply = machine.step(response.auth_bytes)
        response = client.request("SaslAuthenticate", 2, auth_bytes=reply or b"\x01")
    return response


def metadata(client: WireClient) -> Any:
    return client.request(
        "Metadata",
        12,
        topics=[],
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=False,
    )


def closed(client: WireClient) -> bool:
    try:
        metadata(client)
    except (ConnectionError, OSError, EOFError):
        return True
    return False


def test_an_unsecured_jwt_authenticates_and_the_session_ends_with_it(
    oauth_cluster: BlockingCluster,
) -> None:
    with connect(oauth_cluster) as client:
        response = bearer(client, unsecured_token("alice", 600))
        assert response.error_code == 0
        lifetime = response.session_lifetime.total_seconds()
        assert 590 < lifetime <= 600
        assert [b.node_id for b in metadata(client).brokers] == [1]


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (unsecured_token("alice", -30), "expired"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln", "unsigned JWT"),
        (unsecured_token("alice", 600).replace("eyJhbGciOiJub25lIn0", "e30"), "alg"),
        ("not-a-jwt", "unsigned JWT"),
    ],
    ids=["expired", "signed", "no-alg", "garbage"],
)
def test_a_bad_token_is_refused_with_its_reason_and_the_broker_still_serves(
    oauth_cluster: BlockingCluster, token: str, reason: str
) -> None:
    with connect(oauth_cluster) as client:
        response = bearer(client, token)
        assert response.error_code == 58  # SASL_AUTHENTICATION_FAILED
        assert reason in response.error_message
        assert token not in response.error_message
        assert closed(client)
    with connect(oauth_cluster) as client:
        assert bearer(client, unsecured_token("bob", 60)).error_code == 0


def test_a_request_after_the_session_ended_closes_the_connection() -> None:
    # The validator grants 0.3 s; the first request after that ends the connection.
    def short(token: str, extensions: Mapping[str, str]) -> tuple[str, float]:
        return "carol", time.time() + 0.3

    with (
        validated_by(short) as cluster,
        connect(cluster) as client,
    ):
        response = bearer(client, unsecured_token("ignored"))
        assert response.error_code == 0
        assert 0 < response.session_lifetime.total_seconds() <= 0.3
        deadline = time.monotonic() + LIMIT
        while not closed(client):  # bounded: the session lasts 0.3 s
            assert time.monotonic() < deadline, "the expired session still serves"


def test_in_band_re_authentication_renews_the_session_and_keeps_the_principal(
    oauth_cluster: BlockingCluster,
) -> None:
    with connect(oauth_cluster) as client:
        assert bearer(client, unsecured_token("alice", 5)).error_code == 0
        again = bearer(client, unsecured_token("alice", 900))
        assert again.error_code == 0
        assert again.session_lifetime.total_seconds() > 800
        assert not closed(client)
    with connect(oauth_cluster) as client:
        assert bearer(client, unsecured_token("alice", 5)).error_code == 0
        other = bearer(client, unsecured_token("mallory", 900))
        assert other.error_code == 58
        assert "not 'alice'" in other.error_message
        assert closed(client)


def test_a_session_without_an_end_refuses_a_second_handshake() -> None:
    def forever(token: str, extensions: Mapping[str, str]) -> str:
        return "dave"

    with (
        validated_by(forever) as cluster,
        connect(cluster) as client,
    ):
        response = bearer(client, unsecured_token("x"))
        assert response.error_code == 0
        assert response.session_lifetime.total_seconds() == 0
        handshake = client.request("SaslHandshake", 1, mechanism="OAUTHBEARER")
        assert handshake.error_code == 34  # ILLEGAL_SASL_STATE, as Kafka without reauth


def test_a_validator_sees_the_extensions_and_one_that_raises_is_a_refusal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[dict[str, str]] = []

    def picky(token: str, extensions: Mapping[str, str]) -> str | None:
        seen.append(dict(extensions))
        if token == "boom":
            raise RuntimeError("validator bug holding secret-xyz")
        return "erin" if token == "good" else None

    with validated_by(picky) as cluster:
        with connect(cluster) as client:
            assert client.request("SaslHandshake", 1, mechanism="OAUTHBEARER").error_code == 0
            machine = sasl_client("OAUTHBEARER", token="good", extensions={"tenant": "t1"})
            ok = client.request("SaslAuthenticate", 2, auth_bytes=machine.initial())
            assert ok.error_code == 0
        assert seen == [{"tenant": "t1"}]
        with caplog.at_level(logging.WARNING, "pykaf.broker"), connect(cluster) as client:
            assert bearer(client, "boom").error_code == 58
        assert "validator raised RuntimeError" in caplog.text
        assert "secret-xyz" not in caplog.text


def test_the_unsecured_validator_checks_claims_with_its_clock() -> None:
    now = 1_000_000.0
    validator = UnsecuredJwtValidator(clock_skew=5, clock=lambda: now)
    assert validator(unsecured_token("a", 10, now=now), {}) == ("a", now + 10)
    assert validator(unsecured_token("a", -3, now=now), {}) == ("a", now - 3)  # within skew
    assert validator(unsecured_token("a", -6, now=now), {}) is None
    assert validator.last_refusal == "the token expired 6s ago"
    assert validator(unsecured_token("a", 10, now=now + 60), {}) is None
    assert validator.last_refusal == "the token's 'iat' lies in the future"
    assert validator("x" * 70_000, {}) is None
    with pytest.raises(ValueError, match="principal"):
        unsecured_token("")


def test_oauthbearer_alone_needs_no_users_and_other_mechanisms_still_do() -> None:
    assert BrokerUsers(None, ["OAUTHBEARER"]).mechanisms == ("OAUTHBEARER",)
    with pytest.raises(ValueError, match="PLAIN needs users"):
        BrokerUsers(None, ["OAUTHBEARER", "PLAIN"])
    with pytest.raises(ValueError, match="without OAUTHBEARER"):
        BrokerUsers({"a": "b"}, ["PLAIN"], oauth_validator=lambda t, e: "x")


def test_the_standalone_broker_serves_oauthbearer_without_users(tmp_path: Path) -> None:
    broker = start_broker(
        tmp_path,
        brokers=1,
        args=("--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "OAUTHBEARER"),
    )
    try:
        with WireClient(broker.bootstrap) as client:
            assert bearer(client, unsecured_token("alice", 60)).error_code == 0
            assert [b.node_id for b in metadata(client).brokers] == [1]
        with WireClient(broker.bootstrap) as client:
            assert bearer(client, unsecured_token("alice", -1)).error_code == 58
    finally:
        assert broker.stop() == 0
