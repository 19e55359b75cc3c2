"""A whole answer in one write: its head held until its body follows.

uvicorn's request cycle writes an answer's head (status line and headers) to the
transport when the app sends ``http.response.start``, and its body at
``http.response.body``: two ``send()`` system calls, and two TCP segments for the client
to read, for an answer that the gateway always sends whole (``Response.send_to``: start
and body back to back). On ``/async`` the socket writes were 14% of the server's CPU
(py-spy, 64 connections); one write per answer instead of two took 72 -> 66 us of
server CPU a request (``benchmarks/gateway.py``, in pairs).

``OneWriteTransport`` stands between one request's cycle and the connection's transport:
the head of an answer framed by ``content-length`` waits there for the body and leaves
with it. A streaming answer (chunked: the v3 records stream) is not held: its head goes
at once, as its records' answers do; so do the heads of answers the cycle writes no body
for (HEAD; 204 and 304 have no framing header), and what comes before the answer (``100
Continue``). Every other answer ends with a body write (uvicorn writes its last body
message even when it is empty), which takes the head along; a cycle that ends without
one (the app failed, or returned mid-answer) closes the connection, which sends the held
head first. So nothing is held past its answer.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["OneWriteTransport"]


class OneWriteTransport:
    """The transport a request cycle writes through (``write``, ``close``,
    ``is_closing``, the rest passed on); ``flush`` sends a held head."""

    __slots__ = ("_cycle", "_head", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: Any) -> None:
        self._transport = transport
        self._cycle = cycle  # uvicorn's RequestResponseCycle: its response state
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
            return
        cycle = self._cycle
        if cycle is not None and cycle.response_started:
            # The first write once the answer has started is its head (the cycle sets
            # ``response_started`` and the framing before writing it). Only this one
            # write is ever looked at: the cycle is let go either way.
            self._cycle = None
            if cycle.chunked_encoding is False and cycle.scope["method"] != "HEAD":
                self._head = data  # content-length framing: a body write follows
                return
        self._transport.write(data)

    def flush(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
