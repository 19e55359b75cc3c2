"""Authentication (bearer tokens, HTTP Basic), per-principal topic permissions, the
principal header, and the refusal to serve beyond loopback without authentication; the
gateway in-process behind httpx, against the embedded broker."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from test_kafboy import read_all

from pykaf.broker import BlockingCluster
from pykaf.gateway import (
    GatewaySettings,
    SecuritySettings,
    check_binding,
    create_app,
    hash_password,
    hash_token,
)
from pykaf.gateway._auth_certs import common_name, rfc4514_name

FAST: dict[str, Any] = {"linger": 0.001, "request_timeout": 5.0}


@asynccontextmanager
async def gateway(
    kafka: BlockingCluster, security: SecuritySettings, **settings: Any
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        GatewaySettings(
            bootstrap=kafka.bootstrap, producer_options=FAST, security=security, **settings
        )
    )
    await app.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client
    finally:
        await app.close(10)


def basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


TOKENS = SecuritySettings(tokens={"plain-token-of-svc-a": "svc-a", hash_token("t-b"): "svc-b"})


async def test_missing_and_bad_tokens_get_the_same_401_with_a_challenge(
    kafka: BlockingCluster,
) -> None:
    async with gateway(kafka, TOKENS) as http:
        missing = await http.post("/async/events", content=b"x")
        wrong = await http.post("/async/events", content=b"x", headers=bearer("guess"))
        other_scheme = await http.post("/async/events", content=b"x", headers=basic("a", "b"))
        for answer in (missing, wrong, other_scheme):
            assert answer.status_code == 401
            assert answer.headers["www-authenticate"] == 'Bearer realm="pykaf gateway"'
            assert answer.json() == missing.json()  # never says which part was wrong
        assert missing.json()["error_code"] == 40101
        assert "bearer token" in missing.json()["message"]
        plain = await http.post(
            "/async/events", content=b"x", headers=bearer("plain-token-of-svc-a")
        )
        hashed = await http.post("/async/events", content=b"x", headers=bearer("t-b"))
        assert plain.status_code == hashed.status_code == 202, plain.text
        rejected = http.app.security.rejected  # type: ignore[attr-defined]
        assert rejected == {
            "missing_credentials": 1,
            "bad_credentials": 2,
            "forbidden": 0,
            "too_many_failures": 0,
        }


async def test_basic_users_with_plain_and_hashed_passwords(kafka: BlockingCluster) -> None:
    security = SecuritySettings(
        users={
            "alice": "wonderland",
            "bob": hash_password("builder", scheme="pbkdf2", pbkdf2_iterations=1000),
            "carol": hash_password("singer", scrypt_n=2**10),
            "dave": "plain:scrypt:looks-like-a-hash",
        }
    )
    async with gateway(kafka, security) as http:
        for user, password in [
            ("alice", "wonderland"),
            ("bob", "builder"),
            ("carol", "singer"),
            ("carol", "singer"),  # the second time from the verified cache
            ("dave", "scrypt:looks-like-a-hash"),
        ]:
            answer = await http.post("/async/events", content=b"x", headers=basic(user, password))
            assert answer.status_code == 202, (user, answer.text)
        refused = [
            await http.post("/async/events", content=b"x", headers=basic(user, password))
            for user, password in [
                ("alice", "wrong"),
                ("bob", "wonderland"),
                ("carol", "Singer"),
                ("nobody", "singer"),
            ]
        ]
        garbled = await http.post(
            "/async/events", content=b"x", headers={"Authorization": "Basic !!not-base64"}
        )
        for answer in [*refused, garbled]:
            assert answer.status_code == 401
            assert answer.json() == refused[0].json()
            assert answer.headers["www-authenticate"].startswith('Basic realm="pykaf gateway"')


def test_password_and_token_hashes_are_salted_and_checked_when_loaded() -> None:
    assert hash_password("same") != hash_password("same")
    assert hash_token("t") == "sha256:" + hashlib.sha256(b"t").hexdigest()
    for users in (
        {"u": "scrypt:16384:8:1:c2FsdA=="},  # a field missing
        {"u": "scrypt:1000:8:1:c2FsdHNhbHRzYWx0:aGFzaGhhc2hoYXNoaGFzaA=="},  # N not 2^k
        {"u": "pbkdf2:md5:1000:c2FsdA==:aGFzaGhhc2hoYXNoaGFzaA=="},
        {"u": "pbkdf2:sha256:1000:not base64:aGFzaA=="},
    ):
        with pytest.raises(ValueError, match="the password of user 'u'"):
            SecuritySettings(users=users)
    with pytest.raises(ValueError, match="64 hex digits"):
        SecuritySettings(tokens={"sha256:abc": "svc"})
    with pytest.raises(ValueError, match="user name"):
        SecuritySettings(users={"a:b": "pw"})


async def test_the_principal_header_is_the_gateways_to_write(kafka: BlockingCluster) -> None:
    security = SecuritySettings(users={"alice": "pw"}, principal_header="x-principal")
    async with gateway(kafka, security) as http:
        answer = await http.post(
            "/sync/events?partition=0",
            content=b"v",
            headers={**basic("alice", "pw"), "X-Kafka-Header-X-Principal": "mallory"},
        )
        assert answer.status_code == 200, answer.text
    ((_, record),) = read_all(kafka, "events", 1)
    assert list(record.headers) == [("x-principal", b"alice")]


PERMISSIONS = SecuritySettings(
    tokens={"ta": "alice", "tb": "bob", "tc": "carol"},
    permissions={
        "alice": {"events": ["produce"]},
        "bob": {"logs-*": ["produce", "describe"], "events": ["describe"]},
        "*": {"shared": ["*"]},
    },
)


async def test_a_topic_the_principal_may_not_write_is_403_naming_all_three(
    kafka: BlockingCluster,
) -> None:
    async with gateway(kafka, PERMISSIONS) as http:
        allowed = await http.post("/async/events", content=b"x", headers=bearer("ta"))
        assert allowed.status_code == 202, allowed.text
        for token, principal in (("tb", "bob"), ("tc", "carol")):
            refused = await http.post("/batch/sync/events", content=b"x\ny", headers=bearer(token))
            assert refused.status_code == 403
            assert refused.json() == {
                "error_code": 40301,
                "message": f"principal {principal!r} may not produce to topic 'events'",
            }
        rejected = http.app.security.rejected  # type: ignore[attr-defined]
        assert rejected["forbidden"] == 2
    assert read_all(kafka, "events", 1)[0][1].value == b"x"  # nothing of the refused


def test_topic_patterns_and_the_everyone_rules() -> None:
    from pykaf.gateway._security import Security

    security = Security(PERMISSIONS)
    assert security.may("bob", "produce", "logs-app")
    assert security.may("bob", "describe", "logs-")
    assert not security.may("bob", "produce", "logs")
    assert not security.may("bob", "create", "logs-app")
    assert security.may("bob", "describe", "events")
    assert not security.may("alice", "describe", "events")
    for principal in ("alice", "bob", "carol", "someone-else"):
        assert security.may(principal, "create", "shared")  # "*" adds to everyone's
    assert not security.may("someone-else", "produce", "events")
    assert security.may("bob", "describe", None)  # some topic: the listing is filtered
    assert not security.may("alice", "create", "events")
    assert not security.may(None, "describe", "shared")  # anonymous: nothing by default
    with pytest.raises(Exception, match="anonymous requests may not describe the cluster"):
        security.authorize(None, "describe", None)
    unconfigured = Security(SecuritySettings())
    assert unconfigured.may(None, "create", "anything")
    everyone = Security(SecuritySettings(tokens={"t": "p"}))  # no permissions: all
    assert everyone.may("p", "create", "anything")


async def test_anonymous_requests_when_allowed_get_their_own_rules(
    kafka: BlockingCluster,
) -> None:
    security = SecuritySettings(
        tokens={"ta": "alice"},
        allow_anonymous=True,
        anonymous_permissions={"events": ["produce"]},
        principal_header="x-principal",
    )
    async with gateway(kafka, security) as http:
        anonymous = await http.post("/sync/events?partition=1", content=b"anon")
        assert anonymous.status_code == 200, anonymous.text
        elsewhere = await http.post("/async/other", content=b"x")
        assert elsewhere.status_code == 403
        assert elsewhere.json()["message"] == "anonymous requests may not produce to topic 'other'"
        bad = await http.post("/async/events", content=b"x", headers=bearer("wrong"))
        assert bad.status_code == 401  # allowed anonymous, but not wrong credentials
    ((_, record),) = read_all(kafka, "events", 1)
    assert not record.headers  # no principal, no header


def test_serving_beyond_loopback_needs_authentication_or_an_explicit_yes() -> None:
    open_settings = SecuritySettings()
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        check_binding(host, open_settings)
    for host in ("0.0.0.0", "::", "192.168.1.10", "gateway.example.com"):
        with pytest.raises(ValueError, match="allow_anonymous") as caught:
            check_binding(host, open_settings)
        assert host in str(caught.value)
        check_binding(host, SecuritySettings(tokens={"t": "p"}))
        check_binding(host, SecuritySettings(allow_anonymous=True))


def test_settings_from_a_config_mapping_with_clear_errors() -> None:
    settings = SecuritySettings.from_mapping(
        {
            "tokens": {hash_token("t"): "svc"},
            "permissions": {"svc": {"logs-*": ["produce"]}},
            "principal_header": "x-principal",
        }
    )
    assert settings.authentication_configured
    assert "svc" not in repr(settings.tokens.keys()) or "tokens" not in repr(settings)
    assert "sha256" not in repr(settings)  # secrets stay out of reprs and logs
    with pytest.raises(ValueError, match=r"\[security\] has no setting 'token'.*'tokens'"):
        SecuritySettings.from_mapping({"token": {"t": "p"}})
    with pytest.raises(ValueError, match=r"'write'.*is not an action"):
        SecuritySettings.from_mapping({"permissions": {"svc": {"t": ["write"]}}})
    with pytest.raises(ValueError, match="not a topic pattern"):
        SecuritySettings.from_mapping({"permissions": {"svc": {"a*b": ["produce"]}}})
    with pytest.raises(ValueError, match="allow_anonymous must be true or false"):
        SecuritySettings.from_mapping({"allow_anonymous": "yes"})
    with pytest.raises(ValueError, match="tokens must map strings to strings"):
        SecuritySettings.from_mapping({"tokens": ["t"]})
    with pytest.raises(ValueError, match="tls_ca_certs"):
        SecuritySettings.from_mapping(
            {"client_cert": True, "tls_certfile": "s.pem", "tls_keyfile": "s.key"}
        )


async def test_failures_are_logged_once_per_episode_per_address(
    kafka: BlockingCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pykaf.gateway.security")
    # Without the failure budget (its own tests: test_items_auth_budget.py), which would
    # refuse this address's 21st request.
    unbudgeted = dataclasses.replace(TOKENS, auth_failure_limit=None)
    async with gateway(kafka, unbudgeted) as http:
        for _ in range(20):
            assert (await http.post("/async/events", headers=bearer("bad"))).status_code == 401
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "127.0.0.1" in warnings[0].getMessage()
        assert "bad" not in warnings[0].getMessage().replace("bad credentials", "")
        ok = await http.post("/async/events", content=b"x", headers=bearer("t-b"))
        assert ok.status_code == 202
        assert any("20 failed authentication(s)" in r.getMessage() for r in caplog.records)
        await http.post("/async/events", headers=bearer("bad"))  # a new episode
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2


def test_certificate_names_keep_commas_and_pluses_apart() -> None:
    subject = ((("organizationName", "Acme, Inc."),), (("commonName", "svc+a, \\ # "),))
    name = rfc4514_name(subject)
    assert name == "CN=svc\\+a\\, \\\\ #\\ ,O=Acme\\, Inc."
    assert common_name(name) == "svc+a, \\ # "
    assert common_name("O=x") is None
    assert common_name("CN=caf\\C3\\A9") == "café"
