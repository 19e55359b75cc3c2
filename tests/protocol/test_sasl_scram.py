"""SCRAM-SHA-256/512 (RFC 5802, RFC 7677): the RFC's own exchange, both sides against each
other, and every check a client must make of a server it does not trust yet."""

from __future__ import annotations

import base64

import pytest

from pykaf.errors import (
    LocalProtocolError,
    RemoteProtocolError,
    SaslAuthenticationError,
    SaslConfigurationError,
    SaslProtocolError,
    SaslServerSignatureError,
)
from pykaf.protocol import (
    MAX_SCRAM_ITERATIONS,
    MIN_SCRAM_ITERATIONS,
    ScramCredentials,
    sasl_client,
    sasl_server,
    scram_credentials,
)
from pykaf.protocol._sasl_scram import ScramClient, ScramServer

# RFC 7677 section 3.
RFC_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def rfc_client() -> ScramClient:
    return ScramClient("SCRAM-SHA-256", "user", "pencil", nonce=RFC_CLIENT_NONCE)


def test_rfc7677_client_sends_the_rfcs_messages_and_accepts_its_server_signature() -> None:
    client = rfc_client()
    assert client.initial() == RFC_CLIENT_FIRST
    assert client.step(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    assert not client.done
    assert client.step(RFC_SERVER_FINAL) is None
    assert client.done


def test_rfc7677_server_sends_the_rfcs_messages_from_stored_credentials() -> None:
    stored = scram_credentials("SCRAM-SHA-256", "pencil", 4096, salt=RFC_SALT)
    server = ScramServer("SCRAM-SHA-256", {"user": stored}.get, nonce=RFC_SERVER_NONCE)
    assert server.step(RFC_CLIENT_FIRST) == RFC_SERVER_FIRST
    assert server.step(RFC_CLIENT_FINAL) == RFC_SERVER_FINAL
    assert server.done
    assert server.username == "user"


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_client_and_server_agree_and_the_server_learns_the_unescaped_username(
    mechanism: str,
) -> None:
    username = "a=b,c"
    stored = scram_credentials(mechanism, "s3cret")
    assert stored.mechanism == mechanism
    assert stored.iterations == MIN_SCRAM_ITERATIONS
    client = sasl_client(mechanism, username=username, password="s3cret")
    server = sasl_server(mechanism, credentials={username: stored}.get)
    first = client.initial()
    assert first.startswith(b"n,,n=a=3Db=2Cc,r=")  # RFC 5802 saslname escaping
    reply = client.step(server.step(first))
    assert reply is not None
    assert client.step(server.step(reply)) is None
    assert client.done
    assert server.done
    assert server.username == username


def test_stored_credentials_hold_no_password_and_differ_per_salt() -> None:
    one = scram_credentials("SCRAM-SHA-512", "s3cret")
    two = scram_credentials("SCRAM-SHA-512", "s3cret")
    assert one.salt != two.salt
    assert one.stored_key != two.stored_key
    assert len(one.stored_key) == len(one.server_key) == 64
    assert "s3cret" not in repr(one)
    assert "stored_key" not in repr(one)


def test_a_wrong_password_is_refused_by_the_server_like_an_unknown_user() -> None:
    stored = {"alice": scram_credentials("SCRAM-SHA-512", "right")}
    messages = []
    for user, password in (("alice", "wrong"), ("mallory", "right")):
        client = sasl_client("SCRAM-SHA-512", username=user, password=password)
        server = sasl_server("SCRAM-SHA-512", credentials=stored.get)
        final = client.step(server.step(client.initial()))
        assert final is not None
        with pytest.raises(SaslAuthenticationError) as refused:
            server.step(final)
        assert not server.done
        assert server.username is None
        messages.append(str(refused.value))
    assert messages[0] == messages[1]  # the broker does not tell who exists
    assert "invalid credentials" in messages[0]


def test_an_unknown_users_salt_is_as_stable_as_a_real_users() -> None:
    firsts = []
    for _ in range(2):
        client = sasl_client("SCRAM-SHA-256", username="nobody", password="x")
        server = sasl_server("SCRAM-SHA-256", credentials=lambda user: None)
        firsts.append(server.step(client.initial()).split(b",")[1:])
    assert firsts[0] == firsts[1]


def test_credentials_of_the_other_mechanism_are_not_used() -> None:
    stored = {"alice": scram_credentials("SCRAM-SHA-256", "pw")}
    client = sasl_client("SCRAM-SHA-512", username="alice", password="pw")
    server = sasl_server("SCRAM-SHA-512", credentials=stored.get)
    final = client.step(server.step(client.initial()))
    assert final is not None
    with pytest.raises(SaslAuthenticationError):
        server.step(final)


def test_the_client_turns_the_servers_e_attribute_into_an_authentication_error() -> None:
    client = rfc_client()
    client.initial()
    client.step(RFC_SERVER_FIRST)
    with pytest.raises(SaslAuthenticationError, match="invalid-proof") as refused:
        client.step(b"e=invalid-proof")
    assert not isinstance(refused.value, SaslServerSignatureError)
    assert "sasl_password" in str(refused.value)
    assert not client.done


def test_a_server_that_does_not_hold_the_credentials_is_refused() -> None:
    # A fake server: it answers like a real one but signs with keys from another password.
    fake = scram_credentials("SCRAM-SHA-256", "not-pencil", salt=RFC_SALT)
    server = ScramServer("SCRAM-SHA-256", {"user": fake}.get, nonce=RFC_SERVER_NONCE)
    client = rfc_client()
    server_first = server.step(client.initial())
    client_final = client.step(server_first)
    assert client_final is not None
    with pytest.raises(SaslServerSignatureError, match="not trusted"):
        client.step(b"v=" + base64.b64encode(b"\x00" * 32))
    assert not client.done


def test_a_forged_server_signature_is_refused_even_if_well_formed() -> None:
    client = rfc_client()
    client.initial()
    client.step(RFC_SERVER_FIRST)
    good = base64.b64decode(RFC_SERVER_FINAL[2:])
    forged = bytes([good[0] ^ 1]) + good[1:]
    with pytest.raises(SaslServerSignatureError):
        client.step(b"v=" + base64.b64encode(forged))


@pytest.mark.parametrize(
    "nonce",
    [
        "someoneElsesNonce%hvYDpWUa2RaTCAfuxFIlj",  # does not start with ours
        RFC_CLIENT_NONCE,  # ours, with nothing of the server's
        RFC_CLIENT_NONCE[:-1],  # a prefix of ours
    ],
)
def test_a_server_nonce_that_does_not_extend_the_client_nonce_is_refused(nonce: str) -> None:
    client = rfc_client()
    client.initial()
    with pytest.raises(SaslProtocolError, match="nonce"):
        client.step(f"r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".encode())


@pytest.mark.parametrize(
    "iterations", [0, 1, MIN_SCRAM_ITERATIONS - 1, MAX_SCRAM_ITERATIONS + 1, 10**9]
)
def test_iteration_counts_outside_the_bounds_are_refused_before_any_hashing(
    iterations: int,
) -> None:
    client = rfc_client()
    client.initial()
    server_first = f"r={RFC_CLIENT_NONCE}xyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i={iterations}"
    with pytest.raises(SaslProtocolError, match="MIN_SCRAM_ITERATIONS") as refused:
        client.step(server_first.encode())
    assert isinstance(refused.value, RemoteProtocolError)
    with pytest.raises(SaslConfigurationError):
        scram_credentials("SCRAM-SHA-256", "pw", iterations)


def test_the_iteration_bounds_themselves_are_accepted() -> None:
    client = rfc_client()
    client.initial()
    assert client.step(RFC_SERVER_FIRST.replace(b"i=4096", b"i=%d" % MIN_SCRAM_ITERATIONS))
    assert scram_credentials("SCRAM-SHA-256", "pw", MIN_SCRAM_ITERATIONS).iterations == 4096


@pytest.mark.parametrize(
    ("server_first", "match"),
    [
        (b"m=ext,r=" + RFC_SERVER_FIRST[2:], "mandatory extension"),
        (b"s=W22ZaJ0SNY7soEsUEjb6gQ==,r=x,i=4096", "r=...,s=...,i="),
        (RFC_SERVER_FIRST.replace(b"i=4096", b"i=\xd9\xa1\xd9\xa2"), "decimal"),  # Arabic digits
        (RFC_SERVER_FIRST.replace(b"i=4096", b"i=" + b"9" * 5000), "decimal"),
        (RFC_SERVER_FIRST.replace(b"s=W22ZaJ0SNY7soEsUEjb6gQ==", b"s=***"), "base64"),
        (RFC_SERVER_FIRST.replace(b"s=W22ZaJ0SNY7soEsUEjb6gQ==", b"s="), "empty salt"),
        (b"\xff\xfe", "UTF-8"),
        (b"", "attribute"),
    ],
)
def test_malformed_server_first_messages_are_protocol_errors(
    server_first: bytes, match: str
) -> None:
    client = rfc_client()
    client.initial()
    with pytest.raises(SaslProtocolError, match=match):
        client.step(server_first)


def test_the_server_first_e_attribute_is_an_authentication_error() -> None:
    client = rfc_client()
    client.initial()
    with pytest.raises(SaslAuthenticationError, match="unknown-user"):
        client.step(b"e=unknown-user")


@pytest.mark.parametrize(
    ("client_first", "match"),
    [
        (b"p=tls-server-end-point,,n=user,r=abc", "channel binding"),
        (b"n,,r=abc,n=user", "n=...,r="),
        (b"n,,n=us=3Xer,r=abc", "saslname"),
        (b"n,a=other,n=user,r=abc", "authorization identity"),
    ],
)
def test_the_server_refuses_malformed_client_first_messages(
    client_first: bytes, match: str
) -> None:
    server = sasl_server("SCRAM-SHA-256", credentials=lambda user: None)
    with pytest.raises((SaslProtocolError, SaslAuthenticationError), match=match):
        server.step(client_first)


def test_the_server_accepts_an_authzid_equal_to_the_username() -> None:
    stored = {"user": scram_credentials("SCRAM-SHA-256", "pencil", salt=RFC_SALT)}
    server = ScramServer("SCRAM-SHA-256", stored.get, nonce=RFC_SERVER_NONCE)
    assert server.step(b"n,a=user,n=user,r=" + RFC_CLIENT_NONCE.encode()) == RFC_SERVER_FIRST


@pytest.mark.parametrize(
    ("client_final", "match"),
    [
        (RFC_CLIENT_FINAL.replace(b",p=", b",q="), "no proof"),
        (RFC_CLIENT_FINAL.replace(b"c=biws", b"c=eSws"), "channel binding"),
        (RFC_CLIENT_FINAL.replace(b"$k0,", b"$k1,"), "nonce"),
        (RFC_CLIENT_FINAL[:-8] + b"AAAA", "invalid credentials"),  # a shorter proof
    ],
)
def test_the_server_refuses_malformed_or_replayed_client_final_messages(
    client_final: bytes, match: str
) -> None:
    stored = {"user": scram_credentials("SCRAM-SHA-256", "pencil", salt=RFC_SALT)}
    server = ScramServer("SCRAM-SHA-256", stored.get, nonce=RFC_SERVER_NONCE)
    server.step(RFC_CLIENT_FIRST)
    with pytest.raises((SaslProtocolError, SaslAuthenticationError), match=match):
        server.step(client_final)
    assert not server.done
    assert server.username is None


def test_steps_out_of_order_are_local_errors_and_a_failed_exchange_stays_failed() -> None:
    client = rfc_client()
    with pytest.raises(LocalProtocolError):
        client.step(RFC_SERVER_FIRST)
    client.initial()
    with pytest.raises(LocalProtocolError):
        client.initial()
    with pytest.raises(SaslProtocolError):
        client.step(b"garbage")
    with pytest.raises(LocalProtocolError, match="failed"):
        client.step(RFC_SERVER_FIRST)
    server = sasl_server("SCRAM-SHA-256", credentials=lambda user: None)
    with pytest.raises(SaslProtocolError):
        server.step(b"garbage")
    with pytest.raises(LocalProtocolError, match="failed"):
        server.step(RFC_CLIENT_FIRST)


def test_configuration_errors_name_what_to_set() -> None:
    with pytest.raises(SaslConfigurationError, match="sasl_username"):
        sasl_client("SCRAM-SHA-256", password="pw")
    with pytest.raises(SaslConfigurationError, match="sasl_password"):
        sasl_client("SCRAM-SHA-512", username="alice")
    with pytest.raises(SaslConfigurationError, match="SCRAM-SHA-256, SCRAM-SHA-512"):
        scram_credentials("SCRAM-SHA-1", "pw")
    with pytest.raises(SaslConfigurationError, match="credentials lookup"):
        sasl_server("SCRAM-SHA-256")
    assert isinstance(SaslConfigurationError("x"), ValueError)


def test_credentials_are_plain_frozen_values() -> None:
    stored = scram_credentials("SCRAM-SHA-256", "pencil", salt=RFC_SALT)
    assert stored == scram_credentials("SCRAM-SHA-256", "pencil", salt=RFC_SALT)
    assert isinstance(stored, ScramCredentials)
    with pytest.raises(AttributeError):
        stored.iterations = 1  # type: ignore[misc]


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_kafka_pythons_independent_scram_client_authenticates_against_our_server(
    mechanism: str,
) -> None:
    peer = pytest.importorskip("kafka.net.sasl.scram")
    client = peer.ScramClient("alice", "s3cret", mechanism)
    server = sasl_server(
        mechanism, credentials={"alice": scram_credentials(mechanism, "s3cret")}.get
    )
    client.process_server_first_message(server.step(client.first_message()))
    client.process_server_final_message(server.step(client.final_message()))  # checks v=
    assert server.done
    assert server.username == "alice"
    wrong = peer.ScramClient("alice", "wrong", mechanism)
    refusing = sasl_server(
        mechanism, credentials={"alice": scram_credentials(mechanism, "s3cret")}.get
    )
    wrong.process_server_first_message(refusing.step(wrong.first_message()))
    with pytest.raises(SaslAuthenticationError):
        refusing.step(wrong.final_message())
