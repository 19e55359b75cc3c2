"""Confluent's produce route with its streaming mode: records as concatenated JSON in
one (chunked) request, one delivery report per record, in order, each written as soon as
its record is acknowledged while later records are still arriving.

Two tasks share the records sent and not yet answered (``_Stream.pending``, in order):
the reader parses the records of each chunk as it arrives and sends them at once (the
producer batches them); the writer waits for the oldest record's acknowledgement and
writes its report with every later report already known, in one send. Work is done per
chunk where it can be (one deadline, one fsync, one count), per record only where each
needs its own (its future, its report). When more than ``MAX_IN_FLIGHT`` records beyond
the one being waited for await their reports the reader stops reading, so a fast
client is held back by TCP rather than by the gateway's memory.

The HTTP status is decided by the first report: until then a failure of the whole
request (unknown topic, an empty or oversized body) is an ordinary error answer; after
it the status is 200, as Confluent's, and every failure is an error object in its place
(``{"error_code", "message"}``). A failure that ends the stream (the body too large,
too slow, not UTF-8) is the last object written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable
from typing import Any, TypeAlias

from pykaf import Receipt, RecordMetadata
from pykaf.gateway._asgi import ClientGone, HttpError, Request, Response
from pykaf.gateway._outcomes import http_error_for, without_frames
from pykaf.gateway._routes import Context
from pykaf.gateway._settings import Custody
from pykaf.gateway._v3_framing import BadValue, ConcatenatedJson
from pykaf.gateway._v3_records import (
    Parsed,
    Reports,
    binary_value,
    parse_binary,
    parse_record,
)

__all__ = ["MAX_IN_FLIGHT", "MAX_RECORD_CHARS", "produce_records"]

#: Records sent whose reports are not written yet, at most, beside the one the writer
#: waits for (then reading pauses).
MAX_IN_FLIGHT = 1024
#: One record's JSON, at most (Kafka's default message limit is 1 MiB; base64 adds 1/3).
MAX_RECORD_CHARS = 4 * 1024 * 1024
#: Common records in a row, at least, sent with one receipt (fewer: a future each, so a
#: body of one record is answered as a whole request is, with its own status).
_RECEIPT_RUN = 16

log = logging.getLogger("pykaf.gateway")

_JSON_HEADERS = [(b"content-type", b"application/json")]


class _Run:
    """What the records of one chunk share: their deadline and their fsync."""

    __slots__ = ("deadline", "fsync", "fsync_error")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.fsync: Awaitable[None] | None = None  # journal_sync: awaited once
        self.fsync_error: HttpError | None = None


# One record on its way: (its future, or None when its ``error`` is known at once; the
# sizes its report gives; that error; whether the stream ends after it; its run). A
# tuple: one per record.
# A run of common records taken with a receipt is one entry: (its receipt, their values,
# None, False, its run).
_Entry: TypeAlias = tuple[
    "asyncio.Future[RecordMetadata] | Receipt | None",
    "str | list[bytes]",
    HttpError | None,
    bool,
    _Run,
]
# The run of the entries that end a stream (no record, no deadline).
_NO_RUN = _Run(0.0)


class _Stream:
    def __init__(
        self, ctx: Context, request: Request, cluster_id: str, topic: str, custody: Custody
    ) -> None:
        self.ctx = ctx
        self.request = request
        self.reports = Reports(cluster_id, topic)
        self.topic = topic
        self.custody = custody
        self.pending: deque[_Entry] = deque()
        self.unanswered = 0  # records in ``pending`` (a receipt's entry holds many)
        self.limit = MAX_IN_FLIGHT + 1  # the one the writer waits for, and the rest
        self.more = asyncio.Event()  # the reader added entries (or is done)
        self.room = asyncio.Event()  # the writer took entries: the reader may go on
        self.reading_paused = False
        self.started = False  # the 200 and the first report have been sent
        self.records = 0
        self.read_done = asyncio.Event()
        settings = ctx.settings
        self.principal_header = settings.security.principal_header
        self.ack_timeout = settings.ack_timeout
        self.retry_after = settings.retry_after
        self.stream_timeout = settings.limits.stream_timeout

    # -- reading --------------------------------------------------------------------------

    async def read(self) -> None:
        framing = ConcatenatedJson(min(MAX_RECORD_CHARS, self.request.max_body))
        try:
            # The whole stream's deadline bounds the reading (a client that trickles
            # records forever); the records taken before it are still answered.
            async with asyncio.timeout(self.stream_timeout):
                async for chunk in self.request.chunks():
                    self._submit(framing.feed(chunk), framing.others)
                    while self.unanswered > self.limit:  # the writer is behind: wait for room
                        self.room.clear()
                        self.reading_paused = True
                        await self.room.wait()
                        self.reading_paused = False
                self._submit(framing.close(), framing.others)
        except HttpError as exc:  # too large, too slow, not UTF-8: the stream ends here
            self._add((None, "", without_frames(exc), True, _NO_RUN))
        except TimeoutError:
            error = HttpError(
                408,
                f"the stream went on past the gateway's limit of {self.stream_timeout:g} s"
                " (stream_timeout): the records before this one were taken, the rest was"
                " not read",
            )
            self._add((None, "", error, True, _NO_RUN))
        else:
            if self.records == 0:
                error = HttpError(422, "Payload error. Request body is empty. Data is required.")
                self._add((None, "", error, True, _NO_RUN))
        self.read_done.set()
        self.more.set()

    def _add(self, entry: _Entry) -> None:
        self.pending.append(entry)
        self.unanswered += 1
        self.more.set()

    def _submit(self, values: list[Any], others: list[int]) -> None:
        """Parse and send the records of one chunk, each in its place. ``values`` are
        the common record's bytes (decoded by the framing) but at ``others``. A run of
        at least ``_RECEIPT_RUN`` common records goes to the producer in one call with
        one receipt (``Backend.send_values``); any other record with a future each."""
        if not values:
            return
        self.records += len(values)
        run = _Run(time.monotonic() + self.ack_timeout)
        header, principal = self.principal_header, self.request.principal
        for index in others:  # a common record cut by a chunk's end, decoded by json
            quick = parse_binary(values[index])
            if quick is not None and quick[1] is None:
                values[index] = quick[0]  # (a principal header is added when it is sent)
        count = len(values)
        at = 0
        sent = False
        for index in [i for i in others if values[i].__class__ is not bytes] + [count]:
            if index > at:  # common records, values[at:index]
                segment = values[at:index] if at or index < count else values
                sent = self._send_common(segment, run) or sent
            if index < count:
                sent = self._send_other(values[index], run, header, principal) or sent
            at = index + 1
        if sent and self.custody == "journal_sync":
            # One fsync covers the records of this chunk; their reports wait for it, so a
            # record whose acknowledgement times out is known to be on disk.
            run.fsync = asyncio.ensure_future(self.ctx.backend.producer(self.custody).fsync())
        self.more.set()

    def _send_common(self, values: list[bytes], run: _Run) -> bool:
        """Send a run of common records (their values); whether any was taken."""
        taken = 0
        header, principal = self.principal_header, self.request.principal
        if len(values) >= _RECEIPT_RUN:
            receipt = Receipt()
            headers: list[tuple[str, bytes | None]] | None = None
            if header is not None and principal is not None:  # (a journal then takes none)
                headers = [(header, principal.encode())]
            backend = self.ctx.backend
            taken = backend.send_values(self.topic, values, self.custody, receipt, headers)
            if taken:
                self.pending.append((receipt, values[:taken], None, False, run))
                self.unanswered += taken
        if taken == len(values):
            return True
        parsed: list[Parsed | HttpError] = [
            binary_value(value, header, principal) for value in values[taken:]
        ]
        return self._send_parsed(parsed, run) or taken > 0

    def _send_other(self, value: Any, run: _Run, header: str | None, principal: str | None) -> bool:
        """Send one record that is not the common one (or report what is wrong with
        it in its place); whether it was taken."""
        one: Parsed | HttpError
        if value.__class__ is BadValue:
            one = HttpError(value.status, value.message)
        else:
            try:
                one = parse_record(value, header, principal)
            except HttpError as exc:
                one = without_frames(exc)
        return self._send_parsed([one], run)

    def _send_parsed(self, parsed: list[Parsed | HttpError], run: _Run) -> bool:
        """Send records one by one, a future each, in order; whether any was taken."""
        good = [p for p in parsed if p.__class__ is tuple]
        sent = iter(self.ctx.backend.send_many(self.topic, good, self.custody) if good else ())
        pending = self.pending
        retry_after = self.retry_after
        futures = False
        for one in parsed:
            if one.__class__ is not tuple:
                pending.append((None, "", one, False, run))  # type: ignore[arg-type]
                continue
            future = next(sent)
            if isinstance(future, Exception):
                error = http_error_for(future, retry_after=retry_after)
                pending.append((None, "", error, False, run))
            else:
                pending.append((future, one[5], None, False, run))
                futures = True
        self.unanswered += len(parsed)
        return futures

    # -- writing --------------------------------------------------------------------------

    async def write(self) -> None:
        pending = self.pending
        reports: list[str] = []
        limit = self.limit
        delivered = self.reports.delivered
        while True:
            if not pending:
                if self.reading_paused:
                    self.room.set()
                if reports:  # every report known so far, in one send
                    await self._emit(reports)
                    reports = []
                if self.read_done.is_set():
                    break
                self.more.clear()
                await self.more.wait()
                continue
            future, sizes, error, fatal, run = pending[0]
            if future is not None:
                done = future.done if isinstance(future, Receipt) else future
                if run.fsync is not None or not done.done():
                    if self.reading_paused and self.unanswered <= limit:
                        self.room.set()  # the reader runs only while this one waits
                    if reports:  # what is known goes out before waiting
                        await self._emit(reports)
                        reports = []
                    error = await self._settled(future, run)
                else:
                    error = run.fsync_error
                if isinstance(future, Receipt):
                    assert isinstance(sizes, list)  # a receipt's entry holds its values
                    pending.popleft()
                    self.unanswered -= len(sizes)
                    reports.append(self._receipt_reports(future, sizes, error))
                    continue
                if error is None:
                    failure = future.exception()
                    if failure is None:
                        pending.popleft()
                        self.unanswered -= 1
                        reports.append(delivered(sizes, future.result()))  # type: ignore[arg-type]
                        continue
                    error = http_error_for(failure, retry_after=self.retry_after)
            pending.popleft()
            self.unanswered -= 1
            assert error is not None  # an entry without a future has its error
            if not self.started and not reports and (fatal or await self._single()):
                # Nothing answered yet and nothing else to answer: the request fails with
                # its own status (and headers: Retry-After), like any other request.
                body = Reports.failed(error).encode()
                await Response(error.status, body, error.headers).send_to(self.request.send)
                return
            reports.append(Reports.failed(error))
            if fatal:
                break
        if reports:
            await self._emit(reports)
        await self.request.send({"type": "http.response.body", "body": b"", "more_body": False})

    def _receipt_reports(
        self, receipt: Receipt, values: list[bytes], error: HttpError | None
    ) -> str:
        """The reports of a receipt's records, in order, one per line: each run told
        as it went (delivered, or its failure), a record not told yet as late (504), or
        every record as ``error`` (its chunk's fsync failed)."""
        if error is not None:
            return "\n".join([Reports.failed(error)] * len(values))
        texts: list[str] = []
        at = 0
        for first, count, partition, offset, timestamp, failure in sorted(receipt.runs):
            if first > at:
                texts.extend([Reports.failed(self._late())] * (first - at))
            if failure is None:
                texts.append(
                    self.reports.delivered_run(
                        partition, offset, timestamp, values, first, first + count
                    )
                )
            else:
                text = Reports.failed(http_error_for(failure, retry_after=self.retry_after))
                texts.extend([text] * count)
            at = first + count
        if at < len(values):
            texts.extend([Reports.failed(self._late())] * (len(values) - at))
        return "\n".join(texts)

    def _late(self) -> HttpError:
        return HttpError(
            504,
            f"not acknowledged within {self.ack_timeout:g} s"
            " (it stays in custody and may still be delivered)",
        )

    async def _single(self) -> bool:
        """The body is one record, not a stream. Only a body of declared length is
        waited for: a chunked one may be a client sending its next record only after
        reading this report."""
        if "content-length" not in self.request.headers:
            return False
        await self.read_done.wait()
        return self.records == 1

    async def _settled(
        self, future: asyncio.Future[RecordMetadata] | Receipt, run: _Run
    ) -> HttpError | None:
        """Wait (within the record's deadline) for ``future`` (or a receipt's records)
        and its run's fsync; the error that stops it being reported as delivered, if
        any (its own failure is looked at by the caller; a receipt's records not told
        by then are the caller's to answer as late)."""
        done: asyncio.Future[Any] = future.done if isinstance(future, Receipt) else future
        if not done.done():
            await asyncio.wait((done,), timeout=max(0.0, run.deadline - time.monotonic()))
        if run.fsync is not None:
            try:
                await run.fsync
            except Exception as exc:
                run.fsync_error = http_error_for(exc, retry_after=self.retry_after)
            run.fsync = None
        if isinstance(future, Receipt):
            if not done.done():
                self.ctx.backend.orphan_receipt(self.topic, future)
            return run.fsync_error
        if run.fsync_error is not None:
            return run.fsync_error
        if not future.done():
            # Not cancelled: the record stays in custody and may still be delivered (and
            # a failure later is counted as one after its answer).
            self.ctx.backend.orphan(self.topic, (future,))
            return self._late()
        return None

    def orphan_pending(self) -> None:
        """The stream ended with records not answered (the client gone, a failure of
        ours): their outcomes are counted when they come (``Backend.orphan``), and a
        chunk's fsync no one awaits is retrieved (the journal logs its own failure)."""
        pending, self.pending = self.pending, deque()
        backend = self.ctx.backend
        futures: list[asyncio.Future[RecordMetadata]] = []
        for entry in pending:
            if isinstance(entry[0], Receipt):
                backend.orphan_receipt(self.topic, entry[0])
            elif entry[0] is not None:
                futures.append(entry[0])
        backend.orphan(self.topic, futures)
        for fsync in {id(e[4].fsync): e[4].fsync for e in pending if e[4].fsync}.values():
            if isinstance(fsync, asyncio.Future):
                fsync.add_done_callback(_retrieve)

    async def _emit(self, reports: list[str]) -> None:
        send = self.request.send
        if not self.started:
            self.started = True
            await send({"type": "http.response.start", "status": 200, "headers": _JSON_HEADERS})
        # One object per line: concatenated JSON as Confluent's, and easy to read by line.
        reports.append("")
        body = "\n".join(reports).encode()
        await send({"type": "http.response.body", "body": body, "more_body": True})


async def produce_records(
    ctx: Context, request: Request, cluster_id: str, topic: str, custody: Custody
) -> None:
    """Read the records of ``request`` and answer each one (the handler's answer)."""
    stream = _Stream(ctx, request, cluster_id, topic, custody)
    reader = asyncio.ensure_future(stream.read())
    writer = asyncio.ensure_future(stream.write())
    try:
        # Either may end the other: the writer's client gone, the reader's body broken.
        await asyncio.wait((reader, writer), return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in (reader, writer):
            task.cancel()
        stream.orphan_pending()
    for task in (reader, writer):
        failure = None if task.cancelled() else task.exception()
        if failure is None:
            continue
        if isinstance(failure, ClientGone | OSError):
            return  # what was sent stays in custody; nobody is left to tell
        if not stream.started:
            raise failure
        # A bug of ours after the 200: the app cannot answer 500 any more.
        log.error("the v3 produce stream to %r failed", topic, exc_info=failure)
        return


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
