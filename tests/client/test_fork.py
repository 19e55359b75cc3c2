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


@pytest.mark.parametrize("custody", ["memory", "journal"])
def test_a_producer_refuses_in_a_forked_child_which_exits(
    cluster: BlockingCluster, tmp_path: Path, custody: str
) -> None:
    extra = [str(tmp_path / "journal")] if custody == "journal" else []
    result = run(cluster, "producer", *extra)
    assert result["child_exit"] == 0  # before: None (still running after 20 s)
    assert result["child"] == {
        "produce": "ProducerForkedError",  # before: returned (taken, never sent)
        "send": "ProducerForkedError",  # before: TimeoutError after 5 s
        "produce_batch": "ProducerForkedError",
        "flush": "ProducerForkedError",  # before: returned 2 left after 5 s
    }
    assert result["parent_after"] == "sent"
    assert result["parent_left"] == 0


def test_consumers_and_admins_refuse_in_a_forked_child(cluster: BlockingCluster) -> None:
    result = run(cluster, "others")
    assert result["child_exit"] == 0
    assert result["child"] == {
        "consumer.poll": "ClientForkedError",
        "admin.list_topics": "ClientForkedError",
        "consumer.close": "returned in 0 s",
        "admin.close": "returned in 0 s",
    }
    assert result["parent_left"] == 0


def test_async_clients_refuse_in_a_forked_child(cluster: BlockingCluster) -> None:
    result = run(cluster, "async")
    assert result["child_exit"] == 0
    assert result["child"] == {
        "produce": "ProducerForkedError",
        "flush": "ProducerForkedError",
        "client.request": "ClientForkedError",
        "close": "returned",
    }
    assert result["parent_after"] == "sent"
    assert result["parent_left"] == 0


def test_the_forked_errors_are_the_closed_errors_callers_catch() -> None:
    assert issubclass(ProducerForkedError, ProducerClosedError)
    assert issubclass(ProducerForkedError, ClientForkedError)
