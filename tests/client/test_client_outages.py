"""Broker outages in the log: one WARNING per episode with its cause, repeats counted,
recovery at INFO; and a WARNING when no broker at all can be reached.

Against the embedded broker (its fault injection takes brokers down and up) and ports
nothing listens on. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Callable

import pytest
from aio_requests import metadata
from peers import free_port

import pykaf
from pykaf._client._address import Address
from pykaf._client._async_client import AsyncClient
from pykaf.broker import Cluster
from pykaf.errors import BrokerConnectionError, KafkaTimeoutError, NoBrokersError

_LIMIT = 20.0
FAST = {"reconnect_backoff": 0.01, "reconnect_backoff_max": 0.05, "retry_backoff": 0.01}
LOGGER = "pykaf.client"


async def until(condition: Callable[[], bool], what: str, limit: float = 5.0) -> None:
    """Poll a condition the test cannot await directly; bounded in time."""
    async with asyncio.timeout(limit):
        while not condition():
            await asyncio.sleep(0.005)
    assert condition(), what


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


async def test_broker_down_warns_once_counts_repeats_and_recovery_is_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with (
        asyncio.timeout(_LIMIT),
        Cluster(brokers=3) as cluster,
        AsyncClient(cluster.bootstrap, request_timeout=5.0, **FAST) as client,
    ):
        node = cluster.state.brokers[2]
        address = Address(host=node.host, port=node.port)
        version = (await client.api_versions(2)).version("Metadata")
        await client.request(metadata(version, []), to=2)
        await cluster.faults.broker_down(2)
        await until(lambda: not client._pool.connected(address), "the idle connection closed")
        assert messages(caplog, logging.WARNING) == []  # an idle close is no outage yet

        failed = 0
        for _ in range(5):
            with pytest.raises(BrokerConnectionError):
                await client.request(metadata(version, []), to=2)
            failed += 1
        warnings = messages(caplog, logging.WARNING)
        assert len(warnings) == 1, warnings
        assert warnings[0].startswith(f"broker 2 at {address} is unreachable (refused)")
        assert "Check that the broker runs and listens on this address" in warnings[0]

        await cluster.faults.broker_up(2)
        await client.request(metadata(version, []), to=2)
        infos = messages(caplog, logging.INFO)
        assert len(infos) == 1, infos
        assert re.fullmatch(
            rf"broker 2 at {re.escape(str(address))} reachable again after \d+\.\d s,"
            rf" {failed} failed attempts",
            infos[0],
        ), infos[0]
        assert len(messages(caplog, logging.WARNING)) == 1

        # A second outage is a second episode: warned again.
        await cluster.faults.broker_down(2)
        await until(lambda: not client._pool.connected(address), "the connection closed")
        with pytest.raises(BrokerConnectionError):
            await client.request(metadata(version, []), to=2)
        assert len(messages(caplog, logging.WARNING)) == 2


async def test_connection_lost_with_requests_unanswered_begins_an_episode(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with (
        asyncio.timeout(_LIMIT),
        Cluster(brokers=3) as cluster,
        AsyncClient(cluster.bootstrap, request_timeout=5.0, **FAST) as client,
    ):
        node = cluster.state.brokers[2]
        address = Address(host=node.host, port=node.port)
        version = (await client.api_versions(2)).version("Metadata")
        hold = cluster.faults.hold_responses("Metadata", broker=2)
        waiting = asyncio.ensure_future(client.request(metadata(version, []), to=2))
        await hold.wait_held()
        await cluster.faults.broker_down(2)  # the unanswered request is lost with it
        with pytest.raises(BrokerConnectionError):
            await waiting
        warnings = messages(caplog, logging.WARNING)
        assert len(warnings) == 1, warnings
        assert warnings[0].startswith(f"broker 2 at {address} is unreachable (connection lost)")
        assert "1 request(s) unanswered" in warnings[0]
        hold.release()
        await cluster.faults.broker_up(2)
        await client.request(metadata(version, []), to=2)
        infos = messages(caplog, logging.INFO)
        assert len(infos) == 1, infos
        assert "reachable again after" in infos[0]


async def test_no_broker_reachable_warns_once_then_info_when_one_comes_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    first, second = free_port(), free_port()
    bootstrap = f"127.0.0.1:{first},127.0.0.1:{second}"
    async with (
        asyncio.timeout(_LIMIT),
        AsyncClient(bootstrap, request_timeout=0.3, **FAST) as client,
    ):
        for _ in range(3):
            with pytest.raises(NoBrokersError):
                await client.metadata()
        warnings = messages(caplog, logging.WARNING)
        cluster_warnings = [w for w in warnings if w.startswith("no broker can be reached")]
        assert len(cluster_warnings) == 1, warnings
        assert f"127.0.0.1:{first} (refused)" in cluster_warnings[0]
        assert f"127.0.0.1:{second} (refused)" in cluster_warnings[0]
        assert "Check the bootstrap list" in cluster_warnings[0]
        # One per address too, each once, however many attempts failed.
        per_broker = [w for w in warnings if w not in cluster_warnings]
        assert len(per_broker) == 2, per_broker
        assert any(
            w.startswith(
                f"broker at 127.0.0.1:{first} is unreachable (refused): connection refused"
            )
            for w in per_broker
        ), per_broker

        async with Cluster(brokers=1, port=first):
            await client.metadata()
        infos = messages(caplog, logging.INFO)
        assert any(
            re.match(rf"broker at 127\.0\.0\.1:{first} reachable again after", i) for i in infos
        ), infos
        assert any(
            re.match(
                r"the cluster is reachable again \(through .*\) after \d+\.\d s, \d+ failed", i
            )
            for i in infos
        ), infos
        assert len(messages(caplog, logging.WARNING)) == 3


async def test_broker_that_accepts_but_never_answers_warns_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel accepts; nobody ever reads or answers
        port = silent.getsockname()[1]
        async with (
            asyncio.timeout(_LIMIT),
            AsyncClient(
                f"127.0.0.1:{port}", request_timeout=0.8, connect_timeout=0.2, **FAST
            ) as client,
        ):
            with pytest.raises((NoBrokersError, KafkaTimeoutError)):
                await client.metadata()
    warnings = messages(caplog, logging.WARNING)
    assert any(
        w.startswith(f"broker at 127.0.0.1:{port} is unreachable (timeout)")
        and "reachable from here" in w
        for w in warnings
    ), warnings


async def test_producer_waiting_for_metadata_says_so_at_warning_meanwhile(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    port = free_port()
    async with asyncio.timeout(_LIMIT):
        producer = pykaf.AsyncProducer(f"127.0.0.1:{port}", max_block=2.0, **FAST)
        try:
            sending = asyncio.ensure_future(producer.send("orders", b"v"))
            await until(
                lambda: any(
                    m.startswith("no broker can be reached")
                    for m in messages(caplog, logging.WARNING)
                ),
                "a WARNING while the producer waits for metadata",
            )
            assert not sending.done()  # said so while still waiting, not at the end
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
        finally:
            await producer.close()
