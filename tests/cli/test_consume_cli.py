"""``pykaf consume``: records to stdout as kcat -C, groups that resume where the printing
stopped (Ctrl-C included), a closed stdout, and bad input."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
from cli_run import PYKAF, cli, one_broker

from pykaf import Producer
from pykaf.broker import BlockingCluster
from pykaf.cli import main

__all__ = ["one_broker"]


def fill(cluster: BlockingCluster, topic: str, count: int, partitions: int = 1) -> list[bytes]:
    """``count`` records ``value-N`` (key ``key-N``, timestamp N ms after 1_000_000) spread
    over the partitions in turn; their values, in production order."""
    cluster.create_topic(topic, partitions)
    values = [b"value-%06d" % i for i in range(count)]
    with Producer(cluster.bootstrap) as producer:
        for i, value in enumerate(values):
            producer.produce(
                topic, value, b"key-%d" % i, partition=i % partitions, timestamp=1_000_000 + i
            )
        assert producer.flush(30) == 0
    return values


def lines(out: bytes) -> list[bytes]:
    return out.splitlines()


@pytest.fixture(scope="module")
def ten(one_broker: BlockingCluster) -> str:
    """A topic of one partition holding value-000000 .. value-000009."""
    fill(one_broker, "ten", 10)
    return one_broker.bootstrap


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        ("beginning", list(range(10))),
        ("end", []),
        ("4", list(range(4, 10))),
        ("-3", list(range(7, 10))),
        ("-30", list(range(10))),  # clamped to the beginning
        ("@1000006", list(range(6, 10))),
        ("s@1000008", [8, 9]),
        ("@9000000", []),  # after every record: the end
    ],
)
def test_offset_specs(ten: str, offset: str, expected: list[int]) -> None:
    done = cli(["consume", "-b", ten, "ten", "-e", "-o", offset])
    assert (done.returncode, done.stderr) == (0, b"")
    assert lines(done.stdout) == [b"value-%06d" % i for i in expected]


def test_kcats_dash_t_names_topics_beside_or_instead_of_the_operands(
    one_broker: BlockingCluster, ten: str
) -> None:
    if "two" not in one_broker.state.topics:
        fill(one_broker, "two", 2)
    alone = cli(["consume", "-b", ten, "-t", "ten", "-e"])
    assert (alone.returncode, alone.stderr) == (0, b"")
    assert lines(alone.stdout) == [b"value-%06d" % i for i in range(10)]
    both = cli(["consume", "-b", ten, "-t", "two", "ten", "-e"])
    assert both.returncode == 0, both.stderr
    assert sorted(lines(both.stdout)) == sorted(
        [b"value-%06d" % i for i in range(10)] + [b"value-000000", b"value-000001"]
    )


def test_count_partition_and_format_tokens(one_broker: BlockingCluster) -> None:
    fill(one_broker, "three-parts", 30, partitions=3)
    done = cli(
        [
            "consume",
            "-b",
            one_broker.bootstrap,
            "three-parts",
            "-p",
            "1",
            "-c",
            "2",
            "-f",
            "%t|%p|%o|%k|%K|%s|%S|%T|%h|%%|\\t|\\x41\\n",
        ]
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        b"three-parts|1|0|key-1|5|value-000001|12|1000001||%|\t|A\n"
        b"three-parts|1|1|key-4|5|value-000004|12|1000004||%|\t|A\n"
    )


def test_json_output_marks_bytes_that_are_not_utf8(one_broker: BlockingCluster) -> None:
    one_broker.create_topic("binary", 1)
    with Producer(one_broker.bootstrap) as producer:
        producer.produce("binary", b"\xff\xfe", b"text", headers=[("h", b"\x80")])
        producer.produce("binary", None, None)
        assert producer.flush(30) == 0
    done = cli(["consume", "-b", one_broker.bootstrap, "binary", "-e", "--json"])
    first, second = (json.loads(line) for line in lines(done.stdout))
    assert first["key"] == "text"
    assert "key_encoding" not in first
    assert (first["value"], first["value_encoding"]) == ("//4=", "base64")
    assert (first["headers"], first["headers_encoding"]) == ([["h", "gA=="]], "base64")
    assert (second["key"], second["value"], second["headers"]) == (None, None, [])


def test_a_group_resumes_after_what_was_committed(one_broker: BlockingCluster) -> None:
    values = fill(one_broker, "grouped", 60, partitions=3)
    bootstrap = one_broker.bootstrap
    first = cli(["consume", "-b", bootstrap, "grouped", "-G", "g1", "-o", "beginning", "-c", "25"])
    assert first.returncode == 0, first.stderr
    assert len(lines(first.stdout)) == 25
    # -o beginning only where nothing was committed yet (the partitions not reached).
    second = cli(["consume", "-b", bootstrap, "grouped", "-G", "g1", "-e", "-o", "beginning"])
    assert second.returncode == 0, second.stderr
    printed = lines(first.stdout) + lines(second.stdout)
    assert sorted(printed) == values  # nothing lost, nothing twice
    third = cli(["consume", "-b", bootstrap, "grouped", "-G", "g1", "-e"])
    assert third.stdout == b""


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_cleanly_and_commits_what_was_printed(
    one_broker: BlockingCluster, signum: signal.Signals
) -> None:
    # More than a pipe holds: the consumer is stopped while it writes, part way through.
    # SIGTERM (``kill``, ``docker stop``) as Ctrl-C: before, it ended the process at once
    # (exit -15), with nothing committed.
    topic = f"interrupted-{signum.name}"
    values = fill(one_broker, topic, 40_000, partitions=2)
    bootstrap = one_broker.bootstrap
    proc = subprocess.Popen(
        [*PYKAF, "consume", "-b", bootstrap, topic, "-G", "g2", "-o", "beginning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,  # readline takes one line; communicate() reads the fd, not a buffer
    )
    assert proc.stdout is not None
    head = proc.stdout.readline()  # it is printing
    assert head.startswith(b"value-")
    proc.send_signal(signum)
    rest, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (0, b"")  # exit 0 and quiet, as kcat
    printed = lines(head + rest)
    assert len(printed) > 0
    resumed = cli(["consume", "-b", bootstrap, topic, "-G", "g2", "-e", "-o", "beginning"])
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(printed + lines(resumed.stdout)) == values


def test_ctrl_c_while_waiting_for_records(ten: str) -> None:
    proc = subprocess.Popen(
        [*PYKAF, "consume", "-b", ten, "ten", "-G", "g3", "-o", "beginning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,  # readline takes one line; communicate() reads the fd, not a buffer
    )
    assert proc.stdout is not None
    got = [proc.stdout.readline() for _ in range(10)]  # all of them; then it waits
    assert got[-1] == b"value-000009\n"
    # Most likely inside poll (it printed all there is): the handler raises there.
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=30)
    assert (proc.returncode, rest, err) == (0, b"", b"")
    again = cli(["consume", "-b", ten, "ten", "-G", "g3", "-e"])
    assert (again.returncode, again.stdout) == (0, b"")  # all ten were committed


def test_a_closed_stdout_ends_quietly(one_broker: BlockingCluster) -> None:
    fill(one_broker, "piped", 40_000)
    proc = subprocess.Popen(
        [*PYKAF, "consume", "-b", one_broker.bootstrap, "piped", "-e"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,  # readline takes one line; communicate() reads the fd, not a buffer
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert proc.stdout.readline() == b"value-000000\n"  # as `| head -1`
    proc.stdout.close()
    assert proc.wait(timeout=30) == 0
    assert proc.stderr.read() == b""


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["missing", "-e"], "topic 'missing' does not exist; check the topic name, or create"),
        (["ten", "-o", "soon"], "-o 'soon': use beginning, end, stored, an offset"),
        (["ten", "-o", "@-5"], "-o '@-5': use beginning"),
        (["ten", "-o", "stored"], "-o stored needs -G GROUP"),
        (["ten", "-G", "g", "-o", "5"], "with -G, -o says where to start"),
        (["ten", "-G", "g", "-p", "0"], "-p and -G exclude each other"),
        (["ten", "-p", "3"], "-p 3: topic 'ten' has partitions 0..0"),
        (["ten", "-c", "0"], "-c 0: the count is a number >= 1"),
        (["ten", "-f", "%s %x"], "-f: unknown token %x"),
        (["ten", "-f", "\\xZZ"], "-f: \\x needs two hex digits"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_1(
    ten: str, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert main(["consume", "-b", ten, *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pykaf consume: ")
    assert err.count("\n") == 1
    assert expected in err


def test_json_and_format_exclude_each_other() -> None:
    done = cli(["consume", "t", "--json", "-f", "%s"])
    assert done.returncode == 1
    assert done.stderr.count(b"\n") == 1
    assert b"not allowed with argument" in done.stderr
