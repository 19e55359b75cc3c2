"""Clients across ``os.fork()``: the child gets a copy of every client and none of its
threads, so each refuses to work there, with a typed error that says why.

Why refuse rather than work: a forked child (``multiprocessing``'s "fork" start method,
a pre-forking server such as gunicorn with ``--preload``, Celery's prefork pool) has the
memory of the parent's clients but not their threads. Before, a blocking ``Producer``
there took records that nothing would ever send (``send().result()`` timed out, ``flush``
left them), and the child never exited: the interpreter-exit hook waited, without
bound, for a loop thread that did not exist there. A journaled producer would have written
into the parent's journal (the same file, mapped shared), under serials the parent also
hands out. Its connections are the parent's sockets too: bytes from the child would
interleave with the parent's requests. The buffered records are the parent's to send and
report; a child that wants to produce creates its own client (what librdkafka and the Java
client ask of their users too, without saying it at the call).

Each client registers itself here at creation (``watch``); after a fork, in the child,
``os.register_at_fork`` calls its ``forked(parent_pid)``, which turns its calls into
``ClientForkedError`` (``ProducerForkedError`` for producers) and makes ``close()`` a
no-op: nothing the child did not create is flushed, failed, reported or written there.
Nothing is checked per call in the parent: a producer's hot path is swapped in the
child only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Final, NoReturn, Protocol

from pykaf._errors import ClientForkedError, ProducerForkedError

__all__ = [
    "Forkable",
    "closed_copy",
    "quiet_tasks",
    "forked_message",
    "refusal",
    "refusing",
    "refusing_async",
    "watch",
]


class Forkable(Protocol):
    def forked(self, parent_pid: int) -> None:
        """Called in a forked child, once: refuse every call from here on."""


_WATCHED: Final[weakref.WeakSet[Forkable]] = weakref.WeakSet()


def watch(client: Forkable) -> None:
    """Tell ``client`` (its ``forked``) when this process forks, in the child."""
    _WATCHED.add(client)


def forked_message(kind: str, parent_pid: int) -> str:
    return (
        f"this {kind} was created in process {parent_pid}, which this process ({os.getpid()})"
        " was forked from: a Kafka client's threads and connections do not cross a fork,"
        f" and its buffered records stay the other process's; create a new {kind} here"
        " (after the fork, or use multiprocessing's 'spawn' start method)"
    )


def _refuse_in_child() -> None:
    # Run in the child at once, while the parent is still in fork(): its pid is ours'.
    parent = os.getppid()
    clients = list(_WATCHED)
    _WATCHED.clear()  # the child's own clients register anew
    for client in clients:
        with contextlib.suppress(Exception):  # never let a fork fail on our account
            client.forked(parent)


os.register_at_fork(after_in_child=_refuse_in_child)


def refusal(kind: str, parent_pid: int) -> ClientForkedError:
    """The error a forked copy of a client (not a producer) raises."""
    return ClientForkedError(forked_message(kind, parent_pid))


def refusing(kind: str, parent_pid: int) -> Callable[..., NoReturn]:
    """What a forked producer's methods become in the child: each call raises
    ``ProducerForkedError`` (swapped in per instance, so the parent's calls check nothing)."""
    message = forked_message(kind, parent_pid)

    def refuse(*_args: object, **_kwargs: object) -> NoReturn:
        raise ProducerForkedError(message)

    return refuse


def refusing_async(refuse: Callable[..., NoReturn]) -> Callable[..., Coroutine[Any, Any, NoReturn]]:
    """``refusing`` for a method the caller awaits."""

    async def refuse_awaited(*args: object, **kwargs: object) -> NoReturn:
        refuse(*args, **kwargs)

    return refuse_awaited


async def closed_copy(timeout: float | None = None) -> int:
    """A forked async producer's close(): nothing of this process's to flush or fail."""
    return 0


def quiet_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """The parent's tasks on ``loop``, copied into the child, never run there: when the
    child exits they are dropped without asyncio's "Task was destroyed but it is
    pending!" (they are still pending in the parent, where they belong)."""
    with contextlib.suppress(Exception):
        for task in asyncio.all_tasks(loop):
            task._log_destroy_pending = False  # type: ignore[attr-defined]
