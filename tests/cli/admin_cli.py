"""Running ``pykaf`` admin subcommands in-process for the CLI tests: exit status, stdout,
stderr (``main`` returns; usage mistakes and failures never leave the process)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from pykaf import Producer
from pykaf.cli._main import main

__all__ = ["Run", "one_line_failure", "pykaf", "pykaf_json", "produce_lines"]


@dataclass(frozen=True)
class Run:
    status: int
    out: str
    err: str


def pykaf(capsys: pytest.CaptureFixture[str], bootstrap: str, *argv: str) -> Run:
    """``pykaf ARGV -b BOOTSTRAP``, in this process."""
    capsys.readouterr()  # drop what came before
    status = main([*argv, "-b", bootstrap])
    captured = capsys.readouterr()
    return Run(status, captured.out, captured.err)


def pykaf_json(capsys: pytest.CaptureFixture[str], bootstrap: str, *argv: str) -> Any:
    """``pykaf ARGV --json``: the one JSON document it printed (it must succeed)."""
    run = pykaf(capsys, bootstrap, *argv, "--json")
    assert run.status == 0, run.err
    return json.loads(run.out)


def one_line_failure(run: Run, *fragments: str) -> None:
    """Exit status 1, and one line on stderr that says each of ``fragments``."""
    assert run.status == 1, run
    lines = run.err.splitlines()
    assert len(lines) == 1, run.err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def produce_lines(bootstrap: str, topic: str, counts: dict[int, int]) -> None:
    """``counts[p]`` records to partition ``p`` of ``topic`` (values ``p-i``), flushed."""
    with Producer(bootstrap) as producer:
        for partition, count in counts.items():
            for i in range(count):
                producer.produce(topic, f"{partition}-{i}".encode(), partition=partition)
        producer.flush()
