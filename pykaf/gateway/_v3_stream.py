"""Confluent's produce route with its streaming mode: records as concatenated JSON in
one (chunked) request, one delivery report per record, in order, each written as soon as
its record is acknowledged while later records are still arriving.

Two tasks share a bounded queue: the reader parses records as the body arrives and sends
each one at once (the producer batches them); the writer waits for the oldest record's
acknowledgement, writes its report, and writes with it every later report already
known. When ``MAX_IN_FLIGHT`` records await their reports the reader stops reading, so a
fast client is held back by TCP rather than by the gateway's memory.

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
from collections.abc import Awaitable
from typing import Any

from pykaf import RecordMetadata
from pykaf.gateway._asgi import ClientGone, HttpError, Request, Response
from pykaf.gateway._outcomes import http_error_for
from pykaf.gateway._routes import Context
from pykaf.gateway._settings import Custody
from pykaf.gateway._v3_framing import BadValue, ConcatenatedJson
from pykaf.gateway._v3_records import Parsed, Reports, parse_record

__all__ = ["MAX_IN_FLIGHT", "MAX_RECORD_CHARS", "produce_records"]

#: Records sent whose reports are not written yet, at most (then reading pauses).
MAX_IN_FLIGHT = 1024
#: One record's JSON, at most (Kafka's default message limit is 1 MiB; base64 adds 1/3).
MAX_RECORD_CHARS = 4 * 1024 * 1024

log = logging.getLogger("pykaf.gateway")

_JSON_HEADERS = [(b"content-type", b"application/json")]


class _Pending:
    """A record on its way (its future), or its error when that is known at once."""

    __slots__ = ("deadline", "error", "fatal", "fsync", "future", "parsed")

    def __init__(
        self,
        *,
        error: HttpError | None = None,
        future: asyncio.Future[RecordMetadata] | None = None,
        parsed: Parsed | None = None,
        deadline: float = 0.0,
        fatal: bool = False,
    ) -> None:
        self.error = error
        self.future = future
        self.parsed = parsed
        self.deadline = deadline
        self.fsync: Awaitable[None] | None = None
        self.fatal = fatal  # the stream ends after this one (``error`` says why)

    def ready(self) -> bool:
        return self.future is None or (self.future.done() and self.fsync is None)


_END = _Pending()


class _Stream:
    def __init__(
        self, ctx: Context, request: Request, cluster_id: str, topic: str, custody: Custody
    ) -> None:
        self.ctx = ctx
        self.request = request
        self.reports = Reports(cluster_id, topic)
        self.topic = topic
        self.custody = custody
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue(MAX_IN_FLIGHT)
        self.started = False  # the 200 and the first report have been sent
        self.records = 0
        self.read_done = asyncio.Event()
        settings = ctx.settings
        self.principal_header = settings.security.principal_header
        self.ack_timeout = settings.ack_timeout
        self.retry_after = settings.retry_after

    # -- reading --------------------------------------------------------------------------

    async def read(self) -> None:
        framing = ConcatenatedJson(min(MAX_RECORD_CHARS, self.request.max_body))
        try:
            async for chunk in self.request.chunks():
                await self._submit(framing.feed(chunk))
            await self._submit(framing.close())
        except HttpError as exc:  # too large, too slow, not UTF-8: the stream ends here
            await self.queue.put(_Pending(error=exc, fatal=True))
        else:
            if self.records == 0:
                error = HttpError(422, "Payload error. Request body is empty. Data is required.")
                await self.queue.put(_Pending(error=error, fatal=True))
        self.read_done.set()
        await self.queue.put(_END)

    async def _submit(self, values: list[Any]) -> None:
        entries = [self._send(value) for value in values]
        self.records += len(entries)
        if self.custody == "journal_sync":
            # One fsync covers the records of this chunk; their reports wait for it, so a
            # record whose acknowledgement times out is known to be on disk.
            sent = [e for e in entries if e.future is not None]
            if sent:
                fsync = asyncio.ensure_future(self.ctx.backend.producer(self.custody).fsync())
                for entry in sent:
                    entry.fsync = fsync
        for entry in entries:
            await self.queue.put(entry)  # waits while MAX_IN_FLIGHT are pending

    def _send(self, value: Any) -> _Pending:
        if isinstance(value, BadValue):
            return _Pending(error=HttpError(value.status, value.message))
        try:
            parsed = parse_record(value, self.principal_header, self.request.principal)
            future = self.ctx.backend.send(self.topic, parsed.record, self.custody)
        except Exception as exc:  # a bad record, or one the producer refused at once
            return _Pending(error=http_error_for(exc, retry_after=self.retry_after))
        return _Pending(future=future, parsed=parsed, deadline=time.monotonic() + self.ack_timeout)

    # -- writing --------------------------------------------------------------------------

    async def write(self) -> None:
        carried: _Pending | None = None
        while True:
            entry = carried or await self.queue.get()
            carried = None
            if entry is _END:
                break
            report, error = await self._report(entry)
            if error is not None and not self.started and (entry.fatal or await self._single()):
                # Nothing answered yet and nothing else to answer: the request fails with
                # its own status (and headers: Retry-After), like any other request.
                await Response(error.status, report.encode(), error.headers).send_to(
                    self.request.send
                )
                return
            reports = [report]
            ending = entry.fatal
            # Every later report already known goes out in the same write.
            while not ending and not self.queue.empty():
                following = self.queue.get_nowait()
                if following is _END or not following.ready():
                    carried = following
                    break
                reports.append((await self._report(following))[0])
                ending = following.fatal
            await self._emit(reports)
            if ending:
                break
        await self.request.send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _single(self) -> bool:
        """The body is one record, not a stream. Only a body of declared length is
        waited for: a chunked one may be a client sending its next record only after
        reading this report."""
        if "content-length" not in self.request.headers:
            return False
        await self.read_done.wait()
        return self.records == 1

    async def _report(self, entry: _Pending) -> tuple[str, HttpError | None]:
        """The entry's report, and its error if it is one."""
        if entry.error is not None:
            return Reports.failed(entry.error), entry.error
        future = entry.future
        assert future is not None
        assert entry.parsed is not None
        if not future.done():
            await asyncio.wait((future,), timeout=max(0.0, entry.deadline - time.monotonic()))
        error = None
        if entry.fsync is not None:
            try:
                await entry.fsync
            except Exception as exc:
                error = http_error_for(exc, retry_after=self.retry_after)
            entry.fsync = None
        if error is None and not future.done():
            # Not cancelled: the record stays in custody and may still be delivered.
            error = HttpError(
                504,
                f"not acknowledged within {self.ack_timeout:g} s"
                " (it stays in custody and may still be delivered)",
            )
        elif error is None and future.exception() is not None:
            error = http_error_for(future.exception(), retry_after=self.retry_after)  # type: ignore[arg-type]
        if error is not None:
            return Reports.failed(error), error
        return self.reports.delivered(entry.parsed, future.result()), None

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
