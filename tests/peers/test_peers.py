"""The peer fixtures really start Kafka-speaking processes, and their fault injection works.

confluent-kafka is the client here on purpose: the peers must be checked by something
independent of the code they will later test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from . import tansu as tansu_module
from .frozen import freeze, frozen, thread_states
from .mock_cluster import MockCluster, MockClusterError
from .ports import LOOPBACK, free_port, kafka_api_versions_ok
from .tansu import Tansu, TansuError

pytestmark = pytest.mark.peer

_PRODUCE = 0
_TOPIC_AUTHORIZATION_FAILED = 29
_NOT_ENOUGH_REPLICAS = 19  # retriable


def _topic() -> str:
    return f"peer-{uuid.uuid4().hex[:12]}"


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only, sends nothing
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def pids_must_vanish() -> Iterator[list[int]]:
    """Request this BEFORE a peer fixture: its teardown runs after the peer's teardown,
    so it can check the peer's process is really gone."""
    pids: list[int] = []
    yield pids
    alive = [pid for pid in pids if not _pid_gone(pid)]
    assert not alive, f"peer processes left behind: {alive}"


def _produce(bootstrap: str, topic: str, values: list[bytes], partitions: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    reports: list[KafkaError | None] = []
    for i, value in enumerate(values):
        producer.produce(
            topic, value, partition=i % partitions, on_delivery=lambda e, _m: reports.append(e)
        )
    assert producer.flush(15.0) == 0, "messages still in flight after 15 s"
    assert reports == [None] * len(values)


def _consume(bootstrap: str, topic: str, count: int, partitions: int) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "pykaf-peer-test",  # required by the client; assign() joins no group
            "enable.auto.commit": False,
        }
    )
    received: list[bytes] = []
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = time.monotonic() + 15.0
        for _ in range(200):  # bounded in count as well as in time
            if len(received) >= count or time.monotonic() > deadline:
                break
            for message in consumer.consume(num_messages=count, timeout=0.5):
                value = message.value()
                assert message.error() is None, message.error()
                assert value is not None
                received.append(value)
    finally:
        consumer.close()
    return received


def _roundtrip(bootstrap: str, topic: str, partitions: int) -> None:
    values = [f"message-{i:03d}".encode() for i in range(100)]
    _produce(bootstrap, topic, values, partitions)
    received = _consume(bootstrap, topic, len(values), partitions)
    assert sorted(received) == values
    # Order is kept within each partition (message i went to partition i % partitions).
    for p in range(partitions):
        ours = [v for v in received if int(v[-3:]) % partitions == p]
        assert ours == sorted(ours)


def _leaders(bootstrap: str, topic: str) -> dict[int, int]:
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return {p.id: p.leader for p in metadata.topics[topic].partitions.values()}


# -- librdkafka mock cluster ---------------------------------------------------------------


def test_mock_cluster_roundtrip(pids_must_vanish: list[int], mock_cluster: MockCluster) -> None:
    pids_must_vanish.append(mock_cluster.pid)
    assert mock_cluster.brokers == 3
    hosts = {host for host, _ in mock_cluster.addresses.values()}
    assert hosts == {LOOPBACK}
    topic = _topic()
    mock_cluster.create_topic(topic, partitions=3)
    _roundtrip(mock_cluster.bootstrap, topic, partitions=3)


def test_mock_cluster_addresses_match_metadata(mock_cluster: MockCluster) -> None:
    metadata = AdminClient({"bootstrap.servers": mock_cluster.bootstrap}).list_topics(timeout=10)
    reported = {b.id: (b.host, b.port) for b in metadata.brokers.values()}
    assert reported == mock_cluster.addresses
    assert mock_cluster.bootstrap == ",".join(f"{h}:{p}" for h, p in reported.values())


def test_mock_broker_down_refuses_and_up_restores(mock_cluster: MockCluster) -> None:
    host, port = mock_cluster.addresses[2]
    assert kafka_api_versions_ok(host, port)
    with socket.create_connection((host, port), timeout=5) as existing:
        existing.settimeout(5)
        mock_cluster.broker_down(2)
        # An open connection is closed by the broker...
        with contextlib.suppress(ConnectionResetError):
            assert existing.recv(1) == b""
    # ...and new ones are refused outright (the listener is closed, not stalled).
    with socket.socket() as fresh:
        fresh.settimeout(5)
        with pytest.raises(ConnectionRefusedError):
            fresh.connect((host, port))
    assert not kafka_api_versions_ok(host, port)
    # The other brokers are unaffected.
    assert kafka_api_versions_ok(*mock_cluster.addresses[1])
    mock_cluster.broker_up(2)
    assert kafka_api_versions_ok(host, port)  # same port as before


def test_mock_injected_fatal_error_reaches_delivery_report(mock_cluster: MockCluster) -> None:
    topic = _topic()
    mock_cluster.create_topic(topic, partitions=1)
    mock_cluster.push_request_errors(_PRODUCE, [_TOPIC_AUTHORIZATION_FAILED])
    producer = Producer({"bootstrap.servers": mock_cluster.bootstrap, "linger.ms": 0})
    reports: list[KafkaError | None] = []
    producer.produce(topic, b"refused", on_delivery=lambda e, _m: reports.append(e))
    assert producer.flush(15.0) == 0
    # librdkafka remembers the topic as forbidden, so a fresh producer checks the mock:
    # the injected error was used up by the first request.
    fresh = Producer({"bootstrap.servers": mock_cluster.bootstrap, "linger.ms": 0})
    fresh.produce(topic, b"accepted", on_delivery=lambda e, _m: reports.append(e))
    assert fresh.flush(15.0) == 0
    first, second = reports
    assert first is not None
    assert first.code() == _TOPIC_AUTHORIZATION_FAILED
    assert second is None


def test_mock_injected_retriable_errors_are_retried(mock_cluster: MockCluster) -> None:
    topic = _topic()
    mock_cluster.create_topic(topic, partitions=1)
    mock_cluster.start_request_tracking()
    mock_cluster.push_request_errors(_PRODUCE, [_NOT_ENOUGH_REPLICAS, _NOT_ENOUGH_REPLICAS])
    producer = Producer({"bootstrap.servers": mock_cluster.bootstrap, "linger.ms": 0})
    reports: list[KafkaError | None] = []
    producer.produce(topic, b"persistent", on_delivery=lambda e, _m: reports.append(e))
    assert producer.flush(15.0) == 0
    assert reports == [None]
    produce_requests = [r for r in mock_cluster.get_requests() if r.api_key == _PRODUCE]
    assert len(produce_requests) == 3  # two refused, one accepted


def test_mock_per_broker_errors_are_counted(mock_cluster: MockCluster) -> None:
    mock_cluster.push_broker_request_errors(1, _PRODUCE, [(_NOT_ENOUGH_REPLICAS, 0), (0, 5)])
    assert mock_cluster.broker_error_stack_count(1, _PRODUCE) == 2
    assert mock_cluster.broker_error_stack_count(2, _PRODUCE) == 0


def test_mock_set_leader_changes_metadata(mock_cluster: MockCluster) -> None:
    topic = _topic()
    mock_cluster.create_topic(topic, partitions=2, replication=3)
    mock_cluster.set_leader(topic, 0, 3)
    mock_cluster.set_leader(topic, 1, 2)
    assert _leaders(mock_cluster.bootstrap, topic) == {0: 3, 1: 2}
    mock_cluster.set_leader(topic, 0, 1)
    assert _leaders(mock_cluster.bootstrap, topic) == {0: 1, 1: 2}


def test_mock_command_errors_are_reported(mock_cluster: MockCluster) -> None:
    topic = _topic()
    mock_cluster.create_topic(topic)
    with pytest.raises(MockClusterError, match="TOPIC_ALREADY_EXISTS"):
        mock_cluster.create_topic(topic)
    with pytest.raises(MockClusterError, match="BROKER_NOT_AVAILABLE"):
        mock_cluster.set_leader(topic, 0, 99)
    mock_cluster.ping()  # the child is still serving after refusing


def test_mock_dead_child_is_reported_and_closed(
    mock_cluster_factory: Callable[..., MockCluster],
) -> None:
    cluster = mock_cluster_factory(brokers=1)
    os.kill(cluster.pid, signal.SIGKILL)
    with pytest.raises(MockClusterError, match="died"):
        cluster.create_topic(_topic())
    cluster.close()
    assert _pid_gone(cluster.pid)


def test_mock_hung_child_is_killed_on_close() -> None:
    cluster = MockCluster(1, command_timeout=0.5)
    freeze(cluster.pid)  # a child that never answers "stop"
    try:
        cluster.close(timeout=0.5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(cluster.pid, signal.SIGCONT)
    assert not cluster.alive
    assert _pid_gone(cluster.pid)


def test_a_frozen_peer_has_stopped_every_thread_when_freeze_returns(
    mock_cluster: MockCluster,
) -> None:
    # kill(SIGSTOP) returns before the process stops: one thread takes the signal and
    # stops the others when it next runs, and they answer requests meanwhile (frozen
    # brokers acknowledged records in test_custody_acks_lost.py on a loaded machine).
    # With a bare kill, some of the mock's 5 threads were still running right after it
    # in about half of 300 tries here. ``frozen`` returns only once all have stopped.
    for _ in range(50):
        with frozen(mock_cluster.pid):
            assert set(thread_states(mock_cluster.pid)) == {"T"}
    mock_cluster.ping()  # thawed: it serves again


def test_mock_child_exits_when_parent_goes_away() -> None:
    with MockCluster(1) as cluster:
        # Closing our end of its stdin is what the child sees if the test process dies.
        proc = cluster._proc
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(10.0) == 0


def test_mock_cluster_session_is_shared(mock_cluster_session: MockCluster) -> None:
    topic = _topic()
    mock_cluster_session.create_topic(topic, partitions=2)
    assert _leaders(mock_cluster_session.bootstrap, topic).keys() == {0, 1}


# -- tansu ---------------------------------------------------------------------------------


def test_tansu_roundtrip(pids_must_vanish: list[int], tansu: Tansu) -> None:
    pids_must_vanish.append(tansu.pid)
    assert tansu.host == LOOPBACK
    assert tansu.bootstrap == f"{LOOPBACK}:{tansu.port}"
    topic = _topic()
    tansu.create_topic(topic, partitions=3)
    assert len(_leaders(tansu.bootstrap, topic)) == 3
    _roundtrip(tansu.bootstrap, topic, partitions=3)


def test_tansu_create_topic_twice(tansu: Tansu) -> None:
    topic = _topic()
    tansu.create_topic(topic, partitions=2)
    tansu.create_topic(topic, partitions=2, exist_ok=True)
    with pytest.raises(RuntimeError, match="TOPIC_ALREADY_EXISTS"):
        tansu.create_topic(topic, partitions=2)


def test_tansu_answers_raw_api_versions(tansu: Tansu) -> None:
    assert kafka_api_versions_ok(tansu.host, tansu.port)
    metadata = AdminClient({"bootstrap.servers": tansu.bootstrap}).list_topics(timeout=10)
    assert metadata.cluster_id == tansu.cluster_id
    assert [(b.host, b.port) for b in metadata.brokers.values()] == [(LOOPBACK, tansu.port)]


def test_tansu_close_is_idempotent_and_leaves_nothing() -> None:
    broker = Tansu()
    broker.close()
    broker.close()
    assert not broker.alive
    assert _pid_gone(broker.pid)
    with pytest.raises(OSError), socket.create_connection((LOOPBACK, broker.port), timeout=2):
        pass


@pytest.mark.parametrize(
    ("id_delta", "error_code", "expected"),
    [(0, 0, True), (1, 0, False), (0, 35, False)],
)
def test_api_versions_probe_checks_the_answer(
    id_delta: int, error_code: int, expected: bool
) -> None:
    # A listener that answers with the wrong correlation id or an error is not "ready".
    with socket.socket() as server:
        server.bind((LOOPBACK, 0))
        server.listen(1)
        server.settimeout(5)

        def answer_once() -> None:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(5)
                request = conn.recv(4096)
                (correlation_id,) = struct.unpack_from(">i", request, 8)
                conn.sendall(struct.pack(">iih", 6, correlation_id + id_delta, error_code))

        thread = threading.Thread(target=answer_once, daemon=True)
        thread.start()
        assert kafka_api_versions_ok(LOOPBACK, server.getsockname()[1], timeout=5) is expected
        thread.join(5)
        assert not thread.is_alive()


def test_tansu_retries_when_its_port_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind((LOOPBACK, 0))
        squatter.listen(1)  # listens but never answers: a probe to it cannot succeed
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        monkeypatch.setattr(tansu_module, "free_port", lambda: next(ports, None) or free_port())
        with Tansu() as broker:
            assert broker.port != taken
            assert kafka_api_versions_ok(broker.host, broker.port)
        ports = iter([taken])
        with pytest.raises(TansuError, match=f"port {taken}: exited"):
            Tansu(port_attempts=1)
