"""An asyncio client belongs to the event loop it was first used in: a call from a plain
thread or from another thread's loop raises ``WrongEventLoopError`` and touches nothing,
and the client goes on in its own loop (``pykaf._client._loop_bound``).

Before: ``AsyncProducer.send`` from a plain thread queued its record with nothing to wake
the loop (it left about a second later); ``produce`` and ``flush`` from another thread's
loop wrote a request on the owner's connection from that thread, and the connection
failed in the owner's loop ("pop from an empty deque" in ``data_received``); an
``AsyncClient`` reused after its ``asyncio.run`` returned raised asyncio's bare "attached
to a different loop"."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from pykaf import (
    AsyncAdmin,
    AsyncClient,
    AsyncConsumer,
    AsyncProducer,
    Receipt,
    TopicPartition,
    WrongEventLoopError,
)
from pykaf.broker import BlockingCluster
from pykaf.protocol import build_request

TOPIC = "bound"
BOUND = 30.0  # seconds, for every wait here


@pytest.fixture(scope="module")
def cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=1) as running:
        running.create_topic(TOPIC, 1)
        yield running


def in_thread(call: Callable[[], Any]) -> BaseException | None:
    """Run ``call`` in a new plain thread; what it raised (None: nothing)."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(BOUND)
    assert not thread.is_alive()
    return raised[0] if raised else None


def in_other_loop(make: Callable[[], Awaitable[Any]]) -> BaseException | None:
    """Await ``make()`` in another thread's event loop; what it raised."""

    async def call() -> None:
        await make()

    return in_thread(lambda: asyncio.run(call()))


async def off_loop(call: Callable[[], BaseException | None]) -> BaseException | None:
    # The owner's loop keeps running while the other thread calls (as in a real program).
    return await asyncio.to_thread(call)


def refused(raised: BaseException | None, kind: str, where: str) -> None:
    assert isinstance(raised, WrongEventLoopError), repr(raised)
    assert isinstance(raised, RuntimeError)  # as asyncio's own loop mismatch
    assert kind in str(raised), str(raised)
    assert where in str(raised), str(raised)


async def test_an_async_producer_refuses_other_threads_and_goes_on(
    cluster: BlockingCluster,
) -> None:
    async with AsyncProducer(cluster.bootstrap, linger=0.001) as producer:
        first = await producer.send(TOPIC, b"first")
        plain = "a thread with no running event loop"
        other = "another event loop"
        raised = await off_loop(lambda: in_thread(lambda: producer.send(TOPIC, b"x")))
        refused(raised, "AsyncProducer", plain)
        receipt = Receipt()  # of this loop: it is the producer's call that is refused
        raised = await off_loop(
            lambda: in_thread(lambda: producer.produce_values(TOPIC, [b"x"], receipt))
        )
        refused(raised, "AsyncProducer", plain)

        async def send() -> None:
            await producer.send(TOPIC, b"x")

        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "produce": lambda: producer.produce(TOPIC, b"x"),
            "send": send,
            "produce_batch": lambda: producer.produce_batch(TOPIC, [b"x", b"y"]),
            "partitions_for": lambda: producer.partitions_for(TOPIC),
            "flush": lambda: producer.flush(1),
            "close": lambda: producer.close(1),
        }
        for call in calls.values():
            raised = await off_loop(lambda call=call: in_other_loop(call))  # type: ignore[misc]
            refused(raised, "AsyncProducer", other)
        # Nothing was taken or broken: the next record follows the first at once.
        after = await asyncio.wait_for(producer.send(TOPIC, b"after"), BOUND)
        assert after.offset == first.offset + 1
        assert await producer.flush(BOUND) == 0
        assert not producer.closed


async def test_an_async_producer_first_called_from_a_plain_thread_says_so(
    cluster: BlockingCluster,
) -> None:
    producer = AsyncProducer(cluster.bootstrap)
    raised = await off_loop(lambda: in_thread(lambda: producer.send(TOPIC, b"x")))
    assert isinstance(raised, WrongEventLoopError), repr(raised)
    assert "no running event loop" in str(raised)
    assert "pykaf.Producer" in str(raised)
    assert producer.pending() == 0  # nothing was taken
    await producer.close(BOUND)


async def test_an_async_consumer_refuses_other_loops(cluster: BlockingCluster) -> None:
    tp = TopicPartition(TOPIC, 0)
    async with AsyncConsumer(cluster.bootstrap, request_timeout=5) as consumer:
        await consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "poll": lambda: consumer.poll(0.1),
            "seek": lambda: consumer.seek(tp, 0),
            "position": lambda: consumer.position(tp),
            "end_offsets": lambda: consumer.end_offsets([tp]),
            "close": lambda: consumer.close(1),
        }
        for call in calls.values():
            raised = await off_loop(lambda call=call: in_other_loop(call))  # type: ignore[misc]
            refused(raised, "AsyncConsumer", "another event loop")
        assert await consumer.position(tp) >= 0  # its own loop goes on
        assert not consumer.closed


async def test_an_async_client_and_admin_refuse_other_loops(cluster: BlockingCluster) -> None:
    async with AsyncClient(cluster.bootstrap, request_timeout=5) as client:
        await client.metadata([TOPIC])
        raised = await off_loop(lambda: in_other_loop(lambda: client.metadata([TOPIC])))
        refused(raised, "AsyncClient", "another event loop")
        request = build_request("Metadata", 1, topics=None)
        raised = await off_loop(lambda: in_other_loop(lambda: client.request(request)))
        refused(raised, "AsyncClient", "another event loop")
        assert TOPIC in (await client.metadata([TOPIC])).topics
    async with AsyncAdmin(cluster.bootstrap, request_timeout=5) as admin:
        assert TOPIC in await admin.list_topics()
        raised = await off_loop(lambda: in_other_loop(admin.list_topics))
        refused(raised, "AsyncAdmin", "another event loop")
        assert TOPIC in await admin.list_topics()


def test_a_client_whose_loop_ended_says_so_in_the_next(cluster: BlockingCluster) -> None:
    client = AsyncClient(cluster.bootstrap, request_timeout=5)
    assert TOPIC in asyncio.run(client.metadata([TOPIC])).topics
    with pytest.raises(WrongEventLoopError, match="an event loop that has ended"):
        asyncio.run(client.metadata([TOPIC]))


def test_an_async_producer_refuses_another_loop_of_its_own_thread(
    cluster: BlockingCluster,
) -> None:
    # The producer's loop is not running while another runs on its thread. Before,
    # send() there returned a future of the producer's loop, and awaiting it raised
    # asyncio's ValueError ("The future belongs to a different loop..."), naming neither.
    own, other = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        producer = own.run_until_complete(_made(cluster))

        async def send_here() -> Any:
            return await asyncio.wait_for(producer.send(TOPIC, b"elsewhere"), BOUND)

        with pytest.raises(WrongEventLoopError, match="another event loop"):
            other.run_until_complete(send_here())
        with pytest.raises(WrongEventLoopError, match="another event loop"):
            other.run_until_complete(producer.flush(BOUND))

        async def in_own_loop() -> int:
            await producer.send(TOPIC, b"own")  # goes on in its own loop
            return await producer.close(BOUND)

        assert own.run_until_complete(in_own_loop()) == 0
    finally:
        other.close()
        own.close()


async def _made(cluster: BlockingCluster) -> AsyncProducer:
    producer = AsyncProducer(cluster.bootstrap, request_timeout=5)
    await producer.send(TOPIC, b"first")  # bound to this loop from now on
    return producer
