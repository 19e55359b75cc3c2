"""What a producer hands back: ``RecordMetadata``, ``ProducerRecord``, and the reports.

Every record ends in exactly one report. A record's report is what the caller asked for:
an ``on_delivery(metadata, error)`` callback, a ``concurrent.futures.Future`` (blocking
``send``), an ``asyncio.Future`` (async ``send``), or nothing (fire-and-forget: a failure
then goes to the producer's ``on_error(record, error)``, or to the log at ERROR, rate-limited
and counted by ``log_limit``: an outage that fails a thousand batches is a line and a
count, not a thousand lines; so is a callback that raises for every record). Batches
keep only the reports that exist, as ``(index, report)`` pairs, so fire-and-forget records
cost nothing here on success.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeAlias

from pykaf._errors import DeliveryError
from pykaf._producer._future import DeliveryFuture, resolve_many
from pykaf._producer._receipt import ReceiptRun, tell_delivered
from pykaf._telemetry._log_limit import LogLimiter

__all__ = [
    "DeliveryCallback",
    "ErrorCallback",
    "Headers",
    "LooseRecords",
    "ProducerRecord",
    "RecordMetadata",
    "Report",
    "Reporter",
    "check_callback",
    "logger",
    "unpack_item",
]

logger = logging.getLogger("pykaf.producer")

# Callbacks run on the producer's event loop, per report: nothing awaits them there.
_NOT_AWAITED = (
    "{name} is an async function, which the producer does not await{detail}. Pass a plain"
    " function (it may start a task with asyncio.create_task for async work), or use"
    " send(), whose future can be awaited"
)

Headers: TypeAlias = Sequence[tuple[str, bytes | None]]


class RecordMetadata(NamedTuple):
    """Where a delivered record was written. ``offset`` is -1 with acks=0 (no answer);
    ``timestamp`` is the record's (ms), or the broker's log-append time if the topic
    uses it.

    A NamedTuple rather than a frozen dataclass: one is made per acknowledged record that
    has a future or callback, and a tuple subclass is three times cheaper to build."""

    topic: str
    partition: int
    offset: int
    timestamp: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ProducerRecord:
    """A record as given to the producer: an item of ``produce_batch`` (topic may be
    left out there), and what ``on_error`` receives for a failed fire-and-forget record."""

    topic: str | None = None
    value: bytes | None = None
    key: bytes | None = None
    partition: int | None = None
    headers: Headers | None = None
    timestamp: int | None = None


DeliveryCallback: TypeAlias = Callable[[RecordMetadata | None, DeliveryError | None], Any]
ErrorCallback: TypeAlias = Callable[[ProducerRecord, BaseException], Any]
# A callback, a concurrent.futures.Future or an asyncio.Future.
Report: TypeAlias = Any

_CFuture = concurrent.futures.Future
_AFuture = asyncio.Future


class _BatchLike(Protocol):
    """What the reporter reads from a batch (see ``_accumulator.Batch``)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def records(self) -> list[tuple[Any, Any, Any, Any]]: ...
    @property
    def reports(self) -> list[tuple[int, Report]] | None: ...
    @property
    def created_ms(self) -> int: ...


class LooseRecords:
    """Records that fail outside any batch (a journaled record that cannot be sent, the
    records a close keeps in the journal), shaped as the batch ``Reporter.failed`` reads."""

    __slots__ = ("created_ms", "partition", "records", "reports", "topic")

    def __init__(
        self,
        topic: str,
        partition: int,
        records: list[tuple[Any, Any, Any, Any]],
        reports: list[tuple[int, Report]] | None,
        created_ms: int = 0,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.records = records
        self.reports = reports
        self.created_ms = created_ms


def check_callback(on_delivery: object) -> None:
    """Refuse a non-callable ``on_delivery`` at the call, not at delivery time."""
    if on_delivery is not None and not callable(on_delivery):
        raise TypeError(f"on_delivery must be a function (metadata, error), not {on_delivery!r}")


class Reporter:
    """Resolves the reports of finished batches. Runs on the producer's event loop; a
    caller's callback that raises is logged and never stops the producer."""

    def __init__(self, on_error: ErrorCallback | None) -> None:
        if on_error is not None and not callable(on_error):
            raise TypeError(f"on_error must be a function (record, error), not {on_error!r}")
        if inspect.iscoroutinefunction(on_error):
            raise TypeError(_NOT_AWAITED.format(name="on_error", detail=""))
        self.on_error = on_error
        # Failures told in the log (see the module doc); the engine gives it a timer.
        self.log_limit = LogLimiter(logger, unit="record(s)")

    def succeeded(self, batch: _BatchLike, base_offset: int, log_append_time: int) -> None:
        reports = batch.reports
        if not reports:
            return
        topic, partition, records = batch.topic, batch.partition, batch.records
        default_ts = log_append_time if log_append_time >= 0 else batch.created_ms
        use_own = log_append_time < 0
        futures: list[tuple[Any, RecordMetadata]] = []  # resolved together, one lock
        runs: list[tuple[int, ReceiptRun, int]] = []  # told together, neighbours as one
        for index, report in reports:
            ts = records[index][3] if use_own else None
            if report.__class__ is ReceiptRun:
                runs.append((index, report, default_ts if ts is None else ts))
                continue
            metadata = RecordMetadata(
                topic,
                partition,
                base_offset + index if base_offset >= 0 else -1,
                default_ts if ts is None else ts,
            )
            cls = report.__class__
            if cls is DeliveryFuture:
                futures.append((report, metadata))
            elif cls is _CFuture:
                with contextlib.suppress(concurrent.futures.InvalidStateError):
                    report.set_result(metadata)  # (invalid state: the caller cancelled it)
            elif isinstance(report, _AFuture):
                if not report.done():
                    report.set_result(metadata)
            else:
                self._call(report, metadata, None)
        if futures:
            resolve_many(futures)
        if runs:
            tell_delivered(runs, partition, base_offset)

    def failed(self, batch: _BatchLike, error: DeliveryError) -> None:
        reports = batch.reports
        records = batch.records
        reported: set[int] = set()
        if reports:
            for index, report in reports:
                reported.add(index)
                cls = report.__class__
                if cls is ReceiptRun:  # a run of records: told in one step
                    reported.update(range(index, index + report.count))
                    receipt = report.receipt
                    receipt.tell(report.first, report.count, -1, -1, -1, copy.copy(error))
                elif cls is DeliveryFuture:
                    report.try_set_exception(copy.copy(error))
                elif cls is _CFuture:
                    # A copy each: one exception raised in several threads would
                    # collect their tracebacks. (Invalid state: the caller cancelled it.)
                    with contextlib.suppress(concurrent.futures.InvalidStateError):
                        report.set_exception(copy.copy(error))
                elif isinstance(report, _AFuture):
                    if not report.done():
                        report.set_exception(copy.copy(error))
                else:
                    self._call(report, None, error)
        silent = len(records) - len(reported)
        if not silent:
            return
        on_error = self.on_error
        if on_error is None:
            self.log_limit.log(
                logging.ERROR,
                type(error).__name__,
                "%d record(s) to %s-%d not delivered: %s",
                silent,
                batch.topic,
                batch.partition,
                error,
                weight=silent,
            )
            return
        for index, (key, value, headers, timestamp) in enumerate(records):
            if index in reported:
                continue
            record = ProducerRecord(
                topic=batch.topic,
                partition=batch.partition,
                key=key,
                value=value,
                headers=headers,
                timestamp=timestamp,
            )
            try:
                returned = on_error(record, error)
                if returned is not None:  # (a test per report: callbacks return None)
                    self._not_awaited("on_error", returned)
            except Exception:
                self.log_limit.log(
                    logging.ERROR,
                    "on_error raised",
                    "on_error raised for a record to %s",
                    batch.topic,
                    exc_info=True,
                )

    def _call(
        self,
        callback: DeliveryCallback,
        metadata: RecordMetadata | None,
        error: DeliveryError | None,
    ) -> None:
        try:
            returned = callback(metadata, error)
            if returned is not None:  # (a test per report: callbacks return None)
                self._not_awaited("on_delivery", returned)
        except Exception:
            self.log_limit.log(
                logging.ERROR, "on_delivery raised", "an on_delivery callback raised", exc_info=True
            )

    def _not_awaited(self, name: str, returned: object) -> None:
        """A callback that returned an awaitable is an ``async def`` one, whose body never
        ran: a report nobody heard. Said at ERROR (rate-limited), and the coroutine is
        closed (no "never awaited" warning besides). Before: only that warning, which
        most programs never show."""
        if not inspect.isawaitable(returned):
            return
        if inspect.iscoroutine(returned):
            returned.close()
        self.log_limit.log(
            logging.ERROR,
            f"{name} returned a coroutine",
            _NOT_AWAITED.format(name=name, detail=": its body did not run"),
        )


def unpack_item(
    item: Any, topic: str, partition: int | None
) -> tuple[Any, Any, Any, Any, int | None]:
    """A ``produce_batch`` item as ``(key, value, headers, timestamp, partition)``: a
    value, a ``(key, value)`` pair, a dict or a ``ProducerRecord`` (whose topic, if set,
    must be the batch's)."""
    if item is None or isinstance(item, bytes | str | bytearray | memoryview):
        return None, item, None, None, partition
    if isinstance(item, tuple):
        if len(item) != 2:
            raise TypeError(f"a produce_batch pair must be (key, value), not {len(item)} items")
        return item[0], item[1], None, None, partition
    if isinstance(item, ProducerRecord):
        if item.topic is not None and item.topic != topic:
            raise ValueError(f"a record for topic {item.topic!r} in a batch for {topic!r}")
        own = item.partition
        return item.key, item.value, item.headers, item.timestamp, partition if own is None else own
    if isinstance(item, dict):
        unknown = set(item) - {"key", "value", "headers", "timestamp", "partition", "topic"}
        if unknown:
            raise TypeError(f"unknown record field(s) {', '.join(sorted(map(str, unknown)))}")
        if item.get("topic") not in (None, topic):
            raise ValueError(f"a record for topic {item['topic']!r} in a batch for {topic!r}")
        own = item.get("partition")
        return (
            item.get("key"),
            item.get("value"),
            item.get("headers"),
            item.get("timestamp"),
            partition if own is None else own,
        )
    raise TypeError(
        "produce_batch items are values, (key, value) pairs, dicts or ProducerRecords,"
        f" not {type(item).__name__}"
    )
