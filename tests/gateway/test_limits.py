"""Request rate (a token bucket per principal, or per address when anonymous), concurrent
requests per principal, body size and slow bodies: the gateway in-process behind httpx.
Head size and slow heads need the server: test_client_cert.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from test_security import bearer, gateway

from pykaf.broker import BlockingCluster
from pykaf.gateway import LimitSettings, RateLimit, SecuritySettings
from pykaf.gateway._asgi import HttpError, Request
from pykaf.gateway._limits import Limits

TOKENS = SecuritySettings(tokens={"ta": "alice", "tb": "bob"})


async def test_a_principal_past_its_rate_gets_429_with_retry_after(
    kafka: BlockingCluster,
) -> None:
    limits = LimitSettings(rate=0.01, burst=2)  # two now, the next one in 100 s
    async with gateway(kafka, TOKENS, limits=limits) as http:
        for _ in range(2):
            ok = await http.post("/async/events", content=b"x", headers=bearer("ta"))
            assert ok.status_code == 202, ok.text
        refused = await http.post("/async/events", content=b"x", headers=bearer("ta"))
        assert refused.status_code == 429
        assert refused.json()["error_code"] == 42901
        assert "principal 'alice' may make 0.01 per second" in refused.json()["message"]
        assert 90 <= int(refused.headers["retry-after"]) <= 100
        other = await http.post("/async/events", content=b"x", headers=bearer("tb"))
        assert other.status_code == 202  # bob has his own bucket
        assert http.app.limits.rejected["rate"] == 1  # type: ignore[attr-defined]


async def test_anonymous_requests_share_a_bucket_per_address(kafka: BlockingCluster) -> None:
    limits = LimitSettings(rate=0.01, burst=1)
    async with gateway(kafka, SecuritySettings(), limits=limits) as http:
        assert (await http.post("/async/events", content=b"x")).status_code == 202
        refused = await http.post("/async/events", content=b"x")
        assert refused.status_code == 429
        assert "address 127.0.0.1" in refused.json()["message"]
        # /healthz is public: neither authenticated nor counted against the bucket
        assert (await http.get("/healthz")).status_code == 200


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request_of(principal: str | None, address: str = "10.0.0.1") -> Request:
    scope = {"method": "POST", "path": "/x", "headers": [], "client": (address, 5)}

    async def nothing() -> Any:
        raise AssertionError("no body here")

    request = Request(scope, nothing, nothing, max_body=10)
    request.principal = principal
    return request


def test_the_bucket_refills_at_the_rate_and_holds_at_most_the_burst() -> None:
    clock = Clock()
    limits = Limits(
        LimitSettings(rate=2, burst=4, principal_rates={"fast": {"rate": 100}}),  # type: ignore[dict-item]
        clock=clock,
    )
    alice = request_of("alice")
    for _ in range(4):
        limits.admit(alice)
    with pytest.raises(HttpError) as refused:
        limits.admit(alice)
    assert refused.value.headers == {"retry-after": "1"}
    clock.now += 0.5  # one token back
    limits.admit(alice)
    with pytest.raises(HttpError):
        limits.admit(alice)
    clock.now += 3600  # a long quiet spell refills to the burst, not beyond
    for _ in range(4):
        limits.admit(alice)
    with pytest.raises(HttpError):
        limits.admit(alice)
    fast = request_of("fast")
    for _ in range(100):
        limits.admit(fast)
    assert limits.rejected["rate"] == 3
    # the address bucket is not the principal's, even with a principal named like it
    limits.admit(request_of(None, "alice"))
    limits.admit(request_of("10.0.0.1"))


async def test_concurrent_requests_per_principal_are_capped(kafka: BlockingCluster) -> None:
    release = asyncio.Event()

    async def held_body() -> AsyncIterator[bytes]:
        yield b"first part"
        await asyncio.wait_for(release.wait(), 20)
        yield b", last part"

    limits = LimitSettings(max_concurrent=1)
    async with gateway(kafka, TOKENS, limits=limits) as http:
        first = asyncio.create_task(
            http.post("/async/events", content=held_body(), headers=bearer("ta"))
        )
        for _ in range(200):  # until the first request holds its slot (bounded)
            if http.app.limits._in_progress:  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.01)
        second = await http.post("/async/events", content=b"x", headers=bearer("ta"))
        assert second.status_code == 429
        assert second.json()["error_code"] == 42902
        assert second.headers["retry-after"] == "1"
        other = await http.post("/async/events", content=b"x", headers=bearer("tb"))
        assert other.status_code == 202
        release.set()
        assert (await asyncio.wait_for(first, 20)).status_code == 202
        third = await http.post("/async/events", content=b"x", headers=bearer("ta"))
        assert third.status_code == 202  # the slot came back
        assert http.app.limits.rejected["concurrency"] == 1  # type: ignore[attr-defined]
        assert not http.app.limits._in_progress  # type: ignore[attr-defined]


async def test_oversized_and_slow_bodies_are_refused_and_counted(
    kafka: BlockingCluster,
) -> None:
    stalled = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b"a first chunk, then nothing"
        await asyncio.wait_for(stalled.wait(), 20)
        yield b"never"

    limits = LimitSettings(max_body_bytes=100, body_read_timeout=0.2)
    async with gateway(kafka, SecuritySettings(), limits=limits) as http:
        declared = await http.post("/async/events", content=b"x" * 101)
        assert declared.status_code == 413
        streamed = await http.post("/batch/async/events", content=_chunks([b"x" * 60, b"y" * 60]))
        assert streamed.status_code == 413
        assert "limit of 100 bytes" in streamed.json()["message"]
        slow = await http.post("/async/events", content=slow_body())
        assert slow.status_code == 408
        assert slow.json()["message"] == "no request body data for 0.2 s"
        rejected = http.app.limits.rejected  # type: ignore[attr-defined]
        assert rejected["body_too_large"] == 2
        assert rejected["slow_body"] == 1
        stalled.set()


async def _chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:  # no Content-Length: counted as the body arrives
        yield part


def test_limit_settings_from_a_config_mapping_with_clear_errors() -> None:
    settings = LimitSettings.from_mapping(
        {"rate": 50, "burst": 100, "principal_rates": {"bulk": {"rate": 500, "burst": 1000}}}
    )
    assert settings.principal_rates == {"bulk": RateLimit(rate=500, burst=1000)}
    for values, message in [
        ({"max_body": 5}, r"\[limits\] has no setting 'max_body' \(did you mean 'max_body_bytes'"),
        ({"rate": "fast"}, "rate must be a number >= 1e-09"),
        ({"rate": -1}, "rate must be a number"),
        ({"burst": 5}, "burst needs rate"),
        ({"max_concurrent": 1.5}, "max_concurrent must be a whole number >= 1"),
        ({"max_header_bytes": 10}, "max_header_bytes must be a whole number >= 1024"),
        ({"principal_rates": {"x": {"rate": 1, "bust": 2}}}, r"principal_rates\['x'\] takes rate"),
        ({"principal_rates": {"x": 5}}, r"principal_rates\['x'\] must be \{rate, burst\}"),
        ({"body_read_timeout": True}, "body_read_timeout must be a number"),
    ]:
        with pytest.raises(ValueError, match=message):
            LimitSettings.from_mapping(values)
    assert LimitSettings.from_mapping({"body_read_timeout": None}).body_read_timeout is None
