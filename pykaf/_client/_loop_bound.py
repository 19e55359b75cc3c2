"""An asyncio client belongs to the event loop it was first used in: a call from
anywhere else is refused with ``WrongEventLoopError``, before it touches anything.

Why refuse: an asyncio client's state (the producer's batches and backlog, a consumer's
positions, the futures of requests in flight) and its connections (transports of that
loop's selector) are used without locks, by design: one thread, one loop. Before, a
call from elsewhere went on all the same. ``AsyncProducer.send`` from a plain thread
queued its record with no wake-up for the loop (it left a second later, when a timer
happened to run); ``produce`` then ``flush`` from a second thread's loop wrote a request
on the first loop's connection from the wrong thread, and the connection failed in the
owner's loop ("pop from an empty deque" in ``data_received``), its requests unanswered.

Checked at each public call, before it touches anything: the running loop against the
owner's (``asyncio._get_running_loop``: 250 ns on 3.11, nothing beside a request or a
poll), except ``AsyncProducer``'s per-record calls (``produce``, ``send``,
``produce_values``), which compare the thread instead (60 ns; a loop check was a third
of a ``produce()``): another loop of the owner's thread is refused by the other calls and
at its first request. Every request also checks at the connection, so a path the public
checks miss cannot write from another thread. A client with no loop yet belongs to the
loop of its first call.
"""

from __future__ import annotations

import asyncio
from asyncio import AbstractEventLoop

from pykaf._errors import WrongEventLoopError

__all__ = ["elsewhere", "no_loop"]


def elsewhere(
    kind: str, blocking: str, owner: AbstractEventLoop | None = None
) -> WrongEventLoopError:
    """The error for a call to ``kind`` (e.g. "AsyncProducer") outside its loop
    ``owner``; ``blocking`` names the blocking client a thread can use instead."""
    if owner is not None and owner.is_closed():
        return WrongEventLoopError(
            f"this {kind} belonged to an event loop that has ended (an asyncio.run() that"
            " returned, say), and its connections ended with it: create a new"
            f" {kind} in the loop that runs now"
        )
    where = (
        "from a thread with no running event loop"
        if asyncio._get_running_loop() is None
        else "from another event loop"
    )
    return WrongEventLoopError(
        f"this {kind} belongs to the event loop it was first used in, and was called"
        f" {where}: its state and connections are that loop's alone. Call it from that"
        " loop (from another thread: asyncio.run_coroutine_threadsafe(coroutine, loop)),"
        f" give each loop its own {kind}, or use the blocking {blocking}, which any"
        " thread may call"
    )


def no_loop(kind: str, blocking: str) -> WrongEventLoopError:
    """The error for a first call to ``kind`` from a thread with no running loop."""
    return WrongEventLoopError(
        f"this {kind} was called from a thread with no running event loop: it must be"
        " used from inside a coroutine, on the event loop it is to belong to; use the"
        f" blocking {blocking} from plain threads"
    )
