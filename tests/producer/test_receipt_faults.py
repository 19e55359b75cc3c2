"""Receipts under the faults a cluster throws at a producer, one after another while
``produce_values`` calls go on: retriable errors, a connection closed after the broker
wrote a batch and before it answered (the retry must be dropped as a duplicate), one
closed before it read the batch, leaders moved, a broker taken down and brought back,
and batches refused as too large (split). Every record must be told exactly once; each
record's partition and offset, as told, must hold that very record in the log; and the
log must hold each record once, in the order of the calls per partition (idempotence:
no loss, no duplicate, no reordering).

A split and a batch written but not answered are not thrown in one run: a broker that
refuses as too large the retry of a batch it already wrote (Kafka checks the size before
it looks for duplicates: only if the topic's max.message.bytes shrank in between) makes
the parts new batches to it, which it cannot recognise, as with the Java client, which
splits the same way. A part of one record that is refused again fails with
MESSAGE_TOO_LARGE, as it must: the only failure allowed here."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _custody_support import FAST
from fault_sweep import (
    bring_back,
    move_a_leader,
    next_fault,
    swept_cluster,
    take_a_broker_down,
)
from test_receipt import read_back, told

from pykaf import AsyncProducer, Receipt
from pykaf.broker import Cluster

TOPIC = "faults"
PARTITIONS = 6
ROUNDS = 40
PER_CALL = 150
NOT_LEADER, REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS, MESSAGE_TOO_LARGE = 6, 7, 19, 10
WITH_UNANSWERED = ["retriable", "written, not answered", "not read", "leader moved", "broker down"]
WITH_SPLITS = ["retriable", "not read", "leader moved", "broker down", "split"]


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    async with swept_cluster(TOPIC, PARTITIONS) as running:
        yield running


async def one_fault(cluster: Cluster, rng: random.Random, down: list[int], kinds: list[str]) -> str:
    """Throw one fault, chosen by ``rng``; a broker taken down stays down for one round
    (``down``), and comes back before the next fault."""
    kind = await next_fault(cluster, rng, down, kinds)
    faults = cluster.faults
    if kind == "retriable":
        faults.push_errors(
            "Produce", rng.choice([NOT_LEADER, REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS])
        )
    elif kind == "written, not answered":
        faults.drop_connection_after("Produce", before_response=True)
    elif kind == "not read":
        faults.drop_connection_after("Produce", before_response=False)
    elif kind == "leader moved":
        move_a_leader(cluster, rng, TOPIC, PARTITIONS)
    elif kind == "broker down":
        await take_a_broker_down(cluster, rng.choice([1, 2, 3]), down)
    else:
        faults.push_errors("Produce", MESSAGE_TOO_LARGE)  # the batch is split in halves
    return kind


@pytest.mark.parametrize(
    ("custody", "kinds", "seed"),
    [
        ("memory", WITH_UNANSWERED, 1),
        ("memory", WITH_SPLITS, 2),
        ("memory", WITH_SPLITS, 6),
        ("journal", WITH_UNANSWERED, 3),
        ("journal", WITH_SPLITS, 4),
    ],
)
async def test_each_record_is_told_once_with_where_it_really_is_through_faults(
    cluster: Cluster, tmp_path: Path, custody: str, kinds: list[str], seed: int
) -> None:
    rng = random.Random(seed)
    options = dict(FAST, batch_size=2048, delivery_timeout=60.0, retry_backoff_max=0.2)
    if custody == "journal":
        options.update(custody="journal", journal_dir=str(tmp_path / "journal"))
    calls: list[tuple[list[bytes], Receipt]] = []
    thrown: list[str] = []
    down: list[int] = []
    async with AsyncProducer(cluster.bootstrap, **options) as producer:
        await producer.partitions_for(TOPIC)
        async with asyncio.timeout(60):
            for round_ in range(ROUNDS):
                values = [b"%03d-%04d" % (round_, i) + bytes(40) for i in range(PER_CALL)]
                sent = 0
                while sent < len(values):  # a call takes none while records wait before
                    receipt = Receipt()
                    taken = producer.produce_values(TOPIC, values[sent:], receipt)
                    if taken:
                        calls.append((values[sent : sent + taken], receipt))
                        sent += taken
                    else:
                        await asyncio.sleep(0.005)
                thrown.append(await one_fault(cluster, rng, down, kinds))
                await asyncio.sleep(rng.choice([0, 0.002, 0.02]))
            await bring_back(cluster, down)
            await asyncio.gather(*(receipt.done for _, receipt in calls))
    assert len(set(thrown)) >= 4, thrown  # the sweep threw most kinds of fault
    where: dict[tuple[int, int], bytes] = {}
    failed = 0
    order: defaultdict[int, list[int]] = defaultdict(list)
    for values, receipt in calls:
        outcomes = told(receipt)  # each record of the call told exactly once
        for value, (_index, partition, offset, _ts, error) in zip(values, outcomes, strict=True):
            if error is not None:
                # A part of one record refused again: failed, and not in the log below.
                assert "MESSAGE_TOO_LARGE" in str(error), error
                assert "split" in thrown
                failed += 1
                continue
            assert (partition, offset) not in where, f"two records told {partition}/{offset}"
            where[partition, offset] = value
            order[partition].append(offset)
    assert len(where) + failed == ROUNDS * PER_CALL
    # Only a one-record batch refused as too large fails, and each "split" fault refuses
    # one request: at most one batch per partition in it. (The bound was 5 whatever the
    # sweep threw: 6 failed once in CI with more splits thrown.)
    assert failed <= thrown.count("split") * PARTITIONS, (failed, thrown.count("split"))
    stored = await read_back(cluster, TOPIC, PARTITIONS, len(where))
    assert stored == where  # each told place holds its record, and the log nothing else
    for partition, offsets in order.items():  # the calls' order, per partition
        assert offsets == sorted(offsets), f"partition {partition} reordered"
