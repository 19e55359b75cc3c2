"""A client that crosses ``os.fork()`` refuses to work in the child, with a typed error,
and the child exits; the parent's client goes on (``pykaf._client._fork``).

Before: in the child a blocking producer took records nothing would send (``send()``
timed out, ``flush`` left them) and the child never exited (the interpreter-exit hook
waited without bound for a loop thread only the parent had); a journaled one would have
written into the parent's journal.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pykaf import ClientForkedError, ProducerClosedError, ProducerForkedError
from pykaf.broker import BlockingCluster

CHILD = Path(__file__).with_name("fork_child.py")


@pytest.fixture(scope="module")
def cluster() -> Any:
    with BlockingCluster(brokers=1) as running:
        running.create_topic("t", 1)
        yield running


def run(cluster: BlockingCluster, scenario: str, *extra: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(CHILD), cluster.bootstrap, scenario, *extra],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def assert_refused_in_the_child(result: dict[str, Any], calls: dict[str, str]) -> None:
    """The child's calls did what ``calls`` says, the child exited (before: it was still
    running after 20 s), and the parent's clients went on."""
    assert result["child_exit"] == 0
    assert result["child"] == calls
    assert result["parent_after"] == "sent"
    assert result["parent_left"] == 0


@pytest.mark.parametrize("custody", ["memory", "journal"])
def test_a_producer_refuses_in_a_forked_child_which_exits(
    cluster: BlockingCluster, tmp_path: Path, custody: str
) -> None:
    extra = [str(tmp_path / "journal")] if custody == "journal" else []
    calls = {
        "produce": "ProducerForkedError",  # before: returned (taken, never sent)
        "send": "ProducerForkedError",  # before: TimeoutError after 5 s
        "produce_batch": "ProducerForkedError",
        "flush": "ProducerForkedError",  # before: returned 2 left after 5 s
    }
    assert_refused_in_the_child(run(cluster, "producer", *extra), calls)


@pytest.mark.parametrize(
    ("scenario", "calls"),
    [
        (
            "others",
            {
                "consumer.poll": "ClientForkedError",
                "admin.list_topics": "ClientForkedError",
                "consumer.close": "returned in 0 s",
                "admin.close": "returned in 0 s",
            },
        ),
        (
            "async",
            {
                "produce": "ProducerForkedError",
                "flush": "ProducerForkedError",
                "client.request": "ClientForkedError",
                "close": "returned",
            },
        ),
    ],
)
def test_consumers_admins_and_async_clients_refuse_in_a_forked_child(
    cluster: BlockingCluster, scenario: str, calls: dict[str, str]
) -> None:
    assert_refused_in_the_child(run(cluster, scenario), calls)


def test_the_forked_errors_are_the_closed_errors_callers_catch() -> None:
    assert issubclass(ProducerForkedError, ProducerClosedError)
    assert issubclass(ProducerForkedError, ClientForkedError)
