"""The options every data command shares: where the cluster is (-b, $PYKAF_BOOTSTRAP, -F,
-X), how to log in (flags or a Kafka properties file), and how failures reach the user."""

from __future__ import annotations

import argparse
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_run import cli

from pykaf.broker import BlockingCluster
from pykaf.cli import main
from pykaf.cli._connect import (
    DEFAULT_BOOTSTRAP,
    CommandParser,
    UsageError,
    add_connection_options,
    client_options,
    run_command,
)
from pykaf.errors import UnknownTopicOrPartitionError

PASSWORD = "cli-s3cret"


def parse(*argv: str) -> argparse.Namespace:
    parser = CommandParser(prog="pykaf test")
    add_connection_options(parser)
    return parser.parse_args(argv)


def test_bootstrap_comes_from_the_flag_then_the_file_then_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYKAF_BOOTSTRAP", raising=False)
    assert client_options(parse()) == (DEFAULT_BOOTSTRAP, {})
    monkeypatch.setenv("PYKAF_BOOTSTRAP", "env:1")
    assert client_options(parse())[0] == "env:1"
    config = tmp_path / "client.properties"
    config.write_text("bootstrap.servers=file:2\n")
    assert client_options(parse("-F", str(config)))[0] == "file:2"
    assert client_options(parse("-F", str(config), "-b", "flag:3"))[0] == "flag:3"


def test_properties_file_then_x_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "client.properties"
    config.write_text(
        "# a comment\n\n"
        "security.protocol=sasl_ssl\n"
        "sasl.mechanisms=SCRAM-SHA-256\n"
        "sasl.username = alice\n"
        "sasl.password=from-file\n"
        "ssl.ca.location=/ca.pem\n"
        "ssl.endpoint.identification.algorithm=none\n"
        "client.id=mine\n"
    )
    args = parse("-F", str(config), "-X", "sasl.password=from-x", "--sasl-username", "bob")
    assert client_options(args)[1] == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_username": "bob",
        "sasl_password": "from-x",
        "ssl_cafile": "/ca.pem",
        "ssl_check_hostname": False,
        "client_id": "mine",
    }
    flags = parse(
        "--security-protocol", "ssl", "--ssl-cafile", "ca", "--ssl-certfile", "c",
        "--ssl-keyfile", "k", "--ssl-password", "p", "--no-ssl-check-hostname",
    )  # fmt: skip
    assert client_options(flags)[1] == {
        "security_protocol": "SSL",
        "ssl_cafile": "ca",
        "ssl_certfile": "c",
        "ssl_keyfile": "k",
        "ssl_password": "p",
        "ssl_check_hostname": False,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sasl.passwrod=x\n", "unknown property 'sasl.passwrod'"),
        ("just words\n", "line 1: expected key=value"),
        ("ssl.endpoint.identification.algorithm=maybe\n", "must be 'https' or 'none'"),
    ],
)
def test_a_bad_properties_file_is_one_line_naming_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    config = tmp_path / "bad.properties"
    config.write_text(text)
    with pytest.raises(UsageError, match=expected.replace("(", r"\(")):
        client_options(parse("-F", str(config)))
    assert main(["consume", "-F", str(config), "t", "-e"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("pykaf consume: -F ")
    assert expected in err


def test_bad_x_and_a_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["produce", "-X", "novalue", "t"]) == 1
    assert "-X 'novalue': expected KEY=VALUE" in capsys.readouterr().err
    assert main(["produce", "-F", "/no/such.properties", "t"]) == 1
    assert "-F /no/such.properties: cannot read it" in capsys.readouterr().err


def test_settings_the_client_refuses_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["consume", "--security-protocol", "TLS", "t"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "security_protocol must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL" in err


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_no_broker_is_one_line_and_debug_adds_the_traceback() -> None:
    address = f"127.0.0.1:{closed_port()}"
    done = cli(["consume", "-b", address, "t", "-e", "-m", "1"])
    assert done.returncode == 1
    assert done.stderr.count(b"\n") == 1
    assert b"no broker reachable" in done.stderr
    assert b"check -b/--bootstrap (or $PYKAF_BOOTSTRAP)" in done.stderr
    debug = cli(["produce", "-b", address, "t", "-m", "1", "--debug"])
    assert debug.returncode == 1
    assert b"Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1].startswith(b"pykaf produce: no broker")


def test_run_command_maps_interrupts_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse()

    def interrupted(_: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    def missing(_: argparse.Namespace) -> int:
        raise UnknownTopicOrPartitionError("topic 'x' does not exist")

    assert run_command(interrupted, args) == 130
    assert capsys.readouterr().err == ""
    assert run_command(missing, args) == 1
    err = capsys.readouterr().err
    assert err.startswith("pykaf test: [UNKNOWN_TOPIC_OR_PARTITION (3)]")
    assert err.rstrip().endswith("or create it first (pykaf topics create NAME)")


@pytest.fixture(scope="module")
def sasl_broker() -> Iterator[BlockingCluster]:
    with BlockingCluster(
        1,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanisms=["PLAIN", "SCRAM-SHA-256"],
        users={"alice": PASSWORD},
        auto_create_topics=False,
    ) as cluster:
        cluster.create_topic("secured", 1)
        yield cluster


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_a_properties_file_logs_in_to_a_sasl_broker(
    sasl_broker: BlockingCluster, tmp_path: Path, mechanism: str
) -> None:
    config = tmp_path / "sasl.properties"
    config.write_text(
        f"bootstrap.servers={sasl_broker.bootstrap}\n"
        "security.protocol=SASL_PLAINTEXT\n"
        f"sasl.mechanism={mechanism}\n"
        "sasl.username=alice\n"
        f"sasl.password={PASSWORD}\n"
    )
    value = f"over {mechanism}".encode()
    produced = cli(["produce", "-F", str(config), "secured"], stdin=value + b"\n")
    assert (produced.returncode, produced.stderr) == (0, b"")
    consumed = cli(["consume", "-F", str(config), "secured", "-e", "-o", "-1"])
    assert (consumed.returncode, consumed.stdout) == (0, value + b"\n")


def test_a_wrong_password_is_one_line_without_the_password(
    sasl_broker: BlockingCluster, tmp_path: Path
) -> None:
    config = tmp_path / "wrong.properties"
    config.write_text("security.protocol=SASL_PLAINTEXT\nsasl.username=alice\n")
    done = cli(
        [
            "consume",
            "-b",
            sasl_broker.bootstrap,
            "-F",
            str(config),
            "secured",
            "-e",
            "--sasl-password",
            "not-the-password",
        ]
    )
    assert done.returncode == 1
    assert done.stderr.count(b"\n") == 1
    assert b"login failed" in done.stderr
    assert b"not-the-password" not in done.stderr
