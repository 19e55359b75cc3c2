"""Acknowledged records survive leader moves and crashes (SIGKILL) of a broker with a data
directory, and long-running clients keep working through them (issue 10)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _standalone import Standalone, free_port_range, start_broker

import pykaf
from pykaf import TopicPartition
from pykaf.broker import ClusterState
from pykaf.broker._control import control

pytestmark = pytest.mark.peer

TOPIC = "durable"
PARTITIONS = 3


def produce(bootstrap: str, values: range) -> list[int]:
    """Send ``values`` round-robin over the partitions; return those acknowledged."""
    with pykaf.Producer(bootstrap, linger=0.005, delivery_timeout=60) as producer:
        sent = [
            (v, producer.send(TOPIC, str(v).encode(), partition=v % PARTITIONS)) for v in values
        ]
        producer.flush(60)
    acked = []
    for value, future in sent:
        if future.exception(timeout=60) is None:
            acked.append(value)
    return acked


def read_everything(bootstrap: str) -> dict[int, list[int]]:
    with pykaf.Consumer(bootstrap, stop_at_end=True) as consumer:
        consumer.assign([TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        out: dict[int, list[int]] = {p: [] for p in range(PARTITIONS)}
        for record in consumer:
            assert record.value is not None
            out[record.partition].append(int(record.value))
        return out


def shuffle_leaders(broker: Standalone) -> None:
    """Every kind of leader move, each raising the epochs of the partitions it touches."""
    for node in (1, 2, 3):
        control(broker.control, "broker_down", node_id=node)
        control(broker.control, "broker_up", node_id=node)
    for partition in range(PARTITIONS):
        control(broker.control, "move_leader", topic=TOPIC, partition=partition, node_id=1)


@pytest.fixture
def brokers() -> Iterator[list[Standalone]]:
    started: list[Standalone] = []
    yield started
    for broker in started:
        broker.kill()


def test_acknowledged_records_survive_leader_moves_and_sigkill(
    tmp_path: Path, brokers: list[Standalone]
) -> None:
    args = ("--partitions", str(PARTITIONS))
    brokers.append(start_broker(tmp_path, args=args))
    acked = produce(brokers[-1].bootstrap, range(1500))
    shuffle_leaders(brokers[-1])
    acked += produce(brokers[-1].bootstrap, range(1500, 3000))
    brokers[-1].kill()  # the raised epochs were never saved by a clean shutdown

    brokers.append(start_broker(tmp_path, args=args))
    acked += produce(brokers[-1].bootstrap, range(3000, 4500))
    shuffle_leaders(brokers[-1])
    acked += produce(brokers[-1].bootstrap, range(4500, 6000))
    brokers[-1].kill()

    brokers.append(start_broker(tmp_path, args=args))
    assert len(acked) == 6000
    got = read_everything(brokers[-1].bootstrap)
    # Every acknowledged record, once, in the order sent, on its partition.
    for partition in range(PARTITIONS):
        assert got[partition] == [v for v in acked if v % PARTITIONS == partition]
    brokers[-1].kill()
    assert "torn" not in brokers[-1].stderr()  # nothing was cut


def test_long_running_clients_keep_working_across_moves_and_restarts(
    tmp_path: Path, brokers: list[Standalone]
) -> None:
    port = free_port_range(3)
    args = ("--partitions", str(PARTITIONS))
    brokers.append(start_broker(tmp_path, port=port, args=args))
    bootstrap = brokers[-1].bootstrap
    received: list[int] = []
    stop = threading.Event()
    failures: list[BaseException] = []

    def consume() -> None:
        try:
            with pykaf.Consumer(bootstrap) as consumer:
                consumer.assign([TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
                consumer.seek_to_beginning()
                deadline = time.monotonic() + 240
                while not stop.is_set() and time.monotonic() < deadline:
                    received.extend(int(r.value or b"") for r in consumer.poll(0.2, 1000))
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    reader = threading.Thread(target=consume, name="long-running-consumer")
    with pykaf.Producer(bootstrap, linger=0.002, delivery_timeout=60) as producer:
        producer.send(TOPIC, b"0", partition=0).result(30)  # creates the topic
        reader.start()
        acked = [0]
        value = 1
        for round_ in range(6):
            futures = []
            for _ in range(300):
                futures.append(
                    (value, producer.send(TOPIC, str(value).encode(), partition=value % PARTITIONS))
                )
                value += 1
            producer.flush(60)
            for sent, future in futures:
                error = future.exception(timeout=60)
                assert error is None, f"round {round_}: record {sent} failed: {error!r}"
                acked.append(sent)
            if round_ in (0, 3):
                shuffle_leaders(brokers[-1])
            else:
                # A crash and a restart on the same ports, then leaders move again.
                brokers[-1].kill()
                brokers.append(start_broker(tmp_path, port=port, args=args))
                control(
                    brokers[-1].control,
                    "move_leader",
                    topic=TOPIC,
                    partition=round_ % PARTITIONS,
                    node_id=2,
                )
        deadline = time.monotonic() + 60
        while len(received) < len(acked) and time.monotonic() < deadline and not failures:
            time.sleep(0.05)
    stop.set()
    reader.join(30)
    assert not failures, failures
    assert sorted(received) == acked


def test_a_restart_after_a_crash_never_lowers_an_epoch(tmp_path: Path) -> None:
    state = ClusterState(node_ids=[1, 2], data_dir=tmp_path)
    partition = state.create_topic("epochs", 1).partitions[0]
    for _ in range(3):
        state.move_leader(partition, 2 if partition.leader == 1 else 1)
    epoch = partition.leader_epoch
    # No close(): a crash. The next start must begin above every epoch handed out.
    again = ClusterState(node_ids=[1, 2], data_dir=tmp_path)
    assert again.topics["epochs"].partitions[0].leader_epoch > epoch
    again.close()
    state.close()
