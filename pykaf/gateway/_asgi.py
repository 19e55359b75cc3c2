"""The ASGI surface the gateway speaks: a request with a bounded body, JSON answers.

Plain ASGI, no web framework: the gateway has a dozen routes, and one record per request
is its hardest case (``/async`` is measured against a do-nothing endpoint on the same
server), so each layer between the server and the producer costs requests per second.
"""

from __future__ import annotations

import asyncio
import json
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import parse_qsl

__all__ = [
    "ASGIApp",
    "ClientGone",
    "HttpError",
    "JsonResponse",
    "Receive",
    "Request",
    "Response",
    "Scope",
    "Send",
    "error_body",
]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]


class HttpError(Exception):
    """An answer other than success, in Confluent's error shape: ``{"error_code":
    ..., "message": ...}``. ``error_code`` is Confluent's (the HTTP status, or a
    five-digit refinement of it such as 40403 for an unknown topic)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_code: int | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = status if error_code is None else error_code
        self.headers = dict(headers or {})
        #: Fields the error body carries beside Confluent's two (e.g. "accepted": how
        #: many records of a batch were taken before the refusal).
        self.extra = dict(extra or {})


def error_body(
    error_code: int, message: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    return {"error_code": error_code, "message": message, **(extra or {})}


_JSON_TYPE = (b"content-type", b"application/json")
# Parsed query strings by their raw bytes: clients send the same few again and again
# (``?custody=journal``), and parsing one was 2.5% of /async's cost (py-spy, in-process).
_QUERIES: dict[bytes, Mapping[str, str]] = {}
_QUERIES_KEPT = 256


def _parse_query(raw: bytes) -> Mapping[str, str]:
    """Read-only (shared by the requests that send ``raw``: a handler that wrote to it
    would change the next request's query)."""
    if b"%" in raw or b"+" in raw:
        query = dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True))
    else:
        query = {}  # nothing escaped: split, without urllib's work
        for part in raw.decode("latin-1").split("&"):
            if part:
                name, _, value = part.partition("=")
                query[name] = value
    return types.MappingProxyType(query)


_COROUTINE = types.CoroutineType


@dataclass(slots=True)
class Response:
    """A whole answer: status, raw body bytes and headers (lower-case names)."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    async def send_to(self, send: Send) -> None:
        content_type = self.content_type
        raw = [
            _JSON_TYPE
            if content_type == "application/json"
            else (b"content-type", content_type.encode()),
            (b"content-length", b"%d" % len(self.body)),
        ]
        if self.headers:
            raw.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items())
        await send({"type": "http.response.start", "status": self.status, "headers": raw})
        await send({"type": "http.response.body", "body": self.body})


def JsonResponse(status: int, value: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(value, separators=(",", ":")).encode()
    return Response(status, body, headers or {})


class Request:
    """One HTTP request: method, path, query, headers (lower-case, latin-1 decoded; a
    repeated header keeps its last value here, ``header_list`` has them all), the
    principal once authenticated, and the body read on demand within ``max_body``."""

    __slots__ = (
        "_body",
        "_header_list",
        "_headers",
        "_query",
        "bytes_in",
        "max_body",
        "method",
        "path",
        "principal",
        "read_timeout",
        "receive",
        "scope",
        "send",
        "started",
    )

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        max_body: int,
        read_timeout: float | None = None,
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.max_body = max_body
        self.read_timeout = read_timeout
        self.principal: str | None = None
        self.started = 0.0
        self.bytes_in = 0  # body bytes read so far (the access log's "bytes_in")
        self._body: bytes | None = None
        self._query: Mapping[str, str] | None = None
        # Decoded on first use: a route that reads no header pays nothing for them.
        self._headers: dict[str, str] | None = None
        self._header_list: list[tuple[str, str]] | None = None

    @property
    def headers(self) -> dict[str, str]:
        """The headers by lower-case name (ASGI servers give names in lower case, as
        the spec asks); a repeated header keeps its last value here."""
        if self._headers is None:
            self._headers = {
                k.decode("latin-1"): v.decode("latin-1") for k, v in self.scope["headers"]
            }
        return self._headers

    @property
    def header_list(self) -> list[tuple[str, str]]:
        """Every header in order, repeats included."""
        if self._header_list is None:
            self._header_list = [
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in self.scope["headers"]
            ]
        return self._header_list

    @property
    def query(self) -> Mapping[str, str]:
        """The query parameters (the last value of a repeated one). Read-only: a parsed
        query string is shared by every request that sends the same one."""
        if self._query is None:
            raw = self.scope.get("query_string", b"")
            query = _QUERIES.get(raw)
            if query is None:
                query = _parse_query(raw)
                if len(_QUERIES) >= _QUERIES_KEPT:  # bounded: any strings may be sent
                    _QUERIES.clear()
                _QUERIES[raw] = query
            self._query = query
        return self._query

    def declared_length(self) -> int | None:
        """The Content-Length header, checked (413 when above ``max_body``)."""
        raw = self.headers.get("content-length")
        if raw is None:
            return None
        try:
            length = int(raw)
        except ValueError:
            raise HttpError(400, f"Content-Length is not a number: {raw!r}") from None
        if length > self.max_body:
            raise self.too_large()
        return length

    def too_large(self) -> HttpError:
        return HttpError(
            413,
            f"the request body is larger than the gateway's limit of {self.max_body} bytes",
        )

    async def _next_message(self) -> Message:
        if self.read_timeout is None:
            message = await self.receive()
        else:
            message = await self._receive_within(self.read_timeout)
        if message["type"] == "http.disconnect":
            raise ClientGone()
        return message

    async def _receive_within(self, timeout: float) -> Message:
        """``receive()``, failing with 408 when the client sends nothing for ``timeout``
        seconds (a slow client holds a request slot and memory for nothing). Most
        bodies are already read when the app is called: ``receive()`` is stepped once
        by hand, and a timer is armed only if it has to wait (a timer per request was
        a tenth of /async's cost)."""
        pending = self.receive()
        # The class first: the ABC's isinstance costs more than the rest of this step.
        if pending.__class__ is not _COROUTINE and not isinstance(pending, Coroutine):
            return await self._timed(pending, timeout)
        try:
            waiting_on = pending.send(None)
        except StopIteration as done:
            message: Message = done.value
            return message
        except BaseException:
            pending.close()
            raise
        return await self._timed(_Resumed(pending, waiting_on), timeout)

    @staticmethod
    async def _timed(awaitable: Awaitable[Message], timeout: float) -> Message:
        try:
            async with asyncio.timeout(timeout):
                return await awaitable
        except TimeoutError:
            raise HttpError(408, f"no request body data for {timeout:g} s") from None

    def _counted(self, message: Message, total: int) -> tuple[bytes, int]:
        """One message's body, and the total so far: 413 past ``max_body``."""
        chunk: bytes = message.get("body", b"")
        total += len(chunk)
        self.bytes_in += len(chunk)
        if total > self.max_body:
            raise self.too_large()
        return chunk, total

    async def chunks(self) -> Any:
        """The body as it arrives (an async iterator of bytes), within ``max_body`` in
        all; for streaming routes, which answer as records arrive."""
        self.declared_length()
        total = 0
        while True:
            message = await self._next_message()
            chunk, total = self._counted(message, total)
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return

    async def body(self) -> bytes:
        """The whole body, at most ``max_body`` bytes (413 past it)."""
        if self._body is None:
            self.declared_length()
            # Most bodies come in one message: no generator, no join.
            message = await self._next_message()
            body, total = self._counted(message, 0)
            if message.get("more_body", False):
                parts = [body]
                while message.get("more_body", False):
                    message = await self._next_message()
                    chunk, total = self._counted(message, total)
                    parts.append(chunk)
                body = b"".join(parts)
            self._body = body
        return self._body

    async def json(self) -> Any:
        raw = await self.body()
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise HttpError(400, f"the body is not valid JSON: {exc}") from None


class _Resumed:
    """An awaitable that goes on with a coroutine already stepped once (it yielded
    ``waiting_on``): what ``await`` would have done had it started it, sends, throws
    and close included."""

    __slots__ = ("_coro", "_waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, Message], waiting_on: Any) -> None:
        self._coro = coro
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, Message]:
        coro = self._coro
        step = self._waiting_on
        while True:
            try:
                sent = yield step
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # thrown in by the task: cancel, timeout
                try:
                    step = coro.throw(exc)
                except StopIteration as done:
                    result: Message = done.value
                    return result
            else:
                try:
                    step = coro.send(sent)
                except StopIteration as done:
                    result = done.value
                    return result


class ClientGone(Exception):
    """The HTTP client disconnected before its request was read whole."""
