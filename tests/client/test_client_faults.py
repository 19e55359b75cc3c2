"""AsyncClient under faults injected in librdkafka's mock cluster.

Brokers down and up, moved leaders, stale errors, dead bootstrap addresses, a whole
cluster replaced (re-bootstrap), slow brokers (timeouts), coordinators, connection purposes.
Every wait is bounded; nothing sleeps and hopes.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

import pytest
from aio_requests import fetch, metadata, produce
from peers import MockCluster, free_port

from pykaf._client._address import Address
from pykaf._client._async_client import AsyncClient
from pykaf._client._targets import Coordinator, Leader
from pykaf.errors import (
    BrokerConnectionError,
    ClientClosedError,
    KafkaTimeoutError,
    NoBrokersError,
    SaslAuthenticationFailedError,
    UnsupportedVersionError,
)
from pykaf.protocol._messages import build_request
from pykaf.protocol._records import encode_batch

pytestmark = pytest.mark.peer

_LIMIT = 20.0
PRODUCE, FETCH, METADATA, OFFSET_FETCH, FIND_COORDINATOR = 0, 1, 3, 9, 10
NOT_LEADER_OR_FOLLOWER, NOT_COORDINATOR = 6, 16
FAST = {"reconnect_backoff": 0.01, "reconnect_backoff_max": 0.1, "retry_backoff": 0.0}


def address_of(cluster: MockCluster, node_id: int) -> str:
    host, port = cluster.addresses[node_id]
    return f"{host}:{port}"


async def until(condition: Callable[[], bool], what: str, limit: float = 5.0) -> None:
    """Poll a condition the test cannot await directly; bounded in time."""
    async with asyncio.timeout(limit):
        while not condition():
            await asyncio.sleep(0.005)
    assert condition(), what


async def produce_one(client: AsyncClient, topic: str, partition: int, value: bytes) -> int:
    """Raw Produce of one record to Leader(topic, partition); returns the error code."""
    info = (await client.metadata([topic])).topics[topic]
    versions = await client.api_versions()
    batch = encode_batch([(None, value, [], 1_700_000_000_000)])
    answer = await client.request(
        produce(versions.version("Produce"), topic, info.topic_id, partition, batch),
        to=Leader(topic, partition),
        purpose="produce",
    )
    return int(answer.responses[0].partition_responses[0].error_code)


async def test_broker_down_fails_typed_and_retriable_then_reconnects(
    mock_cluster: MockCluster,
) -> None:
    async with (
        asyncio.timeout(_LIMIT),
        AsyncClient(mock_cluster.bootstrap, request_timeout=5.0, **FAST) as client,
    ):
        version = (await client.api_versions(2)).version("Metadata")
        await client.request(metadata(version, []), to=2)
        mock_cluster.broker_down(2)
        with pytest.raises(BrokerConnectionError) as info:
            await client.request(metadata(version, []), to=2)
        error = info.value
        assert error.retriable
        assert error.node_id == 2
        assert address_of(mock_cluster, 2) in str(error)
        # The other brokers are unaffected.
        await client.request(metadata(version, []), to=1)
        mock_cluster.broker_up(2)
        answer = await client.request(metadata(version, []), to=2)
        assert {int(b.node_id) for b in answer.brokers} == {1, 2, 3}


async def test_moved_leader_is_followed_after_not_leader(mock_cluster: MockCluster) -> None:
    mock_cluster.create_topic("moving", 1, 1)
    mock_cluster.set_leader("moving", 0, 1)
    async with asyncio.timeout(_LIMIT), AsyncClient(mock_cluster.bootstrap, **FAST) as client:
        assert await produce_one(client, "moving", 0, b"a") == 0
        mock_cluster.set_leader("moving", 0, 2)
        mock_cluster.start_request_tracking()
        # The cache still says broker 1: the request goes there and is refused...
        info = client._cluster.cache.topic("moving")
        assert info is not None
        assert info.partitions[0].leader == 1
        leader = await client._cluster.leader("moving", 0, asyncio.get_running_loop().time() + 5)
        assert leader[0] == 1
        versions = await client.api_versions()
        batch = encode_batch([(None, b"b", [], 1_700_000_000_000)])
        request = produce(versions.version("Produce"), "moving", info.topic_id, 0, batch)
        answer = await client.request(request, to=Leader("moving", 0), purpose="produce")
        assert int(answer.responses[0].partition_responses[0].error_code) == NOT_LEADER_OR_FOLLOWER
        # ...which marks the topic stale: the next request refreshes and goes to broker 2.
        answer = await client.request(request, to=Leader("moving", 0), purpose="produce")
        assert int(answer.responses[0].partition_responses[0].error_code) == 0
        produces = [r.broker_id for r in mock_cluster.get_requests() if r.api_key == PRODUCE]
        assert produces == [1, 2]
        assert client._cluster.cache.leader("moving", 0).leader == 2


async def test_injected_stale_error_triggers_one_metadata_refresh(
    mock_cluster: MockCluster,
) -> None:
    mock_cluster.create_topic("stale", 1, 1)
    async with asyncio.timeout(_LIMIT), AsyncClient(mock_cluster.bootstrap, **FAST) as client:
        assert await produce_one(client, "stale", 0, b"a") == 0
        versions = await client.api_versions()
        mock_cluster.push_request_errors(PRODUCE, [NOT_LEADER_OR_FOLLOWER])
        mock_cluster.start_request_tracking()
        info = client._cluster.cache.topic("stale")
        assert info is not None
        batch = encode_batch([(None, b"b", [], 1_700_000_000_000)])
        request = produce(versions.version("Produce"), "stale", info.topic_id, 0, batch)
        for _ in range(2):
            await client.request(request, to=Leader("stale", 0), purpose="produce")
        keys = [r.api_key for r in mock_cluster.get_requests()]
        # Produce (refused), Metadata (the refresh), Produce (accepted).
        assert keys == [PRODUCE, METADATA, PRODUCE]


async def test_bootstrap_with_one_dead_and_one_live_address(mock_cluster: MockCluster) -> None:
    dead = f"127.0.0.1:{free_port()}"
    live = address_of(mock_cluster, 1)
    async with asyncio.timeout(_LIMIT), AsyncClient([dead, live], **FAST) as client:
        # Pin the order (the client rotates its list at random) so the dead one is tried.
        client._cluster._bootstrap = (Address.parse(dead), Address.parse(live))
        view = await client.metadata([])
        assert sorted(view.brokers) == [1, 2, 3]
        assert client._pool.failing(Address.parse(dead))


async def test_all_bootstrap_addresses_dead_is_a_typed_error_within_the_timeout() -> None:
    dead = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    client = AsyncClient(dead, request_timeout=1.0, close_timeout=1.0, **FAST)
    async with asyncio.timeout(1.0 + 5.0):
        with pytest.raises(NoBrokersError) as info:
            await client.metadata()
    message = str(info.value)
    assert all(address in message for address in dead)
    assert info.value.retriable
    assert {e.address for e in info.value.errors} == set(dead)  # type: ignore[attr-defined]
    # A call still trying when close() comes fails with ClientClosedError; close is prompt.
    pending = asyncio.ensure_future(client.metadata(timeout=60.0))
    await until(lambda: all(client._pool.failing(Address.parse(a)) for a in dead), "tried")
    async with asyncio.timeout(1.0 + 2.0):
        await client.close()
        with pytest.raises(ClientClosedError):
            await pending


async def test_whole_cluster_down_then_up(mock_cluster: MockCluster) -> None:
    async with (
        asyncio.timeout(_LIMIT),
        AsyncClient(mock_cluster.bootstrap, request_timeout=1.0, **FAST) as client,
    ):
        await client.metadata([])
        mock_cluster.broker_down(-1)
        with pytest.raises(NoBrokersError):
            await client.metadata([])
        mock_cluster.broker_up(-1)
        view = await client.metadata([], timeout=5.0)
        assert sorted(view.brokers) == [1, 2, 3]


async def test_rebootstrap_to_a_replacement_cluster_follows_moved_brokers(
    mock_cluster_factory: Callable[..., MockCluster],
) -> None:
    old, new = mock_cluster_factory(3), mock_cluster_factory(3)
    old_first, new_first = address_of(old, 1), address_of(new, 1)
    async with (
        asyncio.timeout(_LIMIT),
        AsyncClient([old_first, new_first], request_timeout=3.0, **FAST) as client,
    ):
        client._cluster._bootstrap = (Address.parse(old_first), Address.parse(new_first))
        view = await client.metadata([])
        assert str(view.brokers[2].address) == address_of(old, 2)
        await client.api_versions(2)
        # Every broker the client knows goes away; the bootstrap list still has one that
        # answers: the client must re-bootstrap, and follow brokers 1-3 to their new ports.
        old.broker_down(-1)
        view = await client.metadata([])
        for node_id in (1, 2, 3):
            assert str(view.brokers[node_id].address) == address_of(new, node_id)
        new.start_request_tracking()
        await client.api_versions(2)
        version = (await client.api_versions(2)).version("Metadata")
        await client.request(metadata(version, []), to=2)
        assert [r.broker_id for r in new.get_requests() if r.api_key == METADATA] == [2]
        # No connection to the old addresses is kept.
        old_addresses = {Address.parse(address_of(old, n)) for n in (1, 2, 3)}
        assert not any(client._pool.connected(a) for a in old_addresses)


async def test_request_timeout_names_the_broker_and_the_client_recovers(
    mock_cluster: MockCluster,
) -> None:
    async with asyncio.timeout(_LIMIT), AsyncClient(mock_cluster.bootstrap, **FAST) as client:
        version = (await client.api_versions(3)).version("Metadata")
        mock_cluster.set_rtt(3, 3000)
        with pytest.raises(KafkaTimeoutError) as info:
            await client.request(metadata(version, []), to=3, timeout=0.3)
        assert isinstance(info.value, TimeoutError)
        assert "broker 3" in str(info.value)
        assert address_of(mock_cluster, 3) in str(info.value)
        mock_cluster.set_rtt(3, 0)
        await client.request(metadata(version, []), to=3, timeout=5.0)


async def test_close_fails_in_flight_requests_promptly(mock_cluster: MockCluster) -> None:
    client = AsyncClient(mock_cluster.bootstrap, close_timeout=1.0, **FAST)
    async with asyncio.timeout(_LIMIT):
        version = (await client.api_versions(1)).version("Metadata")
        mock_cluster.set_rtt(1, 10_000)
        pending = asyncio.ensure_future(client.request(metadata(version, []), to=1))
        address = Address.parse(address_of(mock_cluster, 1))
        await until(lambda: client._pool.load(address) > 0, "request in flight")
        async with asyncio.timeout(1.0 + 1.0):
            await client.close()
            with pytest.raises(ClientClosedError):
                await pending
        with pytest.raises(ClientClosedError):
            await client.request(metadata(version, []))


async def test_version_the_broker_lacks_is_refused_before_sending(
    mock_cluster: MockCluster,
) -> None:
    async with asyncio.timeout(_LIMIT), AsyncClient(mock_cluster.bootstrap) as client:
        versions = await client.api_versions(1)
        low, high = versions.ranges[2]  # ListOffsets
        assert high < 11, "the mock cluster gained ListOffsets v11; pick another API"
        request = build_request(
            "ListOffsets",
            high + 1,
            replica_id=-1,
            isolation_level=0,
            timeout_ms=1000,
            timeout=1000,
            topics=[],
        )
        with pytest.raises(UnsupportedVersionError) as info:
            await client.request(request, to=1)
        assert f"ListOffsets v{high + 1}" in str(info.value)
        assert f"v{low}..v{high}" in str(info.value)
        assert address_of(mock_cluster, 1) in str(info.value)


async def test_coordinator_is_found_cached_and_refreshed_on_not_coordinator(
    mock_cluster: MockCluster,
) -> None:
    mock_cluster.set_coordinator("group", "grp", 3)
    async with asyncio.timeout(_LIMIT), AsyncClient(mock_cluster.bootstrap) as client:
        version = (await client.api_versions()).version("OffsetFetch")
        request = build_request(
            "OffsetFetch",
            version,
            group_id="grp",
            topics=None,
            require_stable=False,
            groups=[{"group_id": "grp", "member_id": None, "member_epoch": -1, "topics": None}],
        )
        mock_cluster.start_request_tracking()
        for _ in range(2):
            answer = await client.request(request, to=Coordinator("grp"))
            assert int(answer.error_code) == 0
        mock_cluster.push_request_errors(OFFSET_FETCH, [NOT_COORDINATOR])
        answer = await client.request(request, to=Coordinator("grp"))
        assert int(answer.error_code) == NOT_COORDINATOR
        await client.request(request, to=Coordinator("grp"))
        requests = mock_cluster.get_requests()
        finds = [r for r in requests if r.api_key == FIND_COORDINATOR]
        fetches = [r.broker_id for r in requests if r.api_key == OFFSET_FETCH]
        assert len(finds) == 2  # once at first use, once after NOT_COORDINATOR
        assert fetches == [3, 3, 3, 3]


async def test_long_poll_on_fetch_connection_does_not_block_produce(
    mock_cluster: MockCluster,
) -> None:
    mock_cluster.create_topic("poll", 1, 1)
    mock_cluster.set_leader("poll", 0, 1)
    async with (
        asyncio.timeout(_LIMIT),
        AsyncClient(mock_cluster.bootstrap, max_in_flight_per_connection=1) as client,
    ):
        info = (await client.metadata(["poll"])).topics["poll"]
        versions = await client.api_versions(1)
        # The next Fetch broker 1 answers is held back 1.5 s: a long poll.
        mock_cluster.push_broker_request_errors(1, FETCH, [(0, 1500)])
        poll = asyncio.ensure_future(
            client.request(
                fetch(versions.version("Fetch"), "poll", info.topic_id, 0, max_wait_ms=1500),
                to=Leader("poll", 0),
                purpose="fetch",
            )
        )
        address = Address.parse(address_of(mock_cluster, 1))
        await until(lambda: client._pool.load(address) > 0, "fetch in flight")
        assert await produce_one(client, "poll", 0, b"not blocked") == 0
        assert not poll.done()  # the produce went by on its own connection
        answer = await poll
        assert int(answer.responses[0].partitions[0].error_code) == 0


async def test_pipelining_many_requests_over_one_connection(mock_cluster: MockCluster) -> None:
    async with (
        asyncio.timeout(_LIMIT),
        AsyncClient(mock_cluster.bootstrap, max_in_flight_per_connection=4) as client,
    ):
        version = (await client.api_versions(1)).version("Metadata")
        answers = await asyncio.gather(
            *(client.request(metadata(version, []), to=1) for _ in range(50))
        )
        assert len(answers) == 50
        address = Address.parse(address_of(mock_cluster, 1))
        conns = [c for (a, p), c in client._pool._conns.items() if a == address and p == "other"]
        assert len(conns) == 1


async def test_unknown_node_id_is_a_typed_error(mock_cluster: MockCluster) -> None:
    async with asyncio.timeout(_LIMIT), AsyncClient(mock_cluster.bootstrap) as client:
        with pytest.raises(BrokerConnectionError, match="no broker with node id 42"):
            await client.api_versions(42)


async def test_metadata_older_than_max_age_is_refreshed_before_use(
    mock_cluster: MockCluster,
) -> None:
    mock_cluster.create_topic("aging", 1, 1)
    async with (
        asyncio.timeout(_LIMIT),
        AsyncClient(mock_cluster.bootstrap, metadata_max_age=0.2) as client,
    ):
        assert await produce_one(client, "aging", 0, b"a") == 0
        info = client._cluster.cache.topic("aging")
        assert info is not None
        versions = await client.api_versions()
        batch = encode_batch([(None, b"b", [], 1_700_000_000_000)])
        request = produce(versions.version("Produce"), "aging", info.topic_id, 0, batch)
        mock_cluster.start_request_tracking()
        await client.request(request, to=Leader("aging", 0), purpose="produce")
        # A clock-driven age, not a race: the loop's clock must pass max_age.
        await asyncio.sleep(0.25)
        await client.request(request, to=Leader("aging", 0), purpose="produce")
        keys = [r.api_key for r in mock_cluster.get_requests()]
        assert keys == [PRODUCE, METADATA, PRODUCE]


async def test_authenticate_hook_runs_once_per_connection_after_api_versions(
    mock_cluster: MockCluster,
) -> None:
    seen: list[tuple[str, str]] = []

    async def authenticate(conn: Any) -> None:
        assert conn.versions is not None  # ApiVersions came first
        # The hook may talk on the connection (as SASL will).
        answer = await conn.send(metadata(conn.versions.version("Metadata"), []))
        assert answer.brokers
        seen.append((str(conn.address), conn.purpose))

    async with (
        asyncio.timeout(_LIMIT),
        AsyncClient(mock_cluster.bootstrap, authenticate=authenticate) as client,
    ):
        await client.api_versions(1)
        await client.api_versions(1)
        await client.request(metadata(4, []), to=1, purpose="group")
    # Once per connection: broker 1 has two (the second api_versions reused one).
    assert sorted(p for a, p in seen if a == address_of(mock_cluster, 1)) == ["group", "other"]


async def test_authenticate_hook_failure_fails_the_request_typed(
    mock_cluster: MockCluster,
) -> None:
    async def refuse(conn: Any) -> None:
        raise SaslAuthenticationFailedError(f"(test refusal at {conn.address})")

    async with (
        asyncio.timeout(_LIMIT),
        AsyncClient(mock_cluster.bootstrap, authenticate=refuse, request_timeout=1.0) as client,
    ):
        with pytest.raises((SaslAuthenticationFailedError, NoBrokersError)) as info:
            await client.api_versions()
        assert "test refusal" in str(info.value)


async def test_ssl_context_is_used_for_connections(mock_cluster: MockCluster) -> None:
    # The mock cluster speaks plaintext: a TLS handshake against it must fail as a typed
    # connection error naming the broker, which shows the context reaches the socket.
    context = ssl.create_default_context()
    async with (
        asyncio.timeout(_LIMIT),
        AsyncClient(
            address_of(mock_cluster, 1),
            ssl_context=context,
            request_timeout=1.0,
            connect_timeout=0.5,
        ) as client,
    ):
        with pytest.raises(NoBrokersError) as info:
            await client.api_versions()
        assert address_of(mock_cluster, 1) in str(info.value)
