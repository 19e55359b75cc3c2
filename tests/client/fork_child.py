"""Clients across ``os.fork()``: run by ``test_fork.py`` as ``python fork_child.py BOOTSTRAP
SCENARIO [JOURNAL_DIR]``; prints one JSON line: what each call did in the forked child,
how the child ended, and what the parent could still do.

The child ends the way a program does (``sys.exit``, the interpreter's exit hooks run), and
the parent waits for it at most ``CHILD_BOUND`` seconds: before, a blocking producer's exit
hook waited forever in the child for a loop thread that only the parent had.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import pykaf

CHILD_BOUND = 20.0
C: dict[str, Any] = {}  # the clients the parent made before the fork


def outcome(call: Callable[[], Any]) -> str:
    started = time.monotonic()
    try:
        call()
    except Exception as exc:
        return type(exc).__name__
    return f"returned in {time.monotonic() - started:.0f} s"


def in_child(bootstrap: str, scenario: str, journal: str | None) -> dict[str, str]:
    """What the child's calls do: it runs this between the fork and its exit."""
    seen: dict[str, str] = {}
    if scenario == "producer":
        seen["produce"] = outcome(lambda: C["producer"].produce("t", b"child"))
        seen["send"] = outcome(lambda: C["producer"].send("t", b"child").result(5))
        seen["produce_batch"] = outcome(lambda: C["producer"].produce_batch("t", [b"child"]))
        seen["flush"] = outcome(lambda: C["producer"].flush(5))
        # No close(): the interpreter's exit hook meets the copy, as in a program that
        # forked from a process holding an open producer.
    elif scenario == "others":
        seen["consumer.poll"] = outcome(lambda: C["consumer"].poll(1.0))
        seen["admin.list_topics"] = outcome(C["admin"].list_topics)
        seen["consumer.close"] = outcome(C["consumer"].close)
        seen["admin.close"] = outcome(C["admin"].close)
    elif scenario == "async":

        async def calls() -> None:
            seen["produce"] = await aoutcome(C["async_producer"].produce("t", b"child"))
            seen["flush"] = await aoutcome(C["async_producer"].flush(5))
            seen["client.request"] = await aoutcome(C["async_client"].metadata(["t"]))
            seen["close"] = await aoutcome(C["async_producer"].close(5))

        asyncio.run(calls())
    return seen


async def aoutcome(awaitable: Any) -> str:
    try:
        await asyncio.wait_for(awaitable, 10)
    except Exception as exc:
        return type(exc).__name__
    return "returned"


async def started(bootstrap: str) -> None:
    await sent("parent")
    await C["async_client"].metadata(["t"])


async def sent(value: str) -> None:
    await C["async_producer"].send("t", value.encode())


def main() -> None:
    bootstrap, scenario = sys.argv[1], sys.argv[2]
    journal = sys.argv[3] if len(sys.argv) > 3 else None
    options: dict[str, Any] = {"linger": 0.001}
    if journal:
        options.update(custody="journal", journal_dir=journal)
    if scenario == "async":
        loop = asyncio.new_event_loop()
        C["async_producer"] = pykaf.AsyncProducer(bootstrap, **options)
        C["async_client"] = pykaf.AsyncClient(bootstrap)
        loop.run_until_complete(started(bootstrap))
    else:
        C["producer"] = pykaf.Producer(bootstrap, **options)
        C["producer"].send("t", b"parent").result(10)
        if scenario == "others":
            C["consumer"] = pykaf.Consumer(bootstrap, auto_offset_reset="earliest", topics=["t"])
            C["admin"] = pykaf.Admin(bootstrap)
            C["admin"].list_topics()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read)
        seen = in_child(bootstrap, scenario, journal)
        os.write(write, json.dumps(seen).encode())
        os.close(write)
        sys.exit(0)  # the exit hooks run
    os.close(write)
    deadline = time.monotonic() + CHILD_BOUND
    status = None
    while time.monotonic() < deadline:
        done, code = os.waitpid(child, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(code)
            break
        time.sleep(0.05)
    if status is None:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
    seen = json.loads(os.read(read, 65536) or b"{}")
    result: dict[str, Any] = {"child": seen, "child_exit": status}
    if scenario == "async":
        loop.run_until_complete(sent("parent after"))
        result["parent_after"] = "sent"
        result["parent_left"] = loop.run_until_complete(C["async_producer"].close(10))
        loop.run_until_complete(C["async_client"].close())
    else:
        C["producer"].send("t", b"parent after").result(10)
        result["parent_after"] = "sent"
        result["parent_left"] = C["producer"].close(10)
        if scenario == "others":
            C["consumer"].close()
            C["admin"].close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
