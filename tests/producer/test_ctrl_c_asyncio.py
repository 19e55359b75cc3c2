"""Ctrl-C into ``asyncio.run(main())`` while an ``AsyncProducer`` produces (a real SIGINT):
asyncio cancels ``main`` at the loop's next turn, ``async with`` closes the producer, and
every record that ``produce()`` or ``send()`` took gets exactly one report; what close()
kept in a journal, a new producer on the directory recovers. The interrupt lands within a
thousand records: before ``produce()`` gave the loop a turn every thousand calls, a loop
of awaited produce() calls did not let the loop run until ``buffer_memory`` was full
(about 100,000 records here), and the Ctrl-C waited as long.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
from script_runs import run_script

CHILD = Path(__file__).with_name("_ctrl_c_asyncio_child.py")
INTERRUPT_AFTER = 2_000  # the child's
NOISE = ("Traceback", "never awaited", "Task was destroyed", "never retrieved", "Exception in")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to itself")


@pytest.mark.parametrize("style", ["await", "send"])
@pytest.mark.parametrize("custody", ["memory", "journal", "journal_sync"])
def test_ctrl_c_in_asyncio_run_reports_every_record_once(custody: str, style: str) -> None:
    done = run_script(CHILD, custody, style, timeout=120)
    for noise in NOISE:
        assert noise not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    found = re.search(r"produced (\d+) reported (\d+) (\{.*\}) recovered (\d+)", done.stdout)
    assert found is not None, done.stdout + done.stderr
    produced, reported, recovered = int(found[1]), int(found[2]), int(found[4])
    outcomes = ast.literal_eval(found[3])  # a dict of counts, printed by the child
    # The interrupted call may have taken its record before the cancel landed.
    assert reported in (produced, produced + 1), done.stdout
    assert INTERRUPT_AFTER <= produced <= INTERRUPT_AFTER + 1_024, done.stdout
    assert set(outcomes) <= {"ok", "JournalKeptError"}, outcomes
    assert outcomes.get("JournalKeptError", 0) == recovered, done.stdout
