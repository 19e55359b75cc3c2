"""Fault injection (``cluster.faults``): on the wire, then as confluent-kafka sees it."""

from __future__ import annotations

import select
import socket
import time
from typing import Any

import pytest
from _broker_clients import quiet
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec
from wire_client import WireClient

from pykaf._errors import UnknownApiError
from pykaf.broker import BlockingCluster, CallNext, Cluster, RequestContext
from pykaf.protocol._records import decode_batches, encode_batch

PRODUCE_V = 9
NOT_LEADER = 6
REQUEST_TIMED_OUT = 7
TOPIC_AUTHORIZATION_FAILED = 29


def address_of(cluster: BlockingCluster, node_id: int) -> str:
    node = cluster.state.brokers[node_id]
    return f"{node.host}:{node.port}"


def leader_of(cluster: BlockingCluster, topic: str, partition: int = 0) -> int:
    state = cluster.state.partition(topic, partition)
    assert state is not None
    return state.leader


def batch(*values: bytes) -> bytes:
    return encode_batch([(None, v, None, 1000) for v in values])


def produce(client: WireClient, topic: str, data: bytes, *, acks: int = -1) -> Any:
    fields = {
        "transactional_id": None,
        "acks": acks,
        "timeout": 5000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": data}]}],
    }
    client.send("Produce", PRODUCE_V, **fields)
    if acks == 0:
        return None
    return client.receive().responses[0].partition_responses[0]


def fetch(client: WireClient, topic: str, offset: int = 0) -> Any:
    return client.request(
        "Fetch",
        12,
        replica_id=-1,
        max_wait=0,
        min_bytes=1,
        max_bytes=1 << 20,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=[
            {
                "topic": topic,
                "partitions": [
                    {"partition": 0, "fetch_offset": offset, "partition_max_bytes": 1 << 20}
                ],
            }
        ],
        forgotten_topics_data=[],
        rack_id="",
    )


def stored(cluster: BlockingCluster, topic: str) -> list[bytes | None]:
    with WireClient(address_of(cluster, leader_of(cluster, topic))) as client:
        part = fetch(client, topic).responses[0].partitions[0]
    return [r.value for b in decode_batches(part.records or b"") for r in b.records]


def metadata(client: WireClient, *topics: str) -> Any:
    return client.request(
        "Metadata",
        12,
        include_topic_authorized_operations=False,
        topics=[{"name": t} for t in topics] if topics else None,
        allow_auto_topic_creation=False,
    )


def answered_within(sock: socket.socket, seconds: float) -> bool:
    """True when the socket has bytes (or EOF) to read within ``seconds``."""
    readable, _, _ = select.select([sock], [], [], seconds)
    return bool(readable)


# -- on the wire --------------------------------------------------------------------------


def test_pushed_errors_answer_the_next_requests_in_order(cluster: BlockingCluster) -> None:
    cluster.create_topic("errs", 1)
    with WireClient(address_of(cluster, leader_of(cluster, "errs"))) as client:
        cluster.faults.push_errors("Produce", [NOT_LEADER, 0, REQUEST_TIMED_OUT])
        assert cluster.faults.pending_errors("Produce") == 3
        first = produce(client, "errs", batch(b"a"))
        assert (first.error_code, first.base_offset) == (NOT_LEADER, -1)
        assert produce(client, "errs", batch(b"b")).error_code == 0  # a pushed 0 lets one by
        assert produce(client, "errs", batch(b"c")).error_code == REQUEST_TIMED_OUT
        assert produce(client, "errs", batch(b"d")).error_code == 0
        assert cluster.faults.pending_errors() == 0
    assert stored(cluster, "errs") == [b"b", b"d"]  # an injected error appended nothing


def test_pushed_errors_per_broker_and_per_api_key(cluster: BlockingCluster) -> None:
    cluster.create_topic("keyed", 1)
    leader = leader_of(cluster, "keyed")
    other = next(b.node_id for b in cluster.brokers if b.node_id != leader)
    cluster.faults.push_errors(0, TOPIC_AUTHORIZATION_FAILED, broker=other)
    with WireClient(address_of(cluster, leader)) as client:
        assert produce(client, "keyed", batch(b"x")).error_code == 0
    assert cluster.faults.pending_errors(broker=other) == 1
    with WireClient(address_of(cluster, other)) as client:
        assert produce(client, "keyed", batch(b"x")).error_code == TOPIC_AUTHORIZATION_FAILED
        assert produce(client, "keyed", batch(b"x")).error_code == NOT_LEADER  # the real answer


def test_pushed_errors_on_fetch_metadata_and_init_producer_id(cluster: BlockingCluster) -> None:
    cluster.create_topic("shapes", 2)
    with WireClient(address_of(cluster, leader_of(cluster, "shapes"))) as client:
        cluster.faults.push_errors("Fetch", NOT_LEADER)
        response = fetch(client, "shapes")
        assert response.error_code == 0  # the top-level code is the fetch session's
        part = response.responses[0].partitions[0]
        assert (part.partition_index, part.error_code, part.records) == (0, NOT_LEADER, None)

        cluster.faults.push_errors("Metadata", [TOPIC_AUTHORIZATION_FAILED])
        answer = metadata(client, "shapes")
        assert len(answer.brokers) == 3  # a read-only API keeps what it answered
        (topic,) = answer.topics
        assert topic.error_code == TOPIC_AUTHORIZATION_FAILED
        assert {p.error_code for p in topic.partitions} == {TOPIC_AUTHORIZATION_FAILED}

        cluster.faults.push_errors("init_producer_id", [15])
        init = client.request("InitProducerId", 4, transactional_id=None, transaction_timeout=1000)
        assert (init.error_code, init.producer_id, init.producer_epoch) == (15, -1, -1)
        assert (
            client.request(
                "InitProducerId", 4, transactional_id=None, transaction_timeout=1000
            ).producer_id
            >= 0
        )


def test_bad_fault_arguments_are_refused(cluster: BlockingCluster) -> None:
    with pytest.raises(UnknownApiError):
        cluster.faults.push_errors("Produc", [6])
    with pytest.raises(ValueError, match="not a Kafka error code"):
        cluster.faults.push_errors("Produce", [123456])
    cluster.create_topic("refuse", 1)
    with pytest.raises(ValueError, match="no partition"):
        cluster.faults.move_leader("refuse", 5, 1)
    with pytest.raises(ValueError, match="no broker"):
        cluster.faults.broker_down(9)
    assert cluster.faults.summary()["errors"] == {}


@pytest.mark.parametrize("processed", [True, False], ids=["processed", "not-processed"])
def test_drop_connection_after_a_produce(cluster: BlockingCluster, processed: bool) -> None:
    cluster.create_topic("drop", 1)
    address = address_of(cluster, leader_of(cluster, "drop"))
    cluster.faults.drop_connection_after("Produce", before_response=processed)
    with WireClient(address) as client:
        client.send(
            "Produce",
            PRODUCE_V,
            transactional_id=None,
            acks=-1,
            timeout=5000,
            topic_data=[{"name": "drop", "partition_data": [{"index": 0, "records": batch(b"1")}]}],
        )
        assert client.is_closed_by_peer()
    with WireClient(address) as client:  # one drop only: the next connection is served
        assert produce(client, "drop", batch(b"2")).error_code == 0
    assert stored(cluster, "drop") == ([b"1", b"2"] if processed else [b"2"])


def test_held_responses_wait_for_release(cluster: BlockingCluster) -> None:
    cluster.create_topic("held", 1)
    address = address_of(cluster, leader_of(cluster, "held"))
    hold = cluster.faults.hold_responses("Produce")
    with WireClient(address) as client, WireClient(address) as other:
        client.send(
            "Produce",
            PRODUCE_V,
            transactional_id=None,
            acks=-1,
            timeout=5000,
            topic_data=[{"name": "held", "partition_data": [{"index": 0, "records": batch(b"h")}]}],
        )
        hold.wait_held(1)
        assert hold.held == 1
        assert stored(cluster, "held") == [b"h"]  # processed, only its answer waits
        assert metadata(other).brokers  # other APIs and connections are not held
        assert not answered_within(client.sock, 0.3)
        hold.release()
        assert client.receive().responses[0].partition_responses[0].error_code == 0
        assert produce(client, "held", batch(b"i")).error_code == 0  # released: no more holds
    assert cluster.faults.summary()["holds"] == {}


def test_latency_delays_requests_of_one_broker(cluster: BlockingCluster) -> None:
    slow, fast = cluster.brokers[0], cluster.brokers[1]
    cluster.faults.set_latency(0.3, broker=slow.node_id, api="Metadata")
    with WireClient(str(slow)) as client:
        assert client.request("ApiVersions", 0).error_code == 0  # another API: no delay
        client.send(
            "Metadata",
            12,
            include_topic_authorized_operations=False,
            topics=None,
            allow_auto_topic_creation=False,
        )
        # Not a timing assertion: the answer is at least 0.3 s away, so 0.1 s sees nothing.
        assert not answered_within(client.sock, 0.1)
        assert len(client.receive().brokers) == 3
    with WireClient(str(fast)) as client:
        assert len(metadata(client).brokers) == 3
    cluster.faults.set_latency(0, broker=slow.node_id, api="Metadata")
    assert cluster.faults.summary()["latency"] == {}


def test_broker_down_moves_leaders_and_closes_connections(cluster: BlockingCluster) -> None:
    cluster.create_topic("moving", 3)
    down = leader_of(cluster, "moving", 0)
    up = next(b for b in cluster.brokers if b.node_id != down)
    with WireClient(address_of(cluster, down)) as doomed:
        assert metadata(doomed).brokers
        cluster.faults.broker_down(down)
        assert doomed.is_closed_by_peer()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", cluster.state.brokers[down].port), timeout=5)
    with WireClient(str(up)) as client:
        answer = metadata(client, "moving")
        assert down not in {b.node_id for b in answer.brokers}
        leaders = {p.partition_index: p.leader_id for p in answer.topics[0].partitions}
        assert down not in leaders.values()
        assert -1 not in leaders.values()
    port = cluster.state.brokers[down].port
    cluster.faults.broker_up(down)
    assert cluster.state.brokers[down].port == port
    with WireClient(address_of(cluster, down)) as client:
        assert {b.node_id for b in metadata(client).brokers} == {1, 2, 3}


def test_move_leader(cluster: BlockingCluster) -> None:
    cluster.create_topic("led", 1)
    old = leader_of(cluster, "led")
    new = next(b.node_id for b in cluster.brokers if b.node_id != old)
    epoch = cluster.state.partition("led", 0).leader_epoch  # type: ignore[union-attr]
    cluster.faults.move_leader("led", 0, new)
    assert leader_of(cluster, "led") == new
    assert cluster.state.partition("led", 0).leader_epoch == epoch + 1  # type: ignore[union-attr]
    with WireClient(address_of(cluster, old)) as client:
        assert produce(client, "led", batch(b"x")).error_code == NOT_LEADER
    with WireClient(address_of(cluster, new)) as client:
        assert produce(client, "led", batch(b"x")).error_code == 0


def test_faults_run_before_the_clusters_interceptor_and_clear(cluster: BlockingCluster) -> None:
    seen: list[int] = []

    async def spy(ctx: RequestContext, request: Any, call_next: CallNext) -> Any:
        seen.append(ctx.api_key)
        return await call_next(ctx, request)

    cluster.set_interceptor(spy)
    cluster.faults.push_errors("Metadata", [TOPIC_AUTHORIZATION_FAILED])
    hold = cluster.faults.hold_responses("ApiVersions")
    cluster.faults.set_latency(5.0, api="ListOffsets")
    with WireClient(str(cluster.brokers[0])) as client:
        client.send("ApiVersions", 0)
        hold.wait_held(1)
        cluster.faults.clear()  # releases the held answer too
        assert client.receive().error_code == 0
        metadata(client)  # nothing injected any more (the pushed code was cleared)
    assert seen == [18, 3]
    assert cluster.faults.summary() == {
        "errors": {},
        "latency": {},
        "throttle": {},
        "drops": {},
        "holds": {},
    }
    assert all(server.interceptor is spy for server in cluster.cluster.servers)


async def test_faults_in_an_asyncio_cluster() -> None:
    async with Cluster(brokers=2) as cluster:
        await cluster.create_topic("aio", 2)
        assert not cluster.faults.active
        cluster.faults.push_errors("Produce", [NOT_LEADER])
        assert cluster.faults.active
        assert all(s.interceptor is not None for s in cluster.servers)
        await cluster.faults.broker_down(1)
        assert {p.leader for p in cluster.state.topics["aio"].partitions} == {2}
        assert not cluster.servers[0].listening
        await cluster.faults.broker_up(1)
        assert cluster.servers[0].listening
        cluster.faults.clear()
        assert all(s.interceptor is None for s in cluster.servers)


# -- as confluent-kafka sees it ---------------------------------------------------------------


def test_injected_produce_error_reaches_the_delivery_callback(cluster: BlockingCluster) -> None:
    cluster.create_topic("denied", 1)
    cluster.faults.push_errors("Produce", [TOPIC_AUTHORIZATION_FAILED])
    producer = Producer(quiet(**{"bootstrap.servers": cluster.bootstrap, "linger.ms": 0}))
    results: list[Any] = []
    producer.produce("denied", b"no", on_delivery=lambda err, msg: results.append(err))
    assert producer.flush(15) == 0
    # librdkafka now refuses the topic locally (it remembers the authorization error);
    # a new producer shows the broker itself serves it again.
    with pytest.raises(KafkaException):
        producer.produce("denied", b"again")
    producer = Producer(quiet(**{"bootstrap.servers": cluster.bootstrap, "linger.ms": 0}))
    producer.produce("denied", b"yes", on_delivery=lambda err, msg: results.append(err))
    assert producer.flush(15) == 0
    assert results[0] is not None
    assert results[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert results[1] is None
    assert stored(cluster, "denied") == [b"yes"]


def test_injected_metadata_and_list_offsets_errors_reach_the_admin_client(
    cluster: BlockingCluster,
) -> None:
    cluster.create_topic("seen", 1)
    admin = AdminClient(quiet(**{"bootstrap.servers": cluster.bootstrap}))
    assert "seen" in admin.list_topics(timeout=10).topics  # connected, metadata known
    cluster.faults.push_errors("Metadata", [TOPIC_AUTHORIZATION_FAILED])
    with pytest.raises(KafkaException) as denied:
        admin.list_topics("seen", timeout=10)
    assert denied.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert admin.list_topics("seen", timeout=10).topics["seen"].error is None

    tp = TopicPartition("seen", 0)
    cluster.faults.push_errors("ListOffsets", [TOPIC_AUTHORIZATION_FAILED])
    with pytest.raises(KafkaException) as failed:
        admin.list_offsets({tp: OffsetSpec.latest()})[tp].result(10)
    assert failed.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert admin.list_offsets({tp: OffsetSpec.latest()})[tp].result(10).offset == 0


def test_held_produce_response_is_delivered_only_after_release(cluster: BlockingCluster) -> None:
    cluster.create_topic("hold-ck", 1)
    producer = Producer(quiet(**{"bootstrap.servers": cluster.bootstrap, "linger.ms": 0}))
    producer.list_topics("hold-ck", timeout=10)
    hold = cluster.faults.hold_responses("Produce")
    delivered: list[Any] = []
    producer.produce("hold-ck", b"v", on_delivery=lambda err, msg: delivered.append(err))
    deadline = time.monotonic() + 10
    while hold.total == 0 and time.monotonic() < deadline:
        producer.poll(0.05)  # hand the message to librdkafka's broker thread
    hold.wait_held(1, timeout=1)
    producer.poll(0.3)
    assert delivered == []  # appended, but the answer is held
    hold.release()
    assert producer.flush(10) == 0
    assert delivered == [None]


def test_clients_follow_a_broker_going_down(cluster: BlockingCluster) -> None:
    topic, count, partitions = "follow", 4000, 3
    cluster.create_topic(topic, partitions)
    victim = leader_of(cluster, topic, 0)
    producer = Producer(
        quiet(
            **{"bootstrap.servers": cluster.bootstrap, "linger.ms": 2, "enable.idempotence": True}
        )
    )
    consumer = Consumer(
        quiet(
            **{
                "bootstrap.servers": cluster.bootstrap,
                "group.id": "unused",  # assign() only
                "enable.auto.commit": False,
                "fetch.queue.backoff.ms": 10,
            }
        )
    )
    errors: list[Any] = []
    got: dict[int, list[int]] = {p: [] for p in range(partitions)}

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(err)

    def produce_range(start: int, stop: int) -> None:
        for i in range(start, stop):
            producer.produce(topic, str(i).encode(), key=str(i % 7).encode(), on_delivery=delivered)
            producer.poll(0)
        assert producer.flush(30) == 0

    def consume_until(total: int) -> None:
        deadline = time.monotonic() + 30
        while sum(map(len, got.values())) < total and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.2):
                assert msg.error() is None, msg.error()
                got[msg.partition()].append(int(msg.value()))

    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        produce_range(0, count // 2)
        consume_until(count // 2)
        cluster.faults.broker_down(victim)  # both clients are connected to it now
        assert victim not in {p.leader for p in cluster.state.topics[topic].partitions}
        produce_range(count // 2, count)
        consume_until(count)
    finally:
        consumer.close()
    assert errors == []
    everything: list[int] = []
    for numbers in got.values():
        assert numbers == sorted(numbers)  # in order per partition
        everything += numbers
    assert sorted(everything) == list(range(count))  # nothing lost, nothing twice
    cluster.faults.broker_up(victim)
