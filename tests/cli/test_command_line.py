"""The command line: the main job end to end, dispatch, and bad input."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest

from pykaf.cli import main
from pykaf.cli._progress import Progress


def test_demo_end_to_end_accounts_for_every_message() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pykaf", "demo", "--messages", "30000", "--partitions", "4"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "embedded broker: 3 broker(s) at 127.0.0.1:" in out
    assert "produced 30,000 messages of 100 B" in out
    assert out.count("  end offset ") == 4
    assert "total 30,000 of 30,000 produced: OK" in out
    assert "consumed 30,000 messages from offset 0" in out
    assert "read back exactly what was written, in order per partition" in out
    assert re.search(r"first record read: .* value b'\d{10}x{6}'", out), out


def test_usage_and_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out
    assert main(["--help"]) == 0
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_demo_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--partitions", "0"])
    assert exit_info.value.code == 2
    assert "--partitions must be at least 1" in capsys.readouterr().err


def test_broker_subcommand_is_the_standalone_broker(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["broker", "--help"])
    assert exit_info.value.code == 0
    assert "pykaf broker" in capsys.readouterr().out


def test_progress_prints_quarters_when_not_a_terminal() -> None:
    out = io.StringIO()
    with Progress(1000, out=out, label="work") as progress:
        for _ in range(10):
            progress.advance(100)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[-1].startswith("work [##############################] 100.0%")
    assert "1,000/1,000" in lines[-1]


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        ("produce", "pykaf produce TOPIC [FILE...] (or -t TOPIC, as kcat)"),
        ("consume", "pykaf consume TOPIC (or -t TOPIC, as kcat)"),
    ],
)
def test_a_data_command_without_a_topic_says_how_to_name_one(
    capsys: pytest.CaptureFixture[str], command: str, usage: str
) -> None:
    with pytest.raises(SystemExit) as exited:  # argparse's way, with our status and line
        main([command])
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"which topic? {usage}" in err
