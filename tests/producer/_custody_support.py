"""What the custody tests share: short bounds, and one broker with topic "t"."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pykaf.broker import BlockingCluster

__all__ = ["FAST", "one_broker"]

# Short bounds: every wait in these tests ends in seconds, whatever happens.
FAST: dict[str, Any] = {
    "request_timeout": 5.0,
    "delivery_timeout": 20.0,
    "max_block": 10.0,
    "linger": 0.002,
}


@contextmanager
def one_broker(partitions: int) -> Iterator[BlockingCluster]:
    """An embedded broker (node 1) with topic "t" of ``partitions`` partitions."""
    with BlockingCluster(brokers=1) as running:
        running.create_topic("t", partitions)
        yield running
