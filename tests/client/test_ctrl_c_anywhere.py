"""Ctrl-C wherever it lands in a blocking call leaves the client working and quiet.

Each scenario of ``ctrl_c_sweep.py`` runs in its own process: a blocking operation is
interrupted at each point of pykaf's code where CPython would raise a signal handler's
``KeyboardInterrupt`` (a function's start, just after a C call returns), then runs once
more, whole. That
last run must work (a promised wake that never came stalled a producer: its flush
waited out its timeout), and stderr must hold none of Python's "coroutine ... was never
awaited" (a ``Consumer`` made a coroutine in the caller's thread and was interrupted
before handing it over: the CLI's Ctrl-C printed it), nor asyncio's noise. An
``AsyncProducer`` whose loop runs in the main thread (``run_until_complete``) is swept
too: there the interrupt landed in its callbacks and tasks (a batch dropped between its
queue and its request, the metadata task ended: "Task exception was never retrieved",
and flush never returned 0 again), an ``AsyncConsumer`` (records never handed out) and an
``AsyncAdmin`` (a connection's in-flight slot never given back) too. A hang fails
by the subprocess timeout, far above the few seconds a scenario takes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from ctrl_c_sweep import SCENARIOS
from script_runs import run_script

SCRIPT = Path(__file__).with_name("ctrl_c_sweep.py")
BOUND = 60.0
NOISE = ("never awaited", "Task was destroyed", "never retrieved", "Traceback", "Exception in")


@pytest.mark.skipif(sys.platform == "win32", reason="profile hooks and KeyboardInterrupt")
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_ctrl_c_at_any_call_leaves_the_client_working_and_quiet(scenario: str) -> None:
    done = run_script(SCRIPT, scenario, timeout=BOUND, python_options=("-X", "dev"))
    for noise in NOISE:
        assert noise not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    found = re.search(r"interrupted (\d+) times; then (.*)\nDONE", done.stdout)
    assert found is not None, done.stdout
    assert int(found[1]) >= 5  # the sweep reached into the call, not only its entry
    assert found[2] == EXPECTED[scenario]


EXPECTED = {
    "consumer_poll": "[]",
    "consumer_calls": "(0, {TopicPartition(topic='t', partition=0): 0})",
    "client_metadata": "['t']",
    "admin_list_topics": "['t']",
    "producer_flush": "0",
    "journaled_producer_flush": "0",
    "async_producer_run_until_complete": "0",
    "async_consumer_run_until_complete": "True",
    "async_admin_run_until_complete": "['t']",
}
