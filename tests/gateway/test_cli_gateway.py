"""``pykaf gateway``'s configuration: the TOML file, flags over it, and every mistake a
clear one-line error naming what to fix (exit status 1) before anything listens."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from _processes import PYKAF, GatewayProcess

from pykaf.gateway import ConfigError, load_config

NOWHERE = "127.0.0.1:1"  # no Kafka: these tests are about the gateway's own settings


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PYKAF, "gateway", *args], capture_output=True, text=True, timeout=60, check=False
    )


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            'bootstrap = "k:9092"\njournal_dirr = "/tmp/j"\n',
            "journal_dirr (did you mean journal_dir?)",
        ),
        ('bootstrap = "k:9092"\n[server]\nprot = 1\n', "server.prot (did you mean server.port?)"),
        ('bootstrap = "k:9092"\n[server]\nport = "http"\n', "server.port must be a whole number"),
        ('bootstrap = "k:9092"\n[server]\nport = 70000\n', "port must be a whole number 0..65535"),
        ('bootstrap = "k:9092"\nasync_custody = "disk"\n', "async_custody must be one of"),
        ('bootstrap = "k:9092"\nsync_custody = "journal"\n', "needs journal_dir"),
        ('bootstrap = "k:9092"\n[producer]\nlingr = 0.1\n', "[producer] unknown producer setting"),
        ('bootstrap = "k:9092"\n[limits]\nmax_bodi_bytes = 1\n', "max_bodi_bytes"),
        ('bootstrap = "k:9092"\n[securty]\n', "securty"),
        ("bootstrap = \n", "not valid TOML"),
    ],
)
def test_a_bad_config_file_names_the_key(tmp_path: Path, text: str, says: str) -> None:
    path = _config(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert says in str(raised.value)
    assert str(raised.value).startswith(f"{path}: ")


def test_a_bad_config_file_is_one_line_and_nothing_listens(tmp_path: Path) -> None:
    path = _config(tmp_path, 'bootstrap = "k:9092"\n[server]\nprot = 1\n')
    done = _run("--config", path)
    assert done.returncode == 1, done
    assert done.stdout == ""
    assert done.stderr == (
        f"pykaf gateway: {path}: unknown key server.prot (did you mean server.port?);"
        " known: backlog, freeze_gc, gc_threshold, graceful_timeout, host, parser, port\n"
    )


def test_cli_mistakes_are_clear(tmp_path: Path) -> None:
    missing = _run("--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 1
    assert "cannot read it" in missing.stderr
    bad_flag = _run("--port", "x")
    assert bad_flag.returncode == 1
    assert "--port" in bad_flag.stderr
    bad_custody = _run("--async-custody", "disk")
    assert bad_custody.returncode == 1
    assert "--async-custody" in bad_custody.stderr


def test_a_port_in_use_is_refused_clearly() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _run("-b", NOWHERE, "--port", str(port))
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr, done.stderr


def test_beyond_loopback_without_authentication_is_refused() -> None:
    done = _run("-b", NOWHERE, "--host", "0.0.0.0", "--port", "0")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "0.0.0.0" in done.stderr
    assert "allow_anonymous" in done.stderr, done.stderr


def test_without_the_gateway_extra_it_says_what_to_install() -> None:
    blocked = (
        "import sys; sys.modules['uvicorn'] = None;"  # as if uvicorn were not installed
        "from pykaf.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", blocked, "gateway", "-b", NOWHERE, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "pip install 'pykaf[gateway]'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_flags_win_over_the_file(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        f'bootstrap = "{NOWHERE}"\njournal_dir = "{tmp_path / "from-file"}"\n'
        "[server]\nport = 1\n",  # would fail: the flag's port 0 must win
    )
    gateway = GatewayProcess.start(
        ["--config", path, "--port", "0", "--journal-dir", str(tmp_path / "from-flag")],
        tmp_path / "gateway.log",
    )
    try:
        health = httpx.get(f"{gateway.url}/healthz", timeout=30)
        assert health.status_code == 503  # no Kafka there
        assert health.json()["journal"]["directory"] == str(tmp_path / "from-flag")
    finally:
        assert gateway.terminate() == 0


def test_load_config_layers_defaults_file_and_overrides(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        'bootstrap = "file:9092"\nretry_after = 3\n[producer]\nlinger = 0.02\n'
        '[server]\nhost = "127.0.0.1"\nport = 9000\n',
    )
    settings, server = load_config(
        path,
        {"server.port": 0, "producer.acks": "all"},
        defaults={"bootstrap": "default:9092", "retry_after": 9},
    )
    assert settings.bootstrap == "file:9092"  # the file over the default
    assert settings.retry_after == 3
    assert dict(settings.producer_options) == {"linger": 0.02, "acks": "all"}
    assert (server.host, server.port) == ("127.0.0.1", 0)  # the override over the file
    settings, _ = load_config(None, defaults={"bootstrap": "default:9092"})
    assert settings.bootstrap == "default:9092"
    with pytest.raises(ConfigError, match="bootstrap is required"):
        load_config(None)
    with pytest.raises(ConfigError, match=r"use the \[producer\] table"):
        load_config(None, {"bootstrap": "k:1", "producer_options": {}})
