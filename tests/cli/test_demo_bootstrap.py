"""``pykaf demo --bootstrap``: the main job against a cluster started separately (here the
embedded broker in this process; the demo runs in its own process through
``python -m pykaf``, as a user would run it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pykaf import Admin
from pykaf.broker import BlockingCluster
from pykaf.cli import main


def demo(bootstrap: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pykaf", "demo", "--bootstrap", bootstrap, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_runs_against_an_existing_cluster_and_cleans_up(
    kafka_cluster_sync: BlockingCluster,
) -> None:
    b = kafka_cluster_sync.bootstrap
    proc = demo(b, "--messages", "20000", "--partitions", "3")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"existing cluster at {b}, topic 'pykaf-demo-" in out
    assert "embedded broker" not in out
    assert "total 20,000 of 20,000 produced: OK" in out
    assert out.count("  end offset ") == 3
    assert "read back exactly what was written, in order per partition" in out
    assert "deleted topic 'pykaf-demo-" in out
    with Admin(b) as admin:
        assert admin.list_topics() == {}


def test_keep_topic_keeps_it_and_an_existing_topic_is_refused(
    kafka_cluster_sync: BlockingCluster,
) -> None:
    b = kafka_cluster_sync.bootstrap
    kept = demo(b, "--messages", "500", "--partitions", "2", "--topic", "mine", "--keep-topic")
    assert kept.returncode == 0, kept.stderr
    with Admin(b) as admin:
        assert admin.list_topics()["mine"].partitions == 2
    again = demo(b, "--messages", "500", "--topic", "mine")
    assert again.returncode == 1
    assert again.stderr.splitlines() == [
        "pykaf demo: topic 'mine' exists already; the demo checks that its topic holds exactly"
        " what it wrote: give another --topic (or delete that one: pykaf topics delete mine)"
    ]


def test_no_such_broker_is_one_line() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pykaf",
            "demo",
            "-b",
            "127.0.0.1:1",
            "--messages",
            "10",
            "-m",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    assert line.startswith("pykaf demo: no broker reachable")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--bootstrap", "127.0.0.1:1", "--brokers", "2"], "--brokers sizes the embedded broker"),
        (["--topic", "x"], "need --bootstrap"),
        (["--bootstrap", "127.0.0.1:1", "--replication-factor", "0"], "at least 1"),
    ],
)
def test_options_that_do_not_fit_the_mode(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", *argv])
    assert exit_info.value.code == 2
    assert says in capsys.readouterr().err
