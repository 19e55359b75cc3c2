"""Custody "journal" against independent brokers (tansu, in Rust; librdkafka's mock
cluster): a producer SIGKILLed with records in its journal that the broker was sent but
never acknowledged to it, and a new producer on that journal afterwards. (The embedded
broker runs in the test's process and cannot be frozen: ``test_custody_dedup.py``.)

The broker is frozen (SIGSTOP) while the child produces, so its Produce requests wait
unread in the socket. Then either the child is killed at once ("unread": the requests die
with its connection, or the broker reads them late), or the child is frozen too and the
broker woken first ("acks lost"): it writes the child's batches and answers into a socket
nobody reads, and only then is the child killed. Both ways some batches may reach the
broker twice, from the dead producer and from the replay. The replay sends them as the
same idempotent batches (producer id, epoch and sequences were journaled before the
first send), and a broker that keeps the producers' state drops the copies: every record
the child accepted arrives once, in order per partition, and each has one report. With
the journaled identities ignored, "acks lost" fails on both brokers (duplicates)."""

from __future__ import annotations

import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from custody_filler import expected_values, fill_journal, replay_journal
from peers.frozen import freeze, frozen
from peers.process_broker import PROCESS_BROKERS, ProcessBroker, process_broker
from peers.readback import read_back

from pykaf.errors import DeliveryTimeoutError
from pykaf.journal import inspect_journal

pytestmark = pytest.mark.peer

PARTITIONS = 3
COUNT = 1_500
WAIT = 30.0  # bounds each wait on the broker
SETTINGS: dict[str, Any] = {
    "linger": 0.002,
    "request_timeout": 2.0,
    "retry_backoff_max": 0.2,
    "max_block": 30.0,
}


def wait_for_a_child_record(bootstrap: str) -> None:
    """Until the broker holds at least one of the child's records (not a warm-up one)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "pykaf-custody-acks-lost-probe",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 20,
            "log_level": 3,
        }
    )
    try:
        consumer.assign([TopicPartition("t", p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.2):
                if message.error() is None and message.value() != b"warm":
                    return
        raise AssertionError(f"the broker wrote none of the child's records within {WAIT} s")
    finally:
        consumer.close()


@pytest.fixture(params=PROCESS_BROKERS)
def broker(request: pytest.FixtureRequest) -> ProcessBroker:
    return process_broker(request, "t", PARTITIONS)


def leave_unanswered(broker: ProcessBroker, journal: Path, moment: str) -> None:
    """A child SIGKILLed with ``COUNT`` records journaled, sent, and not answered to it
    (see the module doc for the two moments)."""
    with ExitStack() as waking:

        def freeze_broker() -> None:
            waking.enter_context(frozen(broker.pid))

        def before_kill(child: int) -> None:
            if moment == "acks lost":
                freeze(child)  # stopped for sure before the broker answers (SIGKILL ends it too)
                waking.close()  # the broker wakes, reads the requests, answers them
                wait_for_a_child_record(broker.bootstrap)

        fill_journal(
            journal,
            broker.bootstrap,
            freeze_broker,
            partitions=PARTITIONS,
            count=COUNT,
            before_kill=before_kill,
        )


@pytest.mark.parametrize("moment", ["unread", "acks lost"])
def test_a_producer_killed_with_unacknowledged_requests_is_replayed_once_each(
    broker: ProcessBroker, tmp_path: Path, moment: str
) -> None:
    journal = tmp_path / "journal"
    leave_unanswered(broker, journal, moment)
    replayed, stats = replay_journal(
        journal, broker.bootstrap, partitions=PARTITIONS, count=COUNT, **SETTINGS
    )
    # The broker still knows the dead producer: nothing went again without its identity.
    assert stats.resent_unproven == 0, stats
    assert stats.failed == 0, stats
    assert [e for _, e in replayed if e is not None] == []
    assert len(replayed) == COUNT  # one report each
    assert inspect_journal(journal).pending_records == 0
    # The child's warm-up records, then its COUNT records: each once, in produce order
    # (where the broker deduplicates; else none lost, in order, at most twice each).
    log = read_back(
        broker.bootstrap,
        "t",
        PARTITIONS,
        PARTITIONS + COUNT,
        trust_watermarks=broker.trust_watermarks,
    )
    values = {p: [v for _offset, _key, v in rows] for p, rows in log.records.items()}
    assert Counter(v for vs in values.values() for v in vs)[b"warm"] == PARTITIONS
    written = {p: [v for v in vs if v != b"warm"] for p, vs in values.items()}
    expected = expected_values(COUNT, PARTITIONS)
    if broker.deduplicates:
        assert written == expected, (
            f"replay: {stats}; per partition {[len(v) for v in written.values()]}"
        )
        return
    copies = Counter(v for vs in written.values() for v in vs)
    assert set(copies) == {v for vs in expected.values() for v in vs}  # none lost, none else
    assert max(copies.values()) <= 2
    for partition, values_here in written.items():
        # The replay's copies come last, all of them, in produce order; a copy the dead
        # producer's request wrote may come before.
        last_copies = list(dict.fromkeys(reversed(values_here)))[::-1]
        assert last_copies == expected[partition], f"partition {partition}"


def test_records_sent_before_a_crash_that_expire_say_they_may_be_in_the_log(
    broker: ProcessBroker, tmp_path: Path
) -> None:
    # journal_delivery_timeout fails what waited too long: records the dead producer had
    # sent, and whose answers nobody read, may be in the log, and the broker here holds
    # some of them indeed: their reports must say so (before: maybe_persisted False).
    journal = tmp_path / "journal"
    leave_unanswered(broker, journal, "acks lost")
    replayed, _stats = replay_journal(
        journal,
        broker.bootstrap,
        partitions=PARTITIONS,
        count=COUNT,
        journal_delivery_timeout=0.001,
        **SETTINGS,
    )
    errors = [error for _, error in replayed]
    assert len(errors) == COUNT
    assert all(isinstance(error, DeliveryTimeoutError) for error in errors), errors[:3]
    assert all(error.maybe_persisted for error in errors if error is not None)
    assert all("may be in the log" in str(error) for error in errors)
    log = read_back(
        broker.bootstrap, "t", PARTITIONS, PARTITIONS + 1, trust_watermarks=broker.trust_watermarks
    )
    assert log.total > PARTITIONS  # the warm-up records and some of the "failed" ones
