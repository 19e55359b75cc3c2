"""A receipt: the outcome of each of many records appended in one call, told by run.

A future per record costs more than the producer's whole append (0.8 us a record against
0.15, measured by ``benchmarks/gateway.py``'s direct rows). Records appended together land
in a few batches, and the records of one batch share their fate: a partition, a base
offset (each the next), a timestamp, or one error. So ``AsyncProducer.produce_values``
puts a ``ReceiptRun`` in a batch's reports for each run of records it adds there (one
entry, however many records), and the reporter tells the receipt the run's outcome in
one call. The receipt's ``done`` future resolves when every record taken is told. (With
a journal each record has its own serial and report: a ``ReceiptRun`` of one each.)

Every record still ends in exactly one report: its run's, in ``runs``.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeAlias

from pykaf._errors import DeliveryError

__all__ = ["Receipt", "ReceiptRun", "Run", "tell_delivered"]

#: One run's outcome: ``(first, count, partition, offset, timestamp, error)``: records
#: ``first`` to ``first + count - 1`` of the call were written to ``partition`` from
#: ``offset`` on (-1 with acks=0) with ``timestamp`` (ms), or failed with ``error``
#: (then partition, offset and timestamp are -1).
Run: TypeAlias = tuple[int, int, int, int, int, DeliveryError | None]


class Receipt:
    """The runs told so far (in the order they were told, not by ``first``) and a future
    done when all ``expected`` records are told (at once when the call took none). One
    receipt per call; it lives on the producer's event loop."""

    __slots__ = ("done", "expected", "runs", "told")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """``loop``: the producer's (default: the running one)."""
        self.done: asyncio.Future[None] = (loop or asyncio.get_running_loop()).create_future()
        self.expected = 0
        self.told = 0
        self.runs: list[Run] = []

    def expect(self, count: int) -> None:
        """``count`` more records were taken: their outcomes are owed."""
        self.expected += count
        self._settle()

    def tell(
        self,
        first: int,
        count: int,
        partition: int,
        offset: int,
        timestamp: int,
        error: DeliveryError | None,
    ) -> None:
        self.runs.append((first, count, partition, offset, timestamp, error))
        self.told += count
        self._settle()

    def _settle(self) -> None:
        if self.told >= self.expected and not self.done.done():
            self.done.set_result(None)


class ReceiptRun:
    """The report of ``count`` records from ``first`` on (of the call that took them),
    which sit together in one batch. The reporter tells it in one step; it is also an
    ``on_delivery`` callback, for any code that treats reports as callbacks (then each
    call tells the whole run)."""

    __slots__ = ("count", "first", "receipt")

    def __init__(self, receipt: Receipt, first: int, count: int) -> None:
        self.receipt = receipt
        self.first = first
        self.count = count

    def __call__(self, metadata: Any, error: DeliveryError | None) -> None:
        if error is not None or metadata is None:
            self.receipt.tell(self.first, self.count, -1, -1, -1, error)
        else:
            offset = metadata.offset
            self.receipt.tell(
                self.first, self.count, metadata.partition, offset, metadata.timestamp, None
            )

    def split(self, index: int, start: int, stop: int) -> tuple[int, ReceiptRun] | None:
        """This run, placed at ``index`` in a batch, as its part within the batch's
        records ``start`` to ``stop - 1`` (a split batch): ``(index in the part, run)``,
        or None when none of its records are there."""
        low, high = max(index, start), min(index + self.count, stop)
        if low >= high:
            return None
        if low == index and high == index + self.count:
            return index - start, self
        return low - start, ReceiptRun(self.receipt, self.first + low - index, high - low)


def tell_delivered(
    runs: list[tuple[int, ReceiptRun, int]], partition: int, base_offset: int
) -> None:
    """Tell the receipts the runs of a batch delivered to ``partition`` from
    ``base_offset`` on (-1: acks=0), ``runs`` being ``(index in the batch, run, its
    timestamp)`` in the batch's order. Neighbours (the next records of one call, next in
    the batch, with one timestamp) are told as one run: a journal gives each record a
    run of its own, and a receipt of a run per record cost its reader a step each."""
    receipt: Receipt | None = None
    first = count = at = offset = stamp = 0
    for index, run, timestamp in runs:
        neighbour = run.receipt is receipt and index == at and run.first == first + count
        if neighbour and timestamp == stamp:
            count += run.count
            at += run.count
            continue
        if receipt is not None:
            receipt.tell(first, count, partition, offset, stamp, None)
        receipt, first, count, stamp = run.receipt, run.first, run.count, timestamp
        offset = base_offset + index if base_offset >= 0 else -1
        at = index + count
    if receipt is not None:
        receipt.tell(first, count, partition, offset, stamp, None)
