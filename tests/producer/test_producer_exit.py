"""Records still buffered when a program ends get their reports: real subprocesses.

A script that exits without close(), one stopped by Ctrl-C (SIGINT) inside ``with``, and
one that gets a second Ctrl-C while the first one's close flushes. The broker holds every
Produce answer back, so nothing is delivered and ``delivery_timeout`` (120 s, the
default) would be the wait: the failure condition is a process still running after a
generous bound (the subprocess timeout), never a measured time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from pykaf.broker import BlockingCluster
from pykaf.broker._cluster import BlockingHeldResponses

BOUND = 30.0  # s: well below delivery_timeout (120 s)
RECORDS = 50
ROOT = Path(__file__).parents[2]

# The script's reports: "report <value> ok|failed <error type>", one line each.
REPORT = """
def report(value):
    def on_delivery(metadata, error):
        kind = "ok" if error is None else "failed " + type(error).__name__
        print("report", value.decode(), kind, flush=True)
    return on_delivery
"""

COMMON = (
    REPORT
    + """
import sys, time, logging
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
import pykaf._producer._producer as producer_module
from pykaf._producer._producer import Producer


p = Producer(sys.argv[1], linger=0.002)
p.send("exit", b"warm-up").result(30)  # metadata and connections are up
print("warm", flush=True)
sys.stdin.readline()  # the test holds the broker's answers from here
for i in range(int(sys.argv[2])):
    value = b"v%d" % i
    p.produce("exit", value, on_delivery=report(value))
"""
)


HOLDS: list[BlockingHeldResponses] = []


@pytest.fixture
def held() -> Iterator[BlockingCluster]:
    """A broker that takes Produce requests and never answers them once ``start`` says."""
    with BlockingCluster(brokers=1) as cluster:
        cluster.create_topic("exit", 2)
        try:
            yield cluster
        finally:
            while HOLDS:
                HOLDS.pop().release()


def start(
    cluster: BlockingCluster, body: str, *, script: str = COMMON, extra: Sequence[str] = ()
) -> subprocess.Popen[str]:
    """The script, warmed up (it delivered one record), with Produce answers held."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    script += body
    process = subprocess.Popen(
        [sys.executable, "-c", script, cluster.bootstrap, str(RECORDS), *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    wait_for_line(process, "warm")
    assert process.stdin is not None
    hold = cluster.faults.hold_responses("Produce")
    HOLDS.append(hold)
    process.stdin.write("go\n")
    process.stdin.flush()
    return process


def _line_from(process: subprocess.Popen[str]) -> str:
    """One line of stdout, read from the descriptor a byte at a time: ``readline`` on the
    text stream reads ahead into its buffer, and ``communicate`` afterwards reads the
    descriptor, not that buffer, so the lines read ahead were lost (a close's "closing"
    lines, written right after "done", at times)."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    line = bytearray()
    for _ in range(1 << 16):
        byte = os.read(fd, 1)
        line += byte
        if byte in (b"", b"\n"):
            break
    return line.decode()


def wait_for_line(process: subprocess.Popen[str], wanted: str) -> list[str]:
    """Lines of stdout up to the one starting with ``wanted`` (bounded by BOUND)."""
    lines: list[str] = []
    for _ in range(10_000):
        line = _line_from(process)
        assert line, f"the script ended before {wanted!r}: {process.communicate(timeout=BOUND)}"
        if line.startswith(wanted):
            return lines
        lines.append(line)
    raise AssertionError(f"no {wanted!r} line")


def finish(process: subprocess.Popen[str], before: list[str]) -> tuple[Counter[str], str]:
    """Wait (bounded) for the end; every record's reports, and stderr."""
    try:
        out, err = process.communicate(timeout=BOUND)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise AssertionError(f"the script did not exit within {BOUND:g}s") from None
    return finish_reports(process, [*before, *out.splitlines()], err), err


def finish_reports(process: subprocess.Popen[str], lines: list[str], err: str) -> Counter[str]:
    """Every record reported once, each failed with ProducerClosedError."""
    reports: Counter[str] = Counter()
    outcomes: dict[str, str] = {}
    out = "\n".join(lines)
    for line in lines:
        if line.startswith("report "):
            _, value, kind = line.rstrip("\n").split(" ", 2)
            reports[value] += 1
            outcomes[value] = kind
    assert set(reports) == {f"v{i}" for i in range(RECORDS)}, (out, err)
    assert set(reports.values()) == {1}, reports  # exactly one report each
    assert set(outcomes.values()) == {"failed ProducerClosedError"}, outcomes
    return reports


def test_a_script_that_exits_without_close_reports_every_record(
    held: BlockingCluster,
) -> None:
    process = start(held, 'print("done", flush=True)\n')  # ... and no close()
    _, err = finish(process, [])
    assert process.returncode == 0
    warnings = [line for line in err.splitlines() if "was not closed before" in line]
    assert len(warnings) == 1, err
    assert "WARNING" in warnings[0]
    assert f"{RECORDS} record(s) were still buffered" in warnings[0]


WAIT_IN_WITH = """
with p:
    print("ready", flush=True)
    time.sleep(600)
"""


def interrupted(cluster: BlockingCluster, body: str, *, twice: bool) -> str:
    """Run the script, Ctrl-C it once it waits inside ``with`` (and again once its close
    began, if ``twice``); every record reported once, in bound. Returns stderr."""
    process = start(cluster, body + WAIT_IN_WITH)
    before = wait_for_line(process, "ready")
    process.send_signal(signal.SIGINT)
    if twice:
        before += wait_for_line(process, "closing")
        process.send_signal(signal.SIGINT)
    _, err = finish(process, before)
    return err


def test_ctrl_c_inside_with_closes_in_bound_and_reports_every_record(
    held: BlockingCluster,
) -> None:
    assert "KeyboardInterrupt" in interrupted(held, "", twice=False)


def test_a_second_ctrl_c_cuts_the_close_short(held: BlockingCluster) -> None:
    # The first Ctrl-C's flush is made long (60 s): only the second can end it in bound.
    body = """
producer_module.INTERRUPTED_FLUSH = 60.0
real_close = p._engine.close

async def close(timeout):
    print("closing", flush=True)
    return await real_close(timeout)

p._engine.close = close
"""
    assert "KeyboardInterrupt" in interrupted(held, body, twice=True)


ASYNC_SCRIPT = (
    REPORT
    + """
import asyncio, sys, logging
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
import pykaf._producer._async_producer as async_producer_module
from pykaf._producer._async_producer import AsyncProducer


async def main():
    p = AsyncProducer(sys.argv[1], linger=0.002)
    await p.send("exit", b"warm-up")
    print("warm", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # answers are held from here
    for i in range(int(sys.argv[2])):
        value = b"v%d" % i
        await p.produce("exit", value, on_delivery=report(value))
    if sys.argv[3].startswith("with-slow-close"):
        # The first Ctrl-C's flush is made long (60 s): only the second can end it.
        async_producer_module.INTERRUPTED_FLUSH = 60.0
        real_close = p._engine.close

        async def close(timeout):
            if sys.argv[3].endswith("idle"):
                # Said once the close waits: the second Ctrl-C comes to an idle loop.
                asyncio.get_running_loop().call_soon(lambda: print("closing", flush=True))
            else:
                # Said from inside the close: the second Ctrl-C lands in its code.
                print("closing", flush=True)
            return await real_close(timeout)

        p._engine.close = close
    if sys.argv[3].startswith("with"):
        async with p:
            print("ready", flush=True)
            await asyncio.sleep(600)
    # else: return with the producer open

asyncio.run(main())
"""
)


def start_async(cluster: BlockingCluster, mode: str) -> subprocess.Popen[str]:
    return start(cluster, "", script=ASYNC_SCRIPT, extra=[mode])


def test_asyncio_run_ending_with_an_open_producer_reports_every_record(
    held: BlockingCluster,
) -> None:
    process = start_async(held, "open")
    _, err = finish(process, [])
    assert process.returncode == 0, err
    warnings = [line for line in err.splitlines() if "was not closed before" in line]
    assert len(warnings) == 1, err
    assert "its event loop ended" in warnings[0]
    assert f"{RECORDS} record(s) were still buffered" in warnings[0]


def test_ctrl_c_in_asyncio_run_inside_async_with_reports_every_record(
    held: BlockingCluster,
) -> None:
    process = start_async(held, "with")
    before = wait_for_line(process, "ready")
    process.send_signal(signal.SIGINT)
    _, err = finish(process, before)
    assert "KeyboardInterrupt" in err


@pytest.mark.parametrize("where", ["with-slow-close", "with-slow-close-idle"])
def test_a_second_ctrl_c_in_asyncio_run_cuts_the_close_short(
    held: BlockingCluster, where: str
) -> None:
    # asyncio.run cancels the main task at the first Ctrl-C and raises KeyboardInterrupt
    # at the second (inside the close's code, or in the idle loop, which then cancels
    # every task left): either way every record gets its report, at once.
    process = start_async(held, where)
    before = wait_for_line(process, "ready")
    process.send_signal(signal.SIGINT)
    before += wait_for_line(process, "closing")
    process.send_signal(signal.SIGINT)
    _, err = finish(process, before)
    assert "KeyboardInterrupt" in err


SEVERAL_OPEN = """
import os, sys
import pykaf._producer._producer as producer_module

def say(line):  # one write a line: the producers' threads print at the same time
    os.write(1, (line + "\\n").encode())

def report(value):
    def on_delivery(metadata, error):
        kind = "ok" if error is None else "failed " + type(error).__name__
        say(f"report {value.decode()} {kind}")
    return on_delivery

from pykaf._producer._producer import Producer

producer_module.EXIT_FLUSH = 2.0  # short: the order of the closes is what is looked at
producers = [Producer(sys.argv[1], linger=0.002) for _ in range(3)]
for q in producers:
    q.send("exit", b"warm-up").result(30)
print("warm", flush=True)
sys.stdin.readline()  # the test holds the broker's answers from here
for k, q in enumerate(producers):
    real_close = q._engine.close

    async def close(timeout, real_close=real_close, k=k):
        say(f"closing {k}")
        try:
            return await real_close(timeout)
        finally:
            say(f"closed {k}")

    q._engine.close = close
for i in range(int(sys.argv[2])):
    value = b"v%d" % i
    producers[i % 3].produce("exit", value, on_delivery=report(value))
print("done", flush=True)  # ... and no close()
"""


def test_producers_left_open_at_exit_flush_at_the_same_time(held: BlockingCluster) -> None:
    # Three producers whose records cannot be delivered: each flush lasts its whole
    # bound, and one after the other they took three bounds (plus three close_timeouts).
    process = start(held, "", script=SEVERAL_OPEN)
    before = wait_for_line(process, "done")
    assert process.stdout is not None
    out, _ = process.communicate(timeout=BOUND)
    lines = [line.strip() for line in out.splitlines()]
    closings = [n for n, line in enumerate(lines) if line.startswith("closing ")]
    closeds = [n for n, line in enumerate(lines) if line.startswith("closed ")]
    assert len(closings) == len(closeds) == 3, out
    assert max(closings) < min(closeds), out  # every flush began before any ended
    finish_reports(process, [*before, *out.splitlines()], out)
