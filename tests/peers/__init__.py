"""Real Kafka peers for tests: librdkafka's mock cluster and tansu, as pytest fixtures.

Fixtures (registered in ``tests/conftest.py``): ``mock_cluster``, ``mock_cluster_factory``,
``mock_cluster_session``, ``tansu``.
"""

from .mock_cluster import MockCluster, MockClusterError, MockRequest
from .ports import LOOPBACK, free_port, kafka_api_versions_ok
from .tansu import Tansu, TansuError

__all__ = [
    "LOOPBACK",
    "MockCluster",
    "MockClusterError",
    "MockRequest",
    "Tansu",
    "TansuError",
    "free_port",
    "kafka_api_versions_ok",
]
