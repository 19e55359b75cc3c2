"""``pykaf journal replay DIR --bootstrap B``, run as a subprocess against the embedded
broker, on journals a SIGKILLed producer left behind (``custody_filler``): every record
arrives in order per partition, the summary and the exit status say what happened, and bad
input (locked, damaged, not a journal) is one clear line with status 2."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from custody_filler import child_env, expected_values, fill_journal, read_values
from test_journal_inspect import build_journal, corrupt_first_segment, lock_held_elsewhere

from pykaf import Producer
from pykaf.broker import BlockingCluster
from pykaf.cli import main
from pykaf.cli._journal_replay import PartitionReplay, ReplayReport, format_report
from pykaf.journal import inspect_journal

PARTITIONS = 3
COUNT = 300


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=1) as running:
        running.create_topic("t", PARTITIONS)
        yield running


@pytest.fixture
def journal(cluster: BlockingCluster, tmp_path: Path) -> Path:
    """A journal with COUNT records pending; the broker is down when it is returned."""
    directory = tmp_path / "journal"
    fill_journal(directory, cluster.bootstrap, lambda: cluster.faults.broker_down(1), count=COUNT)
    return directory


def replay(directory: Path, bootstrap: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pykaf",
            "journal",
            "replay",
            str(directory),
            "-b",
            bootstrap,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
        check=False,
    )


def replayed_values(bootstrap: str) -> dict[int, list[bytes]]:
    """What the topic holds per partition, the warm-up records of the filler left out."""
    written = read_values(bootstrap, "t", PARTITIONS)
    return {p: [v for v in values if v.startswith(b"r")] for p, values in written.items()}


def assert_table_row(out: str, partition: int, *figures: int) -> None:
    numbers = r" +".join(f"{n:,}" for n in figures)
    assert re.search(rf"^  t +{partition} +{numbers}$", out, re.M), out


def test_replay_delivers_every_record_in_order_and_exits_0(
    cluster: BlockingCluster, journal: Path
) -> None:
    cluster.faults.broker_up(1)
    proc = replay(journal, cluster.bootstrap)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert f"journal {journal}: {COUNT} record(s) recovered, replayed to {cluster.bootstrap}\n" in (
        out
    )
    for partition in range(PARTITIONS):
        assert_table_row(out, partition, 100, 100, 0, 0)
    assert f"delivered {COUNT} of {COUNT} in " in out
    assert "; failed 0; left in the journal 0\n" in out
    assert "every recovered record was delivered; the journal holds nothing pending\n" in out
    assert "Traceback" not in proc.stderr
    # Every record once, in produce order per partition, in the partition it was
    # journaled for.
    assert replayed_values(cluster.bootstrap) == expected_values(COUNT, PARTITIONS)
    assert inspect_journal(journal).pending_records == 0
    # Nothing left: a second replay says so, and sends nothing.
    again = replay(journal, cluster.bootstrap)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"journal {journal}: nothing pending, nothing to replay\n"
    assert replayed_values(cluster.bootstrap) == expected_values(COUNT, PARTITIONS)


def test_replay_json_is_the_summary(cluster: BlockingCluster, journal: Path) -> None:
    cluster.faults.broker_up(1)
    proc = replay(journal, cluster.bootstrap, "--json")
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["directory"] == str(journal)
    assert (found["recovered"], found["delivered"], found["failed"], found["left"]) == (
        COUNT,
        COUNT,
        0,
        0,
    )
    assert (found["timed_out"], found["interrupted"], found["exit_status"]) == (False, False, 0)
    assert found["partitions"] == [
        {"topic": "t", "partition": p, "recovered": 100, "delivered": 100, "failed": 0, "left": 0}
        for p in range(PARTITIONS)
    ]
    assert found["errors"] == []


def test_brokers_still_down_exit_1_and_everything_stays_for_the_next_replay(
    cluster: BlockingCluster, journal: Path
) -> None:
    proc = replay(journal, cluster.bootstrap, "--timeout", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    for partition in range(PARTITIONS):
        assert_table_row(out, partition, 100, 0, 0, 100)
    assert "not every record was acknowledged within --timeout 2 s\n" in out
    assert f"{COUNT} record(s) stay in the journal: run `pykaf journal replay` again" in out
    assert "Traceback" not in proc.stderr
    assert inspect_journal(journal).pending_records == COUNT
    cluster.faults.broker_up(1)
    proc = replay(journal, cluster.bootstrap)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert replayed_values(cluster.bootstrap) == expected_values(COUNT, PARTITIONS)


def test_ctrl_c_stops_it_and_what_was_not_sent_stays(
    cluster: BlockingCluster, journal: Path
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pykaf",
            "journal",
            "replay",
            str(journal),
            *("-b", cluster.bootstrap),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        # The replay holds the journal's lock once its producer opened it.
        deadline = time.monotonic() + 60
        while not inspect_journal(journal).lock.held:
            assert proc.poll() is None
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 1, out + err
    assert "interrupted (Ctrl-C): the replay stopped before every report came back\n" in out
    assert f"{COUNT} record(s) stay in the journal" in out
    assert "Traceback" not in err
    after = inspect_journal(journal)
    assert (after.pending_records, after.lock.held) == (COUNT, False)


def test_records_sent_but_unanswered_at_the_timeout_stay_in_the_journal(
    cluster: BlockingCluster, journal: Path
) -> None:
    cluster.faults.broker_up(1)
    hold = cluster.faults.hold_responses("Produce")
    try:
        proc = replay(journal, cluster.bootstrap, "--timeout", "2")
    finally:
        hold.release()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for partition in range(PARTITIONS):
        assert_table_row(proc.stdout, partition, 100, 0, 0, 100)
    assert f"failed 0; left in the journal {COUNT}\n" in proc.stdout
    # Written by the broker perhaps, never acknowledged: the next replay sends them again.
    assert inspect_journal(journal).pending_records == COUNT
    again = replay(journal, cluster.bootstrap)
    assert again.returncode == 0, again.stdout + again.stderr
    written = replayed_values(cluster.bootstrap)
    first_seen = {p: list(dict.fromkeys(values)) for p, values in written.items()}
    assert first_seen == expected_values(COUNT, PARTITIONS)
    # At-least-once: what the broker wrote before the timeout may be there twice.
    duplicates = sum(len(values) - len(set(values)) for values in written.values())
    print(f"sent, unanswered, sent again: {duplicates} duplicate(s)")


def test_a_journal_with_nothing_pending_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Producer("127.0.0.1:9", custody="journal", journal_dir=tmp_path).close(0)
    assert main(["journal", "replay", str(tmp_path), "-b", "127.0.0.1:9"]) == 0
    assert capsys.readouterr().out == f"journal {tmp_path}: nothing pending, nothing to replay\n"
    assert main(["journal", "replay", str(tmp_path), "-b", "127.0.0.1:9", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert (found["recovered"], found["left"], found["exit_status"]) == (0, 0, 0)


def test_a_journal_locked_by_a_live_producer_exits_2_naming_it(tmp_path: Path) -> None:
    built = build_journal(tmp_path / "journal")
    with lock_held_elsewhere(built.directory) as holder:
        proc = replay(built.directory, "127.0.0.1:9")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        f"pykaf journal replay: journal {built.directory} is locked by a live producer (pid"
        f" {holder.pid}): that producer sends its records itself; stop it first to replay"
        " them from here\n"
    )


def test_a_damaged_journal_exits_2_naming_the_file_and_byte(tmp_path: Path) -> None:
    built = build_journal(tmp_path / "journal")
    path, position = corrupt_first_segment(built)
    proc = replay(built.directory, "127.0.0.1:9")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith(
        f"pykaf journal replay: journal file {path} is damaged at byte {position}"
    )
    assert proc.stderr.count("\n") == 1


def test_bad_input_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["journal", "replay", str(tmp_path / "missing"), "-b", "127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"pykaf journal replay: {tmp_path / 'missing'} is not a journal directory: no such"
        " file or directory"
    )
    assert err.count("\n") == 1
    built = build_journal(tmp_path / "journal")
    assert main(["journal", "replay", str(built.directory), "-b", "not a host::x"]) == 2
    assert capsys.readouterr().err.startswith(
        "pykaf journal replay: cannot open a producer for --bootstrap 'not a host::x': bad"
        " broker address"
    )
    assert inspect_journal(built.directory).pending_records == 50  # untouched
    for timeout in ("0", "-1", "soon", "inf"):
        with pytest.raises(SystemExit) as exit_info:
            main(["journal", "replay", str(tmp_path), "-b", "127.0.0.1:9", "--timeout", timeout])
        assert exit_info.value.code == 2
        assert "--timeout" in capsys.readouterr().err


def test_a_torn_tail_is_cut_and_said_and_every_record_before_it_delivered(
    cluster: BlockingCluster, journal: Path
) -> None:
    summary = inspect_journal(journal)
    newest = journal / summary.segments[-1].name
    with newest.open("r+b") as segment:  # half an entry after the last whole one
        segment.seek(summary.segments[-1].size_bytes)
        segment.write(b"\x00\x00\x02\x00\x7f\x01")
    torn = inspect_journal(journal).torn_tail
    assert torn is not None
    cluster.faults.broker_up(1)
    proc = replay(journal, cluster.bootstrap)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        f"a torn tail of {torn.size_bytes:,} bytes (an append a crash interrupted) was cut"
        " when the journal was opened\n"
    ) in proc.stdout
    assert replayed_values(cluster.bootstrap) == expected_values(COUNT, PARTITIONS)
    assert inspect_journal(journal).torn_tail is None


INVALID_RECORD = 87  # not retriable: the batch fails with a report


def test_records_the_broker_refuses_fail_and_exit_1(
    cluster: BlockingCluster, journal: Path
) -> None:
    cluster.faults.broker_up(1)
    cluster.faults.push_errors("Produce", INVALID_RECORD)  # the first request only
    proc = replay(journal, cluster.bootstrap, "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    found = json.loads(proc.stdout)
    assert found["failed"] > 0
    assert (found["delivered"] + found["failed"], found["left"]) == (COUNT, 0)
    assert found["exit_status"] == 1
    assert "INVALID_RECORD" in found["errors"][0] or "invalid" in found["errors"][0].lower()
    written = replayed_values(cluster.bootstrap)
    for row in found["partitions"]:
        assert row["recovered"] == row["delivered"] + row["failed"]
        # What was delivered is the tail of the partition's records, in order.
        expected = expected_values(COUNT, PARTITIONS)[row["partition"]]
        assert written[row["partition"]] == expected[row["failed"] :]
    assert inspect_journal(journal).pending_records == 0


def test_the_summary_names_failures_and_what_may_have_been_written() -> None:
    report = ReplayReport(
        directory="/j",
        bootstrap="b:9092",
        recovered=5,
        delivered=2,
        failed=3,
        failed_maybe_written=1,
        left=0,
        timed_out=False,
        interrupted=False,
        seconds=1.0,
        partitions=(
            PartitionReplay(topic="t", partition=0, recovered=5, delivered=2, failed=3, left=0),
        ),
        errors=("3 record(s) to t-0: INVALID_RECORD",),
    )
    out = io.StringIO()
    format_report(report, 60.0, out)
    assert out.getvalue().endswith(
        "delivered 2 of 5 in 1.00 s; failed 3; left in the journal 0\n"
        "3 record(s) failed with a report and are no longer in the journal (1 of them may"
        " have been written by the broker all the same); first error(s):\n"
        "  3 record(s) to t-0: INVALID_RECORD\n"
    )
    assert report.exit_status == 1
