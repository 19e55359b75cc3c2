"""Fixtures of the broker tests: a 3-broker blocking cluster (the plugin's fixtures come
from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pykaf.broker import BlockingCluster

__all__ = ["cluster"]


@pytest.fixture
def cluster() -> Iterator[BlockingCluster]:
    with BlockingCluster(brokers=3) as running:
        yield running
