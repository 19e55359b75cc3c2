"""SIGTERM (``kill``, ``docker stop``, ``timeout``, systemd) stops a command as Ctrl-C
does: ``pykaf produce`` flushes what it read, ``pykaf consume -G`` commits what it
printed and leaves its group (``test_consume_cli.py``), any other command exits 143
(``pykaf.cli._stop``).

Before, Python's default ended the process at once: ``pykaf produce`` lost every record
it had read and not yet sent, with no word and exit status -15, and ``pykaf consume -G``
committed nothing it had printed (a restart printed it again)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest
from cli_run import PYKAF, one_broker

from pykaf import Consumer, TopicPartition
from pykaf.broker import BlockingCluster
from pykaf.cli._connect import run_command

__all__ = ["one_broker"]

RECORDS = 100_000  # ~10 MB: more than the requests a slow broker has in flight
PIPE_SLACK = 11_000  # lines the pipe and one unread chunk (1 MiB) may still hold


@pytest.fixture
def slow_produce(one_broker: BlockingCluster) -> Iterator[BlockingCluster]:
    """Each Produce waits 0.3 s before the broker handles it: at the SIGTERM most of
    what the command read is still in its buffer or in requests without answers."""
    one_broker.faults.set_latency(0.3, api="Produce")
    try:
        yield one_broker
    finally:
        one_broker.faults.set_latency(0, api="Produce")


def read_values(bootstrap: str, topic: str) -> list[bytes | None]:
    with Consumer(bootstrap, stop_at_end=True, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition(topic, 0)])
        return [record.value for record in consumer]


def test_produce_flushes_what_it_read_on_sigterm(slow_produce: BlockingCluster) -> None:
    slow_produce.create_topic("terminated", 1)
    values = [b"line-%06d" % i + b"." * 89 for i in range(RECORDS)]
    proc = subprocess.Popen(
        [*PYKAF, "produce", "-b", slow_produce.bootstrap, "terminated"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(b"\n".join(values) + b"\n")  # returns once all but a pipeful is read
    proc.stdin.flush()
    proc.send_signal(signal.SIGTERM)  # stdin stays open: it may be waiting to read more
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (143, b"")  # as a shell reports a SIGTERM; quiet
    stored = read_values(slow_produce.bootstrap, "terminated")
    # Every record it read is in the topic, once and in order (what the pipe still held
    # was never read: the command stopped reading at the signal).
    assert stored == values[: len(stored)]
    assert len(stored) >= RECORDS - PIPE_SLACK, len(stored)


def test_any_other_command_stops_on_sigterm_with_status_143() -> None:
    args = argparse.Namespace(prog="pykaf test", debug=False)
    finished: list[bool] = []

    def waits_for_ever(_: argparse.Namespace) -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 10  # the handler raises at the next bytecode
        while time.monotonic() < deadline:
            time.sleep(0.01)
        finished.append(True)
        return 0

    before = signal.getsignal(signal.SIGTERM)
    assert run_command(waits_for_ever, args) == 143
    assert finished == []  # stopped, not run to its end
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back
