"""A batch that was written but not answered, then refused again and again with retriable
errors while later batches of its partition are acknowledged.

The broker recognises a resent batch as a duplicate only among the producer's last five
batches of the partition (Kafka's NUM_BATCHES_TO_RETAIN); past them it answers
OUT_OF_ORDER_SEQUENCE_NUMBER, and the producer must then fail the batch (it cannot prove
where its records are) although they are in the log. So while a batch is being resent,
nothing new of its partition goes out: only the batches sequenced with it (at most four
behind it) can be written after it, and its resend always finds itself among the five.

Found by the receipt fault sweep (``test_receipt_faults.py``), which failed 33 records
this way in about 1 run in 150 on a loaded machine."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from _produce_readback import read_topic

from pykaf._errors import DeliveryError
from pykaf._producer._delivery import ProducerRecord
from pykaf._producer._producer import Producer
from pykaf.broker import BlockingCluster

REQUEST_TIMED_OUT = 7
RECORDS = 3_000
SETTINGS = {
    "request_timeout": 5.0,
    "delivery_timeout": 30.0,
    "max_block": 10.0,
    "linger": 0.002,
    "batch_size": 1024,  # ~10 records a batch: hundreds of batches queued behind the first
    "retry_backoff": 0.01,
    "retry_backoff_max": 0.05,
}


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=1) as running:
        yield running


def test_a_resent_batch_stays_within_the_brokers_duplicate_window(
    cluster: BlockingCluster,
) -> None:
    cluster.create_topic("window", 1)
    failed: list[BaseException] = []
    lock = threading.Lock()

    def on_error(_record: ProducerRecord, error: BaseException) -> None:
        with lock:
            failed.append(error)

    values = [b"%05d" % i + bytes(90) for i in range(RECORDS)]
    with Producer(cluster.bootstrap, on_error=on_error, **SETTINGS) as producer:
        producer.send("window", b"warm-up").result(30)  # acknowledged: retries may pipeline
        # The next batch is appended and its connection closed before the answer (the
        # producer cannot know it is written); its first two resends are refused with a
        # retriable error, while the four requests after the first resend go through.
        cluster.faults.drop_connection_after("Produce", before_response=True)
        cluster.faults.push_errors("Produce", [REQUEST_TIMED_OUT, 0, 0, 0, 0, REQUEST_TIMED_OUT])
        for value in values:
            producer.produce("window", value)
        assert producer.flush(30) == 0
    assert cluster.faults.pending_errors("Produce") == 0  # every fault was thrown
    assert not failed, [str(e) for e in failed[:1] if isinstance(e, DeliveryError)] or failed
    log = [record.value for record in read_topic(cluster.bootstrap, "window")[0]]
    assert log == [b"warm-up", *values]  # each record once, in order
