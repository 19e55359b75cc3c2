"""Failed authentications are budgeted per client address: past ``auth_failure_limit``
failures within ``auth_failure_window``, the address gets 429 with Retry-After before any
password is hashed (wrong passwords in a loop cost the gateway no CPU, and guess
nothing); other addresses are not touched; one WARNING per episode per address."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pykaf.broker import BlockingCluster
from pykaf.gateway import (
    GatewaySettings,
    SecuritySettings,
    create_app,
    hash_password,
    load_config,
)
from pykaf.gateway._auth_failures import FailureBudget

BUDGET_LOG = "its requests get 429"
# Made once, before any test counts PBKDF2 runs.
ALICE = hash_password("right", scheme="pbkdf2", pbkdf2_iterations=1000)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def hashings(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts PBKDF2 runs (each password check of a pbkdf2-stored user is one)."""
    calls: list[int] = []
    real: Callable[..., bytes] = hashlib.pbkdf2_hmac

    def counted(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)  # list.append: safe from the checks' worker threads
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "pbkdf2_hmac", counted)
    return calls


def _app(kafka: BlockingCluster, **security: Any) -> Any:
    users = {"alice": ALICE}
    # An hour's window: a try comes back every 20 minutes, so a slow machine cannot
    # give one back during a test.
    settings = SecuritySettings(users=users, auth_failure_window=3600.0, **security)
    return create_app(GatewaySettings(bootstrap=kafka.bootstrap, security=settings))


def _client(app: Any, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://gw")


async def test_an_address_out_of_tries_gets_429_before_any_hashing(
    kafka: BlockingCluster, hashings: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pykaf.gateway.security")
    app = _app(kafka, auth_failure_limit=3)
    await app.start()
    guesser, neighbour = _client(app, "10.0.0.1"), _client(app, "10.0.0.2")
    try:
        for guess in ("a", "b", "c"):
            wrong = await guesser.post("/async/events", content=b"x", headers=basic("alice", guess))
            assert wrong.status_code == 401, wrong.text
        assert len(hashings) == 3
        refused = [
            await guesser.post("/async/events", content=b"x", headers=basic("alice", password))
            for password in ("d", "right", "e")  # the right password too: not checked
        ]
        for answer in refused:
            assert answer.status_code == 429, answer.text
            assert answer.headers["retry-after"] == "1200"  # one try back every 3600 / 3 s
            assert answer.json()["error_code"] == 42901
            assert "too many failed authentications" in answer.json()["message"]
        assert len(hashings) == 3  # nothing hashed for the refused requests
        # Another address has its own budget.
        other = await neighbour.post("/async/events", content=b"x", headers=basic("alice", "right"))
        assert other.status_code == 202, other.text
        metrics = (await guesser.get("/metrics")).text  # public: answered all the same
        assert 'pykaf_gateway_rejected_total{reason="too_many_failures"} 3.0' in metrics
        assert 'pykaf_gateway_rejected_total{reason="bad_credentials"} 3.0' in metrics
        warned = [
            r.getMessage()
            for r in caplog.records
            if r.levelno == logging.WARNING and BUDGET_LOG in r.getMessage()
        ]
        assert len(warned) == 1, warned  # once per episode, naming the address
        assert warned[0].startswith("10.0.0.1 failed to authenticate 3 times within 3600 s")
    finally:
        for client in (guesser, neighbour):
            await client.aclose()
        await app.close(5)


async def test_concurrent_guesses_stay_within_the_budget(
    kafka: BlockingCluster, hashings: list[int]
) -> None:
    app = _app(kafka, auth_failure_limit=3)
    await app.start()
    guesser = _client(app, "10.0.0.3")
    try:
        answers = await asyncio.gather(
            *(
                guesser.post("/async/events", content=b"x", headers=basic("nobody", f"g{n}"))
                for n in range(12)
            )
        )
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [401] * 3 + [429] * 9, statuses
        assert len(hashings) == 3  # an unknown user costs a (dummy) check: budgeted too
    finally:
        await guesser.aclose()
        await app.close(5)


async def test_no_budget_when_the_limit_is_none(
    kafka: BlockingCluster, hashings: list[int]
) -> None:
    app = _app(kafka, auth_failure_limit=None)
    await app.start()
    guesser = _client(app, "10.0.0.4")
    try:
        for n in range(25):  # past the default budget of 20
            wrong = await guesser.post("/async/events", headers=basic("alice", f"w{n}"))
            assert wrong.status_code == 401
        assert len(hashings) == 25
    finally:
        await guesser.aclose()
        await app.close(5)


def test_tries_come_back_one_per_window_share_and_the_episode_ends_once_whole(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="pykaf.gateway.security")
    now = [1000.0]
    budget = FailureBudget(2, 10.0, clock=lambda: now[0])
    assert not budget
    assert budget.wait("a") == 0
    budget.failed("a")
    budget.failed("a")
    assert budget
    assert budget.wait("a") == 5  # one try back every 10 / 2 s
    now[0] += 2.0
    assert budget.wait("a") == 3
    now[0] += 3.0
    assert budget.wait("a") == 0  # one try
    assert budget.reserve("a") == 0  # a slow check holds it...
    assert budget.reserve("a") == 5  # ...so a second one at once is refused
    budget.release("a")  # the check passed: the try is back
    assert budget.wait("b") == 0  # other addresses: untouched
    now[0] += 10.0  # whole again: forgotten, and the episode's end said once
    assert budget.wait("a") == 0
    assert not budget
    said = [r.getMessage() for r in caplog.records]
    assert len([m for m in said if BUDGET_LOG in m]) == 1, said
    ended = [m for m in said if "may try to authenticate again" in m]
    assert ended == [
        "a may try to authenticate again: 3 request(s) from it were refused while"
        " it had no tries left"
    ]
    unlimited = FailureBudget(None, 10.0)
    for _ in range(100):
        unlimited.failed("a")
    assert unlimited.wait("a") == unlimited.reserve("a") == 0
    assert not unlimited


def test_the_budget_settings_from_a_config_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        'bootstrap = "k:9092"\n[security]\nauth_failure_limit = 5\nauth_failure_window = 30\n'
    )
    security = load_config(path)[0].security
    assert (security.auth_failure_limit, security.auth_failure_window) == (5, 30)
    assert SecuritySettings().auth_failure_limit == 20  # on by default
    for bad, says in [
        ("auth_failure_limit = 0", "auth_failure_limit must be a whole number >= 1"),
        ("auth_failure_limit = 2.5", "auth_failure_limit must be"),
        ("auth_failure_window = 0", "auth_failure_window must be a number >= 0.001"),
        ("auth_failure_window = inf", "auth_failure_window must be a finite number"),
    ]:
        path.write_text(f'bootstrap = "k:9092"\n[security]\n{bad}\n')
        with pytest.raises(ValueError, match=says):
            load_config(path)
