"""The client core's events (issue 15), with their real values, against the embedded
broker: connections opened, failed and closed, requests answered, throttling, metadata
refreshes, leader moves; ``on_event=`` on every client and ``.events`` on every role.

Every wait is bounded (``until``); nothing asserts a timing beyond "positive".
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import pykaf
from pykaf._client import _cluster, _connection_events
from pykaf.broker import BlockingCluster, Cluster
from pykaf.broker._registry import RequestContext
from pykaf.broker._server import CallNext
from pykaf.errors import BrokerConnectionError
from pykaf.events import (
    ConnectionClosed,
    ConnectionFailed,
    ConnectionOpened,
    Event,
    LeaderMoved,
    MetadataRefreshed,
    RequestAnswered,
    Throttled,
)
from pykaf.protocol import encode_request, encode_response
from pykaf.protocol._messages import Payload, build_request

_LIMIT = 20.0
FAST = {"reconnect_backoff": 0.01, "reconnect_backoff_max": 0.05, "retry_backoff": 0.01}
METADATA = 3


async def until(condition: Callable[[], bool], what: str, limit: float = 5.0) -> None:
    """Poll a condition the test cannot await directly; bounded in time."""
    async with asyncio.timeout(limit):
        while not condition():
            await asyncio.sleep(0.005)
    assert condition(), what


def brokers_only(version: int) -> Payload:
    return build_request(
        METADATA,
        version,
        topics=[{"name": " "}] if version == 0 else [],
        allow_auto_topic_creation=False,
        include_cluster_authorized_operations=False,
        include_topic_authorized_operations=False,
    )


def of(kind: type[Event], events: list[Event]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


# -- connections ----------------------------------------------------------------------


async def test_a_broker_down_then_up_yields_closed_failed_then_opened() -> None:
    heard: list[Event] = []
    async with (
        asyncio.timeout(_LIMIT),
        Cluster(brokers=2) as cluster,
        pykaf.AsyncClient(
            cluster.bootstrap, request_timeout=5.0, on_event=heard.append, client_id="t1", **FAST
        ) as client,
    ):
        node = cluster.state.brokers[2]
        address = f"{node.host}:{node.port}"
        version = (await client.api_versions(2)).version("Metadata")
        await client.request(brokers_only(version), to=2)
        (first,) = [e for e in of(ConnectionOpened, heard) if e.address == address]
        assert first.broker in (None, 2)  # None: it was the bootstrap connection
        assert first.purpose == "other"
        assert first.client_id == "t1"
        assert first.time_to_connect > 0

        await cluster.faults.broker_down(2)
        await until(
            lambda: any(e.address == address for e in of(ConnectionClosed, heard)),
            "the broker's close was heard",
        )
        (closed,) = [e for e in of(ConnectionClosed, heard) if e.address == address]
        assert closed.broker == 2
        assert closed.error == "BrokerConnectionError"  # not on purpose: the broker left
        assert "closed the connection" in closed.reason

        with pytest.raises(BrokerConnectionError):
            await client.request(brokers_only(version), to=2)
        failed = [e for e in of(ConnectionFailed, heard) if e.address == address]
        assert failed, heard
        assert failed[0].broker == 2
        assert failed[0].error == "BrokerConnectionError"
        assert "refused" in failed[0].reason

        await cluster.faults.broker_up(2)
        for _ in range(50):  # bounded: the reconnect backoff may refuse a few attempts
            try:
                await client.request(brokers_only(version), to=2)
                break
            except BrokerConnectionError:
                await asyncio.sleep(0.02)
        ours = [
            e
            for e in heard
            if isinstance(e, ConnectionOpened | ConnectionFailed | ConnectionClosed)
            and e.address == address
        ]
        kinds = [type(e).__name__ for e in ours]
        assert kinds[:3] == ["ConnectionOpened", "ConnectionClosed", "ConnectionFailed"], kinds
        assert kinds[-1] == "ConnectionOpened", kinds
        assert set(kinds[2:-1]) == {"ConnectionFailed"}, kinds
        assert ours[-1].time_to_connect > 0
        assert ours[-1].broker == 2
        assert all(e.time > 0 for e in ours)


async def test_closing_the_client_closes_its_connections_on_purpose() -> None:
    heard: list[Event] = []
    async with asyncio.timeout(_LIMIT), Cluster(brokers=1) as cluster:
        async with pykaf.AsyncClient(cluster.bootstrap, on_event=heard.append) as client:
            await client.metadata()
        (opened,) = of(ConnectionOpened, heard)
        (closed,) = of(ConnectionClosed, heard)
        assert closed.address == opened.address
        assert closed.error is None
        assert "closed" in closed.reason


# -- requests -------------------------------------------------------------------------


async def test_a_metadata_request_answered_names_the_api_broker_and_frame_sizes() -> None:
    heard: list[Event] = []
    # Independent sizes: the broker side's view of the same request and answer, framed
    # by the protocol layer's own encoders.
    seen: list[int] = []

    async def measure(ctx: RequestContext, request: Payload, call_next: CallNext) -> Any:
        response = await call_next(ctx, request)
        if ctx.api_key == METADATA and ctx.node_id == 2:
            framed = encode_request(
                request, correlation_id=ctx.correlation_id, client_id=ctx.client_id
            )
            answer = encode_response(ctx.api_key, ctx.api_version, ctx.correlation_id, response)
            seen.extend((ctx.api_version, len(framed), len(answer)))
        return response

    async with (
        asyncio.timeout(_LIMIT),
        Cluster(brokers=2) as cluster,
        pykaf.AsyncClient(cluster.bootstrap, on_event=heard.append) as client,
    ):
        await client.metadata()
        version = (await client.api_versions(2)).version("Metadata")
        cluster.set_interceptor(measure)
        heard.clear()
        await client.request(brokers_only(version), to=2)
        answered = of(RequestAnswered, heard)
        (event,) = [e for e in answered if e.api == "Metadata"]
        assert event.broker == 2
        assert event.version == version
        assert [event.version, event.request_bytes, event.response_bytes] == seen
        assert event.request_bytes > 0
        assert event.response_bytes > 0
        assert event.latency > 0
        assert event.client_id == "pykaf"


async def test_a_throttled_answer_yields_throttled_with_its_seconds() -> None:
    heard: list[Event] = []

    async def throttle(ctx: RequestContext, request: Payload, call_next: CallNext) -> Any:
        response = await call_next(ctx, request)
        if ctx.api_key == METADATA:
            response = dataclasses.replace(response, throttle_time=timedelta(milliseconds=250))
        return response

    async with (
        asyncio.timeout(_LIMIT),
        Cluster(brokers=1) as cluster,
        pykaf.AsyncClient(cluster.bootstrap, on_event=heard.append) as client,
    ):
        await client.metadata()
        assert of(Throttled, heard) == []
        cluster.set_interceptor(throttle)
        await client.metadata()
        (throttled,) = of(Throttled, heard)
        assert throttled.api == "Metadata"
        assert throttled.throttle_time == 0.25
        assert throttled.broker == 1


# -- metadata -------------------------------------------------------------------------


async def test_a_leader_move_yields_leader_moved_with_old_and_new_leader() -> None:
    heard: list[Event] = []
    async with (
        asyncio.timeout(_LIMIT),
        Cluster(brokers=2) as cluster,
        pykaf.AsyncClient(cluster.bootstrap, on_event=heard.append) as client,
    ):
        await cluster.create_topic("moving", 2, replication_factor=2)
        before = (await client.metadata(["moving"])).topics["moving"].partitions[0]
        refreshed = of(MetadataRefreshed, heard)
        assert refreshed[-1].brokers == 2
        assert refreshed[-1].topics == 1
        assert refreshed[-1].duration > 0
        assert of(LeaderMoved, heard) == []  # a first sight is no move

        other = 1 if before.leader == 2 else 2
        cluster.faults.move_leader("moving", 0, other)
        await client.metadata(["moving"])
        (moved,) = of(LeaderMoved, heard)
        assert (moved.topic, moved.partition) == ("moving", 0)
        assert (moved.old_leader, moved.new_leader) == (before.leader, other)
        assert moved.leader_epoch is not None
        assert moved.leader_epoch > before.leader_epoch


# -- subscribing ----------------------------------------------------------------------


async def test_a_subscriber_that_raises_is_logged_once_and_the_client_keeps_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="pykaf.telemetry")
    calls = 0

    def broken(event: Event) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("a bug in the user's callback")

    heard: list[Event] = []
    async with (
        asyncio.timeout(_LIMIT),
        Cluster(brokers=1) as cluster,
        pykaf.AsyncClient(cluster.bootstrap, on_event=[broken, heard.append]) as client,
    ):
        for _ in range(3):
            view = await client.metadata()
            assert list(view.brokers) == [1]
        assert calls == len(heard) >= 5
    warnings = [r.getMessage() for r in caplog.records if r.name == "pykaf.telemetry"]
    assert len(warnings) == 1, warnings
    assert "ValueError" in warnings[0]


async def test_unsubscribe_stops_the_events_and_subscribe_starts_them() -> None:
    async with (
        asyncio.timeout(_LIMIT),
        Cluster(brokers=1) as cluster,
        pykaf.AsyncClient(cluster.bootstrap) as client,
    ):
        assert client.events.active is False
        heard: list[Event] = []
        unsubscribe = client.events.subscribe(heard.append)
        await client.metadata()
        count = len(heard)
        assert [type(e) for e in heard][-2:] == [RequestAnswered, MetadataRefreshed]
        unsubscribe()
        assert client.events.active is False
        await client.metadata()
        assert len(heard) == count


async def test_on_event_as_a_list_gives_every_subscriber_the_same_events() -> None:
    first: list[Event] = []
    second: list[Event] = []
    async with (
        asyncio.timeout(_LIMIT),
        Cluster(brokers=1) as cluster,
        pykaf.AsyncClient(cluster.bootstrap, on_event=[first.append, second.append]) as client,
    ):
        await client.metadata()
    assert first == second
    assert [type(e) for e in first] == [
        RequestAnswered,  # ApiVersions, on the new connection
        ConnectionOpened,
        RequestAnswered,  # Metadata
        MetadataRefreshed,
        ConnectionClosed,
    ]
    assert first[0].api == "ApiVersions"


@pytest.mark.parametrize(
    "bad", [42, "print", [print, 3], (None,)], ids=["int", "str", "list-with-int", "tuple-none"]
)
def test_on_event_refuses_what_is_not_a_callable_or_a_list_of_them(bad: object) -> None:
    with pytest.raises(TypeError, match=r"on_event.* must be a callable"):
        pykaf.ClientSettings(on_event=bad)  # type: ignore[arg-type]
    for role in (pykaf.Producer, pykaf.AsyncConsumer, pykaf.AsyncClient):
        with pytest.raises(TypeError, match=r"on_event.* must be a callable"):
            role("127.0.0.1:9", on_event=bad)


def test_on_event_stays_out_of_the_settings_repr_and_equality() -> None:
    settings = pykaf.ClientSettings(on_event=print)
    assert "on_event" not in repr(settings)
    assert settings == pykaf.ClientSettings()
    assert settings.on_event == (print,)
    assert pykaf.ClientSettings(on_event=(c for c in [print, repr])).on_event == (print, repr)


def test_nothing_is_built_when_nobody_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cost rule: with no subscriber no event is even constructed."""

    def forbidden(**fields: object) -> None:
        raise AssertionError(f"an event was built with nobody listening: {fields}")

    for module, names in (
        (
            _connection_events,
            ("ConnectionOpened", "ConnectionFailed", "ConnectionClosed", "RequestAnswered"),
        ),
        (_connection_events, ("Throttled",)),
        (_cluster, ("MetadataRefreshed", "LeaderMoved")),
    ):
        for name in names:
            monkeypatch.setattr(module, name, forbidden)

    async def run() -> None:
        async with (
            asyncio.timeout(_LIMIT),
            Cluster(brokers=2) as cluster,
            pykaf.AsyncClient(cluster.bootstrap, **FAST) as client,
        ):
            await cluster.create_topic("quiet", 1, replication_factor=2)
            before = (await client.metadata(["quiet"])).topics["quiet"].partitions[0].leader
            cluster.faults.move_leader("quiet", 0, 1 if before == 2 else 2)
            await client.metadata(["quiet"])
            await cluster.faults.broker_down(2)
            with pytest.raises(BrokerConnectionError):
                await client.request(brokers_only(4), to=2)

    asyncio.run(run())


# -- every role -----------------------------------------------------------------------


def _opened(heard: list[Event]) -> list[ConnectionOpened]:
    return of(ConnectionOpened, heard)


def test_every_blocking_role_takes_on_event_and_shares_its_clients_bus() -> None:
    with BlockingCluster(brokers=1) as cluster:
        cluster.create_topic("roles", 1)
        heard: list[Event] = []
        with pykaf.Client(cluster.bootstrap, on_event=heard.append) as client:
            assert client.events is client._aclient.events
            client.metadata()
        assert _opened(heard)

        heard = []
        with pykaf.Producer(cluster.bootstrap, on_event=heard.append) as producer:
            assert producer.events is producer._engine.client.events
            producer.send("roles", b"x").result(10)
        assert _opened(heard)

        heard = []
        with pykaf.Consumer(cluster.bootstrap, on_event=heard.append) as consumer:
            assert consumer.events is consumer._async._client.events
            consumer.end_offsets([pykaf.TopicPartition("roles", 0)])
        assert _opened(heard)

        heard = []
        with pykaf.Admin(cluster.bootstrap, on_event=heard.append) as admin:
            assert admin.events is admin._admin._client.events
            admin.list_topics()
        assert _opened(heard)


async def test_every_async_role_takes_on_event_and_shares_its_clients_bus() -> None:
    async with asyncio.timeout(_LIMIT), Cluster(brokers=1) as cluster:
        await cluster.create_topic("roles", 1)
        heard: list[Event] = []
        async with pykaf.AsyncProducer(cluster.bootstrap, on_event=heard.append) as producer:
            assert producer.events is producer._client.events
            await producer.send("roles", b"x")
        assert _opened(heard)

        heard = []
        async with pykaf.AsyncConsumer(cluster.bootstrap, on_event=heard.append) as consumer:
            assert consumer.events is consumer._client.events
            await consumer.end_offsets([pykaf.TopicPartition("roles", 0)])
        assert _opened(heard)

        heard = []
        async with pykaf.AsyncAdmin(cluster.bootstrap, on_event=heard.append) as admin:
            assert admin.events is admin._client.events
            await admin.list_topics()
        assert _opened(heard)
