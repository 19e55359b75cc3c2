"""ekaf's batch hook, ``transform_batch`` (issue 15): 1,000 records merged into JSON-array
records a reader finds, each original record reported once at the offset of the record
it became part of; a hook that raises fails its batch's records with ``TransformError``
and the producer goes on; the journal keeps the caller's records."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from _produce_readback import read_topic

from pykaf._errors import TransformError
from pykaf._producer._delivery import RecordMetadata
from pykaf._producer._producer import Producer
from pykaf._producer.journal import JournalStore
from pykaf.broker import BlockingCluster
from pykaf.events import BatchFailed, Event

COUNT = 1000


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=1) as running:
        running.create_topic("t", 3)
        yield running


def as_json_array(topic: str, partition: int, records: list[Any]) -> list[Any]:
    """The whole batch as one record: a JSON array of its values (ekaf's example)."""
    values = [value.decode() for _, value, _, _ in records]
    return [(None, json.dumps(values).encode(), None, None)]


def test_a_merged_batch_is_read_back_and_every_record_reported_once(
    cluster: BlockingCluster,
) -> None:
    seen: list[tuple[str, int, int]] = []

    def merge(topic: str, partition: int, records: list[Any]) -> list[Any]:
        seen.append((topic, partition, len(records)))
        return as_json_array(topic, partition, records)

    with Producer(cluster.bootstrap, linger=0.05, transform_batch=merge) as producer:
        futures = [producer.send("t", f"r{i:04d}", partition=i % 3) for i in range(COUNT)]
        assert producer.flush(30) == 0
    metadata: list[RecordMetadata] = [f.result(0) for f in futures]
    written = read_topic(cluster.bootstrap, "t")
    merged_at: dict[tuple[int, str], int] = {}
    for partition, records in written.items():
        values = [v for r in records for v in json.loads(r.value or b"")]
        assert values == [f"r{i:04d}" for i in range(partition, COUNT, 3)]
        for r in records:
            for v in json.loads(r.value or b""):
                merged_at[(partition, v)] = r.offset
    assert sum(len(rs) for rs in written.values()) == len(seen) < COUNT
    assert sum(n for _, _, n in seen) == COUNT  # once per batch, every record
    for i, meta in enumerate(metadata):
        assert (meta.topic, meta.partition) == ("t", i % 3)
        assert meta.offset == merged_at[(i % 3, f"r{i:04d}")]


def test_a_rewrite_keeps_one_record_per_record(cluster: BlockingCluster) -> None:
    def upper(topic: str, partition: int, records: list[Any]) -> list[Any]:
        return [value.upper() for _, value, _, _ in records]

    with Producer(cluster.bootstrap, transform_batch=upper) as producer:
        futures = [producer.send("t", f"v{i}", partition=0) for i in range(50)]
        assert producer.flush(30) == 0
    written = read_topic(cluster.bootstrap, "t")[0]
    assert [r.value for r in written] == [f"V{i}".encode() for i in range(50)]
    assert [f.result(0).offset for f in futures] == [r.offset for r in written]


def test_a_hook_that_raises_fails_its_batch_and_later_batches_go_through(
    cluster: BlockingCluster,
) -> None:
    def picky(topic: str, partition: int, records: list[Any]) -> list[Any]:
        if any(value == b"boom" for _, value, _, _ in records):
            raise ValueError("no booms here")
        return records

    errors: list[tuple[Any, BaseException]] = []
    events: list[Event] = []
    with Producer(
        cluster.bootstrap,
        linger=0.2,  # the three records below share one batch
        transform_batch=picky,
        on_error=lambda r, e: errors.append((r, e)),
        on_event=events.append,
    ) as producer:
        assert producer.send("t", b"first", partition=1).result(30).offset == 0
        doomed: list[Future[RecordMetadata]] = [
            producer.send("t", b"boom", partition=1),
            producer.send("t", b"with it", partition=1),
        ]
        producer.produce("t", b"fire and forget", partition=1)
        assert producer.flush(30) == 0
        after = producer.send("t", b"after", partition=1).result(30)
    for future in doomed:
        error = future.exception(0)
        assert isinstance(error, TransformError)
        assert "t-1" in str(error)
        assert "ValueError" in str(error)
        assert not error.maybe_persisted
    # The fire-and-forget record of the batch reached on_error, as produced.
    assert [(r.value, type(e)) for r, e in errors] == [(b"fire and forget", TransformError)]
    # Nothing of the failed batch was written; the next batch follows on (its idempotent
    # sequence took over the failed batch's: no gap the broker would refuse).
    assert [r.value for r in read_topic(cluster.bootstrap, "t")[1]] == [b"first", b"after"]
    assert after.offset == 1
    [failed] = [e for e in events if isinstance(e, BatchFailed)]
    assert (failed.topic, failed.partition) == ("t", 1)
    assert (failed.records, failed.error) == (3, "TransformError")


@pytest.mark.parametrize(
    "returned",
    [None, [], [("k", "v")], [(None, 5, None, None)]],
    ids=["none", "empty", "pair", "int-value"],
)
def test_a_hook_returning_no_records_fails_the_batch_with_what_to_fix(
    cluster: BlockingCluster, returned: Any
) -> None:
    with Producer(cluster.bootstrap, transform_batch=lambda t, p, rs: returned) as producer:
        future = producer.send("t", b"x", partition=0)
        assert producer.flush(30) == 0
    error = future.exception(0)
    assert isinstance(error, TransformError)
    assert "transform_batch" in str(error)
    assert "t-0" in str(error)


def test_transform_batch_must_be_a_function() -> None:
    with pytest.raises(ValueError, match="transform_batch must be a function"):
        Producer("127.0.0.1:9", transform_batch="json")


def test_the_journal_keeps_the_callers_records_and_a_replay_transforms_them(
    cluster: BlockingCluster, tmp_path: Path
) -> None:
    # The hook runs at send time: the journal holds what the caller produced, and what a
    # later producer replays from it goes through its own hook.
    options: dict[str, Any] = {
        "custody": "journal",
        "journal_dir": tmp_path,
        "linger": 0.05,
        "request_timeout": 0.5,
        "transform_batch": as_json_array,
    }
    with Producer(cluster.bootstrap, **options) as producer:
        producer.send("t", b"warm", partition=2).result(30)
        cluster.faults.broker_down(1)
        for i in range(20):
            producer.produce("t", f"j{i}", partition=2)
        producer.close(0.2)  # brokers away: kept in the journal for the next producer
    store = JournalStore(tmp_path, max_bytes=1 << 30, segment_bytes=64 << 20)
    store.open()
    try:
        kept = [rec.value for rec in store.read_pending(0, store.next_serial)]
    finally:
        store.close()
    assert kept == [f"j{i}".encode() for i in range(20)]
    cluster.faults.broker_up(1)
    with Producer(cluster.bootstrap, **options) as producer:
        assert producer.flush(30) == 0
    written = read_topic(cluster.bootstrap, "t")[2]
    assert json.loads(written[0].value or b"") == ["warm"]
    replayed = [v for r in written[1:] for v in json.loads(r.value or b"")]
    assert replayed == [f"j{i}" for i in range(20)]
