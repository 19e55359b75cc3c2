"""The README's Quick start stays what the project promises: two commands, and CI runs the
second one exactly."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _quick_start() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```\n(.*?)```", section, re.S)
    assert block is not None, "the Quick start has no fenced block"
    return block.group(1).strip().splitlines()


def test_quick_start_is_two_lines_main_job_then_tests() -> None:
    lines = _quick_start()
    assert len(lines) == 2
    assert "pykaf demo" in lines[0]
    assert "pytest" in lines[1]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _quick_start()[1] in ci
