"""ekaf's batch hook: ``transform_batch(topic, partition, records) -> records``.

The hook rewrites or merges a batch's records before the batch is encoded (ekaf's
"massage": a thousand small records sent as one JSON array, say). It gets the batch's
records as the producer keeps them, a list of ``(key, value, headers, timestamp)`` tuples
(``BatchRecord``: key and value bytes or None, headers a list of ``(name, value)`` pairs
or None, timestamp ms or None for the batch's time), and returns the records to send
instead, in that shape; a bare value (bytes or str) stands for ``(None, value, None,
None)``. The list it gets is its own (a copy): the producer keeps the originals for
their reports.

When: once per batch, when the batch is first encoded, on the producer's loop thread (a
retry re-sends the same transformed bytes). Keep it short and never produce from it. A
producer without the hook pays nothing: the sender tests one attribute per request.

Reports: every original record gets exactly one. Delivered: at the offset of the record
it became part of. Of N records turned into M, record ``i`` became part of returned
record ``i * M // N``: exact for a rewrite (M == N), a merge into one (M == 1) and a
merge into M equal runs in order; the ``RecordMetadata`` timestamp is that record's.
Failed: a hook that raises, or returns no records or something else than records, fails
the batch's records with ``TransformError`` (naming the topic, partition and the
exception's type); the producer goes on with later batches.

Custody "journal": the hook runs at send time, so the journal keeps the user's records
(a hook that changes cannot corrupt what recovery re-sends, and ``pykaf journal``
shows what was produced). A transformed batch's identity is not journaled: after a
crash its records are transformed and sent again, at-least-once. A transformed batch
the broker refuses as too large fails rather than being split in halves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pykaf._errors import TransformError
from pykaf._producer._batches import Batch, normalise
from pykaf._producer._delivery import LooseRecords
from pykaf._producer._receipt import ReceiptRun
from pykaf._producer._settings import TransformBatch
from pykaf.protocol._records import BATCH_OVERHEAD

__all__ = ["delivered_view", "failed_view", "transform"]


def transform(batch: Batch, hook: TransformBatch) -> None:
    """Replace ``batch.records`` by what ``hook`` makes of them (the originals move to
    ``batch.originals``). Raises ``TransformError``; the batch is unchanged then."""
    originals = batch.records
    where = f"{len(originals)} record(s) to {batch.topic}-{batch.partition}"
    try:
        returned = hook(batch.topic, batch.partition, list(originals))
    except Exception as exc:  # the user's code: any failure fails this batch only
        raise TransformError(
            f"{where}: transform_batch raised {type(exc).__name__}: {exc}", cause=exc
        ) from exc
    records, size = _checked(returned, where)
    batch.originals = originals
    batch.records = records
    batch.size = size


def _checked(returned: object, where: str) -> tuple[list[tuple[Any, Any, Any, Any]], int]:
    if isinstance(returned, str | bytes) or not isinstance(returned, Sequence):
        raise TransformError(
            f"{where}: transform_batch must return a list of records, not {type(returned).__name__}"
        )
    if not returned:
        raise TransformError(f"{where}: transform_batch returned no records")
    records: list[tuple[Any, Any, Any, Any]] = []
    total = BATCH_OVERHEAD
    for item in returned:
        if isinstance(item, bytes | str | bytearray | memoryview):
            key, value, headers, timestamp = None, item, None, None
        elif isinstance(item, tuple) and len(item) == 4:
            key, value, headers, timestamp = item
        else:
            raise TransformError(
                f"{where}: transform_batch returned {item!r:.60}; each record is a value"
                " or a (key, value, headers, timestamp) tuple"
            )
        try:
            key, value, headers, size = normalise(key, value, headers, timestamp)
        except (TypeError, ValueError) as exc:
            raise TransformError(f"{where}: transform_batch returned a bad record: {exc}") from exc
        records.append((key, value, headers, timestamp))
        total += size
    return records, total


def delivered_view(batch: Batch) -> LooseRecords:
    """A transformed batch as the reporter reads it on success: the records sent, and
    each original record's report at the index of the record it became part of."""
    originals = batch.originals
    assert originals is not None
    reports = batch.reports
    sent = len(batch.records)
    count = len(originals)
    mapped = (
        None
        if reports is None
        else [(i * sent // count, r) for at, report in reports for i, r in _each(at, report)]
    )
    return LooseRecords(batch.topic, batch.partition, batch.records, mapped, batch.created_ms)


def _each(index: int, report: Any) -> list[tuple[int, Any]]:
    """``(index, report)`` per original record: a receipt's run of several records in
    runs of one (each maps to the record it became part of; the reporter joins the
    neighbours again)."""
    if report.__class__ is not ReceiptRun or report.count == 1:
        return [(index, report)]
    receipt, first = report.receipt, report.first
    return [(index + k, ReceiptRun(receipt, first + k, 1)) for k in range(report.count)]


def failed_view(batch: Batch) -> LooseRecords:
    """A transformed batch as the reporter reads it on failure: the original records
    (``on_error`` gets those the caller produced)."""
    originals = batch.originals
    assert originals is not None
    return LooseRecords(batch.topic, batch.partition, originals, batch.reports, batch.created_ms)
