"""A real peer broker in a process of its own (tansu, or librdkafka's mock cluster), as the
tests that freeze it (SIGSTOP), read it back or compare its behaviour see it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from .mock_cluster import MockCluster
from .tansu import Tansu

__all__ = ["PROCESS_BROKERS", "ProcessBroker", "process_broker"]

#: The fixture parameters ``process_broker`` understands.
PROCESS_BROKERS = ("tansu", "mock")


@dataclass(frozen=True)
class ProcessBroker:
    name: str
    bootstrap: str
    pid: int  # ours to SIGSTOP and SIGCONT; the fixture that started it stops it
    #: Its high watermarks can be used for end-of-log checks (tansu's can be too low).
    trust_watermarks: bool
    #: Drops a batch it has already written (same producer id, epoch and sequence).
    #: librdkafka's mock checks sequences only for transactional producers
    #: (``rd_kafka_mock_validate_records``).
    deduplicates: bool


def process_broker(request: pytest.FixtureRequest, topic: str, partitions: int) -> ProcessBroker:
    """For a fixture parametrized over ``PROCESS_BROKERS``: the broker its parameter names
    (from the ``tansu`` or ``mock_cluster`` fixture), with ``topic`` created."""
    if request.param == "tansu":
        tansu: Tansu = request.getfixturevalue("tansu")
        tansu.create_topic(topic, partitions)
        return ProcessBroker("tansu", tansu.bootstrap, tansu.pid, False, True)
    mock: MockCluster = request.getfixturevalue("mock_cluster")
    mock.create_topic(topic, partitions)
    return ProcessBroker("mock", mock.bootstrap, mock.pid, True, False)
