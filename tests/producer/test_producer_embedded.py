"""The producer end to end against the embedded broker (in process), with faults.

Every record is read back over the wire (raw Fetch) and checked: none lost, none
duplicated, per-key order, keys in their murmur2 partition; every record gets exactly
one report.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from _produce_readback import Check, read_topic

from pykaf._errors import (
    DeliveryError,
    DeliveryTimeoutError,
    ProducerClosedError,
    RecordTooLargeError,
)
from pykaf._kafka_errors import InvalidRecordError
from pykaf._producer._delivery import ProducerRecord, RecordMetadata
from pykaf._producer._producer import Producer
from pykaf.broker import BlockingCluster
from pykaf.protocol import Compression, iter_batch_headers

NOT_LEADER_OR_FOLLOWER = 6
MESSAGE_TOO_LARGE = 10
REQUEST_TIMED_OUT = 7
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
UNKNOWN_PRODUCER_ID = 59
INVALID_RECORD = 87

# Short bounds: every wait in these tests ends in seconds, whatever happens.
FAST = {"request_timeout": 5.0, "delivery_timeout": 20.0, "max_block": 10.0, "linger": 0.002}


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=3) as running:
        yield running


class Reports:
    """Counts reports per record id: each must get exactly one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ok: Counter[bytes] = Counter()
        self.failed: dict[bytes, BaseException] = {}
        self.count = 0

    def callback(self, value: bytes) -> Any:
        def on_delivery(metadata: RecordMetadata | None, error: DeliveryError | None) -> None:
            assert (metadata is None) != (error is None)
            with self.lock:
                self.count += 1
                if error is None:
                    self.ok[value] += 1
                else:
                    assert value not in self.failed
                    self.failed[value] = error

        return on_delivery

    def on_error(self, record: ProducerRecord, error: BaseException) -> None:
        assert record.value is not None
        with self.lock:
            self.count += 1
            assert record.value not in self.failed
            self.failed[record.value] = error

    def exactly_once(self, sent: int) -> None:
        assert self.count == sent
        assert all(n == 1 for n in self.ok.values())
        assert not set(self.ok) & set(self.failed)


def keyed(n: int, keys: int) -> Iterator[tuple[bytes, bytes]]:
    counters = [0] * keys
    for i in range(n):
        k = i % keys
        counters[k] += 1
        yield b"key-%d" % k, b"%d:%d" % (k, counters[k])


def test_100k_keyed_messages_over_12_partitions(cluster: BlockingCluster) -> None:
    cluster.create_topic("keyed", 12)
    check = Check(partitions=12)
    errors: list[BaseException] = []
    with Producer(cluster.bootstrap, on_error=lambda r, e: errors.append(e), **FAST) as p:
        for key, value in keyed(100_000, 1000):
            p.produce("keyed", value, key)
            check.add(key, value)
        assert p.flush(30) == 0
    assert errors == []
    check.verify(read_topic(cluster.bootstrap, "keyed"))


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_every_codec(cluster: BlockingCluster, codec: str) -> None:
    topic = f"codec-{codec}"
    cluster.create_topic(topic, 3)
    check = Check(partitions=3)
    with Producer(cluster.bootstrap, compression=codec, **FAST) as p:
        futures = []
        for key, value in keyed(2000, 20):
            futures.append(p.send(topic, value * 5, key))
            check.add(key, value * 5)
        for future in futures:
            assert future.result(30).offset >= 0
    check.verify(read_topic(cluster.bootstrap, topic))


@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_acks(cluster: BlockingCluster, acks: Any) -> None:
    topic = f"acks-{acks}"
    cluster.create_topic(topic, 2)
    with Producer(cluster.bootstrap, acks=acks, **FAST) as p:
        futures = [p.send(topic, b"v%d" % i, partition=i % 2) for i in range(200)]
        results = [f.result(30) for f in futures]
    assert all(isinstance(r, RecordMetadata) for r in results)
    if acks == 0:
        assert {r.offset for r in results} == {-1}
    else:
        for partition in (0, 1):
            offsets = [r.offset for r in results if r.partition == partition]
            assert offsets == list(range(100))
    written = read_topic(cluster.bootstrap, topic)
    assert sum(len(v) for v in written.values()) == 200


def test_send_futures_resolve_with_offsets_and_timestamps(cluster: BlockingCluster) -> None:
    cluster.create_topic("futures", 1)
    with Producer(cluster.bootstrap, **FAST) as p:
        before = int(time.time() * 1000) - 1000
        first = p.send("futures", b"a", timestamp=12345).result(30)
        second = p.send("futures", b"b").result(30)
    assert first == RecordMetadata("futures", 0, 0, 12345)
    assert second.offset == 1
    assert second.timestamp >= before


def test_produce_batch(cluster: BlockingCluster) -> None:
    cluster.create_topic("batch", 4)
    reports = Reports()
    items: list[Any] = [b"plain-%d" % i for i in range(5000)]
    items += [(b"k%d" % (i % 7), b"pair-%d" % i) for i in range(5000)]
    items += [{"key": b"d", "value": b"dict-%d" % i, "headers": {"h": b"1"}} for i in range(100)]
    items += [ProducerRecord(value=b"rec-%d" % i, partition=3) for i in range(100)]
    on_delivery = reports.callback(b"")
    count = Counter[str]()

    def callback(metadata: RecordMetadata | None, error: DeliveryError | None) -> None:
        count["ok" if error is None else "failed"] += 1
        on_delivery(metadata, error)

    with Producer(cluster.bootstrap, **FAST) as p:
        p.produce_batch("batch", items, on_delivery=callback)
        assert p.flush(30) == 0
    assert count == {"ok": len(items)}
    written = read_topic(cluster.bootstrap, "batch")
    values = sorted(r.value or b"" for records in written.values() for r in records)
    assert len(values) == len(items)
    assert {r.value for r in written[3]} >= {b"rec-%d" % i for i in range(100)}


def test_per_topic_settings(cluster: BlockingCluster) -> None:
    for topic in ("zipped", "plain"):
        cluster.create_topic(topic, 2)
    settings = {
        "zipped": {"compression": "zstd", "compression_level": 3, "partitioner": "random"},
    }
    with Producer(cluster.bootstrap, topic_settings=settings, **FAST) as p:
        for i in range(400):
            p.produce("zipped", b"z%d" % i)
            p.produce("plain", b"p%d" % i)
        assert p.flush(30) == 0

    def codecs(topic: str) -> set[Compression]:
        def read() -> set[Compression]:
            found: set[Compression] = set()
            for part in cluster.state.topics[topic].partitions:
                for data in part.log.read(0, 1 << 30, True):
                    found.update(h.compression for _, h in iter_batch_headers(bytes(data)))
            return found

        return cluster.call(read)

    assert codecs("zipped") == {Compression.ZSTD}
    assert codecs("plain") == {Compression.NONE}
    # "random" spreads keyless records over both partitions (sticky would fill one
    # batch at a time); and every record arrived.
    written = read_topic(cluster.bootstrap, "zipped")
    assert all(written[p] for p in (0, 1))
    assert sum(len(r) for r in written.values()) == 400


def test_on_delivery_and_on_error_each_once(cluster: BlockingCluster) -> None:
    cluster.create_topic("reports", 3)
    reports = Reports()
    # The next two Produce requests are refused with a non-retriable code.
    cluster.faults.push_errors("Produce", [INVALID_RECORD, INVALID_RECORD])
    sent = 0
    with Producer(cluster.bootstrap, on_error=reports.on_error, **FAST) as p:
        for i in range(3000):
            value = b"r%d" % i
            if i % 2:
                p.produce("reports", value, on_delivery=reports.callback(value))
            else:
                p.produce("reports", value)  # fire-and-forget: on_error on failure
            sent += 1
        assert p.flush(30) == 0
    # Callback records: one report each; fire-and-forget ones: a report only on failure.
    with_callback = {b"r%d" % i for i in range(1, 3000, 2)}
    silent_failed = set(reports.failed) - with_callback
    assert reports.count == len(with_callback) + len(silent_failed)
    assert all(n == 1 for n in reports.ok.values())
    assert set(reports.ok) | (set(reports.failed) & with_callback) == with_callback
    assert silent_failed  # the injected errors failed some fire-and-forget records...
    for error in reports.failed.values():
        assert isinstance(error, DeliveryError)
        assert isinstance(error.cause, InvalidRecordError)
        assert error.maybe_persisted is False
    written = read_topic(cluster.bootstrap, "reports")
    values = {r.value for records in written.values() for r in records}
    # ...and exactly those are missing from the log; the rest were written once.
    assert values == {b"r%d" % i for i in range(sent)} - set(reports.failed)
    assert sum(len(records) for records in written.values()) == len(values)


def test_retries_through_injected_errors(cluster: BlockingCluster) -> None:
    cluster.create_topic("retry", 6)
    cluster.faults.push_errors("Produce", [NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT] * 5)
    check = Check(partitions=6)
    reports = Reports()
    with Producer(cluster.bootstrap, on_error=reports.on_error, retry_backoff=0.01, **FAST) as p:
        for key, value in keyed(20_000, 100):
            p.produce("retry", value, key)
            check.add(key, value)
        assert p.flush(30) == 0
    assert cluster.faults.pending_errors("Produce") == 0
    assert reports.failed == {}
    check.verify(read_topic(cluster.bootstrap, "retry"))


@pytest.mark.parametrize("code", [UNKNOWN_PRODUCER_ID, OUT_OF_ORDER_SEQUENCE_NUMBER])
def test_lost_producer_state_resets_sequences_under_a_new_identity(
    cluster: BlockingCluster, code: int
) -> None:
    """KIP-360: the broker lost the producer's state; InitProducerId again (passing the
    current id and epoch), resend from sequence 0; nothing lost, duplicated, reordered."""
    cluster.create_topic("reset", 3)
    identities: list[tuple[int, int]] = []

    async def spy(ctx: Any, request: Any, call_next: Any) -> Any:
        if ctx.api_key == 22:  # InitProducerId
            identities.append((int(request.producer_id), int(request.producer_epoch)))
        return await call_next(ctx, request)

    cluster.set_interceptor(spy)
    check = Check(partitions=3)
    reports = Reports()
    with Producer(cluster.bootstrap, on_error=reports.on_error, **FAST) as p:
        first = p.send("reset", b"first", b"k0").result(30)
        check.add(b"k0", b"first")
        cluster.faults.push_errors("Produce", [code])
        for key, value in keyed(5000, 30):
            p.produce("reset", value, key)
            check.add(key, value)
        assert p.flush(30) == 0
    assert first.offset == 0
    assert reports.failed == {}
    assert cluster.faults.pending_errors("Produce") == 0
    # A second identity was asked for, naming the first (brokers then bump the epoch).
    assert len(identities) == 2
    assert identities[0] == (-1, -1)
    assert identities[1][0] >= 0
    check.verify(read_topic(cluster.bootstrap, "reset"))


def test_dropped_connection_after_a_produce_is_deduplicated(cluster: BlockingCluster) -> None:
    cluster.create_topic("dedup", 3)
    check = Check(partitions=3)
    reports = Reports()
    with Producer(cluster.bootstrap, on_error=reports.on_error, **FAST) as p:
        p.send("dedup", b"warm-up", b"w").result(30)
        check.add(b"w", b"warm-up")
        # Appended, then the connection closes before the answer: the producer cannot
        # know, sends again, and the broker recognises the sequence.
        cluster.faults.drop_connection_after("Produce", count=3, before_response=True)
        for key, value in keyed(20_000, 50):
            p.produce("dedup", value, key)
            check.add(key, value)
        assert p.flush(30) == 0
    assert cluster.faults.summary()["drops"] == {}  # all three connections were dropped
    assert reports.failed == {}
    check.verify(read_topic(cluster.bootstrap, "dedup"))


def test_leader_moves_mid_run(cluster: BlockingCluster) -> None:
    cluster.create_topic("moving", 6)
    check = Check(partitions=6)
    reports = Reports()
    stop = threading.Event()
    moves = 0

    def mover() -> None:
        nonlocal moves
        while not stop.is_set() and moves < 30:
            partition = moves % 6
            part = cluster.call(lambda p=partition: cluster.state.partition("moving", p))
            assert part is not None
            target = next(n for n in part.replicas if n != part.leader)
            cluster.faults.move_leader("moving", partition, target)
            moves += 1
            stop.wait(0.02)

    with Producer(cluster.bootstrap, on_error=reports.on_error, **FAST) as p:
        thread = threading.Thread(target=mover)
        thread.start()
        try:
            for key, value in keyed(60_000, 300):
                p.produce("moving", value, key)
                check.add(key, value)
        finally:
            stop.set()
            thread.join(10)
        assert p.flush(30) == 0
    assert moves > 0
    assert reports.failed == {}
    check.verify(read_topic(cluster.bootstrap, "moving"))


def test_a_broker_down_for_a_while(cluster: BlockingCluster) -> None:
    cluster.create_topic("outage", 6)
    check = Check(partitions=6)
    reports = Reports()
    with Producer(cluster.bootstrap, on_error=reports.on_error, **FAST) as p:
        items = list(keyed(30_000, 120))
        for key, value in items[:10_000]:
            p.produce("outage", value, key)
            check.add(key, value)
        cluster.faults.broker_down(2)
        for key, value in items[10_000:20_000]:
            p.produce("outage", value, key)
            check.add(key, value)
        assert p.flush(30) == 0
        cluster.faults.broker_up(2)
        for key, value in items[20_000:]:
            p.produce("outage", value, key)
            check.add(key, value)
        assert p.flush(30) == 0
    assert reports.failed == {}
    check.verify(read_topic(cluster.bootstrap, "outage"))


def test_close_with_every_broker_down_fails_everything_in_bound() -> None:
    reports = Reports()
    with BlockingCluster(brokers=2) as cluster:
        cluster.create_topic("down", 2)
        p = Producer(cluster.bootstrap, on_error=reports.on_error, **FAST)
        p.send("down", b"first").result(30)
        reports.count += 1  # that one's report was its future
        for node in (1, 2):
            cluster.faults.broker_down(node)
        futures = [p.send("down", b"f%d" % i) for i in range(500)]
        for i in range(500):
            value = b"c%d" % i
            p.produce("down", value, on_delivery=reports.callback(value))
        for i in range(500):
            p.produce("down", b"e%d" % i)
        started = time.monotonic()
        failed = p.close(timeout=1.0)
        elapsed = time.monotonic() - started
    # Bounded: the flush bound plus the client's close bound and a margin.
    assert elapsed < 1.0 + p.settings.client.close_timeout + 1.5
    assert failed == 1500
    for future in futures:
        error = future.exception(0)
        assert isinstance(error, ProducerClosedError)
    reports.count += len(futures)
    reports.exactly_once(1 + 1500)
    assert all(isinstance(e, ProducerClosedError) for e in reports.failed.values())
    with pytest.raises(ProducerClosedError):
        p.produce("down", b"late")


def test_delivery_timeout_says_maybe_persisted() -> None:
    with BlockingCluster(brokers=1) as cluster:
        cluster.create_topic("slow", 1)
        options = dict(FAST, request_timeout=0.5, delivery_timeout=1.5, linger=0.0)
        with Producer(cluster.bootstrap, **options) as p:
            p.send("slow", b"warm").result(30)
            # Requests are appended, their answers held back past every timeout.
            hold = cluster.faults.hold_responses("Produce")
            future = p.send("slow", b"lost-answer")
            with pytest.raises(DeliveryTimeoutError) as info:
                future.result(30)
            hold.release()
        assert info.value.maybe_persisted is True
        # The message says so too ("not delivered" would be untrue: it may be written).
        assert "not acknowledged within delivery_timeout" in str(info.value)
        assert "they may be in the log all the same" in str(info.value)
        # Refused every time ("not the leader": nothing appended): certainly not persisted.
        with Producer(cluster.bootstrap, **options) as p:
            p.send("slow", b"warm").result(30)
            cluster.faults.push_errors("Produce", [NOT_LEADER_OR_FOLLOWER] * 1000)
            future = p.send("slow", b"never-written")
            with pytest.raises(DeliveryTimeoutError) as info2:
                future.result(30)
            cluster.faults.clear()
        assert info2.value.maybe_persisted is False
        assert "may be in the log" not in str(info2.value)


def test_record_too_large_fails_at_once(cluster: BlockingCluster) -> None:
    cluster.create_topic("big", 1)
    with Producer(cluster.bootstrap, max_request_size=10_000, **FAST) as p:
        with pytest.raises(RecordTooLargeError, match="max_request_size"):
            p.produce("big", b"x" * 20_000)
        with pytest.raises(RecordTooLargeError):
            p.send("big", b"x" * 20_000)
        assert p.send("big", b"x" * 5_000).result(30).offset == 0


@pytest.mark.parametrize("idempotent", [True, False])
def test_a_batch_the_broker_finds_too_large_is_split(
    cluster: BlockingCluster, idempotent: bool
) -> None:
    # The topic takes batches of at most ~2 KB; the producer builds 64 KB ones. Every
    # record must arrive once, in order, each report exactly once; only the record that
    # is too large on its own fails, with the broker's MESSAGE_TOO_LARGE.
    cluster.create_topic("small", 1, configs={"max.message.bytes": "2000"})
    options = dict(FAST, linger=0.05, batch_size=65536)
    if not idempotent:
        options |= {"acks": 1, "enable_idempotence": False}
    reports = Reports()
    values = [b"%05d-" % i + b"v" * 100 for i in range(400)]
    with Producer(cluster.bootstrap, **options) as p:
        for value in values[:200]:
            p.produce("small", value, on_delivery=reports.callback(value))
        p.produce("small", b"huge-" + b"x" * 5000, on_delivery=reports.callback(b"huge"))
        for value in values[200:]:
            p.produce("small", value, on_delivery=reports.callback(value))
        assert p.flush(30) == 0
    reports.exactly_once(401)
    assert set(reports.failed) == {b"huge"}
    error = reports.failed[b"huge"]
    assert isinstance(error, DeliveryError)
    assert getattr(error.cause, "code", None) == MESSAGE_TOO_LARGE
    written = [r.value for r in read_topic(cluster.bootstrap, "small")[0]]
    if idempotent:
        assert written == values
    else:
        # Without idempotence, batches behind the refused one were in flight and were
        # written first (Kafka's documented trade-off: order needs idempotence, or one
        # request in flight): all there once, order not promised.
        assert sorted(written) == values


def test_a_topic_that_refuses_large_batches_is_split_for_once_not_every_batch(
    cluster: BlockingCluster, caplog: pytest.LogCaptureFixture
) -> None:
    # 256 KiB batches (the default) to a topic whose max.message.bytes is 100 KB: the
    # first refusals cap the topic's batches, and later batches fit. Before, every batch
    # was refused and split again: 237 splits for 20,000 records of 1 KiB, a fifth of
    # the rate of a topic with the default limit.
    cluster.create_topic("small", 1, configs={"max.message.bytes": "100000"})
    values = [b"%05d-" % i + b"v" * 1024 for i in range(5000)]
    splits: list[int] = []
    with (
        caplog.at_level(logging.DEBUG, logger="pykaf.producer"),
        Producer(cluster.bootstrap, **{**FAST, "linger": 0.05}) as p,
    ):
        p.send("small", b"warm").result(30)
        for round_ in range(5):
            for value in values[round_ * 1000 : (round_ + 1) * 1000]:
                p.produce("small", value)
            assert p.flush(30) == 0
            split = [r for r in caplog.records if r.getMessage().startswith("split ")]
            splits.append(len(split) - sum(splits))
    # The first round's batches (1 MB, built before the first refusal came back) are
    # refused once each and split to the cap; after that, none.
    assert splits[0] > 0
    assert splits[1:] == [0, 0, 0, 0], splits
    capped = [r for r in caplog.records if "max.message.bytes" in r.getMessage()]
    assert capped
    assert all(r.levelno == logging.INFO for r in capped)
    assert "small" in capped[0].getMessage()
    written = [r.value for r in read_topic(cluster.bootstrap, "small")[0]]
    assert written == [b"warm", *values]


def test_batches_queued_before_the_topic_refused_one_are_split_before_they_are_sent(
    cluster: BlockingCluster, caplog: pytest.LogCaptureFixture
) -> None:
    # 5 MB produced at once (twenty 256 KiB batches) to a topic that takes 100 KB: the
    # batches still queued when the first refusal comes back go out split to the cap,
    # not to be refused one by one (30 refusals before). Refused still: what is in
    # flight at each halving, 5 batches of 256 KiB, then their 10 halves.
    cluster.create_topic("small", 1, configs={"max.message.bytes": "100000"})
    values = [b"%05d-" % i + b"v" * 1024 for i in range(5000)]
    with (
        caplog.at_level(logging.DEBUG, logger="pykaf.producer"),
        Producer(cluster.bootstrap, **{**FAST, "linger": 0.05}) as p,
    ):
        p.send("small", b"warm").result(30)
        for value in values:
            p.produce("small", value)
        assert p.flush(30) == 0
    refused = [r for r in caplog.records if r.getMessage().startswith("split ")]
    assert len(refused) <= 15, f"{len(refused)} batches refused as too large"
    written = [r.value for r in read_topic(cluster.bootstrap, "small")[0]]
    assert written == [b"warm", *values]


def test_bad_settings_are_refused_at_construction() -> None:
    for options, advice in [
        ({"lingr": 1}, "did you mean linger"),
        ({"linger": -1}, "linger"),
        ({"acks": 2}, "acks"),
        ({"acks": 1, "enable_idempotence": True}, "set acks='all'"),
        ({"max_in_flight_per_connection": 10}, "at most 5"),
    ]:
        with pytest.raises((TypeError, ValueError), match=advice):
            Producer("127.0.0.1:9", **options)


def test_many_threads_produce_safely(cluster: BlockingCluster) -> None:
    cluster.create_topic("threads", 4)
    check = Check(partitions=4)
    with Producer(cluster.bootstrap, **FAST) as p:

        def worker(n: int) -> None:
            for i in range(5000):
                p.produce("threads", b"%d:%d" % (n, i), b"t%d" % n)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert p.flush(30) == 0
    for n in range(8):
        for i in range(5000):
            check.add(b"t%d" % n, b"%d:%d" % (n, i))
    check.verify(read_topic(cluster.bootstrap, "threads"))


def test_a_new_topic_is_auto_created_like_the_java_producer_does() -> None:
    """A broker that auto-creates topics does so for the producer's Metadata request:
    the first record is delivered, not held until max_block runs out."""
    with BlockingCluster(brokers=1) as auto, Producer(auto.bootstrap, max_block=10.0) as producer:
        metadata = producer.send("created-on-first-use", b"first").result(timeout=10)
        assert (metadata.topic, metadata.offset) == ("created-on-first-use", 0)
