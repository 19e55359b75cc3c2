"""pykaf's producer against real peers, read back by a real peer.

100,000 keyed records over 12 partitions go to the embedded broker, librdkafka's mock
cluster and tansu through ``Producer``; confluent-kafka's Consumer (librdkafka, not our
code) reads every partition from the beginning, and the log is checked: none lost, none
duplicated, each key's records in the order they were produced, each key in the partition
murmur2 (as the Java client computes it) gives it.

The helpers here (``keyed``, ``read_back``, ``check_log``) are shared with
``test_producer_faults.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from peers.readback import Log, read_back

from pykaf._producer._async_producer import AsyncProducer
from pykaf._producer._delivery import ProducerRecord
from pykaf._producer._partitioner import murmur2_partition
from pykaf._producer._producer import Producer
from pykaf.broker import BlockingCluster

__all__ = ["check_log", "keyed"]

PARTITIONS = 12
KEYS = 1000
COUNT = 100_000
# Every wait is bounded; these bounds are far above what a healthy run needs.
FLUSH_BOUND = 60.0
SETTINGS: dict[str, Any] = {"request_timeout": 10.0, "delivery_timeout": 60.0, "max_block": 30.0}

pytestmark = pytest.mark.peer


# -- records, read-back and checks (shared with test_producer_faults.py) --------------------


def key_of(index: int, keys: int = KEYS) -> bytes:
    return b"k%05d" % (index % keys)


def keyed(count: int, keys: int = KEYS, start: int = 0) -> Iterator[tuple[int, bytes, bytes]]:
    """``(index, key, value)``: the value is the record's global index, so it is unique
    and says where the record stands in its key's order."""
    for index in range(start, start + count):
        yield index, key_of(index, keys), b"%d" % index


def check_log(log: Log, count: int, *, partitions: int, keys: int = KEYS, start: int = 0) -> None:
    """Records ``start .. start+count-1`` (see ``keyed``) are in the log exactly once, in
    per-key order, each in its key's murmur2 partition; nothing else is."""
    seen: dict[int, int] = {}  # index -> how many times
    misplaced: list[tuple[bytes | None, int]] = []
    disorder: list[tuple[bytes, int, int]] = []
    strangers: list[bytes | None] = []
    last_per_key: dict[bytes, int] = {}
    for partition, rows in sorted(log.records.items()):
        offsets = [offset for offset, _, _ in rows]
        assert offsets == sorted(set(offsets)), f"partition {partition}: offsets not increasing"
        for _offset, key, value in rows:
            index = int(value) if value is not None and value.isdigit() else -1
            if not start <= index < start + count or key != key_of(index, keys):
                strangers.append(value)
                continue
            seen[index] = seen.get(index, 0) + 1
            if murmur2_partition(key, partitions) != partition:
                misplaced.append((key, partition))
            previous = last_per_key.get(key, -1)
            if index <= previous:
                disorder.append((key, previous, index))
            last_per_key[key] = index
    lost = [i for i in range(start, start + count) if i not in seen]
    duplicated = {i: n for i, n in seen.items() if n > 1}
    assert not strangers, f"{len(strangers)} record(s) never produced, e.g. {strangers[:5]}"
    assert not lost, f"{len(lost)} record(s) lost of {count}, e.g. {lost[:10]}"
    assert not duplicated, f"{len(duplicated)} duplicated, e.g. {list(duplicated.items())[:10]}"
    assert not disorder, f"{len(disorder)} out of key order (key, before, after): {disorder[:5]}"
    assert not misplaced, f"{len(misplaced)} not in their murmur2 partition: {misplaced[:5]}"
    if log.watermarks:
        # The broker's own count agrees: no surplus the read stopped short of.
        assert sum(high - low for low, high in log.watermarks.values()) == count


# -- the peers -------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Peer:
    name: str
    bootstrap: str
    create_topic: Callable[[str, int], None]
    trust_watermarks: bool = True


@pytest.fixture(params=["embedded", "mock", "tansu"])
def peer(request: pytest.FixtureRequest) -> Iterator[Peer]:
    if request.param == "embedded":
        with BlockingCluster(brokers=3) as cluster:

            def create(topic: str, partitions: int) -> None:
                cluster.create_topic(topic, partitions)

            yield Peer(name="embedded", bootstrap=cluster.bootstrap, create_topic=create)
    elif request.param == "mock":
        mock = request.getfixturevalue("mock_cluster")
        yield Peer(name="mock", bootstrap=mock.bootstrap, create_topic=mock.create_topic)
    else:
        tansu = request.getfixturevalue("tansu")
        yield Peer(
            name="tansu",
            bootstrap=tansu.bootstrap,
            create_topic=tansu.create_topic,
            trust_watermarks=False,
        )


class Failures:
    """Records reported failed (there must be none)."""

    def __init__(self) -> None:
        self.errors: list[tuple[ProducerRecord, BaseException]] = []

    def __call__(self, record: ProducerRecord, error: BaseException) -> None:
        self.errors.append((record, error))

    def assert_none(self) -> None:
        assert not self.errors, f"{len(self.errors)} failed, e.g. {self.errors[:3]}"


# -- the tests -------------------------------------------------------------------------------


def test_100k_keyed_records_over_12_partitions(peer: Peer) -> None:
    topic = f"keyed-{peer.name}"
    peer.create_topic(topic, PARTITIONS)
    failures = Failures()
    with Producer(peer.bootstrap, on_error=failures, **SETTINGS) as producer:
        for _index, key, value in keyed(COUNT):
            producer.produce(topic, value, key)
        assert producer.flush(FLUSH_BOUND) == 0
    failures.assert_none()
    log = read_back(
        peer.bootstrap, topic, PARTITIONS, COUNT, trust_watermarks=peer.trust_watermarks
    )
    check_log(log, COUNT, partitions=PARTITIONS)


def test_100k_keyed_records_with_produce_batch_on_the_mock_cluster(mock_cluster: Any) -> None:
    """The one-call path (``produce_batch`` of (key, value) pairs) keeps the same promises."""
    topic = "keyed-batch"
    mock_cluster.create_topic(topic, PARTITIONS)
    failures = Failures()
    items = [(key, value) for _index, key, value in keyed(COUNT)]
    with Producer(mock_cluster.bootstrap, on_error=failures, **SETTINGS) as producer:
        for chunk in range(0, COUNT, 10_000):
            producer.produce_batch(topic, items[chunk : chunk + 10_000])
        assert producer.flush(FLUSH_BOUND) == 0
    failures.assert_none()
    check_log(read_back(mock_cluster.bootstrap, topic, PARTITIONS, COUNT), COUNT, partitions=12)


def test_100k_keyed_records_with_the_async_producer_on_the_mock_cluster(
    mock_cluster: Any,
) -> None:
    topic = "keyed-async"
    mock_cluster.create_topic(topic, PARTITIONS)
    failures = Failures()

    async def run() -> None:
        async with AsyncProducer(mock_cluster.bootstrap, on_error=failures, **SETTINGS) as p:
            for _index, key, value in keyed(COUNT):
                await p.produce(topic, value, key)
            assert await asyncio.wait_for(p.flush(), FLUSH_BOUND) == 0

    asyncio.run(asyncio.wait_for(run(), FLUSH_BOUND + 30))
    failures.assert_none()
    check_log(read_back(mock_cluster.bootstrap, topic, PARTITIONS, COUNT), COUNT, partitions=12)
