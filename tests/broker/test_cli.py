"""``python -m pykaf.broker``: bootstrap line first, serves clients, exits on SIGTERM."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from _broker_clients import consume_all, produce_all

from pykaf.broker.cli import main

pytestmark = pytest.mark.peer


def test_standalone_broker_round_trip_and_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pykaf.broker",
            "--port",
            "0",
            "--brokers",
            "2",
            "--data-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 15.0)
        assert ready, "no bootstrap line within 15 s"
        bootstrap = proc.stdout.readline().strip()
        hosts = bootstrap.split(",")
        assert len(hosts) == 2
        assert all(h.startswith("127.0.0.1:") for h in hosts)
        assert produce_all(bootstrap, "cli", 500) == []
        got = consume_all(bootstrap, "cli", 1, 500)[0]
        assert [int(m.value()) for m in got] == list(range(500))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    assert list(tmp_path.glob("cli-0/*.log"))


def test_cli_rejects_bad_arguments() -> None:
    assert main(["--brokers", "0"]) == 2
    with pytest.raises(SystemExit):
        main(["--port", "not-a-number"])
