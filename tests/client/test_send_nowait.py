"""BrokerConnection.send_nowait: the producer's callback path, against the embedded broker.

Every request gets exactly one answer callback: the response, a timeout (which closes
the connection, as send() does), or the connection's failure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
from typing import Any

import pytest

from pykaf._client._address import Address
from pykaf._client._connection import BrokerConnection
from pykaf._client._settings import ClientSettings
from pykaf.broker import Cluster
from pykaf.broker._faults import HeldResponses
from pykaf.errors import (
    BrokerConnectionError,
    ClientClosedError,
    KafkaTimeoutError,
    UnsupportedVersionError,
)
from pykaf.protocol._messages import build_request
from pykaf.protocol._records import encode_batch

Answer = tuple[Any, BaseException | None]


async def _open(cluster: Cluster, node: int | None = None, **options: Any) -> BrokerConnection:
    brokers = cluster.brokers
    broker = brokers[0] if node is None else next(b for b in brokers if b.node_id == node)
    loop = asyncio.get_running_loop()
    return await BrokerConnection.open(
        Address(host=broker.host, port=broker.port),
        node_id=broker.node_id,
        purpose="produce",
        settings=ClientSettings.from_options(options),
        deadline=loop.time() + 10,
    )


async def _topic(cluster: Cluster, name: str) -> int:
    """Create ``name`` (one partition) and return its leader's node id."""
    await cluster.create_topic(name, 1)
    state = cluster.state.partition(name, 0)
    assert state is not None
    return state.leader


def _collector() -> tuple[list[Answer], asyncio.Event, Any]:
    answers: list[Answer] = []
    arrived = asyncio.Event()

    def on_answer(response: Any, error: BaseException | None) -> None:
        answers.append((response, error))
        arrived.set()

    return answers, arrived, on_answer


def _metadata() -> Any:
    return build_request(
        3,
        12,
        topics=None,
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=False,
    )


def _produce(topic: str, acks: int) -> Any:
    batch = encode_batch([(None, b"v", (), None)])
    return build_request(
        0,
        9,
        transactional_id=None,
        acks=acks,
        timeout=datetime.timedelta(seconds=5),
        topic_data=[{"name": topic, "partition_data": [{"index": 0, "records": batch}]}],
    )


async def test_the_answer_arrives_through_the_callback(kafka_cluster: Cluster) -> None:
    conn = await _open(kafka_cluster)
    answers, arrived, on_answer = _collector()
    loop = asyncio.get_running_loop()
    assert conn.send_nowait(_metadata(), on_answer, deadline=loop.time() + 10)
    async with asyncio.timeout(10):
        await arrived.wait()
    [(response, error)] = answers
    assert error is None
    assert {b.node_id for b in response.brokers} == {b.node_id for b in kafka_cluster.brokers}
    assert conn.in_flight == 0
    conn.close()


async def test_answers_come_in_request_order(kafka_cluster: Cluster) -> None:
    conn = await _open(kafka_cluster)
    loop = asyncio.get_running_loop()
    order: list[int] = []
    done = asyncio.Event()

    def answer_of(index: int) -> Any:
        def on_answer(response: Any, error: BaseException | None) -> None:
            assert error is None
            order.append(index)
            if len(order) == 5:
                done.set()

        return on_answer

    for index in range(5):
        assert conn.send_nowait(_metadata(), answer_of(index), deadline=loop.time() + 10)
    async with asyncio.timeout(10):
        await done.wait()
    assert order == [0, 1, 2, 3, 4]
    conn.close()


async def _held(cluster: Cluster, topic: str) -> tuple[BrokerConnection, HeldResponses]:
    """A connection to ``topic``'s leader, whose Produce answers are held back."""
    conn = await _open(cluster, node=await _topic(cluster, topic))
    return conn, cluster.faults.hold_responses("Produce")


async def test_a_late_answer_times_out_and_closes_the_connection(kafka_cluster: Cluster) -> None:
    conn, hold = await _held(kafka_cluster, "late")
    answers, arrived, on_answer = _collector()
    loop = asyncio.get_running_loop()
    assert conn.send_nowait(_produce("late", -1), on_answer, deadline=loop.time() + 0.2)
    async with asyncio.timeout(10):
        await arrived.wait()
    hold.release()
    [(response, error)] = answers
    assert response is None
    assert isinstance(error, KafkaTimeoutError)
    assert "no answer within the timeout" in str(error)
    assert not conn.usable
    assert isinstance(conn.error, BrokerConnectionError)


async def test_a_dead_connection_raises_before_writing(kafka_cluster: Cluster) -> None:
    conn = await _open(kafka_cluster)
    conn.close()
    _, _, on_answer = _collector()
    loop = asyncio.get_running_loop()
    with pytest.raises(ClientClosedError, match="the client was closed"):
        conn.send_nowait(_metadata(), on_answer, deadline=loop.time() + 10)


async def test_a_version_the_broker_lacks_is_refused(kafka_cluster: Cluster) -> None:
    conn = await _open(kafka_cluster)
    assert conn.versions is not None
    newest = conn.versions.version(3)
    _, _, on_answer = _collector()
    loop = asyncio.get_running_loop()
    ranges = dict(conn.versions.ranges)
    ranges[3] = (0, newest - 1)  # as if the broker stopped one version short
    conn.versions = dataclasses.replace(conn.versions, ranges=ranges)
    with pytest.raises(UnsupportedVersionError):
        conn.send_nowait(
            build_request(
                3,
                newest,
                topics=None,
                allow_auto_topic_creation=False,
                include_topic_authorized_operations=False,
            ),
            on_answer,
            deadline=loop.time() + 10,
        )
    assert conn.in_flight == 0
    conn.close()


async def test_no_free_slot_writes_nothing(kafka_cluster: Cluster) -> None:
    conn = await _open(kafka_cluster, max_in_flight_per_connection=1)
    answers, arrived, on_answer = _collector()
    loop = asyncio.get_running_loop()
    assert conn.send_nowait(_metadata(), on_answer, deadline=loop.time() + 10)
    assert not conn.send_nowait(_metadata(), on_answer, deadline=loop.time() + 10)
    async with asyncio.timeout(10):
        await arrived.wait()
    assert len(answers) == 1
    assert conn.in_flight == 0
    conn.close()


async def test_a_closed_connection_fails_every_pending_answer(kafka_cluster: Cluster) -> None:
    conn, hold = await _held(kafka_cluster, "closing")
    answers, _, on_answer = _collector()
    loop = asyncio.get_running_loop()
    for _ in range(3):
        assert conn.send_nowait(_produce("closing", -1), on_answer, deadline=loop.time() + 10)
    async with asyncio.timeout(10):
        await hold.wait_held(1)  # a connection is served in order: the rest queue behind
    conn.close()
    hold.release()
    assert len(answers) == 3
    assert all(r is None and isinstance(e, ClientClosedError) for r, e in answers)


async def test_acks_0_is_answered_with_none_without_waiting(kafka_cluster: Cluster) -> None:
    conn = await _open(kafka_cluster, node=await _topic(kafka_cluster, "zero"))
    answers, arrived, on_answer = _collector()
    loop = asyncio.get_running_loop()
    assert conn.send_nowait(_produce("zero", 0), on_answer, deadline=loop.time() + 10)
    async with asyncio.timeout(10):
        await arrived.wait()
    assert answers == [(None, None)]
    assert conn.in_flight == 0
    conn.close()


async def test_a_raising_callback_does_not_break_the_connection(kafka_cluster: Cluster) -> None:
    conn = await _open(kafka_cluster)
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))

    def broken(response: Any, error: BaseException | None) -> None:
        raise RuntimeError("a bug in the caller")

    answers, arrived, on_answer = _collector()
    try:
        assert conn.send_nowait(_metadata(), broken, deadline=loop.time() + 10)
        assert conn.send_nowait(_metadata(), on_answer, deadline=loop.time() + 10)
        async with asyncio.timeout(10):
            await arrived.wait()
    finally:
        loop.set_exception_handler(None)
    assert answers[0][1] is None  # the next request was answered on the same connection
    assert conn.usable
    [context] = reported
    assert isinstance(context["exception"], RuntimeError)
    conn.close()


async def test_produce_nowait_writes_plain_values_and_answers_outcomes(
    kafka_cluster: Cluster,
) -> None:
    conn = await _open(kafka_cluster, node=await _topic(kafka_cluster, "plain"))
    answers, arrived, on_answer = _collector()
    loop = asyncio.get_running_loop()
    batch = encode_batch([(None, b"v", (), None)])
    for acks in (-1, 0, -1):
        arrived.clear()
        assert conn.produce_nowait(
            9,
            acks=acks,
            timeout_ms=5000,
            topics=[("plain", [(0, batch)])],
            on_answer=on_answer,
            deadline=loop.time() + 10,
        )
        async with asyncio.timeout(10):
            await arrived.wait()
    assert answers == [
        ({("plain", 0): (0, 0, -1, None)}, None),
        (None, None),  # acks=0: written, never answered
        ({("plain", 0): (0, 2, -1, None)}, None),
    ]
    conn.close()


async def test_acks_0_waits_for_a_paused_transport_to_drain(kafka_cluster: Cluster) -> None:
    # With no answer to wait for, the drain is what bounds an acks=0 producer's buffer:
    # its requests count as done only once the transport takes writes again.
    conn = await _open(kafka_cluster, node=await _topic(kafka_cluster, "paused"))
    answers, arrived, on_answer = _collector()
    loop = asyncio.get_running_loop()
    conn.pause_writing()  # what the transport calls above its high-water mark
    assert conn.send_nowait(_produce("paused", 0), on_answer, deadline=loop.time() + 10)
    for _ in range(3):  # a few loop turns: nothing may arrive while paused
        await asyncio.sleep(0)
    assert answers == []
    conn.resume_writing()
    async with asyncio.timeout(10):
        await arrived.wait()
    assert answers == [(None, None)]
    conn.pause_writing()
    assert conn.send_nowait(_produce("paused", 0), on_answer, deadline=loop.time() + 10)
    conn.close()  # a connection that fails while paused fails those requests
    assert len(answers) == 2
    assert isinstance(answers[1][1], ClientClosedError)
