"""``pykaf produce``: lines from stdin or files into a topic, as kcat -P, and its bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from cli_run import PYKAF, cli, one_broker

from pykaf import Consumer, TopicPartition
from pykaf.broker import BlockingCluster
from pykaf.cli import main

__all__ = ["one_broker"]


def read_all(bootstrap: str, topic: str, partitions: int = 1) -> list[tuple]:
    """(partition, key, value, headers) of every record, in partition then offset order."""
    with Consumer(bootstrap, stop_at_end=True, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        records = list(consumer)
    records.sort(key=lambda r: (r.partition, r.offset))
    return [(r.partition, r.key, r.value, r.headers) for r in records]


def test_ten_thousand_lines_with_keys_and_headers_round_trip_byte_for_byte(
    kafka_cluster_sync: BlockingCluster,
) -> None:
    bootstrap = kafka_cluster_sync.bootstrap
    kafka_cluster_sync.create_topic("lines", 1)
    lines = b"".join(b"key-%d:value %d \xc3\xbc:colon\n" % (i % 7, i) for i in range(10_000))
    produced = cli(
        ["produce", "-b", bootstrap, "lines", "-K:", "-H", "source=test", "-H", "n=1"],
        stdin=lines,
    )
    assert (produced.returncode, produced.stderr) == (0, b"")  # silent in a pipe
    # The format string gives the input back, byte for byte.
    formatted = cli(["consume", "-b", bootstrap, "lines", "-e", "-f", "%k:%s\\n"])
    assert formatted.returncode == 0, formatted.stderr
    assert formatted.stdout == lines
    # JSON: one object per record, in order, keys split at the first ':'.
    as_json = cli(["consume", "-b", bootstrap, "lines", "-e", "--json"])
    assert as_json.returncode == 0, as_json.stderr
    objects = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [o["offset"] for o in objects] == list(range(10_000))
    assert objects[3] == {
        "topic": "lines",
        "partition": 0,
        "offset": 3,
        "timestamp": objects[3]["timestamp"],
        "key": "key-3",
        "value": "value 3 ü:colon",
        "headers": [["source", "test"], ["n", "1"]],
    }
    rebuilt = b"".join(f"{o['key']}:{o['value']}\n".encode() for o in objects)
    assert rebuilt == lines


def test_files_delimiter_constant_key_partition_and_compression(
    one_broker: BlockingCluster, tmp_path: os.PathLike[str]
) -> None:
    one_broker.create_topic("zero-delimited", 3)
    first, second = os.path.join(tmp_path, "a"), os.path.join(tmp_path, "b")
    with open(first, "wb") as out:
        out.write(b"one\0two\0")
    with open(second, "wb") as out:
        out.write(b"three\0\0four")  # an empty record is skipped; the unterminated tail kept
    done = cli(
        [
            "produce",
            "-b",
            one_broker.bootstrap,
            "zero-delimited",
            first,
            second,
            "-D",
            "\\0",
            "-k",
            "K",
            "-p",
            "2",
            "-z",
            "gzip",
        ]
    )
    assert (done.returncode, done.stderr) == (0, b"")
    assert read_all(one_broker.bootstrap, "zero-delimited", 3) == [
        (2, b"K", value, ()) for value in (b"one", b"two", b"three", b"four")
    ]


def test_kcats_dash_t_names_the_topic_and_every_operand_is_a_file(
    one_broker: BlockingCluster, tmp_path: os.PathLike[str]
) -> None:
    one_broker.create_topic("dash-t", 1)
    path = os.path.join(tmp_path, "lines")
    with open(path, "wb") as out:
        out.write(b"a\nb\n")
    assert main(["produce", "-b", one_broker.bootstrap, "-t", "dash-t", path]) == 0
    assert [value for _, _, value, _ in read_all(one_broker.bootstrap, "dash-t")] == [b"a", b"b"]


def test_json_mode_takes_what_consume_json_writes(one_broker: BlockingCluster) -> None:
    one_broker.create_topic("json-in", 2)
    one_broker.create_topic("json-copy", 2)
    lines = [
        {"value": "plain", "key": "k1", "headers": [["h", "v"], ["h", None]]},
        {"value": "AP8=", "value_encoding": "base64", "partition": 1},  # b"\x00\xff"
        {"value": None, "key": "tombstone", "headers": {"a": "b"}},
    ]
    stdin = b"".join(json.dumps(line).encode() + b"\n\n" for line in lines)
    done = cli(["produce", "-b", one_broker.bootstrap, "json-in", "--json", "-p", "0"], stdin=stdin)
    assert (done.returncode, done.stderr) == (0, b"")
    expected = [
        (0, b"k1", b"plain", (("h", b"v"), ("h", None))),
        (0, b"tombstone", None, (("a", b"b"),)),
        (1, None, b"\x00\xff", ()),
    ]
    assert read_all(one_broker.bootstrap, "json-in", 2) == expected
    # consume --json | produce --json copies a topic, binary values and all.
    dumped = cli(["consume", "-b", one_broker.bootstrap, "json-in", "-e", "--json"])
    assert b'"value_encoding": "base64"' in dumped.stdout
    copied = cli(
        ["produce", "-b", one_broker.bootstrap, "json-copy", "--json"], stdin=dumped.stdout
    )
    assert (copied.returncode, copied.stderr) == (0, b"")
    assert read_all(one_broker.bootstrap, "json-copy", 2) == expected


def test_failed_records_give_exit_status_1_and_a_count(one_broker: BlockingCluster) -> None:
    one_broker.create_topic("refused", 1)
    # INVALID_RECORD (87) is not retriable: the first produce request's records fail.
    one_broker.faults.push_errors("Produce", 87)
    done = cli(["produce", "-b", one_broker.bootstrap, "refused"], stdin=b"a\nb\nc\n")
    assert done.returncode == 1
    message = done.stderr.decode()
    assert message.count("\n") == 1
    assert "3 of 3 record(s) failed; the first:" in message
    assert "INVALID_RECORD" in message


def test_progress_and_rate_on_a_terminal(one_broker: BlockingCluster) -> None:
    one_broker.create_topic("tty", 1)
    parent, child = os.openpty()
    try:
        proc = subprocess.Popen(
            [*PYKAF, "produce", "-b", one_broker.bootstrap, "tty"],
            stdin=subprocess.PIPE,
            stderr=child,
        )
        os.close(child)
        proc.communicate(b"x\n" * 5000, timeout=60)
        shown = b""
        while True:  # the pty's buffer holds it all; EOF (EIO) once the child is gone
            try:
                data = os.read(parent, 4096)
            except OSError:
                break
            if not data:
                break
            shown += data
    finally:
        os.close(parent)
    assert proc.returncode == 0
    assert b"5,000" in shown
    assert b"msg/s" in shown


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["missing"], "topic 'missing' does not exist; check the topic name, or create it"),
        (["exists", "-H", "novalue"], "-H 'novalue': expected name=value"),
        (["exists", "-D", "\\q"], "unknown escape"),
        (["exists", "-p", "7"], "-p 7: topic 'exists' has partitions 0..0"),
        (["exists", "--json", "-K:"], "--json takes keys from the JSON objects"),
        (["exists", "/no/such/file"], "cannot read /no/such/file"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_1(
    one_broker: BlockingCluster, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    if "exists" not in one_broker.state.topics:
        one_broker.create_topic("exists", 1)
    assert main(["produce", "-b", one_broker.bootstrap, *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pykaf produce: ")
    assert err.count("\n") == 1
    assert expected in err


def test_bad_json_line_names_the_line(one_broker: BlockingCluster) -> None:
    if "exists" not in one_broker.state.topics:
        one_broker.create_topic("exists", 1)
    done = cli(["produce", "-b", one_broker.bootstrap, "exists", "--json"], stdin=b'{"valu": 1}\n')
    assert done.returncode == 1
    assert done.stderr.count(b"\n") == 1
    assert b"unknown field(s) valu" in done.stderr


def test_an_unknown_option_value_is_one_line_and_exit_status_1() -> None:
    done = cli(["produce", "t", "-z", "brotli"])
    assert done.returncode == 1
    assert done.stderr.count(b"\n") == 1
    assert b"invalid choice: 'brotli'" in done.stderr


def test_ctrl_c_delivers_what_was_read_and_exits_130_quietly(one_broker: BlockingCluster) -> None:
    one_broker.create_topic("typed", 1)
    proc = subprocess.Popen(
        [*PYKAF, "produce", "-b", one_broker.bootstrap, "typed"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(b"first\nsecond\n")
    proc.stdin.flush()
    # The two lines are in the topic: the producer read them and waits for more input.
    with Consumer(one_broker.bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition("typed", 0)])
        got: list[bytes | None] = []
        deadline = time.monotonic() + 30
        while len(got) < 2 and time.monotonic() < deadline:
            got += [r.value for r in consumer.poll(1.0)]
    assert got == [b"first", b"second"]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (130, b"")
