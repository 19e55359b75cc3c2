"""Every way a consumer ends returns in bounded time and prints no asyncio noise ("Task
was destroyed but it is pending!", "Task exception was never retrieved"): each scenario
of ``exit_scenarios.py`` runs in its own process, whose stderr is where asyncio writes at
exit. The failure condition of a hang is the subprocess timeout, far above the expected
few seconds (no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from script_runs import run_script

SCRIPT = Path(__file__).with_name("exit_scenarios.py")
# Well above a scenario's few seconds, well below the 30 s request_timeout the old code
# waited for in the bounded cases.
BOUND = 20.0
NOISE = ("Task was destroyed", "never retrieved", "Traceback")


def run(scenario: str) -> subprocess.CompletedProcess[str]:
    done = run_script(SCRIPT, scenario, timeout=BOUND)
    for noise in NOISE:
        assert noise not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    assert "DONE" in done.stdout
    return done


def test_poll_with_no_broker_returns_empty_within_its_timeout_and_exits_quietly() -> None:
    assert "polled []" in run("unreachable_poll_then_exit").stdout


def test_exit_after_poll_raised_leaves_no_pending_fetcher() -> None:
    assert "raised UnknownTopicOrPartitionError" in run("poll_raised_then_exit").stdout


def test_close_with_every_broker_gone_is_bounded_and_reports_the_final_commit() -> None:
    done = run("broker_gone_close")
    assert "errors ['FinalCommitError']" in done.stdout
    assert "the final commit of group 'gone' could not be made" in done.stderr
    assert "t-0@0" in done.stderr  # what it could not commit


def test_a_group_that_cannot_be_joined_is_reported_and_closes_quietly() -> None:
    done = run("join_failing_close")
    assert "errors ['GroupJoinError']" in done.stdout
    assert done.stderr.count("joining failed") == 1  # once per episode
    assert done.stderr.count("could not be joined within its rebalance timeout") == 1


def test_close_after_a_join_failed_unseen_retrieves_its_error() -> None:
    run("join_failed_unseen_close")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to itself")
def test_ctrl_c_in_a_poll_loop_exits_quietly() -> None:
    assert "interrupted" in run("ctrl_c_in_poll_loop").stdout
