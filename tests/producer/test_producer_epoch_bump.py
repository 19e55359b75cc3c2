"""An idempotent producer whose partition must start over (the broker lost its state, or a
sequenced batch failed) asks InitProducerId to bump its epoch (KIP-360, v3+). Brokers that
speak that version without the bump refuse it: tansu with UNKNOWN_SERVER_ERROR, librdkafka's
mock cluster with INVALID_PRODUCER_ID_MAPPING. The producer then asks for a new producer id
instead, says so once at WARNING, and goes on delivering. Before, it failed for good: every
later record failed with that error (through the gateway, a 500 each)."""

from __future__ import annotations

import logging
import os
import signal

import pytest
from peers.frozen import freeze
from peers.mock_cluster import MockCluster
from peers.tansu import Tansu

from pykaf import Producer
from pykaf.errors import DeliveryTimeoutError

pytestmark = pytest.mark.peer

PRODUCE = 0
UNKNOWN_PRODUCER_ID = 59
SETTINGS = {"linger": 0.001, "request_timeout": 1.0, "retry_backoff_max": 0.2}
REFUSED = "refused to bump this producer's epoch"


def test_the_mock_cluster_refusing_the_bump_gets_a_new_producer_id(
    mock_cluster: MockCluster, caplog: pytest.LogCaptureFixture
) -> None:
    mock_cluster.create_topic("t", 1)
    caplog.set_level(logging.WARNING, logger="pykaf.producer")
    with Producer(mock_cluster.bootstrap, **SETTINGS) as producer:
        first = producer.send("t", b"first").result(10)
        # The broker "lost" this producer: the partition must start over under a new
        # identity, which the producer asks for by bumping its epoch.
        mock_cluster.push_request_errors(PRODUCE, [UNKNOWN_PRODUCER_ID])
        later = [producer.send("t", b"later-%d" % i) for i in range(20)]
        offsets = [future.result(10).offset for future in later]
    assert offsets == sorted(offsets)
    assert offsets[0] > first.offset
    refused = [r for r in caplog.records if REFUSED in r.getMessage()]
    assert len(refused) == 1, caplog.text
    assert refused[0].levelno == logging.WARNING
    assert "failed for good" not in caplog.text


def test_tansu_refusing_the_bump_after_a_hung_spell_gets_a_new_producer_id(
    tansu: Tansu, caplog: pytest.LogCaptureFixture
) -> None:
    tansu.create_topic("t", 1)
    caplog.set_level(logging.WARNING, logger="pykaf.producer")
    with Producer(tansu.bootstrap, delivery_timeout=1.5, **SETTINGS) as producer:
        producer.send("t", b"first").result(10)
        freeze(tansu.pid)  # hung: sent, never answered
        try:
            stuck = producer.send("t", b"stuck")
            with pytest.raises(DeliveryTimeoutError) as failed:
                stuck.result(10)
        finally:
            os.kill(tansu.pid, signal.SIGCONT)
        assert failed.value.maybe_persisted is True
        # A batch that got a sequence failed: the partition starts over (bump refused).
        later = [producer.send("t", b"later-%d" % i) for i in range(20)]
        offsets = [future.result(10).offset for future in later]
    assert offsets == sorted(offsets)
    assert len([r for r in caplog.records if REFUSED in r.getMessage()]) == 1, caplog.text
    assert "failed for good" not in caplog.text
