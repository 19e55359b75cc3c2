"""``pykaf journal inspect DIR [--json]``: the figures printed, the exit statuses, and bad
input (a missing or foreign directory, a damaged file). ``replay``: test_journal_replay."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_journal_inspect import (
    RECORDS,
    T0,
    BuiltJournal,
    build_journal,
    child_env,
    corrupt_first_segment,
    lock_held_elsewhere,
)

from pykaf.cli import main


@pytest.fixture
def built(tmp_path: Path) -> BuiltJournal:
    return build_journal(tmp_path / "journal")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pykaf", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        check=False,
    )


def test_inspect_prints_the_figures_as_a_table(built: BuiltJournal) -> None:
    proc = run_cli("journal", "inspect", str(built.directory))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    files = built.segments()
    total = sum(f.stat().st_size for f in files)
    assert f"journal {built.directory}\n" in out
    assert "lock: free (no live process has the journal open)\n" in out
    assert f"segments: {len(files)}, {total:,} bytes\n" in out
    for path in files:
        assert re.search(rf"^  {path.name} +{path.stat().st_size:,} ", out, re.M), out
    assert f"records: {RECORDS} journaled, 50 pending, 10 done; next serial {RECORDS}\n" in out
    oldest = datetime.fromtimestamp((T0 + 1000) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert f"oldest pending record: {oldest} (age " in out
    assert "first pending serial 1\n" in out
    assert "torn tail: none\n" in out
    assert re.search(r"^  orders +0 +10 +- +- +-$", out, re.M), out
    assert re.search(r"^  orders +1 +20 +4242 +3 +17$", out, re.M), out
    assert re.search(r"^  orders +2 +20 +- +- +-$", out, re.M), out


def test_inspect_json_is_the_summary(
    built: BuiltJournal, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["journal", "inspect", str(built.directory), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["directory"] == str(built.directory)
    assert [s["name"] for s in found["segments"]] == [f.name for f in built.segments()]
    assert (found["records"], found["pending_records"], found["done_records"]) == (RECORDS, 50, 10)
    assert found["oldest_pending_timestamp_ms"] == T0 + 1000
    assert found["oldest_pending_age_s"] > 0
    assert found["torn_tail"] is None
    assert found["lock"] == {"held": False, "pid": None}
    assert [(p["partition"], p["pending_records"]) for p in found["partitions"]] == [
        (0, 10),
        (1, 20),
        (2, 20),
    ]
    assert found["partitions"][1]["identity"]["producer_id"] == 4242


def test_inspect_reports_a_torn_tail_without_cutting_it(
    built: BuiltJournal, capsys: pytest.CaptureFixture[str]
) -> None:
    newest = built.segments()[-1]
    size = newest.stat().st_size
    os.truncate(newest, size - 5)
    assert main(["journal", "inspect", str(built.directory)]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^torn tail: \d+ bytes at byte [\d,]+ of {newest.name} \(", out, re.M), out
    assert "a producer opening the journal cuts it, inspect did not" in out
    assert newest.stat().st_size == size - 5


def test_inspect_names_the_holder_of_the_lock(built: BuiltJournal) -> None:
    with lock_held_elsewhere(built.directory) as holder:
        # Cut after the holder opened it (opening cuts a torn tail): to inspect, this is
        # what an append in progress looks like.
        newest = built.segments()[-1]
        os.truncate(newest, newest.stat().st_size - 5)
        proc = run_cli("journal", "inspect", str(built.directory))
    assert proc.returncode == 0, proc.stderr
    assert f"lock: held by pid {holder.pid} (a producer is using it" in proc.stdout
    assert re.search(
        rf"^torn tail: \d+ bytes at byte [\d,]+ of {newest.name} \(.*\); maybe an append in"
        " progress$",
        proc.stdout,
        re.M,
    ), proc.stdout


def test_a_damaged_journal_exits_2_naming_the_file_and_byte(built: BuiltJournal) -> None:
    path, position = corrupt_first_segment(built)
    proc = run_cli("journal", "inspect", str(built.directory))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert f"pykaf journal inspect: journal file {path} is damaged at byte {position}" in (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr


def test_a_missing_or_foreign_directory_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["journal", "inspect", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'missing'} is not a journal directory: no such file or directory" in err
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["journal", "inspect", str(tmp_path)]) == 2
    assert "it holds neither LOCK nor any segment file" in capsys.readouterr().err


def test_replay_is_documented(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["journal", "replay", "--help"])
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out
    # (3.13's argparse writes "-b, --bootstrap B", 3.11's "-b B, --bootstrap B".)
    for flag in ("--bootstrap B", "--timeout S", "--json", "Ctrl-C"):
        assert flag in usage
