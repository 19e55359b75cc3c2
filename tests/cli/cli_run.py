"""Running ``python -m pykaf`` as a subprocess in the CLI's tests (exit codes, stdin,
stdout and signals are process-level), and a one-broker cluster for a test module."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence

import pytest

from pykaf.broker import BlockingCluster

__all__ = ["PYKAF", "cli", "one_broker"]

PYKAF = (sys.executable, "-m", "pykaf")


def cli(
    args: Sequence[str], *, stdin: bytes = b"", timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    """``pykaf ARGS`` with ``stdin``; stdout and stderr captured as bytes."""
    return subprocess.run(
        [*PYKAF, *args], input=stdin, capture_output=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def one_broker() -> Iterator[BlockingCluster]:
    """One broker that does not create topics on first use: a test creates its own, and
    a missing topic stays missing."""
    with BlockingCluster(1, auto_create_topics=False) as cluster:
        yield cluster
