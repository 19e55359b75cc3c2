"""The private loop thread of the blocking clients ends with no task left pending: not
when its client is closed, not when a script exits with the client still open. A task
destroyed pending makes asyncio log "Task was destroyed but it is pending!" at ERROR,
which a user reads as a failure of theirs or ours."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path

import pytest

from pykaf._client import _loop_thread
from pykaf._client._loop_thread import LoopThread

_ROOT = Path(__file__).resolve().parents[2]


async def _task_that_starts_another_as_it_unwinds(started: list[asyncio.Task[None]]) -> None:
    loop = asyncio.get_running_loop()

    async def unwinding() -> None:
        try:
            await asyncio.sleep(3600)
        finally:  # as a fetcher cancelled mid-fetch asks for metadata
            started.append(loop.create_task(asyncio.sleep(3600)))

    started.append(loop.create_task(unwinding()))


def test_stop_cancels_the_tasks_that_cancelled_tasks_start() -> None:
    started: list[asyncio.Task[None]] = []
    loop_thread = LoopThread()
    loop_thread.run(partial(_task_that_starts_another_as_it_unwinds, started), 5.0)
    loop_thread.stop(5.0)
    assert loop_thread.loop.is_closed()
    assert len(started) == 2
    assert all(task.cancelled() for task in started), started


def test_the_exit_hook_stops_loop_threads_left_running() -> None:
    started: list[asyncio.Task[None]] = []
    loop_thread = LoopThread()
    loop_thread.run(partial(_task_that_starts_another_as_it_unwinds, started), 5.0)
    _loop_thread._stop_at_exit()  # what the interpreter's exit runs (atexit)
    assert loop_thread.loop.is_closed()
    assert all(task.cancelled() for task in started), started


def test_the_exit_hook_asks_every_loop_to_stop_before_it_waits_for_any(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One after the other, a loop stuck in a callback made the next ones wait a whole
    # _EXIT_STOP each before they were even asked (a program's exit: N seconds).
    loop_threads = [LoopThread() for _ in range(3)]
    asked_at_each_join: list[list[bool]] = []
    real_join = LoopThread._join

    def join(self: LoopThread, timeout: float) -> None:
        asked_at_each_join.append([lt._stopped for lt in loop_threads])
        real_join(self, timeout)

    monkeypatch.setattr(LoopThread, "_join", join)
    _loop_thread._stop_at_exit()
    assert all(lt.loop.is_closed() for lt in loop_threads)
    assert len(asked_at_each_join) >= 3
    assert all(all(asked) for asked in asked_at_each_join), asked_at_each_join


_SCRIPT = textwrap.dedent(
    """
    import time
    from pykaf import Admin, Consumer, TopicPartition
    from pykaf.broker import BlockingCluster

    cluster = BlockingCluster(brokers=1)
    cluster.__enter__()
    cluster.create_topic("e", 3)
    consumer = Consumer(cluster.bootstrap, auto_offset_reset="earliest", request_timeout=2.0)
    consumer.assign([TopicPartition("e", p) for p in range(3)])
    consumer.poll(0.5)
    admin = Admin(cluster.bootstrap, request_timeout=2.0)
    admin.list_topics(timeout=5)
    cluster.__exit__(None, None, None)  # the broker goes; the clients are left open
    time.sleep(0.5)  # the consumer's fetcher is asking for metadata again
    raise SystemExit("the script ends without closing its clients")
    """
)


def test_a_script_that_exits_with_clients_open_says_nothing_of_pending_tasks() -> None:
    # Before: "Task was destroyed but it is pending!" (Fetcher._refresh) in 6 runs of 6.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(_ROOT), *sys.path]))
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "the script ends without closing its clients" in done.stderr
    assert "Task was destroyed" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
