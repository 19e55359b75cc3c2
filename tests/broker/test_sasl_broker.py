"""The embedded broker's SASL listeners on the wire: handshake and authentication with the
protocol's own client state machines, and what happens before and after."""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from test_wire import one_batch, produce
from wire_client import WireClient

from pykaf.broker import BlockingCluster, Cluster
from pykaf.broker._sasl_auth import BrokerUsers
from pykaf.broker.cli import main as broker_main
from pykaf.protocol._sasl import sasl_client

PASSWORD = "s3cret-Pa55"
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


@pytest.fixture(scope="module")
def sasl_cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(
        1,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanisms=MECHANISMS,
        users={"alice": PASSWORD, "bob": "other-password"},
        extra_listeners=["PLAINTEXT"],
    ) as running:
        yield running


def authenticate(
    client: WireClient, mechanism: str, username: str = "alice", password: str = PASSWORD
) -> object:
    """Handshake and authenticate; the last SaslAuthenticate response."""
    handshake = client.request("SaslHandshake", 1, mechanism=mechanism)
    assert handshake.error_code == 0
    machine = sasl_client(mechanism, username=username, password=password)
    message: bytes | None = machine.initial()
    response = None
    for _ in range(4):  # SCRAM: two round trips; PLAIN: one
        assert message is not None
        response = client.request("SaslAuthenticate", 2, auth_bytes=message)
        if response.error_code:
            return response
        message = machine.step(response.auth_bytes)
        if machine.done:
            break
    assert machine.done
    return response


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_each_mechanism_authenticates_then_metadata_works(
    sasl_cluster: BlockingCluster, mechanism: str
) -> None:
    sasl_cluster.create_topic(f"after-{mechanism}", 1)
    with WireClient(sasl_cluster.bootstrap) as client:
        client.negotiate()
        response = authenticate(client, mechanism)
        assert response.error_code == 0  # type: ignore[attr-defined]
        assert response.session_lifetime.total_seconds() == 0  # type: ignore[attr-defined]
        metadata = metadata_request(client)
        assert [b.node_id for b in metadata.brokers] == [1]
        # The advertised address is the SASL listener's one.
        assert metadata.brokers[0].port == sasl_cluster.brokers[0].port
        # After authentication frames over 512 KiB are fine.
        assert produce(client, f"after-{mechanism}", one_batch(b"x" * 600 * 1024)).error_code == 0


def metadata_request(client: WireClient, version: int = 12, *, send_only: bool = False) -> Any:
    fields = {
        "include_topic_authorized_operations": False,
        "topics": [],
        "allow_auto_topic_creation": False,
    }
    if send_only:
        client.send("Metadata", version, **fields)
        return None
    return client.request("Metadata", version, **fields)


@pytest.mark.parametrize(
    ("mechanism", "username", "password"),
    [
        ("SCRAM-SHA-512", "alice", "wrong"),
        ("SCRAM-SHA-256", "mallory", PASSWORD),
        ("PLAIN", "alice", "wrong"),
        ("PLAIN", "nobody", "wrong"),
    ],
)
def test_failed_authentication_is_answered_then_closed(
    sasl_cluster: BlockingCluster,
    mechanism: str,
    username: str,
    password: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pykaf.broker")
    with WireClient(sasl_cluster.bootstrap) as client:
        response = authenticate(client, mechanism, username, password)
        assert response.error_code == 58  # type: ignore[attr-defined]
        message = response.error_message  # type: ignore[attr-defined]
        assert "authentication failed" in message
        assert password not in message
        assert PASSWORD not in message
        assert client.is_closed_by_peer()
    # Logged (before the close, so it is there now), without a secret.
    assert f"SASL authentication failed (client 'wire-test'): {message}" in caplog.text
    assert password not in caplog.text
    assert PASSWORD not in caplog.text
    # The broker serves the next client.
    with WireClient(sasl_cluster.bootstrap) as client:
        assert authenticate(client, mechanism).error_code == 0  # type: ignore[attr-defined]


def test_unknown_mechanism_gets_the_enabled_list(sasl_cluster: BlockingCluster) -> None:
    with WireClient(sasl_cluster.bootstrap) as client:
        response = client.request("SaslHandshake", 1, mechanism="GSSAPI")
        assert response.error_code == 33
        assert sorted(response.mechanisms) == sorted(MECHANISMS)
        # Still usable: the client may pick one of the list.
        assert authenticate(client, "SCRAM-SHA-512").error_code == 0  # type: ignore[attr-defined]


def test_requests_before_authentication_close_the_connection(
    sasl_cluster: BlockingCluster,
) -> None:
    with WireClient(sasl_cluster.bootstrap) as client:
        client.negotiate()  # ApiVersions is served before authentication
        assert 36 in {k.api_key for k in client.request("ApiVersions", 0).api_keys}
        metadata_request(client, send_only=True)
        assert client.is_closed_by_peer()
    with WireClient(sasl_cluster.bootstrap) as client:
        client.request("SaslHandshake", 1, mechanism="PLAIN")
        metadata_request(client, send_only=True)  # handshake done, not authenticated
        assert client.is_closed_by_peer()
    with WireClient(sasl_cluster.bootstrap) as client:
        client.send("SaslAuthenticate", 2, auth_bytes=b"\0alice\0x")  # no handshake
        assert client.is_closed_by_peer()


def test_a_big_frame_before_authentication_closes_without_reading_it(
    sasl_cluster: BlockingCluster,
) -> None:
    with socket.create_connection(("127.0.0.1", sasl_cluster.brokers[0].port), timeout=5) as sock:
        # A 1 MiB frame declared; only its size prefix and a few bytes are ever sent.
        sock.sendall(struct.pack(">i", 1024 * 1024) + b"\0" * 16)
        assert sock.recv(1) == b""
    # The limit holds until authentication, not only for the first frame.
    with WireClient(sasl_cluster.bootstrap) as client:
        client.negotiate()
        client.send_raw(struct.pack(">i", 600 * 1024) + b"\0" * 16)
        assert client.is_closed_by_peer()


def test_plaintext_listener_beside_sasl_answers_sasl_requests_with_illegal_state(
    sasl_cluster: BlockingCluster,
) -> None:
    with WireClient(sasl_cluster.bootstrap_for("PLAINTEXT")) as client:
        client.negotiate()
        assert metadata_request(client).brokers
        assert client.request("SaslHandshake", 1, mechanism="PLAIN").error_code == 34
        assert client.request("SaslAuthenticate", 2, auth_bytes=b"x").error_code == 34


def test_an_extra_sasl_listener_beside_a_plaintext_one() -> None:
    with BlockingCluster(
        2, extra_listeners=["SASL_PLAINTEXT"], users={"carol": PASSWORD}
    ) as cluster:
        sasl_addresses = cluster.bootstrap_for("SASL_PLAINTEXT").split(",")
        with WireClient(sasl_addresses[0]) as client:
            metadata_request(client, send_only=True)  # not authenticated yet
            assert client.is_closed_by_peer()
        with WireClient(sasl_addresses[1]) as client:
            response = authenticate(client, "SCRAM-SHA-256", "carol")
            assert response.error_code == 0  # type: ignore[attr-defined]
            advertised = {f"{b.host}:{b.port}" for b in metadata_request(client).brokers}
            assert advertised == set(sasl_addresses)
        with WireClient(str(cluster.brokers[0])) as client:  # the main one needs no SASL
            assert len(metadata_request(client).brokers) == 2


def test_a_v0_handshake_is_refused_then_closed(sasl_cluster: BlockingCluster) -> None:
    with WireClient(sasl_cluster.bootstrap) as client:
        versions = {k.api_key: k for k in client.request("ApiVersions", 0).api_keys}
        assert versions[17].min_version == 0  # advertised as Kafka does, for librdkafka
        response = client.request("SaslHandshake", 0, mechanism="PLAIN")
        assert response.error_code == 35
        assert client.is_closed_by_peer()


def test_a_second_handshake_after_authentication_is_illegal_state(
    sasl_cluster: BlockingCluster,
) -> None:
    with WireClient(sasl_cluster.bootstrap) as client:
        assert authenticate(client, "PLAIN").error_code == 0  # type: ignore[attr-defined]
        assert client.request("SaslHandshake", 1, mechanism="PLAIN").error_code == 34


def test_users_keep_no_password_and_bad_settings_are_refused() -> None:
    users = BrokerUsers({"alice": PASSWORD}, ["PLAIN", "SCRAM-SHA-512"])
    assert PASSWORD not in repr(users)
    assert "alice" in repr(users)
    assert all(PASSWORD not in repr(v) for v in vars(users).values())
    cluster = Cluster(1, security_protocol="SASL_PLAINTEXT", users={"alice": PASSWORD})
    assert PASSWORD not in repr(vars(cluster))
    with pytest.raises(ValueError, match="needs users"):
        Cluster(1, security_protocol="SASL_PLAINTEXT")
    with pytest.raises(ValueError, match="without a SASL listener"):
        Cluster(1, users={"alice": PASSWORD})
    with pytest.raises(ValueError, match="serves PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"):
        Cluster(1, security_protocol="SASL_PLAINTEXT", users={"a": "b"}, sasl_mechanisms=["X"])
    with pytest.raises(ValueError, match="empty password"):
        BrokerUsers({"alice": ""})


def test_cli_refuses_a_malformed_user_without_echoing_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        broker_main(["--port", "0", "--security-protocol", "SASL_PLAINTEXT", "--user", "pw0rd"])
    err = capsys.readouterr().err
    assert "NAME:PASSWORD" in err
    assert "pw0rd" not in err
    assert broker_main(["--port", "0", "--security-protocol", "SASL_PLAINTEXT"]) == 2
    assert "needs users" in capsys.readouterr().err
