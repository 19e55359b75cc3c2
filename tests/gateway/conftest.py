"""Gateway fixtures: an embedded cluster in its own thread (its own loop, as a real
Kafka would be) and the gateway app in-process behind httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from _gateway_support import FAST

from pykaf.broker import BlockingCluster
from pykaf.gateway import Gateway, GatewaySettings, create_app


@pytest.fixture
def kafka() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=1, auto_create_topics=False) as cluster:
        cluster.create_topic("events", 3)
        yield cluster


@pytest_asyncio.fixture
async def app(kafka: BlockingCluster, tmp_path: Path) -> AsyncIterator[Gateway]:
    gateway = create_app(
        GatewaySettings(
            bootstrap=kafka.bootstrap,
            journal_dir=str(tmp_path / "journal"),
            producer_options=FAST,
        )
    )
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.close(10)


@pytest_asyncio.fixture
async def http(app: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client
