"""Acknowledged records survive leader moves and crashes (SIGKILL) of a broker with a data
directory, and long-running clients keep working through them (issue 10)."""

from __future__ import annotations

import os
import subprocess
import sys
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
from pykaf.broker._group_offsets import CommittedOffset, OffsetStore
from pykaf.broker.cli import main as cli_main
from pykaf.protocol._records import encode_batch, iter_batch_headers

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


def test_committed_offsets_survive_sigkill(tmp_path: Path, brokers: list[Standalone]) -> None:
    brokers.append(start_broker(tmp_path, args=("--partitions", str(PARTITIONS))))
    produce(brokers[-1].bootstrap, range(30))
    tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    for group in range(50):  # many stored groups; the last commits must all survive
        with pykaf.Consumer(brokers[-1].bootstrap, group_id=f"g{group}") as consumer:
            consumer.commit({tp: group + tp.partition for tp in tps})
    brokers[-1].kill()
    brokers.append(start_broker(tmp_path))
    for group in range(50):
        with pykaf.Consumer(brokers[-1].bootstrap, group_id=f"g{group}") as consumer:
            assert consumer.committed(tps) == {tp: group + tp.partition for tp in tps}


@pytest.mark.parametrize("fsync", [False, True])
def test_fsync_makes_every_append_durable_before_it_returns(
    tmp_path: Path, fsync: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counted(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    state = ClusterState(node_ids=[1], data_dir=tmp_path, fsync=fsync)
    partition = state.create_topic("synced", 1).partitions[0]
    store = OffsetStore(state)
    monkeypatch.setattr(os, "fsync", counted)
    data = bytearray(encode_batch([(None, b"v", None, 1)]))
    header = next(iter_batch_headers(data))[1]
    for _ in range(3):
        assert (
            partition.log.append(
                bytearray(data), header, leader_epoch=0, log_append_time=None
            ).error
            == 0
        )
    appends = len(synced)
    for value in range(3):
        store.commit(
            "g",
            [
                (
                    "synced",
                    0,
                    CommittedOffset(
                        offset=value,
                        leader_epoch=0,
                        metadata="",
                        commit_time_ms=1,
                        topic_id=str(partition.topic.topic_id),
                    ),
                )
            ],
        )
    commits = len(synced) - appends
    state.close()
    if fsync:
        assert appends >= 3  # each append (plus the new file's directory once)
        assert commits == 3
    else:
        assert (appends, commits) == (0, 0)


def test_cli_fsync_needs_a_data_dir() -> None:
    assert cli_main(["--fsync", "--port", "0"]) == 2


def test_standalone_broker_with_fsync_keeps_records_across_sigkill(
    tmp_path: Path, brokers: list[Standalone]
) -> None:
    args = ("--fsync", "--partitions", str(PARTITIONS))
    brokers.append(start_broker(tmp_path, brokers=1, args=args))
    acked = produce(brokers[-1].bootstrap, range(300))
    brokers[-1].kill()
    brokers.append(start_broker(tmp_path, brokers=1, args=args))
    got = read_everything(brokers[-1].bootstrap)
    assert sorted(v for values in got.values() for v in values) == acked


def test_a_damaged_log_refuses_the_start_and_says_where(
    tmp_path: Path, brokers: list[Standalone]
) -> None:
    brokers.append(start_broker(tmp_path, brokers=1, args=("--partitions", str(PARTITIONS))))
    for _ in range(3):
        produce(brokers[-1].bootstrap, range(10))
    assert brokers[-1].stop() == 0
    (segment,) = (tmp_path / f"{TOPIC}-0").glob("*.log")
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))
    done = subprocess.run(
        [sys.executable, "-m", "pykaf.broker", "--port", "0", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert "refusing to start" in done.stderr
    assert str(segment) in done.stderr
    assert segment.read_bytes() == bytes(data)
