"""PLAIN and OAUTHBEARER formats, SASLprep, the factories, and the two promises every
mechanism keeps: a peer's bytes only ever raise a typed SASL error, and no secret reaches a
repr, an exception or a log line."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pykaf.errors import (
    LocalProtocolError,
    PykafError,
    SaslAuthenticationError,
    SaslConfigurationError,
    SaslError,
    SaslProtocolError,
)
from pykaf.protocol import (
    SASL_MECHANISMS,
    SaslClient,
    SaslServer,
    sasl_client,
    sasl_server,
    scram_credentials,
)
from pykaf.protocol import _sasl as sasl_module
from pykaf.protocol._sasl import OAuthBearerClient
from pykaf.protocol._sasl_prep import escape_username, saslprep, unescape_username

PASSWORD = "hunter2-Secret!"
TOKEN = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
USERS = {"alice": scram_credentials("SCRAM-SHA-512", PASSWORD, salt=b"fixed salt")}


def run(client: SaslClient, server: SaslServer) -> None:
    """Drive ``client`` against ``server`` until the client is done (or one raises)."""
    message: bytes | None = client.initial()
    for _ in range(4):  # bounded: no mechanism here takes more than two round trips
        if message is None:
            return
        message = client.step(server.step(message))
    raise AssertionError("the exchange did not finish in four round trips")


def accept_token(token: str, extensions: Mapping[str, str]) -> str | None:
    return "alice" if token == TOKEN else None


# PLAIN


def test_plain_client_sends_rfc4616_with_an_empty_authzid() -> None:
    client = sasl_client("PLAIN", username="alice", password=PASSWORD)
    assert client.initial() == b"\0alice\0" + PASSWORD.encode()
    assert client.step(b"") is None
    assert client.done


@pytest.mark.parametrize("lookup_mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_plain_is_verified_against_stored_scram_credentials(lookup_mechanism: str) -> None:
    users = {"alice": scram_credentials(lookup_mechanism, PASSWORD)}
    client = sasl_client("PLAIN", username="alice", password=PASSWORD)
    server = sasl_server("PLAIN", credentials=users.get)
    run(client, server)
    assert client.done
    assert server.done
    assert server.username == "alice"


@pytest.mark.parametrize(("user", "password"), [("alice", "wrong"), ("bob", PASSWORD)])
def test_plain_refuses_a_wrong_password_and_an_unknown_user_alike(
    user: str, password: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Alike in work too: an unknown user costs the same key derivation (against decoy
    # credentials), or the answer's speed would tell which users exist.
    derivations: list[int] = []
    real = sasl_module.scram_salted_password

    def counted(*args: Any, **kwargs: Any) -> bytes:
        derivations.append(args[3])  # the iteration count
        return real(*args, **kwargs)

    monkeypatch.setattr(sasl_module, "scram_salted_password", counted)
    server = sasl_server("PLAIN", credentials=USERS.get)
    with pytest.raises(SaslAuthenticationError, match="invalid credentials for PLAIN"):
        server.step(f"\0{user}\0{password}".encode())
    assert not server.done
    assert server.username is None
    assert derivations == [4096]


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (b"alice\0" + PASSWORD.encode(), SaslProtocolError),  # one NUL
        (b"\0alice\0pw\0more", SaslProtocolError),  # three
        (b"\0\0pw", SaslProtocolError),  # no username
        (b"\0alice\0\xff", SaslProtocolError),  # not UTF-8
        (b"mallory\0alice\0" + PASSWORD.encode(), SaslAuthenticationError),  # acting as
    ],
)
def test_plain_server_refuses_malformed_messages(message: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        sasl_server("PLAIN", credentials=USERS.get).step(message)


def test_plain_accepts_an_authzid_equal_to_the_username() -> None:
    server = sasl_server("PLAIN", credentials=USERS.get)
    assert server.step(b"alice\0alice\0" + PASSWORD.encode()) == b""
    assert server.username == "alice"


def test_plain_client_refuses_nul_and_a_non_empty_reply() -> None:
    with pytest.raises(SaslConfigurationError, match="NUL"):
        sasl_client("PLAIN", username="al\0ice", password="pw")
    client = sasl_client("PLAIN", username="alice", password="pw")
    client.initial()
    with pytest.raises(SaslProtocolError, match="empty reply"):
        client.step(b"surprise")


# OAUTHBEARER


def test_oauthbearer_initial_response_is_the_kip255_format() -> None:
    client = sasl_client("OAUTHBEARER", token=TOKEN)
    assert client.initial() == b"n,,\x01auth=Bearer " + TOKEN.encode() + b"\x01\x01"
    assert client.step(b"") is None
    assert client.done


def test_oauthbearer_extensions_follow_the_token() -> None:
    client = sasl_client("OAUTHBEARER", token="abc", extensions={"traceId": "t 1", "x": "y"})
    assert client.initial() == b"n,,\x01auth=Bearer abc\x01traceId=t 1\x01x=y\x01\x01"


@pytest.mark.parametrize(
    ("token", "extensions", "match"),
    [
        ("", None, "needs a token"),
        ("two words", None, "bearer token"),
        ('"quoted"', None, "bearer token"),
        ("abc", {"auth": "x"}, "other than 'auth'"),
        ("abc", {"bad-key": "x"}, "ASCII letters"),
        ("abc", {"k": "\x01"}, "forbids"),
    ],
)
def test_oauthbearer_client_refuses_what_the_rfc_cannot_carry(
    token: str, extensions: dict[str, str] | None, match: str
) -> None:
    with pytest.raises(SaslConfigurationError, match=match):
        sasl_client("OAUTHBEARER", token=token, extensions=extensions)


def test_oauthbearer_server_hands_token_and_extensions_to_the_validator() -> None:
    seen: list[tuple[str, dict[str, str]]] = []

    def validate(token: str, extensions: Mapping[str, str]) -> str | None:
        seen.append((token, dict(extensions)))
        return "alice"

    client = sasl_client("OAUTHBEARER", token=TOKEN, extensions={"traceId": "42"})
    server = sasl_server("OAUTHBEARER", validate_token=validate)
    run(client, server)
    assert client.done
    assert server.done
    assert server.username == "alice"
    assert seen == [(TOKEN, {"traceId": "42"})]


def test_a_refused_token_gets_the_rfc7628_error_document_then_fails() -> None:
    client = sasl_client("OAUTHBEARER", token="expired.token.value")
    server = sasl_server("OAUTHBEARER", validate_token=accept_token)
    challenge = server.step(client.initial())
    assert challenge == b'{"status":"invalid_token"}'
    assert not server.done
    assert client.step(challenge) == b"\x01"  # RFC 7628 section 3.2.3
    assert isinstance(client, OAuthBearerClient)
    assert client.server_error == "invalid_token"
    with pytest.raises(SaslAuthenticationError, match="fresh token"):
        server.step(b"\x01")
    assert not client.done
    assert not server.done


@pytest.mark.parametrize(
    "message",
    [
        b"n,,auth=Bearer abc\x01\x01",  # no separator after the header
        b"n,,\x01auth=Bearer abc\x01",  # one terminator
        b"n,,\x01auth=Basic abc\x01\x01",
        b"n,,\x01auth=Bearer a b\x01\x01",
        b"n,,\x01k=v\x01\x01",  # no token
        b"p=x,,\x01auth=Bearer abc\x01\x01",
        b"n,,\x01auth=Bearer abc\x01auth=Bearer def\x01\x01",
        b"n,,\x01auth=Bearer \xc3\xa9\x01\x01",
    ],
)
def test_oauthbearer_server_refuses_malformed_messages(message: bytes) -> None:
    server = sasl_server("OAUTHBEARER", validate_token=accept_token)
    with pytest.raises(SaslProtocolError, match="RFC 7628"):
        server.step(message)


# Factories


def test_every_mechanism_has_a_client_and_a_server() -> None:
    assert SASL_MECHANISMS == ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
    users = {
        "alice": scram_credentials("SCRAM-SHA-256", PASSWORD),
        "bob": scram_credentials("SCRAM-SHA-512", PASSWORD),
    }
    for mechanism in SASL_MECHANISMS:
        user = "bob" if mechanism == "SCRAM-SHA-512" else "alice"
        client = sasl_client(mechanism, username=user, password=PASSWORD, token=TOKEN)
        server = sasl_server(mechanism, credentials=users.get, validate_token=accept_token)
        assert client.mechanism == server.mechanism == mechanism
        run(client, server)
        assert client.done
        assert server.done
        assert server.username == user


def test_an_unknown_mechanism_names_the_ones_pykaf_speaks() -> None:
    for factory in (sasl_client, sasl_server):
        with pytest.raises(SaslConfigurationError, match=r"GSSAPI.*PLAIN, SCRAM-SHA-256"):
            factory("GSSAPI")
    with pytest.raises(SaslConfigurationError, match="validate_token"):
        sasl_server("OAUTHBEARER")


# SASLprep (RFC 4013 section 3's examples) and saslname escaping


@pytest.mark.parametrize(
    ("given", "prepared"),
    [("I\u00adX", "IX"), ("user", "user"), ("USER", "USER"), ("\u00aa", "a"), ("\u2168", "IX")],
)
def test_saslprep_maps_and_normalises(given: str, prepared: str) -> None:
    assert saslprep(given) == prepared


@pytest.mark.parametrize(
    ("given", "match"),
    [
        ("\u0007", "ASCII control"),
        ("a\ue000", "private-use"),
        ("\u0627\u0031", "right-to-left"),
        ("a\u0221", "unassigned"),
    ],
)
def test_saslprep_refuses_prohibited_text_without_echoing_it(given: str, match: str) -> None:
    with pytest.raises(SaslConfigurationError, match=match) as refused:
        saslprep(given)
    assert given not in str(refused.value)


def test_a_scram_password_is_prepared_unless_told_otherwise() -> None:
    users = {"alice": scram_credentials("SCRAM-SHA-256", "IX")}
    run(
        sasl_client("SCRAM-SHA-256", username="alice", password="I\u00adX"),
        sasl_server("SCRAM-SHA-256", credentials=users.get),
    )
    client = sasl_client("SCRAM-SHA-256", username="alice", password="I\u00adX", saslprep=False)
    server = sasl_server("SCRAM-SHA-256", credentials=users.get)
    with pytest.raises(SaslAuthenticationError):
        run(client, server)
    with pytest.raises(SaslConfigurationError):
        sasl_client("SCRAM-SHA-256", username="alice", password="pw\u0007")


@pytest.mark.parametrize("name", ["plain", "a=b", "a,b", "=2C", ",,==", ""])
def test_usernames_escape_and_unescape(name: str) -> None:
    escaped = escape_username(name)
    assert "," not in escaped
    assert unescape_username(escaped) == name


# A peer's bytes only raise typed errors


def _clients() -> list[SaslClient]:
    return [
        sasl_client(mechanism, username="alice", password=PASSWORD, token=TOKEN)
        for mechanism in SASL_MECHANISMS
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=st.binary(max_size=300), second=st.binary(max_size=300))
def test_arbitrary_server_bytes_raise_only_sasl_errors(first: bytes, second: bytes) -> None:
    for client in _clients():
        client.initial()
        try:
            if client.step(first) is not None:
                client.step(second)
        except SaslError:
            pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=st.binary(max_size=300), second=st.binary(max_size=300))
def test_arbitrary_client_bytes_raise_only_sasl_errors(first: bytes, second: bytes) -> None:
    users = {"alice": scram_credentials("SCRAM-SHA-256", PASSWORD, salt=b"s")}
    for mechanism in SASL_MECHANISMS:
        server = sasl_server(mechanism, credentials=users.get, validate_token=accept_token)
        try:
            server.step(first)
            if not server.done:
                server.step(second)
        except SaslError:
            pass


@settings(max_examples=200, deadline=None)
@given(
    attributes=st.lists(
        st.tuples(st.sampled_from("rsimevp"), st.text(max_size=20)), min_size=1, max_size=5
    )
)
def test_structured_scram_garbage_raises_only_sasl_errors(
    attributes: list[tuple[str, str]],
) -> None:
    # Nearly-valid messages reach deeper than random bytes do: the client's nonce leads.
    client = sasl_client("SCRAM-SHA-256", username="alice", password=PASSWORD)
    nonce = client.initial().decode().rsplit("r=", 1)[1]
    text = ",".join(f"{k}={nonce + v if k == 'r' else v}" for k, v in attributes)
    with contextlib.suppress(SaslError):
        client.step(text.encode())


# No secret leaks


def _failures(password: str, token: str) -> list[BaseException]:
    """One exception from every way an exchange fails, with these secrets in play."""
    users = {"alice": scram_credentials("SCRAM-SHA-256", "other", salt=b"salt")}
    caught: list[BaseException] = []
    attempts: list[Callable[[], object]] = [
        lambda: run(
            sasl_client("SCRAM-SHA-256", username="alice", password=password),
            sasl_server("SCRAM-SHA-256", credentials=users.get),
        ),
        lambda: run(
            sasl_client("PLAIN", username="alice", password=password),
            sasl_server("PLAIN", credentials=users.get),
        ),
        lambda: run(
            sasl_client("OAUTHBEARER", token=token),
            sasl_server("OAUTHBEARER", validate_token=lambda t, e: None),
        ),
        lambda: sasl_client("SCRAM-SHA-256", username="alice", password=password + "\u0007"),
        lambda: sasl_client("OAUTHBEARER", token=token + " x"),
        lambda: sasl_server("PLAIN", credentials=users.get).step(
            b"\0alice\0" + password.encode() + b"\0"
        ),
    ]
    for attempt in attempts:
        with pytest.raises(PykafError) as failed:
            attempt()
        caught.append(failed.value)
    # The client side's own refusals of a bad server.
    for server_final in (b"e=invalid-proof", b"v=AAAA"):
        client = sasl_client("SCRAM-SHA-256", username="alice", password=password)
        server = sasl_server("SCRAM-SHA-256", credentials=users.get)
        assert client.step(server.step(client.initial())) is not None
        with pytest.raises(SaslAuthenticationError) as refused:
            client.step(server_final)
        caught.append(refused.value)
    return caught


def test_no_secret_reaches_a_repr_an_exception_or_a_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    password, token = "Pa55-word-XYZZY", "tok.en-PLUGH"
    client = sasl_client("SCRAM-SHA-512", username="alice", password=password)
    plain = sasl_client("PLAIN", username="alice", password=password)
    bearer = sasl_client("OAUTHBEARER", token=token)
    texts = [repr(client), str(client), repr(plain), repr(bearer)]
    users = {"alice": scram_credentials("SCRAM-SHA-512", password)}
    server = sasl_server("SCRAM-SHA-512", credentials=users.get)
    run(client, server)
    texts += [repr(client), repr(server), repr(users), str(users["alice"])]
    for error in _failures(password, token):
        texts += [str(error), repr(error), repr(error.args)]
        assert isinstance(error, (SaslError, LocalProtocolError))
    texts.append(caplog.text)
    for secret in (password, token):
        assert not any(secret in text for text in texts), secret


@pytest.mark.parametrize("reply", [b"", b"anything"])
def test_after_an_error_document_no_reply_makes_the_oauthbearer_client_done(
    reply: bytes,
) -> None:
    client = sasl_client("OAUTHBEARER", token=TOKEN)
    client.initial()
    # A server that echoes the token in its error document does not get it into our text.
    document = b'{"status":"invalid_token","scope":"' + TOKEN.encode() + b'"}'
    assert client.step(document) == b"\x01"
    with pytest.raises(SaslAuthenticationError, match="invalid_token") as refused:
        client.step(reply)
    assert not client.done
    assert TOKEN not in str(refused.value)


@pytest.mark.parametrize("document", [b"[" * 100_000, b"\xff", b"[1]", b'{"status": 7}'])
def test_an_unreadable_error_document_still_gets_the_rfc7628_reply(document: bytes) -> None:
    client = sasl_client("OAUTHBEARER", token=TOKEN)
    client.initial()
    assert client.step(document) == b"\x01"
    with pytest.raises(SaslAuthenticationError, match="status unreadable"):
        client.step(b"")
