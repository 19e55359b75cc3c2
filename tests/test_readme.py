"""The README runs as written.

Its Quick start stays what the project promises: two commands, and CI runs the second one
exactly. Every ``python`` block is a complete program: each runs in its own interpreter,
in README order, against the cluster the README's own ``pykaf broker`` command starts
(on free ports here: the addresses a block names, 127.0.0.1:9092 and up, are replaced by
the ones that command printed). Every run is bounded in time.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
# Where the README's examples expect the first broker; the next ones follow.
README_PORT = 9092
_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
_ADDRESS = re.compile(r"127\.0\.0\.1:(\d+)")
_BLOCK_LIMIT = 60.0


def _blocks(language: str) -> list[tuple[int, str]]:
    """(line number, code) of every fenced block in ``language``, in README order."""
    found = []
    for match in _BLOCK.finditer(README):
        if match.group(1) == language:
            found.append((README.count("\n", 0, match.start()) + 1, match.group(2)))
    return found


def _quick_start() -> list[str]:
    section = README.split("## Quick start", 1)[1]
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


def _broker_command() -> list[str]:
    """The README's ``pykaf broker`` line, as arguments, with ``--port 0`` (free ports)."""
    lines = [
        line for _, code in _blocks("sh") for line in code.splitlines() if "pykaf broker" in line
    ]
    assert len(lines) == 1, f"one `pykaf broker` command expected in the sh blocks: {lines}"
    args = shlex.split(lines[0])
    assert args[:2] == ["pykaf", "broker"], lines[0]
    port = args.index("--port") + 1
    assert args[port] == str(README_PORT), "the examples expect the broker at that port"
    args[port] = "0"
    return [sys.executable, "-m", "pykaf", *args[1:]]


def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The process's first line of output, or "" if none within ``timeout``."""
    assert proc.stdout is not None
    stdout = proc.stdout
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0].strip() if lines else ""


@pytest.fixture(scope="module")
def readme_cluster() -> Iterator[list[str]]:
    """The cluster the README's broker command starts; yields its broker addresses."""
    proc = subprocess.Popen(_broker_command(), stdout=subprocess.PIPE, text=True)
    try:
        bootstrap = _first_line(proc, timeout=30.0)
        assert bootstrap, f"the README's broker command printed nothing (exit {proc.poll()})"
        yield bootstrap.split(",")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_broker_command_starts_the_cluster_the_examples_expect(readme_cluster: list[str]) -> None:
    assert len(readme_cluster) == 3  # 127.0.0.1:9092 to 9094 in the README's words
    assert all(_ADDRESS.fullmatch(address) for address in readme_cluster), readme_cluster


def _runnable(code: str, addresses: list[str]) -> str:
    """``code`` aimed at ``addresses`` instead of 127.0.0.1:9092, :9093, ..."""

    def replace(match: re.Match[str]) -> str:
        index = int(match.group(1)) - README_PORT
        assert 0 <= index < len(addresses), f"the README names {match.group(0)}"
        return addresses[index]

    return _ADDRESS.sub(replace, code)


@pytest.mark.parametrize(
    "code", [code for _, code in _blocks("python")], ids=[f"line{n}" for n, _ in _blocks("python")]
)
def test_python_block_runs_as_written(code: str, readme_cluster: list[str]) -> None:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    proc = subprocess.run(
        [sys.executable, "-c", _runnable(code, readme_cluster)],
        capture_output=True,
        text=True,
        timeout=_BLOCK_LIMIT,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "WARNING" not in proc.stderr, proc.stderr
    if "Consumer(" in code:  # a reader that read nothing would pass for the wrong reason
        assert proc.stdout.strip(), "the example printed no record"


def test_every_example_is_checked() -> None:
    # A block in another language would escape the runs above: say which are expected.
    languages = {match.group(1) for match in _BLOCK.finditer(README)}
    assert languages == {"", "python", "sh"}, languages
    assert len(_blocks("python")) >= 9
