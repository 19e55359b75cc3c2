"""What the custody tests share: short bounds, one broker with topic "t", and a disk
whose fsyncs by the journal's syncing thread wait until released."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pykaf._producer.journal import _store_sync
from pykaf.broker import BlockingCluster

__all__ = ["FAST", "SlowFsync", "one_broker"]

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


class SlowFsync:
    """The journal's syncing thread ("pykaf-journal") blocks in each fsync until
    ``release`` is set (30 s at most); ``held`` is set once it is in one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.held = threading.Event()
        self.release = threading.Event()
        real_fsync = _store_sync.fsync_ticket

        def slow_fsync(ticket: Any, directory: Path) -> Any:
            if threading.current_thread().name == "pykaf-journal":
                self.held.set()
                self.release.wait(30)
            return real_fsync(ticket, directory)

        monkeypatch.setattr(_store_sync, "fsync_ticket", slow_fsync)
