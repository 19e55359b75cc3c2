"""Ctrl-C into ``asyncio.run(main())`` while an ``AsyncConsumer`` hands out buffered
records (``async for`` or a loop of ``poll()``): the interrupt lands within one chunk of
records (``CHUNK``), and what the group committed at close is no more than what was
handed out. Before the consumer gave the loop a turn between chunks, neither awaited
anything while records were buffered: the Ctrl-C waited until the buffer ran dry (all
30,000 records here), and so did the fetches and every other task on the loop.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from script_runs import run_script

from pykaf._consumer._hand_out import CHUNK

CHILD = Path(__file__).with_name("_consumer_ctrl_c_asyncio_child.py")
INTERRUPT_AFTER = 1_000  # the child's
POLL_RECORDS = 500  # the child's max_records
NOISE = ("Traceback", "never awaited", "Task was destroyed", "never retrieved", "Exception in")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to itself")


@pytest.mark.parametrize("style", ["iterate", "poll"])
def test_ctrl_c_lands_within_a_chunk_of_buffered_records(style: str) -> None:
    done = run_script(CHILD, style, timeout=120)
    for noise in NOISE:
        assert noise not in done.stderr, done.stderr
    assert done.returncode == 0, done.stderr
    found = re.search(r"handed (\d+) committed (\d+)", done.stdout)
    assert found is not None, done.stdout + done.stderr
    handed, committed = int(found[1]), int(found[2])
    assert INTERRUPT_AFTER <= handed <= INTERRUPT_AFTER + CHUNK + POLL_RECORDS, done.stdout
    assert committed <= handed  # auto-commit: of what was handed out, never ahead
